"""The rules of file claims, written once above both backends.

A backend reads the claims that count (unexpired, their holder live), calls
:func:`decide` inside its transaction (SQLite) or between a versioned read and a
versioned write (Redis), and stores what it returns. So the two cannot disagree
on what conflicts with what:

- an exclusive claim conflicts with every other session's claim on an
  overlapping path; a shared one only with other sessions' exclusive claims;
- a conflicting path is refused (with every claim that refuses it), the others
  are granted: a lock manager that never blocks;
- a claim the edit guard takes (``auto``, shared, reason "editing") never
  replaces or narrows a claim the session already has on that path: a path its
  own claim already covers is only renewed;
- renewing gives a claim its own lifetime again, from now; the renewals an edit
  brings are skipped for a claim renewed within the last minute, so a busy guard
  mostly writes nothing.

Repository identity follows the ``repo`` scope: the normalised remote where the
repository has one (the same on every host), else the host and the git common
dir (shared by every worktree of one clone, meaningful only on its host).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from peers import claimpaths
from peers import constants as c
from peers.errors import InvalidInput
from peers.models import Claim, ClaimConflict, ClaimRequest, ClaimResult, Peer

__all__ = [
    "AUTO_REASON",
    "RENEW_SLACK",
    "check_request",
    "decide",
    "listing",
    "released",
    "renewed",
    "renewed_by_edit",
    "repo_key",
]

# The reason an edit guard's claim carries.
AUTO_REASON = "editing"
# An edit renews the session's claims at most this often (seconds; a tenth of a short ttl).
RENEW_SLACK = 60.0


def repo_key(peer: Peer) -> str | None:
    """The repository a peer's claims belong to (None: not in a git repository)."""
    if peer.git_remote:
        return peer.git_remote
    if peer.git_common_dir:
        return f"{peer.host}:{peer.git_common_dir}"
    return None


def _conflicts(path: str, exclusive: bool, others: Iterable[Claim]) -> tuple[list[Claim], list[Claim]]:
    """Other sessions' claims overlapping ``path``: (those that refuse it, those that share it)."""
    refuse: list[Claim] = []
    share: list[Claim] = []
    for other in others:
        if not claimpaths.overlap(other.path, path):
            continue
        (refuse if exclusive or other.exclusive else share).append(other)
    return refuse, share


def decide(request: ClaimRequest, counted: Sequence[Claim], now: float) -> tuple[ClaimResult, list[Claim]]:
    """What a claim grants and refuses, and the holder's claims to store (changed or new).

    ``counted`` holds the claims that count in the request's repository: unexpired,
    held by live sessions, the requester's own among them; with ``renew_all``, the
    requester's claims in other repositories too (an edit renews them all).
    """
    result, writes = _decide(request, counted, now)
    if request.renew_all:
        writes += renewed_by_edit(
            (cl for cl in counted if cl.holder_id == request.holder_id and cl.repo != request.repo),
            now,
        )
    return result, writes


