"""What `peers watch` shows, as data: sessions, recent messages, conflicts.

:func:`load_board` reads one consistent-enough picture through the service and
the transport contract (never a store directly); :mod:`peers.board_view` draws
it and :mod:`peers.watch` keeps it current. Nothing here touches a terminal.

Claims slot in through :class:`ClaimsSource`: a source that returns claims
turns on the board's CLAIMS column and adds claim overlaps to the conflicts.
``peers watch`` reads the store's (:data:`STORE_CLAIMS`); :data:`NO_CLAIMS` has
none, and the column stays hidden.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from peers import claimpaths
from peers.models import HistoryQuery, MessageRecord, Peer, PushState, Scope
from peers.service import CLI_ID_PREFIX, PeersService

__all__ = [
    "NO_CLAIMS",
    "STORE_CLAIMS",
    "Board",
    "BoardClaim",
    "BoardFilter",
    "ClaimsSource",
    "Conflict",
    "Holder",
    "SessionRow",
    "find_conflicts",
    "load_board",
    "paths_overlap",
    "repo_key",
    "repo_label",
    "via",
]

# Messages read from the history for one board; the view shows what fits.
HISTORY_DEPTH = 60


@dataclass(frozen=True, slots=True)
class BoardClaim:
    """A file claim as the board needs it (a path or glob relative to the repository root)."""

    holder_id: str
    path: str
    exclusive: bool = True
    reason: str = ""
    expires_at: float | None = None


class ClaimsSource(Protocol):
    """Where the board's claims come from; ``None`` means the store has no claims at all."""

    async def claims(self, service: PeersService) -> Sequence[BoardClaim] | None: ...


class _NoClaims:
    async def claims(self, service: PeersService) -> Sequence[BoardClaim] | None:
        return None


NO_CLAIMS: ClaimsSource = _NoClaims()


class _StoreClaims:
    """The store's claims (of live sessions); None while nobody claims anything, so the
    CLAIMS column takes no room on a board without claims."""

    async def claims(self, service: PeersService) -> Sequence[BoardClaim] | None:
        found = await service.transport.list_claims()
        if not found:
            return None
        return [
            BoardClaim(cl.holder_id, cl.path, cl.exclusive, cl.reason, cl.expires_at)
            for cl in found
        ]


STORE_CLAIMS: ClaimsSource = _StoreClaims()


