"""Every storage name in one place: SQLite tables and Redis keys and channels."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RedisKeys", "SQLiteTables"]


class SQLiteTables:
    META = "meta"
    PEERS = "peers"
    MESSAGES = "messages"
    EVENTS = "events"
    # Upkeep leases: which process runs gc for a namespace, until when.
    LEASES = "leases"
    # File claims: holder, repository, path or glob, how, until when.
    CLAIMS = "claims"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key and channel names for one namespace.

    Everything shares the hash tag ``{namespace}``, so multi-key commands and
    scripts stay legal on Redis Cluster.
    """

    namespace: str

    @property
    def prefix(self) -> str:
        return f"peers:{{{self.namespace}}}:"

    def peer(self, peer_id: str) -> str:
        """Hash: the peer record (kept while offline, for successors and history).

        Fields: ``data`` (the record as registered, JSON) and, overriding it, what
        changes later: ``name``, ``online``, ``last_seen``, ``successor``,
        ``summary``, ``files`` (JSON list) and ``mode`` (receive mode).
        """
        return f"{self.prefix}peer:{peer_id}"

    def alive(self, peer_id: str) -> str:
        """String with a TTL: present while the peer heartbeats."""
        return f"{self.prefix}alive:{peer_id}"

    @property
    def registry(self) -> str:
        """Sorted set: online peer id -> last seen, for listing without SCAN.

        Only online peers: a reaped or unregistered one moves to :attr:`offline`,
        so listing costs what the live peers cost, however many sessions died.
        """
        return f"{self.prefix}registry"

    @property
    def offline(self) -> str:
        """Sorted set: offline peer id -> last seen, for ``list_offline`` and gc."""
        return f"{self.prefix}offline"

    @property
    def inbox(self) -> str:
        """Set: ids of peers whose own mailbox stream holds mail (``pending_counts``, gc)."""
        return f"{self.prefix}inbox"

    def backlog(self, peer_id: str) -> str:
        """Set: ids of earlier holders of the peer's name whose mailboxes it inherited.

        Inheriting moves no mail: fetch reads these mailboxes with the peer's own,
        merged in commit order, so a claim costs the same for any backlog.
        """
        return f"{self.prefix}backlog:{peer_id}"

    @property
    def history(self) -> str:
        """Stream: one entry (``mid``) per stored message, in commit order, trimmed by gc
        only at the retention cutoff (presence events do not crowd it out)."""
        return f"{self.prefix}history"

    def lease(self, name: str) -> str:
        """String with a TTL: who holds an upkeep lease (``acquire_lease``)."""
        return f"{self.prefix}lease:{name}"

    def claims(self, holder_id: str) -> str:
        """Hash: a holder's file claims, field ``repo NUL path`` -> the claim (JSON)."""
        return f"{self.prefix}claims:{holder_id}"

    @property
    def claimants(self) -> str:
        """Set: ids of peers with a claims hash (the claim listings read these)."""
        return f"{self.prefix}claimants"

    @property
    def claims_version(self) -> str:
        """String counter: bumped by every claims write, so a claim decided on a read
        is stored only if no other write came in between (``claims_write.lua``)."""
        return f"{self.prefix}claims_version"

    @property
    def meta(self) -> str:
        """Hash: ``version``, the layout of this namespace's keys (see ``migrate.lua``)."""
        return f"{self.prefix}meta"

    def name(self, name: str) -> str:
        """String: the id of the latest holder of a name (claimed with SET NX or a script)."""
        return f"{self.prefix}name:{name}"

    def mailbox(self, peer_id: str) -> str:
        """Stream: the peer's unacked mail, with one consumer group."""
        return f"{self.prefix}mbox:{peer_id}"

    def message(self, message_id: str) -> str:
        """String with a TTL of the retention window: a message by id (reply_to, history)."""
        return f"{self.prefix}msg:{message_id}"

    @property
    def log(self) -> str:
        """Stream: capped log of events (sends, presence, expiries) for tail's catch-up."""
        return f"{self.prefix}log"

    def ring(self, peer_id: str) -> str:
        """String with a short TTL: the doorbell rang and the peer has not fetched since.

        Sends while it exists skip the doorbell: the pending ring already makes the
        recipient fetch, and that fetch reads their mail too.
        """
        return f"{self.prefix}ring:{peer_id}"

    def wake_channel(self, peer_id: str) -> str:
        """Pub/sub channel: a payload-free doorbell rung after a send."""
        return f"{self.prefix}wake:{peer_id}"

    @property
    def events_channel(self) -> str:
        """Pub/sub channel: every log entry as it is written (``[entry id, [field, value...]]``).

        The live carrier of events; a reader that lost its connection catches up
        from the log stream, from the last entry id it saw.
        """
        return f"{self.prefix}events"
