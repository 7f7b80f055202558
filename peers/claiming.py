"""File claims as sessions use them: the rules above the store, and the edit guard's verdict.

The transports store claims and decide conflicts (:mod:`peers.claimrules`); this
module checks what a model or a person asks for (paths, lifetime, reason), finds
the repository a session's claims belong to, names the holder of every conflict
(its name, summary, until when, why, and the exact ``send_message`` arguments that
reach it), and judges an edit for the guard: blocked by another live session's
exclusive claim, shared with another session's claim, or touching a file another
live session of the repository has uncommitted changes in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from peers import claimpaths, claimrules
from peers import constants as c
from peers.errors import InvalidInput
from peers.models import Claim, ClaimRequest, Peer, Scope
from peers.text import clean_text
from peers.views import iso

if TYPE_CHECKING:
    from peers.service import PeersService

__all__ = ["ClaimOutcome", "Claims", "EditVerdict", "HeldBy", "claim_json", "claims_text"]


def claim_json(claim: Claim) -> dict[str, Any]:
    return {
        "path": claim.path,
        "exclusive": claim.exclusive,
        "reason": claim.reason,
        "auto": claim.auto,
        "holder_id": claim.holder_id,
        "repo": claim.repo,
        "claimed_at": iso(claim.claimed_at),
        "expires_at": iso(claim.expires_at),
    }


def _how(claim: Claim) -> str:
    how = "exclusively" if claim.exclusive else "shared"
    return f"{how}, editing" if claim.auto else how


def claims_text(claims: Sequence[Claim]) -> str:
    """Claims in one line: ``src/api.py (exclusive, until 13:20Z: rewriting)``."""
    parts = []
    for cl in claims:
        until = (iso(cl.expires_at) or "")[11:19]
        why = f": {cl.reason}" if cl.reason else ""
        parts.append(f"{cl.path} ({_how(cl)}, until {until}Z{why})")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class HeldBy:
    """Another session's claim on a path this session asked for or edits, with who holds it."""

    path: str
    claim: Claim
    holder: Peer | None

    @property
    def holder_label(self) -> str:
        return self.holder.label if self.holder is not None else self.claim.holder_id

    @property
    def address(self) -> str:
        return (self.holder.name or self.holder.id) if self.holder is not None else self.claim.holder_id

    def ask_with(self) -> dict[str, str]:
        """The exact ``send_message`` arguments that ask the holder about the path."""
        what = self.path if self.path == self.claim.path else f"{self.path} (you claimed {self.claim.path})"
        return {
            "to_id": self.address,
            "message": f"May I change {what}? Tell me when you are done with it, or release it "
            "with release_files.",
        }

    def describe(self) -> str:
        cl = self.claim
        how = "claimed exclusively" if cl.exclusive else "claimed (shared)"
        if cl.auto:
            how = "being edited"
        under = "" if cl.path == self.path else f" (its claim: {cl.path})"
        why = f' for "{cl.reason}"' if cl.reason and not cl.auto else ""
        doing = ""
        if self.holder is not None:
            doing = f"; {self.address} is working on: {self.holder.summary or '(no summary)'}"
        args = json.dumps(self.ask_with(), ensure_ascii=False)
        return (
            f"{self.path} is {how} by {self.holder_label}{under} until {iso(cl.expires_at)}"
            f"{why}{doing}. To ask them, call the peers tool send_message with {args}."
        )

    def json(self) -> dict[str, Any]:
        holder = self.holder
        return {
            "path": self.path,
            "claim": claim_json(self.claim),
            "holder_id": self.claim.holder_id,
            "holder_name": holder.name if holder is not None else None,
            "holder_summary": holder.summary if holder is not None else None,
            "until": iso(self.claim.expires_at),
            "reason": self.claim.reason,
            "ask_with": self.ask_with(),
            "note": self.describe(),
        }


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    repo: str
    granted: tuple[Claim, ...] = ()
    refused: tuple[HeldBy, ...] = ()
    shared: tuple[HeldBy, ...] = ()


@dataclass(frozen=True, slots=True)
class EditVerdict:
    """What the edit guard found for the paths of one edit."""

    # Under another live session's exclusive claim: the edit is refused.
    blocked: tuple[HeldBy, ...] = ()
    # Claimed (shared, or being edited) by another live session too: a warning.
    shared: tuple[HeldBy, ...] = ()
    # (path, session): another live session of the repository has uncommitted changes in it.
    changing: tuple[tuple[str, Peer], ...] = field(default_factory=tuple)

    def refusal(self) -> str:
        lines = [
            "peers: this edit was not made: another agent session holds an exclusive claim "
            "on what it touches."
        ]
        lines += [f"- {held.describe()}" for held in self.blocked]
        lines.append(
            "Work on other files meanwhile, or wait: the claim ends when its holder releases "
            "it (release_files), its session ends, or it expires."
        )
        return "\n".join(lines)


