"""Redis events: the live stream of join, leave, summary, rename, message and expired events.

The scripts that change state append each event to a capped log stream and
publish it, entry id included, on the namespace's events channel, in the same
step: events come in commit order. A reader takes them from the channel and,
whenever its subscription is confirmed (first, and after a reconnect), reads the
log from the last entry it handled, so what pub/sub dropped meanwhile still
arrives, once. A reader survives every error, logging it; only close ends it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from redis.exceptions import RedisError

from peers.models import Event, EventKind
from peers.transports.redis.client import Client
from peers.transports.redis.doorbell import Setbacks, Silence, note
from peers.transports.redis.mailbox import MailboxMixin
from peers.transports.redis.replies import entries, entry_ms, stream_id, text

__all__ = ["EventsMixin", "event_from_log"]

# events() replays the log from this long before it was called and drops what
# happened before the call by timestamp: the server's clock and ours differ a little.
_EVENT_REPLAY_MS: Final = 2_000
_EVENT_BATCH: Final = 200


def event_from_log(fields: Mapping[str, str]) -> Event | None:
    try:
        kind = EventKind(fields.get("k", ""))
    except ValueError:
        return None  # a log entry that is not an event
    data: dict[str, Any]
    if kind == EventKind.MESSAGE:
        data = {
            "id": fields.get("mid"),
            "sender_id": fields.get("p"),
            "sender_name": fields.get("n") or None,
            "recipient_id": fields.get("r"),
            "broadcast": fields.get("b") == "1",
        }
    else:
        data = json.loads(fields.get("d") or "{}")
    return Event(
        kind=kind,
        at=float(fields.get("at") or 0.0),
        peer_id=fields.get("p", ""),
        peer_name=fields.get("n") or None,
        data=data,
    )


class EventsMixin(MailboxMixin):
    """``events()`` on Redis."""

    def events(self) -> AsyncIterator[Event]:
        """Live join, leave, summary, rename and message events from now on, until closed."""
        # Positioned now, not at the first __anext__, so nothing between the call
        # and the first read is lost.
        return self._event_stream(time.time())

    async def _event_stream(self, since: float) -> AsyncIterator[Event]:
        # Live events come by pub/sub: every log() in a script publishes its entry.
        # Whenever the subscription is confirmed (first, and after each reconnect)
        # the log stream fills in what the channel did not carry: before the
        # subscription, or while it was down. The cursor is the last entry id
        # handled, so nothing is lost and nothing comes twice.
        since_ms = int(since * 1000)
        cursor = stream_id(f"{max(0, since_ms - _EVENT_REPLAY_MS)}-0")
        client = self._rb
        if client is None:
            return  # transport closed
        pubsub = client.pubsub(ignore_subscribe_messages=False)
        silence = Silence(self.pubsub_quiet)
        catch_up = False
        setbacks = Setbacks("redis event stream")
        try:
            while self._rb is not None:
                batch: list[tuple[str, dict[str, str] | None]] = []
                try:
                    if not pubsub.subscribed:
                        await pubsub.subscribe(self._keys.events_channel)
                    if catch_up:
                        batch = await self._log_after(client, cursor)
                        catch_up = False
                    else:
                        message = await silence.read(pubsub)
                        kind = text(message.get("type")) if message else ""
                        if kind == "subscribe":
                            catch_up = True
                        elif kind == "message" and message is not None:
                            try:
                                published_id, flat = json.loads(text(message["data"]))
                                published = dict(zip(flat[::2], flat[1::2], strict=True))
                                stream_id(published_id)
                            except (ValueError, TypeError, AttributeError):
                                # Not ours (someone else published here): the log says what happened.
                                catch_up = True
                            else:
                                batch = [(published_id, published)]
                except Exception as exc:
                    # The cursor makes a retry lossless: the stream rides out an outage
                    # or an odd reply (catching up from the log) and ends only on close.
                    catch_up = catch_up or not isinstance(exc, RedisError | OSError)
                    await setbacks.failed(exc)
                    continue
                setbacks.over()
                for entry_id, fields in batch:
                    position = stream_id(entry_id)
                    if position <= cursor:
                        continue  # seen already (by the log, then the channel, or back)
                    cursor = position
                    try:
                        event = event_from_log(fields) if fields is not None else None
                    except (ValueError, TypeError) as exc:
                        note("redis event unreadable; skipped", entry=entry_id, error=repr(exc))
                        continue
                    if event is None:
                        continue
                    if entry_ms(entry_id) <= since_ms + _EVENT_REPLAY_MS and event.at < since:
                        continue  # replayed from before the call
                    yield event
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def _log_after(
        self, client: Client, cursor: tuple[int, int]
    ) -> list[tuple[str, dict[str, str] | None]]:
        """Every log entry after ``cursor``, oldest first."""
        out: list[tuple[str, dict[str, str] | None]] = []
        start = f"({cursor[0]}-{cursor[1]}"
        while True:
            page = entries(await client.xrange(self._keys.log, start, "+", count=_EVENT_BATCH))
            out += page
            if len(page) < _EVENT_BATCH:
                return out
            start = f"({page[-1][0]}"
