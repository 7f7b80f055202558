"""Redis doorbells: a payload-free pub/sub channel per recipient, rung by a send.

Each peer served here has its own pub/sub connection, read by one task
(redis-py's PubSub is not safe to share between tasks while it reconnects). A
send rings unless an earlier ring still waits for the recipient's next fetch;
the streams stay the source of truth, so a missed ring costs only the caller's
safety re-check. A connection silent for ``REDIS_PUBSUB_QUIET`` gets a PING and
is dropped when nothing answers (a half-open link otherwise looks quiet forever).
Readers survive every error, logging it; only close ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from peers import constants as c
from peers.keys import RedisKeys
from peers.log import get_logger
from peers.tasks import cancel_and_wait
from peers.transports.redis.client import Client, PubSub
from peers.transports.redis.replies import text

__all__ = ["Doorbell", "Setbacks", "Silence", "note", "retry_delay"]

_log = get_logger(__name__)
# How long register() waits for the server to confirm a doorbell subscription.
_SUBSCRIBE_CONFIRM = 5.0


def retry_delay(failures: int) -> float:
    """Exponential backoff of the pub/sub readers, capped at twice the command retries' cap."""
    return min(c.REDIS_BACKOFF_CAP * 2, c.REDIS_BACKOFF_BASE * 2.0**failures)


def note(event: str, level: str = "warning", **fields: Any) -> None:
    """Log from a background task; a closed stderr must not stop the task."""
    with contextlib.suppress(Exception):
        getattr(_log, level)(event, **fields)


class Setbacks:
    """The failures in a row of a background reader: logged, then waited out, longer each time.

    A connection error is expected (the reader reconnects) and logged once per
    outage; anything else is a bug or a reply nobody expected, logged every time.
    Neither ends the reader: only close does.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self.count = 0

    async def failed(self, exc: Exception) -> None:
        self.count += 1
        if not isinstance(exc, RedisError | OSError):
            note(f"{self._what} failed; going on", level="error", error=repr(exc))
        elif self.count == 1:
            note(f"{self._what} interrupted; reconnecting", error=str(exc))
        await asyncio.sleep(retry_delay(self.count))

    def over(self) -> None:
        if self.count:
            note(f"{self._what} back", level="info", attempts=self.count)
        self.count = 0


class Silence:
    """Tells a quiet pub/sub connection from a dead one (a half-open link answers nothing)."""

    def __init__(self, quiet: float) -> None:
        self._quiet = quiet
        self._answer_within = min(quiet, c.REDIS_SOCKET_TIMEOUT)
        self._heard = time.monotonic()
        self._pinged: float | None = None

    async def read(self, pubsub: PubSub) -> dict[str, Any] | None:
        """One read: a message, or None after a short wait (then the connection is checked)."""
        # A timeout (not a blocking read) so that checks keep pace with ``quiet``.
        message: dict[str, Any] | None = await pubsub.get_message(
            timeout=min(c.REDIS_BLOCK_MS / 1000, self._quiet)
        )
        if message is None:
            await self.check(pubsub)
        else:
            self.heard()
        return message

    def heard(self) -> None:
        self._heard = time.monotonic()
        self._pinged = None

    async def check(self, pubsub: PubSub) -> None:
        """After a read that got nothing: PING a long-quiet connection, drop one that never answered."""
        now = time.monotonic()
        if self._pinged is None:
            if now - self._heard > self._quiet:
                await pubsub.ping()  # the answer comes as a 'pong' message
                self._pinged = now
        elif now - self._pinged > self._answer_within:
            self.heard()  # the next connection starts with a clean slate
            if pubsub.connection is not None:
                await pubsub.connection.disconnect()  # the next read reconnects, re-subscribes
            raise RedisConnectionError(
                f"no answer to PING within {self._answer_within:g} s on a pub/sub connection"
            )


class Bell:
    """One peer's doorbell: its own pub/sub connection, read by its own task only.

    redis-py's PubSub is not safe to use from two tasks while it reconnects (a
    subscribe racing with the reader's reconnect fails in odd ways), so after
    the first subscribe nothing but the reader touches the connection.
    """

    def __init__(self, pubsub: PubSub, quiet: float) -> None:
        self.pubsub = pubsub
        self.quiet = quiet
        self.rung = asyncio.Event()
        self.confirmed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        setbacks = Setbacks("redis doorbell")
        silence = Silence(self.quiet)
        while True:
            try:
                # redis-py reconnects and re-subscribes by itself, in this task.
                message = await silence.read(self.pubsub)
            except Exception as exc:
                if not isinstance(exc, RedisError | OSError):
                    self.rung.set()  # a ring may have been lost with it: the waiter re-fetches
                # (A reconnect re-subscribes, and that rings: see below.)
                await setbacks.failed(exc)
                continue
            setbacks.over()
            kind = text(message.get("type")) if message else ""
            if kind == "message":
                self.rung.set()
            elif kind == "subscribe":
                if self.confirmed.is_set():
                    # Re-subscribed after a reconnect: a ring may have been lost meanwhile.
                    self.rung.set()
                self.confirmed.set()

    async def close(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            await cancel_and_wait(reader)
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.aclose()
        self.rung.set()  # release waiters: they re-fetch and find the transport closed


class Doorbell:
    """The wake channels of the peers this instance serves, one pub/sub connection each.

    Subscribed when a peer registers here (or at its first wait) and kept, so a
    ring that comes while nobody waits stays set until the next wait.
    """

    def __init__(self, client: Client, keys: RedisKeys, quiet: Callable[[], float]) -> None:
        self._client = client
        self._keys = keys
        self._bells: dict[str, Bell] = {}
        self._quiet = quiet

    def has(self, peer_id: str) -> bool:
        return peer_id in self._bells

    async def add(self, peer_id: str) -> None:
        if peer_id in self._bells:
            return
        pubsub = self._client.pubsub(ignore_subscribe_messages=False)
        bell = self._bells[peer_id] = Bell(pubsub, self._quiet())
        try:
            await bell.pubsub.subscribe(self._keys.wake_channel(peer_id))
        except BaseException:
            if self._bells.get(peer_id) is bell:
                del self._bells[peer_id]
            with contextlib.suppress(RedisError, OSError):
                await bell.pubsub.aclose()
            raise
        if self._bells.get(peer_id) is not bell:
            # Closed (or removed) while subscribing: nobody will close this one.
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            return
        bell.reader = asyncio.create_task(bell.read(), name=f"peers-redis-doorbell-{peer_id}")
        # A send right after register() returns must find the subscription in place.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(bell.confirmed.wait(), _SUBSCRIBE_CONFIRM)

    async def remove(self, peer_id: str) -> None:
        bell = self._bells.pop(peer_id, None)
        if bell is not None:
            await bell.close()

    async def wait(self, peer_id: str, timeout: float) -> bool:
        await self.add(peer_id)
        bell = self._bells.get(peer_id)
        if bell is None:
            return True  # closed meanwhile: the caller re-fetches and finds out
        rung = bell.rung
        if not rung.is_set():
            try:
                await asyncio.wait_for(rung.wait(), max(timeout, 0.0))
            except TimeoutError:
                return False
        rung.clear()
        return True

    async def close(self) -> None:
        bells, self._bells = self._bells, {}
        for bell in bells.values():
            await bell.close()