def _decide(request: ClaimRequest, counted: Sequence[Claim], now: float) -> tuple[ClaimResult, list[Claim]]:
    holder = request.holder_id
    own = {cl.path: cl for cl in counted if cl.holder_id == holder and cl.repo == request.repo}
    others = [cl for cl in counted if cl.holder_id != holder and cl.repo == request.repo]
    granted: list[Claim] = []
    conflicts: list[ClaimConflict] = []
    shared: list[ClaimConflict] = []
    writes: dict[str, Claim] = {}
    for path in dict.fromkeys(request.paths):
        refuse, share = _conflicts(path, request.exclusive, others)
        if refuse:
            conflicts += [ClaimConflict(path=path, claim=cl, blocking=True) for cl in refuse]
            continue
        shared += [ClaimConflict(path=path, claim=cl, blocking=False) for cl in share]
        if request.auto:
            mine = [cl for cl in own.values() if claimpaths.covers(cl.path, path)]
            if mine:
                for cl in mine:
                    kept = writes.get(cl.path) or _renewed(cl, now)
                    if kept is not cl:
                        writes[cl.path] = kept
                    if kept not in granted:
                        granted.append(kept)
                continue
        before = own.get(path)
        claim = Claim(
            holder_id=holder,
            repo=request.repo,
            path=path,
            exclusive=request.exclusive,
            reason=request.reason or (AUTO_REASON if request.auto else ""),
            auto=request.auto,
            claimed_at=before.claimed_at if before is not None else now,
            expires_at=now + request.ttl,
            ttl=request.ttl,
        )
        writes[path] = claim
        granted.append(claim)
    if request.renew_all:
        for path, cl in own.items():
            if path not in writes:
                kept = _renewed(cl, now)
                if kept is not cl:
                    writes[path] = kept
    total = len(own.keys() | writes.keys())
    if total > c.MAX_CLAIMS:
        raise InvalidInput(
            f"a session holds at most {c.MAX_CLAIMS} claims; this would make {total}",
            hint="claim a directory or a glob instead of its files, or release_files what "
            "you no longer need",
        )
    return (
        ClaimResult(granted=tuple(granted), conflicts=tuple(conflicts), shared_with=tuple(shared)),
        list(writes.values()),
    )


def _renewed(claim: Claim, now: float) -> Claim:
    """An edit's renewal: the claim with its lifetime started again, or the claim itself when
    it was renewed within the last ``RENEW_SLACK`` seconds (a guard that edits every second
    then writes nothing most of the time)."""
    if claim.expires_at >= now + claim.ttl - min(RENEW_SLACK, claim.ttl / 10):
        return claim
    return claim.model_copy(update={"expires_at": now + claim.ttl})


def released(own: Iterable[Claim], paths: Sequence[str] | None) -> list[Claim]:
    """Which of a holder's claims a release of ``paths`` ends (None: all of them).

    A path releases the claim on exactly that path or glob, and the literal claims
    under it (releasing ``src`` ends the claim on ``src/a.py`` too).
    """
    mine = list(own)
    if paths is None:
        return mine
    wanted = set(paths)
    return [
        cl
        for cl in mine
        if cl.path in wanted
        or (not claimpaths.is_glob(cl.path) and any(
            not claimpaths.is_glob(p) and claimpaths.covers(p, cl.path) for p in wanted
        ))
    ]


def renewed(own: Iterable[Claim], paths: Sequence[str] | None, now: float) -> list[Claim]:
    """A holder's claims on ``paths`` (None: all) with their lifetimes started again."""
    return [cl.model_copy(update={"expires_at": now + cl.ttl}) for cl in released(own, paths)]


def renewed_by_edit(own: Iterable[Claim], now: float | None = None) -> list[Claim]:
    """The claims an edit renews (those not renewed within the last minute)."""
    at = time.time() if now is None else now
    return [kept for cl in own if (kept := _renewed(cl, at)) is not cl]


def listing(claims: Iterable[Claim]) -> list[Claim]:
    """The contract's order: repository, path, when claimed, holder."""
    return sorted(claims, key=lambda cl: (cl.repo, cl.path, cl.claimed_at, cl.holder_id))


def check_request(request: ClaimRequest) -> None:
    """A request a backend may act on: paths given and normalised, a positive lifetime."""
    if not request.paths:
        raise InvalidInput("a claim names at least one path")
    for path in request.paths:
        try:
            spelled = claimpaths.normalise(path)
        except claimpaths.PathRefused as exc:
            raise InvalidInput(f"claim path refused: {exc}") from None
        if spelled != path:
            raise InvalidInput(f"claim path {path!r} is not normalised (peers.claimpaths.normalise)")
    if not 0 < request.ttl <= c.CLAIM_TTL_MAX:
        raise InvalidInput(f"a claim lasts 0 to {c.CLAIM_TTL_MAX:g} s, not {request.ttl:g}")
    if not request.repo or "\0" in request.repo or "\0" in request.holder_id:
        raise InvalidInput("a claim needs a repository and a holder without NUL")
