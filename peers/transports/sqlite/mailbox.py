"""SQLite mailboxes: send (idempotent by message id, following successors, capped),
fetch, ack, waiting for mail, reading messages back and history.

The order of a mailbox is the commit order (the AUTOINCREMENT ``seq`` column).
Acked mail stays (``acked_at``) for history until gc removes it after retention;
mail dropped by the cap is marked ``expired`` and stays the same way.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Sequence
from typing import Any

from peers import constants as c
from peers.errors import BackendUnavailable
from peers.keys import SQLiteTables as T
from peers.models import EventKind, HistoryQuery, Message, MessageRecord, SenderKind
from peers.transports import common
from peers.transports.sqlite import schema
from peers.transports.sqlite.store import SQLiteStore
from peers.transports.sqlite.wakeup import Doorbell, PollEndpoint
from peers.transports.sqlite.worker import Effects

__all__ = ["MailboxMixin"]

# ids per "IN (...)" list, below SQLite's variable limit.
_ID_CHUNK = 500
# The oldest sequence number of a recipient's unread mail (NULL: none), from the index.
_OLDEST = (
    "SELECT MIN(seq) FROM {t} WHERE namespace = ?1 AND recipient_id = ?2 AND acked_at IS NULL"
)
# The sequence number of a recipient's (?3 + 1)-th newest unread message (NULL: fewer).
_CAP_SEQ = (
    "SELECT seq FROM {t} WHERE namespace = ?1 AND recipient_id = ?2 AND acked_at IS NULL "
    "ORDER BY seq DESC LIMIT 1 OFFSET ?3"
)


class MailboxMixin(SQLiteStore):
    """The message half of the contract on SQLite, and the doorbells of the peers served here."""

    # -- wake-up endpoints ------------------------------------------------------------

    def _endpoint(self, peer_id: str) -> tuple[Doorbell, bool]:
        """This instance's doorbell for a peer, bound now if needed; (endpoint, newly bound).

        A re-read loop when sockets cannot be bound (or PEERS_WAKEUP=poll): mail
        still arrives within a fraction of a second, so that is a warning, not an error.
        """
        self._require_open()
        endpoint = self._endpoints.get(peer_id)
        if endpoint is not None and not endpoint.closed:
            return endpoint, False
        if self.polling is None:
            try:
                endpoint = self._wake.bind_peer(self.namespace, peer_id)
            except BackendUnavailable as exc:
                self._warn_no_push(str(exc))
        if endpoint is None or endpoint.closed:
            endpoint = PollEndpoint(lambda: self._newest_pending(peer_id), c.WAKEUP_POLL_INTERVAL)
        self._endpoints[peer_id] = endpoint
        return endpoint, True

    async def _newest_pending(self, peer_id: str) -> int:
        """The highest sequence number of the peer's pending mail (0: none): the poll mark.

        Sequence numbers only grow, so any new send raises it, whatever was acked meanwhile.
        """
        return await self._read(
            lambda conn: int(
                conn.execute(
                    f"SELECT COALESCE(MAX(seq), 0) FROM {T.MESSAGES} "
                    "WHERE namespace = ? AND recipient_id = ? AND acked_at IS NULL",
                    (self.namespace, peer_id),
                ).fetchone()[0]
            )
        )

    def _drop_endpoint(self, peer_id: str) -> None:
        endpoint = self._endpoints.pop(peer_id, None)
        if endpoint is not None:
            endpoint.close()

    def _apply_cap(
        self, conn: sqlite3.Connection, effects: Effects, recipient: str, now: float
    ) -> list[str]:
        """Expire the recipient's oldest unread mail beyond ``max_unread``; return their ids.

        They leave the mailbox (``acked_at`` set, ``expired`` marked) but stay in
        history, as expired, until gc; an EXPIRED event names them.
        """
        row = conn.execute(
            _CAP_SEQ.format(t=T.MESSAGES), (self.namespace, recipient, self.max_unread)
        ).fetchone()
        if row is None:
            return []
        upto = row[0]
        where = "namespace = ? AND recipient_id = ? AND acked_at IS NULL AND seq <= ?"
        args = (self.namespace, recipient, upto)
        ids = [
            r[0]
            for r in conn.execute(f"SELECT id FROM {T.MESSAGES} WHERE {where} ORDER BY seq", args)
        ]
        conn.execute(f"UPDATE {T.MESSAGES} SET acked_at = ?, expired = 1 WHERE {where}", (now, *args))
        data = common.expired_data(ids, recipient, "mailbox full")
        self._emit(conn, effects, EventKind.EXPIRED, recipient, None, data, now)
        return ids

    def _route(self, conn: sqlite3.Connection, peer_id: str) -> tuple[str, int | None]:
        """Where a send to ``peer_id`` goes, and the oldest sequence number of its unread mail.

        The common case (no successor) is one statement. The oldest unread sequence
        number bounds the count cheaply: sequence numbers are unique, so a mailbox
        whose unread mail spans fewer than ``max_unread`` of them is within the cap,
        and only one that may be past it is counted (see send).
        """
        row = conn.execute(
            f"SELECT successor, ({_OLDEST.format(t=T.MESSAGES)}) FROM {T.PEERS} "
            "WHERE namespace = ?1 AND id = ?2",
            (self.namespace, peer_id),
        ).fetchone()
        if row is None:
            raise common.no_such_peer(peer_id, self.namespace)
        if row[0] is None:
            return peer_id, row[1]
        recipient = self._chain(conn, peer_id)[-1]
        oldest = conn.execute(_OLDEST.format(t=T.MESSAGES), (self.namespace, recipient)).fetchone()
        return recipient, oldest[0]

    def _chain(self, conn: sqlite3.Connection, peer_id: str) -> list[str]:
        """``peer_id`` and its successors, in order, as far as they are stored (bounded)."""
        row = conn.execute(
            f"SELECT successor FROM {T.PEERS} WHERE namespace = ? AND id = ?",
            (self.namespace, peer_id),
        ).fetchone()
        if row is None:
            raise common.no_such_peer(peer_id, self.namespace)
        chain, successor = [peer_id], row[0]
        while successor is not None and successor not in chain and len(chain) < c.MAX_SUCCESSOR_HOPS:
            row = conn.execute(
                f"SELECT successor FROM {T.PEERS} WHERE namespace = ? AND id = ?",
                (self.namespace, successor),
            ).fetchone()
            if row is None:
                break  # the successor was collected: keep the mail with the last one we know
            chain.append(successor)
            successor = row[0]
        return chain

    def _stored(self, conn: sqlite3.Connection, message: Message) -> Message | None:
        """The message already stored under this id (a retried send), or None; InvalidInput
        when that id holds another message."""
        row = conn.execute(
            f"SELECT {schema.MSG_COLS} FROM {T.MESSAGES} WHERE namespace = ? AND id = ?",
            (self.namespace, message.id),
        ).fetchone()
        if row is None:
            return None
        stored = schema.message_from_row(row)
        retry = common.same_message(stored, message) and stored.recipient_id in self._chain(
            conn, message.recipient_id
        )
        if not retry:
            raise common.message_conflict(message.id)
        return stored

    async def send(self, message: Message) -> Message:
        """Store a message durably for its recipient (following successors), wake it, return it as stored."""
        common.check_message(message, self.namespace)

        def op(conn: sqlite3.Connection, effects: Effects) -> Message:
            recipient, oldest = self._route(conn, message.recipient_id)
            try:
                cursor = conn.execute(
                    f"INSERT INTO {T.MESSAGES} ({schema.MSG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        message.id,
                        message.namespace,
                        message.sender_id,
                        message.sender_name,
                        SenderKind(message.sender_kind).value,
                        recipient,
                        message.body,
                        message.reply_to,
                        int(message.broadcast),
                        message.sent_at,
                    ),
                )
            except sqlite3.IntegrityError:
                # The id is taken (the only unique key): a retry whose first reply was
                # lost is not a second message. Only this statement failed: the
                # transaction goes on.
                stored = self._stored(conn, message)
                if stored is None:
                    raise
                return stored
            now = time.time()
            # Events are read only by live tails (from the moment they start):
            # with nobody tailing, a MESSAGE event would be written for nothing.
            if self._wake.has_tails(self.namespace):
                data = common.message_data(message, recipient)
                self._emit(
                    conn, effects, EventKind.MESSAGE, message.sender_id, message.sender_name, data, now
                )
            if oldest is not None and (cursor.lastrowid or 0) - oldest >= self.max_unread:
                self._apply_cap(conn, effects, recipient, now)  # may be past the cap: count
            effects.wake.append(recipient)
            if recipient == message.recipient_id:
                return message
            return message.model_copy(update={"recipient_id": recipient})

        return await self._write(op)

    async def fetch(
        self, recipient_id: str, limit: int = c.FETCH_LIMIT, skip: Collection[str] = ()
    ) -> list[Message]:
        """The recipient's pending messages not in ``skip``, oldest first, without consuming them."""
        common.check_fetch_limit(limit)
        skipped = frozenset(skip)

        def op(conn: sqlite3.Connection) -> list[Message]:
            rows = conn.execute(
                f"SELECT {schema.MSG_COLS} FROM {T.MESSAGES} "
                "WHERE namespace = ? AND recipient_id = ? AND acked_at IS NULL ORDER BY seq LIMIT ?",
                (self.namespace, recipient_id, limit + len(skipped)),
            ).fetchall()
            # Skipped before decoding: decoding is what a row costs (the id is column 0).
            return [schema.message_from_row(r) for r in rows if r[0] not in skipped][:limit]

        return await self._read(op)

    async def ack(self, recipient_id: str, message_ids: Sequence[str]) -> int:
        """Mark the recipient's own pending messages delivered; return how many changed."""
        ids = common.unique_ids(message_ids)
        if not ids:
            return 0

        def op(conn: sqlite3.Connection, effects: Effects) -> int:
            now = time.time()
            changed = 0
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                changed += conn.execute(
                    f"UPDATE {T.MESSAGES} SET acked_at = ? WHERE namespace = ? AND recipient_id = ? "
                    f"AND acked_at IS NULL AND id IN ({', '.join('?' * len(chunk))})",
                    (now, self.namespace, recipient_id, *chunk),
                ).rowcount
            return changed

        return await self._write(op)

    async def wait_for_mail(self, recipient_id: str, timeout: float) -> bool:
        """Sleep until a send to the recipient (True) or the timeout (False); costs nothing while idle."""
        endpoint, _ = self._endpoint(recipient_id)
        return await endpoint.wait(timeout)

    async def get_message(self, message_id: str) -> Message | None:
        """A message within the retention window, pending or delivered, or None."""

        def op(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(
                f"SELECT {schema.MSG_COLS} FROM {T.MESSAGES} WHERE namespace = ? AND id = ? AND sent_at >= ?",
                (self.namespace, message_id, time.time() - self.retention),
            ).fetchone()
            return None if row is None else schema.message_from_row(row)

        return await self._read(op)

    async def pending_counts(self) -> dict[str, int]:
        """Unread message count per recipient id (only recipients with mail)."""

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                f"SELECT recipient_id, COUNT(*) FROM {T.MESSAGES} "
                "WHERE namespace = ? AND acked_at IS NULL GROUP BY recipient_id",
                (self.namespace,),
            ).fetchall()
            return {r[0]: r[1] for r in rows}

        return await self._read(op)

    async def history(self, query: HistoryQuery) -> list[MessageRecord]:
        """Messages within retention, oldest first, with their delivery state."""
        if query.limit < 1:
            return []

        def op(conn: sqlite3.Connection) -> list[MessageRecord]:
            cutoff = time.time() - self.retention
            # Delivered mail past retention is not shown; unread (expired) mail is, until gc.
            where = ["namespace = ?", "(acked_at IS NULL OR expired = 1 OR sent_at >= ?)"]
            args: list[Any] = [self.namespace, cutoff]
            if query.peer_id is not None:
                where.append("(sender_id = ? OR recipient_id = ?)")
                args += [query.peer_id, query.peer_id]
            if query.since is not None:
                where.append("sent_at >= ?")
                args.append(query.since)
            rows = conn.execute(
                f"SELECT {schema.MSG_COLS}, acked_at, expired FROM {T.MESSAGES} "
                f"WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                (*args, query.limit),
            ).fetchall()
            records = [
                common.record(
                    schema.message_from_row(row), acked_at=row[10], expired=bool(row[11]), cutoff=cutoff
                )
                for row in reversed(rows)
            ]
            return [r for r in records if r is not None]

        return await self._read(op)
