"""Redis file claims: a versioned read, the rules in Python, a versioned write.

A holder's claims are one hash (field ``repo NUL path``, value the claim as JSON),
listed in the claimants set; every write bumps one counter. A claim reads the
claims with their holders' liveness in one script (``claims_read.lua``), lets
:func:`peers.claimrules.decide` judge them, and stores the result with
``claims_write.lua``, which refuses ('raced') if the counter moved since the read:
then it reads and decides again. So no two writes decide on the same picture, and
of twenty sessions claiming one path at once exactly one wins (the rule is the
one SQLite applies inside its transaction). Inheritance by a successor and the end
of an anonymous holder's claims happen inside the name and offline scripts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from peers import claimrules
from peers import constants as c
from peers.errors import BackendError
from peers.models import Claim, ClaimRequest, ClaimResult, Peer
from peers.transports import common
from peers.transports.redis.connection import edge
from peers.transports.redis.events import EventsMixin
from peers.transports.redis.replies import text

__all__ = ["ClaimsMixin"]

_SEP = "\0"


def _field(claim: Claim) -> str:
    return f"{claim.repo}{_SEP}{claim.path}"


def _value(claim: Claim) -> str:
    return json.dumps(claim.model_dump(exclude={"holder_id", "repo", "path"}))


def _claim(holder_id: str, field: str, value: str) -> Claim:
    repo, _, path = field.partition(_SEP)
    return Claim(holder_id=holder_id, repo=repo, path=path, **json.loads(value))


class _Picture:
    """What one claims read saw: the version, every claim, and which holders are live."""

    def __init__(self, reply: list[Any], host: str) -> None:
        self.version = text(reply[0])
        self.claims: list[Claim] = []
        self.live: set[str] = set()
        for i in range(1, len(reply), 5):
            holder_id = text(reply[i])
            online, alive, data = text(reply[i + 1]), text(reply[i + 2]), text(reply[i + 3])
            flat = [text(x) for x in reply[i + 4]]
            self.claims += [_claim(holder_id, f, v) for f, v in zip(flat[::2], flat[1::2], strict=True)]
            if online == "1" and data:
                peer = Peer.model_validate_json(data)
                if peer.is_live(host, fresh=alive == "1"):
                    self.live.add(holder_id)

    def counted(self, now: float) -> list[Claim]:
        return [cl for cl in self.claims if cl.holder_id in self.live and cl.expires_at > now]


class ClaimsMixin(EventsMixin):
    """The claims half of the contract on Redis."""

    async def _picture(self, holder_id: str = "") -> _Picture:
        reply = await self._run("claims_read", self._keys.claimants, holder_id)
        return _Picture(reply, self.host)

    async def _store(
        self,
        holder_id: str,
        version: str,
        *,
        delete: Sequence[Claim] = (),
        put: Sequence[Claim] = (),
        live: bool = True,
    ) -> bool:
        """Write a holder's claims if nothing changed since ``version`` ('' = whatever did)."""
        pairs: list[str] = []
        for cl in put:
            pairs += [_field(cl), _value(cl)]
        reply = await self._run(
            "claims_write",
            self._keys.claims(holder_id),
            holder_id,
            version,
            "1" if live else "0",
            len(delete),
            *[_field(cl) for cl in delete],
            *pairs,
        )
        status = text(reply[0])
        if status == "gone":
            raise common.not_registered(holder_id)
        return status == "ok"

    def _too_many_races(self) -> BackendError:
        return BackendError("file claims changed too often while this one was decided; try again")

    @edge
    async def claim(self, request: ClaimRequest) -> ClaimResult:
        """Grant the request's paths that no other live session's claim refuses, in one atomic
        step, and return them with every conflict (PeerNotFound if the holder is not live)."""
        claimrules.check_request(request)
        for _ in range(c.REDIS_CLAIM_RETRIES):
            picture = await self._picture()
            if request.holder_id not in picture.live:
                await self._require_live(request.holder_id)
            now = time.time()
            counted = picture.counted(now)
            result, writes = claimrules.decide(request, counted, now)
            if not writes:
                return result  # nothing granted or renewed: nothing to store
            if await self._store(request.holder_id, picture.version, put=writes):
                return result
        raise self._too_many_races()

    async def _require_live(self, holder_id: str) -> None:
        loaded = await self._load(holder_id)
        if loaded is None or not common.partition([loaded], self.host)[0]:
            raise common.not_registered(holder_id)

    @edge
    async def renew_claims(self, holder_id: str, paths: Sequence[str] | None = None) -> list[Claim]:
        """Start the holder's claims on ``paths`` (None: all) over for their own lifetime."""
        for _ in range(c.REDIS_CLAIM_RETRIES):
            picture = await self._picture(holder_id)
            if holder_id not in picture.live:
                await self._require_live(holder_id)
            now = time.time()
            own = [cl for cl in picture.claims if cl.expires_at > now]
            renewed = claimrules.renewed(own, paths, now)
            if await self._store(holder_id, picture.version, put=renewed):
                return claimrules.listing(renewed)
        raise self._too_many_races()

    @edge
    async def release_claims(
        self, holder_id: str, paths: Sequence[str] | None = None
    ) -> list[Claim]:
        """End the holder's claims on ``paths`` (None: all), live holder or not; return them."""
        for _ in range(c.REDIS_CLAIM_RETRIES):
            picture = await self._picture(holder_id)
            gone = claimrules.released(picture.claims, paths)
            if not gone:
                return []
            if await self._store(holder_id, picture.version, delete=gone, live=False):
                return claimrules.listing(gone)
        raise self._too_many_races()

    @edge
    async def list_claims(
        self, repo: str | None = None, holder_id: str | None = None
    ) -> list[Claim]:
        """Unexpired claims of live holders, by repository and holder, in the contract's order."""
        picture = await self._picture(holder_id or "")
        return claimrules.listing(
            cl for cl in picture.counted(time.time()) if repo is None or cl.repo == repo
        )

    async def _collect_claims(self) -> int:
        """gc: expired claims, and every claim of a holder that is offline and anonymous or gone."""
        removed = 0
        for _ in range(c.REDIS_CLAIM_RETRIES):
            reply = await self._run("claims_read", self._keys.claimants, "")
            picture = _Picture(reply, self.host)
            now = time.time()
            kept_holders = await self._kept_holders({cl.holder_id for cl in picture.claims})
            by_holder: dict[str, list[Claim]] = {}
            for cl in picture.claims:
                if cl.expires_at <= now or cl.holder_id not in kept_holders:
                    by_holder.setdefault(cl.holder_id, []).append(cl)
            if not by_holder:
                return removed
            raced = False
            for holder_id, gone in by_holder.items():
                if await self._store(holder_id, picture.version, delete=gone, live=False):
                    removed += len(gone)
                    picture.version = str(int(picture.version) + 1)
                else:
                    raced = True
                    break
            if not raced:
                return removed
        return removed

    async def _kept_holders(self, ids: set[str]) -> set[str]:
        """Holders whose claims may still matter: online, or named (a successor may take them)."""
        kept: set[str] = set()
        for holder_id in ids:
            raw = await self._client().hmget(self._keys.peer(holder_id), "online", "name")
            online, name = (text(x) if x is not None else "" for x in raw)
            if online == "1" or name:
                kept.add(holder_id)
        return kept