class Claims:
    """The claims rules of one service (see the module)."""

    def __init__(self, service: PeersService) -> None:
        self.service = service

    @property
    def transport(self) -> Any:
        return self.service.transport

    # -- what may be asked -------------------------------------------------------------

    @staticmethod
    def repo_of(me: Peer) -> str:
        repo = claimrules.repo_key(me)
        if repo is None:
            raise InvalidInput(
                f"claims belong to a git repository, and {me.cwd} is not in one",
                hint="claim files from a session started inside a git repository",
            )
        return repo

    @staticmethod
    def paths(me: Peer, paths: object, *, required: bool = True) -> tuple[str, ...]:
        """Paths as claims spell them, relative to the repository root."""
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list | tuple) or not all(isinstance(p, str) for p in paths):
            raise InvalidInput(
                "paths must be a list of file paths, directories or globs (text)",
                hint='pass paths like ["src/api.py", "docs/", "tests/**/*.py"]',
            )
        if required and not paths:
            raise InvalidInput("paths is empty: name at least one file, directory or glob")
        if len(paths) > c.MAX_CLAIM_PATHS:
            raise InvalidInput(
                f"{len(paths)} paths in one call; at most {c.MAX_CLAIM_PATHS}",
                hint="claim a directory or a glob instead of many files",
            )
        out: list[str] = []
        for raw in paths:
            try:
                out.append(claimpaths.normalise(clean_text(raw), me.git_root))
            except claimpaths.PathRefused as exc:
                raise InvalidInput(
                    f"cannot claim {raw!r}: {exc}",
                    hint="paths are relative to the repository root (or absolute inside it); "
                    "globs may use *, ** and ?",
                ) from None
        return tuple(dict.fromkeys(out))

    @staticmethod
    def ttl(value: object) -> float:
        if value is None or value == "":
            return c.CLAIM_TTL
        try:
            ttl = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            ttl = float("nan")
        if not c.CLAIM_TTL_MIN <= ttl <= c.CLAIM_TTL_MAX:
            raise InvalidInput(
                f"ttl {value!r} is not a number of seconds from {c.CLAIM_TTL_MIN:g} to "
                f"{c.CLAIM_TTL_MAX:g}",
                hint=f"leave ttl out for {c.CLAIM_TTL:g} s (renewed while you keep editing)",
            )
        return ttl

    @staticmethod
    def reason(value: object) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidInput(f"reason must be text, not {type(value).__name__}")
        cleaned = " ".join(clean_text(value).split())
        if len(cleaned) > c.MAX_CLAIM_REASON:
            raise InvalidInput(
                f"reason is {len(cleaned)} characters; at most {c.MAX_CLAIM_REASON}",
                hint="say it in a few words",
            )
        return cleaned

    # -- acting ------------------------------------------------------------------------

    async def _holders(self, claims: Sequence[Claim]) -> dict[str, Peer | None]:
        found: dict[str, Peer | None] = {}
        for holder_id in dict.fromkeys(cl.holder_id for cl in claims):
            found[holder_id] = await self.transport.get_peer(holder_id)
        return found

    async def _held(self, pairs: Sequence[tuple[str, Claim]]) -> tuple[HeldBy, ...]:
        holders = await self._holders([cl for _, cl in pairs])
        return tuple(HeldBy(path, cl, holders.get(cl.holder_id)) for path, cl in pairs)

    async def claim(
        self,
        me: Peer,
        paths: object,
        *,
        exclusive: object = True,
        reason: object = None,
        ttl: object = None,
    ) -> ClaimOutcome:
        if not isinstance(exclusive, bool):
            raise InvalidInput("exclusive must be true or false")
        repo = self.repo_of(me)
        request = ClaimRequest(
            holder_id=me.id,
            repo=repo,
            paths=self.paths(me, paths),
            exclusive=exclusive,
            reason=self.reason(reason),
            ttl=self.ttl(ttl),
        )
        result = await self.transport.claim(request)
        refused = await self._held([(x.path, x.claim) for x in result.conflicts])
        shared = await self._held([(x.path, x.claim) for x in result.shared_with])
        return ClaimOutcome(repo, result.granted, refused, shared)

    async def release(self, holder_id: str, paths: Sequence[str] | None) -> list[Claim]:
        released: list[Claim] = await self.transport.release_claims(holder_id, paths)
        return released

    async def of(self, holder_id: str) -> list[Claim]:
        found: list[Claim] = await self.transport.list_claims(holder_id=holder_id)
        return found

    async def by_holder(self, repo: str | None = None) -> dict[str, list[Claim]]:
        grouped: dict[str, list[Claim]] = {}
        for cl in await self.transport.list_claims(repo=repo):
            grouped.setdefault(cl.holder_id, []).append(cl)
        return grouped

    async def guard(self, me: Peer, paths: Sequence[str]) -> EditVerdict:
        """Judge an edit of ``paths`` (relative to the repository; others are not guarded).

        One store write: the paths no exclusive claim of another live session covers
        get a shared "editing" claim of this session, its other claims are renewed,
        and the conflicts come back. Then the other live sessions' uncommitted files.
        """
        repo = claimrules.repo_key(me)
        inside: list[str] = []
        for raw in paths:
            try:
                inside.append(claimpaths.normalise(raw, me.git_root))
            except claimpaths.PathRefused:
                continue  # outside the repository: nobody's claim reaches it
        if repo is None or not inside:
            return EditVerdict()
        request = ClaimRequest(
            holder_id=me.id,
            repo=repo,
            paths=tuple(dict.fromkeys(inside))[: c.MAX_CLAIM_PATHS],
            exclusive=False,
            auto=True,
            ttl=c.CLAIM_TTL,
            renew_all=True,
        )
        try:
            result = await self.transport.claim(request)
        except InvalidInput:
            # At the claims cap: judge without taking more (the refusal still stands).
            found = await self.transport.list_claims(repo=repo)
            blocking = [
                (p, cl) for p in request.paths for cl in found
                if cl.holder_id != me.id and cl.exclusive and claimpaths.overlap(cl.path, p)
            ]  # fmt: skip
            return EditVerdict(blocked=await self._held(blocking))
        blocked = await self._held([(x.path, x.claim) for x in result.conflicts])
        shared = await self._held([(x.path, x.claim) for x in result.shared_with])
        changing: list[tuple[str, Peer]] = []
        if not blocked:
            others = await self.service.list_peers(Scope.REPO, me)
            for path in request.paths:
                changing += [(path, p) for p in others if path in p.files]
        return EditVerdict(blocked=blocked, shared=shared, changing=tuple(changing))
