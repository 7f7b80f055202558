"""Redis mailboxes: send, fetch, ack, waiting for mail, reading messages back and history.

Each mailbox is a stream with one consumer group (``constants.REDIS_GROUP``):
fetch reads the group's pending entries, then new ones, without consuming; ack
is XACK + XDEL, so a stream holds only unacked mail. A peer that inherited a
name reads the earlier holders' mailboxes too (its backlog), merged in commit
order. A send is idempotent by message id, so a caller may retry one whose reply
was lost; concurrent sends share one script call (see :mod:`.batching`). A send
past ``max_unread`` expires the oldest unread mail, with an EXPIRED event.
History reads its own stream of sends, trimmed only at the retention cutoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection, Sequence
from typing import Any, Final

from redis.exceptions import ResponseError

from peers import constants as c
from peers.errors import BackendError
from peers.models import HistoryQuery, Message, MessageRecord
from peers.transports import common
from peers.transports.redis.batching import Coalescer
from peers.transports.redis.connection import edge, edge_within
from peers.transports.redis.registry import RegistryMixin
from peers.transports.redis.replies import entries, entry_ms, text

__all__ = ["HISTORY_SKEW", "MailboxMixin"]

_HISTORY_BATCH: Final = 500
# history() stops scanning this long before `since` (clock skew between writers).
HISTORY_SKEW: Final = 60.0


def _message(raw: str, recipient_id: str) -> Message:
    message = Message.model_validate_json(raw)
    if message.recipient_id != recipient_id:
        message = message.model_copy(update={"recipient_id": recipient_id})
    return message


def _missing_group(exc: ResponseError) -> bool:
    text_ = str(exc)
    # Redis says NOGROUP (wrapped in a pipeline's own message); fakeredis words a
    # missing stream differently.
    return "NOGROUP" in text_ or "requires the key to exist" in text_


class MailboxMixin(RegistryMixin):
    """The message half of the contract on Redis."""

    def _batcher(self) -> Coalescer[Any, str]:
        return Coalescer(self._send_batch, c.REDIS_SEND_BATCH, name="redis-sends")

    @edge
    async def send(self, message: Message) -> Message:
        """Store a message durably for its recipient (following successors), wake it, return it as stored."""
        common.check_message(message, self.namespace)
        if self._sends is None:
            raise self._not_connected()
        recipient = await self._sends.submit(message)
        if recipient != message.recipient_id:
            return message.model_copy(update={"recipient_id": recipient})
        return message

    async def _send_batch(self, messages: Sequence[Message]) -> list[str | Exception]:
        """One script call for several sends: each one's final recipient, or its error."""
        args: list[str | int] = [repr(time.time()), self._max_unread, repr(self._retention), c.GC_PAGE]
        for m in messages:
            fields = (m.recipient_id, m.id, m.sender_id, m.sender_name or "")
            flag = "1" if m.broadcast else "0"
            args.append("\0".join((*fields, flag, repr(m.sent_at), m.model_dump_json())))
        # Bounded here too: the batch may run in a task of its own, outside any caller's deadline.
        async with asyncio.timeout(self.op_timeout):
            reply = await self._run("send", self._keys.registry, *args)
        out: list[str | Exception] = []
        for m, line in zip(messages, text(reply).split("\n"), strict=True):
            if line == "!nopeer":
                out.append(common.no_such_peer(m.recipient_id, self.namespace))
            elif line == "!conflict":
                out.append(common.message_conflict(m.id))
            elif line.startswith("!error "):
                out.append(BackendError(f"Redis at {self._url} refused message {m.id}: {line[7:]}"))
            else:
                out.append(line)
        return out

    async def _ensure_group(self, recipient_id: str) -> bool:
        """Re-create a missing consumer group (data lost); False if there is no mailbox to have."""
        loaded = await self._load(recipient_id)
        if loaded is None or loaded[0].successor is not None:
            return False  # unknown, or its mail moved to a successor
        with contextlib.suppress(ResponseError):  # BUSYGROUP: someone else was quicker
            await self._client().xgroup_create(
                self._keys.mailbox(recipient_id), c.REDIS_GROUP, id="0", mkstream=True
            )
        return True

    @edge
    async def fetch(
        self, recipient_id: str, limit: int = c.FETCH_LIMIT, skip: Collection[str] = ()
    ) -> list[Message]:
        """The recipient's pending messages not in ``skip``, oldest first, without consuming them."""
        common.check_fetch_limit(limit)
        mailbox = self._keys.mailbox(recipient_id)
        skipped = common.unique_ids(skip)  # each counts once against the limit
        for attempt in range(2):
            try:
                found = await self._run("fetch", mailbox, recipient_id, limit, *skipped)
                break
            except ResponseError as exc:
                if attempt or not _missing_group(exc):
                    raise
                if not await self._ensure_group(recipient_id):
                    return []
        return [_message(text(raw), recipient_id) for raw in found[:limit]]

    @edge
    async def ack(self, recipient_id: str, message_ids: Sequence[str]) -> int:
        """Mark the recipient's own pending messages delivered; return how many changed."""
        unique = common.unique_ids(message_ids)
        if not unique:
            return 0
        changed = await self._run(
            "ack",
            self._keys.mailbox(recipient_id),
            recipient_id,
            repr(time.time()),
            repr(self._retention),
            *unique,
        )
        return int(changed)

    @edge_within(None)  # bounded by its own timeout
    async def wait_for_mail(self, recipient_id: str, timeout: float) -> bool:
        """Sleep until a send to the recipient (True) or the timeout (False); costs nothing while idle."""
        return await self._bell().wait(recipient_id, timeout)

    async def _read_records(self, ids: Sequence[str]) -> list[tuple[Message, str, str] | None]:
        """Each message as stored (recipient: the peer that reads it now), acked_at, expired."""
        if not ids:
            return []
        reply = await self._run("records", self._keys.registry, *ids)
        out: list[tuple[Message, str, str] | None] = []
        for raw, recipient, acked_at, expired in reply:
            if not text(raw):
                out.append(None)
            else:
                out.append((_message(text(raw), text(recipient)), text(acked_at), text(expired)))
        return out

    @edge
    async def get_message(self, message_id: str) -> Message | None:
        """A message within the retention window, pending or delivered, or None."""
        (found,) = await self._read_records([message_id])
        if found is None or found[0].sent_at < time.time() - self._retention:
            return None
        return found[0]

    @edge
    async def pending_counts(self) -> dict[str, int]:
        """Unread message count per recipient id (only recipients with mail)."""
        flat = await self._run("counts", self._keys.inbox)
        return {text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    @edge
    async def history(self, query: HistoryQuery) -> list[MessageRecord]:
        """Messages within retention, oldest first, with their delivery state."""
        if query.limit < 1:
            return []
        client = self._client()
        cutoff = time.time() - self._retention
        since = query.since if query.since is not None else float("-inf")
        # Unread mail past retention is still shown (expired) until gc trims the stream.
        floor_ms = (since - HISTORY_SKEW) * 1000
        newest_first: list[MessageRecord] = []
        upper = "+"
        # The history stream is newest last: walk it back until `limit` matched or `since` passed.
        while len(newest_first) < query.limit:
            batch = entries(await client.xrevrange(self._keys.history, upper, "-", count=_HISTORY_BATCH))
            if not batch:
                break
            upper = f"({batch[-1][0]}"
            recent = [(e, f) for e, f in batch if entry_ms(e) >= floor_ms]
            mids = [f.get("mid", "") for _, f in recent if f is not None]
            for found in await self._read_records(mids):
                if found is None:
                    continue  # delivered and past retention, or collected
                message, acked_at, expired = found
                if message.sent_at < since:
                    continue
                if query.peer_id is not None and query.peer_id not in (
                    message.sender_id,
                    message.recipient_id,
                ):
                    continue
                shown = common.record(
                    message,
                    acked_at=float(acked_at) if acked_at else None,
                    expired=bool(expired),
                    cutoff=cutoff,
                )
                if shown is not None:
                    newest_first.append(shown)
                    if len(newest_first) >= query.limit:
                        break
            if len(recent) < len(batch) or len(batch) < _HISTORY_BATCH:
                break
        return list(reversed(newest_first))
