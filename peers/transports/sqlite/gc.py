"""SQLite upkeep: gc a page at a time, and the leases that let one process do it.

gc reaps dead peers first, then deletes what outlived retention: mail, offline
peers without unread mail, events, expired leases, expired claims and claims of
holders nobody will succeed, and stale wake-up sockets.
Each page (``constants.GC_PAGE`` rows) is its own short transaction, so other
writers never wait long behind a large clean-up.
"""

from __future__ import annotations

import sqlite3
import time

from peers import constants as c
from peers.keys import SQLiteTables as T
from peers.models import GcReport
from peers.transports import common
from peers.transports.sqlite.claims import ClaimsMixin
from peers.transports.sqlite.worker import Effects

__all__ = ["GcMixin"]


class GcMixin(ClaimsMixin):
    """``gc`` and the upkeep lease on SQLite."""

    async def _delete_pages(self, table: str, where: str, args: tuple[object, ...]) -> int:
        """Delete the rows of ``table`` matching ``where``, a page per transaction; how many."""

        def op(conn: sqlite3.Connection, effects: Effects) -> int:
            return conn.execute(
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT rowid FROM {table} WHERE {where} LIMIT {c.GC_PAGE})",
                args,
            ).rowcount

        removed = 0
        while True:
            page = await self._write(op)
            removed += page
            if page < c.GC_PAGE:
                return removed

    async def gc(self) -> GcReport:
        """Delete what outlived retention: offline peers, old mail, stale wake-up endpoints."""
        await self.reap()
        cutoff = time.time() - self.retention
        ns = self.namespace
        messages = await self._delete_pages(T.MESSAGES, "namespace = ? AND sent_at < ?", (ns, cutoff))
        # A peer with unread mail inside the window stays: that mail waits for its successor.
        peers = await self._delete_pages(
            T.PEERS,
            f"namespace = ? AND online = 0 AND last_seen < ? AND NOT EXISTS (SELECT 1 FROM "
            f"{T.MESSAGES} m WHERE m.namespace = ? AND m.recipient_id = {T.PEERS}.id "
            "AND m.acked_at IS NULL)",
            (ns, cutoff, ns),
        )
        await self._delete_pages(T.EVENTS, "namespace = ? AND at < ?", (ns, cutoff))
        await self._delete_pages(T.LEASES, "namespace = ? AND expires_at < ?", (ns, time.time()))
        # Expired claims, and claims of holders that are offline (an anonymous one's ended
        # with it; a named one's wait for its successor only while they last) or gone.
        claims = await self._delete_pages(
            T.CLAIMS,
            f"namespace = ? AND (expires_at < ? OR NOT EXISTS (SELECT 1 FROM {T.PEERS} p "
            f"WHERE p.namespace = ? AND p.id = {T.CLAIMS}.holder_id AND "
            "(p.online = 1 OR p.name IS NOT NULL)))",
            (ns, time.time(), ns),
        )
        wakeups = await self._require_open().call(self._wake.remove_stale)
        return GcReport(
            peers_removed=peers,
            messages_removed=messages,
            wakeups_removed=wakeups,
            claims_removed=claims,
        )

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` unless another holds it unexpired."""
        common.check_lease(name, holder, ttl)

        def op(conn: sqlite3.Connection, effects: Effects) -> bool:
            now = time.time()
            row = conn.execute(
                f"SELECT holder, expires_at FROM {T.LEASES} WHERE namespace = ? AND name = ?",
                (self.namespace, name),
            ).fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            conn.execute(
                f"INSERT INTO {T.LEASES} (namespace, name, holder, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at",
                (self.namespace, name, holder, now + ttl),
            )
            return True

        return await self._write(op)

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` holds it (otherwise nothing changes)."""

        def op(conn: sqlite3.Connection, effects: Effects) -> None:
            conn.execute(
                f"DELETE FROM {T.LEASES} WHERE namespace = ? AND name = ? AND holder = ?",
                (self.namespace, name, holder),
            )

        await self._write(op)
