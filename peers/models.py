"""The data peers stores and exchanges: peers, messages, events, filters."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from peers.alive import process_alive_watched

__all__ = [
    "Check",
    "CheckStatus",
    "Claim",
    "ClaimConflict",
    "ClaimRequest",
    "ClaimResult",
    "DeliveryState",
    "Event",
    "EventKind",
    "GcReport",
    "HistoryQuery",
    "Message",
    "MessageRecord",
    "Peer",
    "PeerFilter",
    "PeerUpdate",
    "PushState",
    "ReceiveMode",
    "Scope",
    "SenderKind",
]


class ReceiveMode(StrEnum):
    PUSH = "push"
    POLL = "poll"


class PushState(StrEnum):
    """What is known about a session's channel (push) path."""

    # A channel message was seen reaching the model (its transcript shows it).
    CONFIRMED = "confirmed"
    # The agent loads the channel, but nothing proves yet that messages reach the model.
    UNCONFIRMED = "unconfirmed"
    OFF = "off"


class SenderKind(StrEnum):
    PEER = "peer"
    # Sent from the command line: nobody vouches for it, shown as unverified.
    CLI = "cli"


class Scope(StrEnum):
    MACHINE = "machine"
    DIRECTORY = "directory"
    REPO = "repo"
    ALL = "all"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    EXPIRED = "expired"


class EventKind(StrEnum):
    JOIN = "join"
    LEAVE = "leave"
    SUMMARY = "summary"
    RENAME = "rename"
    MESSAGE = "message"
    # Unread mail dropped because its mailbox was full (data: ids, recipient_id, reason).
    EXPIRED = "expired"


class _Model(BaseModel):
    # cache_strings: records read from JSON (Redis) are mostly unique strings, and
    # pydantic's parser would keep the short ones in its process-wide cache (16,384 of
    # them, about 1 MB after a burst).
    model_config = ConfigDict(frozen=True, extra="ignore", cache_strings="keys")


class Peer(_Model):
    id: str
    namespace: str
    name: str | None = None
    host: str
    pid: int
    # Process start time (seconds since boot on Linux): a pid alone can be reused.
    pid_start: float | None = None
    cwd: str
    git_root: str | None = None
    git_common_dir: str | None = None
    git_remote: str | None = None
    branch: str | None = None
    tty: str | None = None
    client: str = "unknown"
    receive_mode: ReceiveMode = ReceiveMode.POLL
    # The channel's state: receive_mode is PUSH while it is not OFF.
    push: PushState = PushState.OFF
    # When a hook of this session last reached its server (None: never).
    hooks_at: float | None = None
    summary: str = ""
    files: tuple[str, ...] = ()
    registered_at: float = Field(default_factory=time.time)
    last_seen: float = Field(default_factory=time.time)
    # False once the peer unregistered or was reaped; a named offline peer is kept
    # so that mail sent to it waits for its successor.
    online: bool = True
    # Set when a later session took over this peer's name (and its mail).
    successor: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name else self.id

    def is_live(self, host: str, *, fresh: bool) -> bool:
        """The liveness rule: online, heartbeat within the TTL (``fresh``), and, when
        it runs on ``host``, its process (pid and start time) still there."""
        if not (self.online and fresh):
            return False
        return self.host != host or process_alive_watched(self.pid, self.pid_start)

    @property
    def repo(self) -> str | None:
        return self.git_remote or self.git_root


class PeerUpdate(_Model):
    """Fields to change on a live peer; None leaves a field as it is."""

    summary: str | None = None
    files: tuple[str, ...] | None = None
    name: str | None = None
    receive_mode: ReceiveMode | None = None
    push: PushState | None = None
    hooks_at: float | None = None


class PeerFilter(_Model):
    """Which live peers to list; every set field must match."""

    host: str | None = None
    cwd: str | None = None
    # Same repository: equal git common dir or equal normalised remote.
    git_common_dir: str | None = None
    git_remote: str | None = None
    exclude_id: str | None = None

    def matches(self, peer: Peer) -> bool:
        if self.exclude_id is not None and peer.id == self.exclude_id:
            return False
        if self.host is not None and peer.host != self.host:
            return False
        if self.cwd is not None and peer.cwd != self.cwd:
            return False
        if self.git_common_dir is not None or self.git_remote is not None:
            same_dir = self.git_common_dir is not None and peer.git_common_dir == self.git_common_dir
            same_remote = self.git_remote is not None and peer.git_remote == self.git_remote
            if not (same_dir or same_remote):
                return False
        return True


class Message(_Model):
    id: str
    namespace: str
    sender_id: str
    sender_name: str | None = None
    sender_kind: SenderKind = SenderKind.PEER
    recipient_id: str
    body: str
    reply_to: str | None = None
    broadcast: bool = False
    sent_at: float = Field(default_factory=time.time)


class MessageRecord(_Model):
    """A message in the history, with what became of it."""

    message: Message
    state: DeliveryState
    acked_at: float | None = None


class HistoryQuery(_Model):
    peer_id: str | None = None  # sent by or to this peer
    since: float | None = None
    limit: int = 100


class Event(_Model):
    """A presence change or a sent message, as `peers tail` shows it."""

    kind: EventKind
    at: float = Field(default_factory=time.time)
    peer_id: str
    peer_name: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class CheckStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class Check(_Model):
    """One finding of `peers doctor`: what was checked, how it went, and the fix."""

    name: str
    status: CheckStatus
    detail: str = ""
    fix: str = ""


class GcReport(_Model):
    peers_removed: int = 0
    messages_removed: int = 0
    wakeups_removed: int = 0
    claims_removed: int = 0


class Claim(_Model):
    """A session's claim on a path or glob of one repository (see :mod:`peers.claimpaths`)."""

    holder_id: str
    # The repository's identity (:func:`peers.claimrules.repo_key`): a normalised remote,
    # or host and git common dir.
    repo: str
    # Relative to the repository root, normalised (:func:`peers.claimpaths.normalise`).
    path: str
    exclusive: bool = True
    reason: str = ""
    # Taken by the edit guard when the session edited an unclaimed path ("editing").
    auto: bool = False
    claimed_at: float = Field(default_factory=time.time)
    expires_at: float = 0.0
    # The lifetime a renewal gives it again, in seconds.
    ttl: float = 3600.0


class ClaimRequest(_Model):
    """What a session asks for: these paths, held this way, for this long."""

    holder_id: str
    repo: str
    paths: tuple[str, ...]
    exclusive: bool = True
    reason: str = ""
    auto: bool = False
    ttl: float = 3600.0
    # Also extend every other claim the holder has (an edit keeps the session's claims alive).
    renew_all: bool = False


class ClaimConflict(_Model):
    """A requested path and another live session's claim that overlaps it."""

    path: str
    claim: Claim
    # True when the other claim keeps this one from being granted.
    blocking: bool = True


class ClaimResult(_Model):
    """What a claim got: never blocks, like a lock manager's try-lock over many paths."""

    granted: tuple[Claim, ...] = ()
    # Paths refused, each with the other session's claim that refused it.
    conflicts: tuple[ClaimConflict, ...] = ()
    # Granted paths that other live sessions also hold shared (a warning, not a refusal).
    shared_with: tuple[ClaimConflict, ...] = ()
