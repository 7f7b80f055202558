"""Redis upkeep: gc a page per script call, and the leases that let one process do it.

gc reaps dead peers first (the roster's pages), then removes what outlived
retention: old unread mail of every mailbox in the inbox index (``expire.lua``,
a page per call, stopping at mail committed after the cutoff), offline peers
past retention without unread mail (``collect.lua``, one peer per call, a page
of the offline set at a time), and the history and log entries before the cutoff (delivered records
expire by their own TTL). No call holds the server for more than a page.
"""

from __future__ import annotations

import time

from peers import constants as c
from peers.models import GcReport
from peers.transports import common
from peers.transports.redis.claims import ClaimsMixin
from peers.transports.redis.connection import edge, edge_within
from peers.transports.redis.mailbox import HISTORY_SKEW
from peers.transports.redis.replies import entries, text

__all__ = ["GcMixin"]

# gc makes many calls (a page each): it gets this many times the per-call deadline.
_GC_DEADLINE_FACTOR = c.REDIS_GC_DEADLINE_FACTOR


class GcMixin(ClaimsMixin):
    """``gc`` and the upkeep lease on Redis."""

    async def _expire_old_mail(self, cutoff: float) -> set[str]:
        removed: set[str] = set()
        owners = [text(x) for x in await self._client().smembers(self._keys.inbox)]
        margin_ms = int(HISTORY_SKEW * 1000)
        for owner in sorted(owners):
            start = "-"
            while start:
                reply = await self._run(
                    "expire", self._keys.mailbox(owner), owner, repr(cutoff), margin_ms, start,
                    c.GC_PAGE,
                )  # fmt: skip
                start = text(reply[0])
                removed.update(text(m) for m in reply[1:])
        return removed

    async def _collect_offline(self, cutoff: float) -> int:
        """Collect offline peers past retention, a page of the offline set at a time.

        Each candidate is re-checked and deleted by one script call: a send to it
        may land up to that moment, and then it stays with that mail.
        """
        client = self._client()
        removed = kept = 0
        while True:
            ids = await client.zrange(
                self._keys.offline, "-inf", f"({cutoff!r}", byscore=True, offset=kept, num=c.GC_PAGE
            )
            for peer_id in map(text, ids):
                if int(await self._run("collect", self._keys.peer(peer_id), peer_id, repr(cutoff))):
                    removed += 1
                else:
                    kept += 1
            if len(ids) < c.GC_PAGE:
                return removed

    async def _trim_history(self, cutoff: float) -> set[str]:
        """Drop history entries before the cutoff; the ids of messages gone with them."""
        client = self._client()
        cutoff_id = f"{int(cutoff * 1000)}-0"
        gone: set[str] = set()
        while True:
            page = entries(
                await client.xrange(self._keys.history, "-", f"({cutoff_id}", count=c.GC_PAGE)
            )
            if not page:
                break
            mids = [f["mid"] for _, f in page if f is not None and f.get("mid")]
            async with client.pipeline(transaction=False) as pipe:
                for mid in mids:
                    pipe.hmget(self._keys.message(mid), "m", "acked_at", "expired")
                states = await pipe.execute()
            # Unread records stay: gc expires them with their mailbox entry.
            done = [mid for mid, (body, acked, expired) in zip(mids, states, strict=True)
                    if not body or acked or expired]  # fmt: skip
            if done:
                await client.delete(*[self._keys.message(m) for m in done])
            gone.update(done)
            await client.xdel(self._keys.history, *[e for e, _ in page])
            if len(page) < c.GC_PAGE:
                break
        await client.xtrim(self._keys.log, minid=cutoff_id)
        return gone

    @edge_within(_GC_DEADLINE_FACTOR)
    async def gc(self) -> GcReport:
        """Reap, then delete what outlived retention: offline peers, old mail, stale wake-up endpoints (a page at a time)."""
        await self._reap_all()
        cutoff = time.time() - self._retention
        removed = await self._expire_old_mail(cutoff)
        peers_removed = await self._collect_offline(cutoff)
        removed |= await self._trim_history(cutoff)
        claims = await self._collect_claims()
        # Doorbells are pub/sub channels: nothing stays behind to collect.
        return GcReport(
            peers_removed=peers_removed, messages_removed=len(removed), claims_removed=claims
        )

    @edge
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` unless another holds it unexpired."""
        common.check_lease(name, holder, ttl)
        ttl_ms = max(1, int(ttl * 1000))
        return bool(int(await self._run("lease", self._keys.lease(name), holder, ttl_ms)))

    @edge
    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` holds it (otherwise nothing changes)."""
        await self._run("release", self._keys.lease(name), holder)
