"""SQLite registry: registering peers, names and their inheritance, updates, liveness and reaping.

A name is claimed inside the write transaction that registers (or renames) the
peer, under the unique index on ``(namespace, name)``: two claims cannot both win.
The previous holder's unread mail moves to the claimant by one UPDATE of its
recipient column, which keeps every message's sequence number, so the inherited
mail stays in its original order, ahead of anything sent later.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from peers import constants as c
from peers.keys import SQLiteTables as T
from peers.models import EventKind, Peer, PeerFilter, PeerUpdate
from peers.transports import common
from peers.transports.sqlite import schema
from peers.transports.sqlite.mailbox import MailboxMixin
from peers.transports.sqlite.worker import Effects

__all__ = ["RegistryMixin"]

_UPDATABLE = ("summary", "files", "name", "receive_mode", "push", "hooks_at")


class RegistryMixin(MailboxMixin):
    """The peer half of the contract on SQLite."""

    def _online(self, conn: sqlite3.Connection) -> list[Peer]:
        rows = conn.execute(
            f"SELECT {schema.PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND online = 1",
            (self.namespace,),
        ).fetchall()
        return [schema.peer_from_row(r) for r in rows]

    def _split(self, peers: Sequence[Peer]) -> tuple[list[Peer], list[Peer]]:
        now = time.time()
        return common.partition(((p, self._fresh(p, now)) for p in peers), self.host)

    def _reap_ids(
        self, conn: sqlite3.Connection, effects: Effects, *, ids: Sequence[str]
    ) -> list[Peer]:
        """Take the given peers offline that are (still, inside this transaction) not live."""
        now = time.time()
        reaped: list[Peer] = []
        for start in range(0, len(ids), c.GC_PAGE):
            chunk = ids[start : start + c.GC_PAGE]
            rows = conn.execute(
                f"SELECT {schema.PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND online = 1 "
                f"AND id IN ({', '.join('?' * len(chunk))})",
                (self.namespace, *chunk),
            ).fetchall()
            _, dead = self._split([schema.peer_from_row(r) for r in rows])
            reaped += [self._mark_offline(conn, effects, p, now, "reaped") for p in dead]
        return reaped

    async def _reap_dead(self, dead: Sequence[Peer]) -> list[Peer]:
        """Reap what a read found dead, a page per transaction (one may have heartbeated since)."""
        ids = [p.id for p in dead]
        reaped: list[Peer] = []
        for start in range(0, len(ids), c.GC_PAGE):
            chunk = ids[start : start + c.GC_PAGE]
            reaped += await self._write(functools.partial(self._reap_ids, ids=chunk))
        return reaped

    def _claim_name(
        self, conn: sqlite3.Connection, effects: Effects, name: str, claimant: str, now: float
    ) -> None:
        """Take a name for ``claimant`` (inside the write transaction) or raise NameTaken."""
        row = conn.execute(
            f"SELECT {schema.PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND name = ? AND id != ?",
            (self.namespace, name, claimant),
        ).fetchone()
        if row is None:
            return
        holder = schema.peer_from_row(row)
        live, _ = self._split([holder])
        if live:
            raise common.name_taken(name, holder, holder.id)
        if holder.online:
            self._mark_offline(conn, effects, holder, now, "reaped")
        conn.execute(
            f"UPDATE {T.PEERS} SET name = NULL, successor = ? WHERE namespace = ? AND id = ?",
            (claimant, self.namespace, holder.id),
        )
        conn.execute(
            f"UPDATE {T.MESSAGES} SET recipient_id = ? "
            "WHERE namespace = ? AND recipient_id = ? AND acked_at IS NULL",
            (claimant, self.namespace, holder.id),
        )
        self._apply_cap(conn, effects, claimant, now)
        # Its claims wait for the session that takes its name, like its mail (the
        # claimant's own claim on a path wins over an inherited one).
        conn.execute(
            f"UPDATE OR IGNORE {T.CLAIMS} SET holder_id = ? WHERE namespace = ? AND holder_id = ?",
            (claimant, self.namespace, holder.id),
        )
        conn.execute(
            f"DELETE FROM {T.CLAIMS} WHERE namespace = ? AND holder_id = ?",
            (self.namespace, holder.id),
        )

    async def register(self, peer: Peer) -> Peer:
        """Add a live peer, claim its name atomically (NameTaken if a live peer holds it) and inherit the unread mail of the name's previous holders."""
        common.check_peer(peer, self.namespace)
        # Bind the doorbell before the peer becomes visible, so that no poke sent
        # after the commit can find nobody listening.
        _, fresh = self._endpoint(peer.id)

        def op(conn: sqlite3.Connection, effects: Effects) -> Peer:
            now = time.time()
            # A peer that registers again holds its id (and name) itself again.
            stored = peer.model_copy(update={"online": True, "last_seen": now, "successor": None})
            if stored.name is not None:
                self._claim_name(conn, effects, stored.name, stored.id, now)
            conn.execute(
                f"INSERT INTO {T.PEERS} ({schema.PEER_COLS}) "
                f"VALUES ({', '.join('?' * len(schema.PEER_FIELDS))}) "
                "ON CONFLICT (namespace, id) DO UPDATE SET "
                + ", ".join(f"{f} = excluded.{f}" for f in schema.PEER_FIELDS[2:]),
                schema.peer_row(stored),
            )
            self._emit(
                conn, effects, EventKind.JOIN, stored.id, stored.name, common.join_data(stored), now
            )
            return stored

        try:
            return await self._write(op)
        except BaseException:
            if fresh:
                self._drop_endpoint(peer.id)
            raise

    async def heartbeat(self, peer_id: str) -> None:
        """Refresh last-seen; raise PeerNotFound if the peer is offline or unknown."""

        def op(conn: sqlite3.Connection, effects: Effects) -> int:
            return conn.execute(
                f"UPDATE {T.PEERS} SET last_seen = ? WHERE namespace = ? AND id = ? AND online = 1",
                (time.time(), self.namespace, peer_id),
            ).rowcount

        if await self._write(op) == 0:
            raise common.not_registered(peer_id)

    async def update_peer(self, peer_id: str, update: PeerUpdate) -> Peer:
        """Change summary, files, name or receive mode of a live peer; a new name is claimed as in register."""
        common.check_name(update.name)

        def op(conn: sqlite3.Connection, effects: Effects) -> Peer:
            now = time.time()
            current = self._get_peer(conn, peer_id)
            if current is None or not current.online:
                raise common.not_registered(peer_id)
            changes: dict[str, Any] = {"last_seen": now}
            for key in _UPDATABLE:
                value = getattr(update, key)
                if value is not None and value != getattr(current, key):
                    changes[key] = value
            if "name" in changes:
                self._claim_name(conn, effects, changes["name"], peer_id, now)
            new = current.model_copy(update=changes)
            row = dict(zip(schema.PEER_FIELDS, schema.peer_row(new), strict=True))
            conn.execute(
                f"UPDATE {T.PEERS} SET {', '.join(f'{k} = ?' for k in (*_UPDATABLE, 'last_seen'))} "
                "WHERE namespace = ? AND id = ?",
                (*(row[k] for k in (*_UPDATABLE, "last_seen")), self.namespace, peer_id),
            )
            if "name" in changes:
                data = common.rename_data(current.name, new.name)
                self._emit(conn, effects, EventKind.RENAME, peer_id, new.name, data, now)
            if "summary" in changes or "files" in changes:
                data = common.summary_data(new.summary, new.files)
                self._emit(conn, effects, EventKind.SUMMARY, peer_id, new.name, data, now)
            return new

        return await self._write(op)

    async def unregister(self, peer_id: str) -> None:
        """Mark a peer offline; its name and unread mail wait for a successor (no-op if unknown)."""

        def op(conn: sqlite3.Connection, effects: Effects) -> None:
            now = time.time()
            peer = self._get_peer(conn, peer_id)
            if peer is None:
                return
            if peer.online:
                self._mark_offline(conn, effects, peer, now, "unregistered")
            if peer.name is None:
                # Nothing can reach an anonymous peer that left without mail:
                # forget it now instead of at the next gc.
                conn.execute(
                    f"DELETE FROM {T.PEERS} WHERE namespace = ? AND id = ? AND NOT EXISTS ("
                    f"SELECT 1 FROM {T.MESSAGES} WHERE namespace = ? AND recipient_id = ? "
                    "AND acked_at IS NULL)",
                    (self.namespace, peer_id, self.namespace, peer_id),
                )

        try:
            await self._write(op)
        finally:
            self._drop_endpoint(peer_id)

    async def get_peer(self, peer_id: str) -> Peer | None:
        """The peer with this id, live or offline, or None."""
        return await self._read(lambda conn: self._get_peer(conn, peer_id))

    async def get_peer_by_name(self, name: str) -> Peer | None:
        """The latest holder of a name, live or offline, or None."""

        def op(conn: sqlite3.Connection) -> Peer | None:
            row = conn.execute(
                f"SELECT {schema.PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND name = ?",
                (self.namespace, name),
            ).fetchone()
            return None if row is None else schema.peer_from_row(row)

        return await self._read(op)

    async def list_peers(self, flt: PeerFilter | None = None) -> list[Peer]:
        """Live peers matching the filter, reaping dead ones on the way."""
        live, dead = self._split(await self._read(self._online))
        if dead:
            await self._reap_dead(dead)
        return common.listing(live, flt)

    async def list_offline(self) -> list[Peer]:
        """Offline peers still kept (named, or with unread mail), reaping dead ones first."""
        await self.reap()

        def op(conn: sqlite3.Connection) -> list[Peer]:
            rows = conn.execute(
                f"SELECT {schema.PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND online = 0",
                (self.namespace,),
            ).fetchall()
            return [schema.peer_from_row(r) for r in rows]

        return common.listing(await self._read(op))

    async def reap(self) -> list[Peer]:
        """Mark peers offline whose TTL ran out or whose process (on this host) is gone; return them."""
        _, dead = self._split(await self._read(self._online))
        return await self._reap_dead(dead) if dead else []
