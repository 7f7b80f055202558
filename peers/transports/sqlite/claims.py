"""SQLite file claims: claim, renew, release and list, each one write transaction.

A claim reads the repository's unexpired claims and their holders' records inside
its ``BEGIN IMMEDIATE`` transaction, lets :func:`peers.claimrules.decide` judge
them, and writes what it grants before the lock is let go: of twenty sessions
claiming one path at once, one wins and nineteen see its claim.
Claims of holders that are not live (the liveness rule) do not count and are not
listed; an anonymous holder's go when it goes offline, a named holder's wait for
the session that takes its name (see :mod:`.registry`) until they expire.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from peers import claimrules
from peers.keys import SQLiteTables as T
from peers.models import Claim, ClaimRequest, ClaimResult
from peers.transports import common
from peers.transports.sqlite import schema
from peers.transports.sqlite.registry import RegistryMixin
from peers.transports.sqlite.worker import Effects

__all__ = ["ClaimsMixin"]


class ClaimsMixin(RegistryMixin):
    """The claims half of the contract on SQLite."""

    def _claims_where(
        self, conn: sqlite3.Connection, where: str, args: tuple[object, ...]
    ) -> list[Claim]:
        rows = conn.execute(
            f"SELECT {schema.CLAIM_COLS} FROM {T.CLAIMS} WHERE namespace = ? AND {where}",
            (self.namespace, *args),
        ).fetchall()
        return [schema.claim_from_row(r) for r in rows]

    def _counted(self, claims: list[Claim], conn: sqlite3.Connection, now: float) -> list[Claim]:
        """The unexpired claims whose holder is live (looked up inside the transaction)."""
        fresh = [cl for cl in claims if cl.expires_at > now]
        ids = sorted({cl.holder_id for cl in fresh})
        if not ids:
            return []
        rows = conn.execute(
            f"SELECT {schema.PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND online = 1 "
            f"AND id IN ({', '.join('?' * len(ids))})",
            (self.namespace, *ids),
        ).fetchall()
        live, _ = self._split([schema.peer_from_row(r) for r in rows])
        holders = {p.id for p in live}
        return [cl for cl in fresh if cl.holder_id in holders]

    def _require_live(self, conn: sqlite3.Connection, holder_id: str) -> None:
        holder = self._get_peer(conn, holder_id)
        if holder is None or not self._split([holder])[0]:
            raise common.not_registered(holder_id)

    def _store_claims(self, conn: sqlite3.Connection, claims: Sequence[Claim]) -> None:
        for cl in claims:
            conn.execute(
                f"INSERT INTO {T.CLAIMS} (namespace, {schema.CLAIM_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (namespace, repo, path, holder_id) DO UPDATE SET "
                "exclusive = excluded.exclusive, reason = excluded.reason, auto = excluded.auto, "
                "claimed_at = excluded.claimed_at, expires_at = excluded.expires_at, "
                "ttl = excluded.ttl",
                (self.namespace, *schema.claim_row(cl)),
            )

    async def claim(self, request: ClaimRequest) -> ClaimResult:
        """Grant the request's paths that no other live session's claim refuses, in one atomic
        step, and return them with every conflict (PeerNotFound if the holder is not live)."""
        claimrules.check_request(request)

        def op(conn: sqlite3.Connection, effects: Effects) -> ClaimResult:
            now = time.time()
            self._require_live(conn, request.holder_id)
            claims = self._claims_where(conn, "repo = ?", (request.repo,))
            if request.renew_all:
                # The holder's claims in other repositories are renewed too.
                claims += self._claims_where(
                    conn, "holder_id = ? AND repo != ?", (request.holder_id, request.repo)
                )
            counted = self._counted(claims, conn, now)
            result, writes = claimrules.decide(request, counted, now)
            self._store_claims(conn, writes)
            return result

        return await self._write(op)

    async def renew_claims(self, holder_id: str, paths: Sequence[str] | None = None) -> list[Claim]:
        """Start the holder's claims on ``paths`` (None: all) over for their own lifetime."""

        def op(conn: sqlite3.Connection, effects: Effects) -> list[Claim]:
            now = time.time()
            self._require_live(conn, holder_id)
            own = [
                cl for cl in self._claims_where(conn, "holder_id = ?", (holder_id,))
                if cl.expires_at > now
            ]  # fmt: skip
            renewed = claimrules.renewed(own, paths, now)
            self._store_claims(conn, renewed)
            return claimrules.listing(renewed)

        return await self._write(op)

    async def release_claims(
        self, holder_id: str, paths: Sequence[str] | None = None
    ) -> list[Claim]:
        """End the holder's claims on ``paths`` (None: all), live holder or not; return them."""

        def op(conn: sqlite3.Connection, effects: Effects) -> list[Claim]:
            own = self._claims_where(conn, "holder_id = ?", (holder_id,))
            gone = claimrules.released(own, paths)
            for cl in gone:
                conn.execute(
                    f"DELETE FROM {T.CLAIMS} WHERE namespace = ? AND repo = ? AND path = ? "
                    "AND holder_id = ?",
                    (self.namespace, cl.repo, cl.path, holder_id),
                )
            return claimrules.listing(gone)

        return await self._write(op)

    async def list_claims(
        self, repo: str | None = None, holder_id: str | None = None
    ) -> list[Claim]:
        """Unexpired claims of live holders, by repository and holder, in the contract's order."""
        clauses: list[str] = ["expires_at > ?"]
        args: list[object] = [time.time()]
        if repo is not None:
            clauses.append("repo = ?")
            args.append(repo)
        if holder_id is not None:
            clauses.append("holder_id = ?")
            args.append(holder_id)

        def op(conn: sqlite3.Connection) -> list[Claim]:
            found = self._claims_where(conn, " AND ".join(clauses), tuple(args))
            return self._counted(found, conn, time.time())

        return claimrules.listing(await self._read(op))
