"""The transport contract: what every backend (SQLite, Redis) provides.

Delivery is at-least-once and durable: a message stays pending until its
recipient acks it, and per sender and recipient order is kept. Mail of a peer
that goes offline unacked is kept for the retention window and handed to the
next session that registers with the same name in the same namespace.

Implementations convert their library's exceptions into ``peers.errors`` here,
at the edge: callers never see ``sqlite3`` or ``redis`` exceptions.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

from peers.models import (
    Check,
    Claim,
    ClaimRequest,
    ClaimResult,
    Event,
    GcReport,
    HistoryQuery,
    Message,
    MessageRecord,
    Peer,
    PeerFilter,
    PeerUpdate,
)

if TYPE_CHECKING:
    from peers.config import Settings

__all__ = ["Capabilities", "Transport"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a transport can do, declared as data so callers can ask."""

    name: str
    # Peers on other hosts can share it.
    cross_host: bool
    # wait_for_mail wakes on a send instead of sleeping out its timeout.
    push: bool
    # events() streams presence and message events.
    events: bool
    # Needs a server process (reachability is worth checking).
    networked: bool


class Transport(abc.ABC):
    """An async store of peers and mailboxes for one namespace."""

    capabilities: Capabilities
    namespace: str
    # The host identity of this process; pid checks apply only to peers on it.
    host: str

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build an unconnected transport from the settings (URL, namespace, host, TTL, retention)."""

    # -- lifecycle -----------------------------------------------------------

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections and create or migrate the store (idempotent)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and wake-up endpoints; safe to call twice."""

    @abc.abstractmethod
    async def ping(self) -> float:
        """Round-trip the store once; return the latency in seconds or raise BackendUnavailable."""

    @abc.abstractmethod
    async def info(self) -> dict[str, str]:
        """Backend facts for status and doctor (version, schema, path or address)."""

    # -- peers ---------------------------------------------------------------

    @abc.abstractmethod
    async def register(self, peer: Peer) -> Peer:
        """Add a live peer, claim its name atomically (NameTaken if a live peer holds it) and inherit the unread mail of the name's previous holders."""

    @abc.abstractmethod
    async def heartbeat(self, peer_id: str) -> None:
        """Refresh last-seen; raise PeerNotFound if the peer is offline or unknown."""

    @abc.abstractmethod
    async def update_peer(self, peer_id: str, update: PeerUpdate) -> Peer:
        """Change summary, files, name or receive mode of a live peer; a new name is claimed as in register."""

    @abc.abstractmethod
    async def unregister(self, peer_id: str) -> None:
        """Mark a peer offline; its name and unread mail wait for a successor (no-op if unknown)."""

    @abc.abstractmethod
    async def get_peer(self, peer_id: str) -> Peer | None:
        """The peer with this id, live or offline, or None."""

    @abc.abstractmethod
    async def get_peer_by_name(self, name: str) -> Peer | None:
        """The latest holder of a name, live or offline, or None."""

    @abc.abstractmethod
    async def list_peers(self, flt: PeerFilter | None = None) -> list[Peer]:
        """Live peers matching the filter, reaping dead ones on the way."""

    @abc.abstractmethod
    async def list_offline(self) -> list[Peer]:
        """Offline peers still kept (named, or with unread mail), reaping dead ones first."""

    @abc.abstractmethod
    async def reap(self) -> list[Peer]:
        """Mark peers offline whose TTL ran out or whose process (on this host) is gone; return them."""

    # -- messages ------------------------------------------------------------

    @abc.abstractmethod
    async def send(self, message: Message) -> Message:
        """Store a message durably for its recipient (following successors), wake it, return it as stored."""

    @abc.abstractmethod
    async def fetch(
        self, recipient_id: str, limit: int = 100, skip: Collection[str] = ()
    ) -> list[Message]:
        """The recipient's pending messages not in ``skip``, oldest first, without consuming them."""

    @abc.abstractmethod
    async def ack(self, recipient_id: str, message_ids: Sequence[str]) -> int:
        """Mark the recipient's own pending messages delivered; return how many changed."""

    @abc.abstractmethod
    async def wait_for_mail(self, recipient_id: str, timeout: float) -> bool:
        """Sleep until a send to the recipient (True) or the timeout (False); costs nothing while idle."""

    @abc.abstractmethod
    async def get_message(self, message_id: str) -> Message | None:
        """A message within the retention window, pending or delivered, or None."""

    @abc.abstractmethod
    async def pending_counts(self) -> dict[str, int]:
        """Unread message count per recipient id (only recipients with mail)."""

    @abc.abstractmethod
    async def history(self, query: HistoryQuery) -> list[MessageRecord]:
        """Messages within retention, oldest first, with their delivery state."""

    # -- file claims ---------------------------------------------------------

    @abc.abstractmethod
    async def claim(self, request: ClaimRequest) -> ClaimResult:
        """Grant the request's paths that no other live session's claim refuses, in one atomic
        step, and return them with every conflict (PeerNotFound if the holder is not live)."""

    @abc.abstractmethod
    async def renew_claims(self, holder_id: str, paths: Sequence[str] | None = None) -> list[Claim]:
        """Start the holder's claims on ``paths`` (None: all) over for their own lifetime."""

    @abc.abstractmethod
    async def release_claims(
        self, holder_id: str, paths: Sequence[str] | None = None
    ) -> list[Claim]:
        """End the holder's claims on ``paths`` (None: all), live holder or not; return them."""

    @abc.abstractmethod
    async def list_claims(
        self, repo: str | None = None, holder_id: str | None = None
    ) -> list[Claim]:
        """Unexpired claims of live holders, by repository and holder, in the contract's order."""

    # -- events and upkeep ---------------------------------------------------

    @abc.abstractmethod
    def events(self) -> AsyncIterator[Event]:
        """Live join, leave, summary, rename and message events from now on, until closed."""

    async def diagnostics(self) -> list[Check]:
        """Backend-specific health checks for `peers doctor` (none by default)."""
        return []

    @abc.abstractmethod
    async def gc(self) -> GcReport:
        """Reap, then delete what outlived retention: offline peers, old mail, stale wake-up endpoints (a page at a time)."""

    @abc.abstractmethod
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Atomically take the lease ``name`` for ``ttl`` seconds, or renew it if ``holder`` has it;
        False while another holder's lease runs."""

    @abc.abstractmethod
    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` holds it (a no-op otherwise)."""