@dataclass(frozen=True, slots=True)
class BoardFilter:
    """Which sessions the board shows: a scope as seen from ``me``, and a repository."""

    scope: Scope = Scope.ALL
    me: Peer | None = None
    repo: str | None = None

    def matches_repo(self, peer: Peer) -> bool:
        if self.repo is None:
            return True
        return repo_matches(peer, self.repo)

    @property
    def active(self) -> bool:
        return self.scope is not Scope.ALL or self.repo is not None

    def describe(self) -> str:
        parts = [] if self.scope is Scope.ALL else [f"scope {self.scope.value}"]
        if self.repo is not None:
            parts.append(f"repo {self.repo}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class SessionRow:
    peer: Peer
    unread: int = 0
    claims: tuple[BoardClaim, ...] = ()
    # The newest thing it did that the board knows of: joined, a hook, a message, an update.
    active_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Holder:
    peer_id: str
    label: str
    # "changing" (uncommitted changes), "claims" (shared) or "claims exclusively".
    how: str


@dataclass(frozen=True, slots=True)
class Conflict:
    repo: str
    path: str
    holders: tuple[Holder, ...]


@dataclass(frozen=True, slots=True)
class Board:
    namespace: str
    sessions: tuple[SessionRow, ...] = ()
    # Newest first.
    messages: tuple[MessageRecord, ...] = ()
    # Peer id -> name, for message senders and recipients that are no longer listed.
    names: Mapping[str, str | None] = field(default_factory=dict)
    conflicts: tuple[Conflict, ...] = ()
    # False while the store has no claims (the CLAIMS column stays hidden).
    claims_available: bool = False
    # The session whose messages alone are shown, if any.
    selected: str | None = None
    loaded_at: float = field(default_factory=time.time)

    @property
    def unread(self) -> int:
        return sum(row.unread for row in self.sessions)

    def name_of(self, peer_id: str) -> str:
        for row in self.sessions:
            if row.peer.id == peer_id:
                return row.peer.name or row.peer.id
        return self.names.get(peer_id) or peer_id


# -- small rules ----------------------------------------------------------------------


def via(peer: Peer) -> str:
    """How mail reaches the session: push (confirmed), push? (unconfirmed), hooks, or poll."""
    parts = []
    if peer.push is PushState.CONFIRMED:
        parts.append("push")
    elif peer.push is PushState.UNCONFIRMED:
        parts.append("push?")
    if peer.hooks_at is not None:
        parts.append("hooks")
    return "+".join(parts) or "poll"


def repo_key(peer: Peer) -> str | None:
    """Sessions with equal keys work in one repository (clones by remote, worktrees by common dir)."""
    if peer.git_remote:
        return f"remote:{peer.git_remote}"
    where = peer.git_common_dir or peer.git_root
    return f"dir:{peer.host}:{where}" if where else None


def repo_label(peer: Peer) -> str:
    """A short name for the session's repository, else its directory."""
    if peer.git_remote:
        return peer.git_remote.rstrip("/").rsplit("/", 1)[-1]
    common = (peer.git_common_dir or "").rstrip("/")
    if common:
        # Every worktree by the name of the repository it belongs to.
        if os.path.basename(common) == ".git":
            return os.path.basename(os.path.dirname(common)) or common
        name = os.path.basename(common)
        return name.removesuffix(".git") or name
    if peer.git_root:
        return os.path.basename(peer.git_root.rstrip("/")) or peer.git_root
    home = os.path.expanduser("~")
    cwd = peer.cwd
    if cwd == home or cwd.startswith(home + "/"):
        cwd = "~" + cwd[len(home) :]
    return cwd


def repo_matches(peer: Peer, wanted: str) -> bool:
    """``--repo``: a repository's short name, its normalised remote, or a path inside it."""
    text = wanted.strip().rstrip("/")
    if not text:
        return True
    lowered = text.lower()
    if peer.git_remote:
        remote = peer.git_remote.lower()
        if lowered in (remote, remote.rsplit("/", 1)[-1]) or remote.endswith("/" + lowered):
            return True
    if text.startswith(("/", ".", "~")) or ("/" in text and os.path.exists(text)):
        path = os.path.realpath(os.path.expanduser(text))
        for root in (peer.git_root, peer.git_common_dir, peer.cwd):
            if root and (path == root or path.startswith(root.rstrip("/") + "/")):
                return True
        common = peer.git_common_dir
        # A worktree of the same repository: its path's repository shares the common dir.
        return bool(common and path == os.path.dirname(common))
    root = peer.git_root
    return bool(root and os.path.basename(root).lower() == lowered)


def paths_overlap(a: str, b: str) -> bool:
    """Whether two repository-relative paths or globs can name the same file (the claims rule,
    :func:`peers.claimpaths.overlap`: a directory covers what is under it)."""
    a, b = a.strip("/"), b.strip("/")
    if not a or not b:
        return a == b
    return claimpaths.overlap(a, b)


def find_conflicts(
    rows: Sequence[SessionRow], label: Mapping[str, str] | None = None
) -> tuple[Conflict, ...]:
    """Paths that two or more sessions of one repository change or claim."""
    by_repo: dict[str, list[SessionRow]] = {}
    for row in rows:
        key = repo_key(row.peer)
        if key is not None:
            by_repo.setdefault(key, []).append(row)
    names = label or {}
    found: list[Conflict] = []
    for members in by_repo.values():
        if len(members) < 2:
            continue
        conflicts = _overlaps(members)
        repo = repo_label(members[0].peer)
        for path in sorted(conflicts):
            holders = tuple(
                Holder(pid, names.get(pid, pid), how) for pid, how in conflicts[path].items()
            )
            found.append(Conflict(repo, path, holders))
    return tuple(sorted(found, key=lambda c: (c.repo, c.path)))


def _overlaps(members: Sequence[SessionRow]) -> dict[str, dict[str, str]]:
    """path -> {peer id: how} for every path that more than one member touches.

    Linear in the number of paths but for globs (claims only), which are
    compared with every path: this runs on every refresh of the board.
    """
    literal: dict[str, dict[str, str]] = {}
    globs: list[tuple[str, str, str]] = []
    for row in members:
        pid = row.peer.id
        claimed = set()
        for c in row.claims:
            path = c.path.strip("/")
            claimed.add(path)
            how = "claims exclusively" if c.exclusive else "claims"
            if _is_glob(path):
                globs.append((path, pid, how))
            else:
                literal.setdefault(path, {}).setdefault(pid, how)
        for path in row.peer.files:
            path = path.strip("/")
            if path not in claimed:
                literal.setdefault(path, {}).setdefault(pid, "changing")
    out: dict[str, dict[str, str]] = {}

    def mark(path: str, holders: Mapping[str, str]) -> None:
        slot = out.setdefault(path, {})
        for pid, how in holders.items():
            slot.setdefault(pid, how)

    for path, holders in literal.items():
        # The path itself, and a claim of a directory above it.
        above: dict[str, str] = {}
        parent = path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            for pid, how in literal.get(parent, {}).items():
                if how != "changing":
                    above.setdefault(pid, how)
        every = {**above, **holders}
        if len(every) > 1:
            mark(path, every)
    for i, (pattern, pid, how) in enumerate(globs):
        for path, holders in literal.items():
            others = {p: h for p, h in holders.items() if p != pid}
            if others and paths_overlap(path, pattern):
                mark(path, {pid: how, **others})
        for other, other_pid, other_how in globs[i + 1 :]:
            if other_pid != pid and paths_overlap(pattern, other):
                mark(pattern, {pid: how, other_pid: other_how})
    return {path: holders for path, holders in out.items() if len(holders) > 1}


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


# -- loading -----------------------------------------------------------------------------


async def load_board(
    service: PeersService,
    flt: BoardFilter,
    *,
    selected: str | None = None,
    claims: ClaimsSource = NO_CLAIMS,
    activity: Mapping[str, float] | None = None,
    names: dict[str, str | None] | None = None,
    history_depth: int = HISTORY_DEPTH,
) -> Board:
    """Read the board from the store: live sessions in the filter, their mail and conflicts.

    ``activity`` holds moments the caller saw (events) per peer id; ``names`` is
    a cache of names of peers no longer listed, filled as they are looked up.
    """
    transport = service.transport
    peers = await service.list_peers(flt.scope, flt.me)
    peers = [p for p in peers if flt.matches_repo(p)]
    counts = await transport.pending_counts()
    found = await claims.claims(service)
    by_holder: dict[str, list[BoardClaim]] = {}
    for claim in found or ():
        by_holder.setdefault(claim.holder_id, []).append(claim)
    visible = {p.id for p in peers}
    if selected is not None and selected not in visible:
        selected = None
    records = await transport.history(
        HistoryQuery(
            peer_id=selected, limit=history_depth * (1 if selected or not flt.active else 4)
        )
    )
    if selected is None and flt.active:
        # Only the traffic that touches a session on the board.
        records = [
            r
            for r in records
            if r.message.sender_id in visible or r.message.recipient_id in visible
        ]
    records = records[-history_depth:]
    seen = dict(activity or {})
    for rec in records:
        sender = rec.message.sender_id
        seen[sender] = max(seen.get(sender, 0.0), rec.message.sent_at)
    rows = []
    for p in peers:
        active = max(p.registered_at, p.hooks_at or 0.0, seen.get(p.id, 0.0))
        rows.append(
            SessionRow(
                peer=p,
                unread=counts.get(p.id, 0),
                claims=tuple(by_holder.get(p.id, ())),
                active_at=active,
            )
        )
    rows.sort(key=_row_order)
    cache = names if names is not None else {}
    await _learn_names(service, _unknown_ids(records, visible, cache), cache)
    labels = {p.id: p.name or p.id for p in peers}
    return Board(
        namespace=transport.namespace,
        sessions=tuple(rows),
        messages=tuple(reversed(records)),
        names={**cache, **{p.id: p.name for p in peers}},
        conflicts=find_conflicts(rows, labels),
        claims_available=found is not None,
        selected=selected,
    )


def _row_order(row: SessionRow) -> tuple[str, str, str]:
    # Grouped by repository, then by name: neighbours on the board work together.
    p = row.peer
    return (repo_label(p).lower(), (p.name or "~").lower(), p.id)


def _unknown_ids(
    records: Iterable[MessageRecord], visible: set[str], cache: Mapping[str, str | None]
) -> list[str]:
    ids: dict[str, None] = {}
    for rec in records:
        for pid in (rec.message.sender_id, rec.message.recipient_id):
            if pid not in visible and pid not in cache and not pid.startswith(CLI_ID_PREFIX):
                ids[pid] = None
    return list(ids)


# Names looked up at most per load: a board over a long history must not stall on them.
_NAME_LOOKUPS = 32
# The cache of names of peers no longer listed stays this small.
_NAME_CACHE = 1024


async def _learn_names(
    service: PeersService, ids: Sequence[str], cache: dict[str, str | None]
) -> None:
    if len(cache) > _NAME_CACHE:
        cache.clear()
    for pid in ids[:_NAME_LOOKUPS]:
        peer = await service.transport.get_peer(pid)
        cache[pid] = peer.name if peer is not None else None
