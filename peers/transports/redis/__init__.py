"""Redis transport: one Redis server shared by sessions on many hosts.

Supports
    Everything in the contract, across hosts: peers, durable mailboxes,
    inheritance of a name's mail, history, live events, push and upkeep
    leases. Mailboxes are streams with one consumer group (:mod:`.mailbox`);
    push is a pub/sub doorbell per recipient (:mod:`.doorbell`); events ride
    pub/sub with a capped log filling gaps (:mod:`.events`); history has its
    own stream of sends, trimmed only at the retention cutoff. Liveness is a
    key per live peer with a TTL, listed through a registry of online peers
    only (:mod:`.registry`): a dead session is reaped once and leaves the hot
    path, so listing, sending and counting unread mail cost the same with
    10,000 dead sessions in the store as with none. Every check and the
    writes that depend on it are one Lua script (``scripts/*.lua``), so no
    concurrent write lands in between; no script touches more than a page of
    entries, however large a mailbox. Every key is ``peers:{<namespace>}:...``
    (see :class:`peers.keys.RedisKeys`): one hash tag, so the scripts stay
    legal on one Redis Cluster slot. A Redis restart that keeps its data
    (AOF) is ridden out by retries; after one that lost it, heartbeat raises
    PeerNotFound (the server re-registers) and missing consumer groups are
    re-created. A namespace written by an older peers is migrated at connect.

URL format
    ``redis://[[user]:password@]host[:port][/db]``
    ``rediss://[[user]:password@]host[:port][/db]`` (TLS)
    ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``
    User and password are the ACL login (``deploy/redis/users.acl`` lists the
    commands peers needs). Passwords are redacted in every message.

Options
    From the settings: ``PEERS_NAMESPACE``, ``PEERS_PEER_TTL`` (alive-key TTL),
    ``PEERS_RETENTION`` (a delivered message's record expires when its
    window ends; unread mail, history and offline peers wait for ``gc``),
    ``PEERS_MAX_UNREAD`` (the mailbox cap),
    and for ``rediss://`` ``PEERS_REDIS_CA_FILE``, ``PEERS_REDIS_CA_PATH``,
    ``PEERS_REDIS_CERT_FILE``, ``PEERS_REDIS_KEY_FILE`` (client certificate)
    and ``PEERS_REDIS_VERIFY`` (false skips certificate and host name checks).
    URL query options of redis-py (``socket_timeout``, ...) pass through.
    The server should run with ``appendonly yes`` and
    ``maxmemory-policy noeviction`` (``deploy/redis/compose.yaml``):
    ``peers doctor`` warns otherwise.
    :meth:`RedisTransport.from_client` takes a ready-made
    ``redis.asyncio.Redis`` (fakeredis in tests) instead of a URL.

Modules
    :mod:`.url` (URLs and clients), :mod:`.connection` (scripts, errors,
    lifecycle), :mod:`.replies`, :mod:`.registry`, :mod:`.mailbox`,
    :mod:`.batching` (sends sharing a script call), :mod:`.doorbell`,
    :mod:`.events`, :mod:`.gc` (upkeep and leases), :mod:`.checks` (doctor)
    and :mod:`.scripts` (the Lua).
"""

from __future__ import annotations

from peers.models import Check, CheckStatus
from peers.transports.redis.checks import permission_checks, server_checks
from peers.transports.redis.connection import edge
from peers.transports.redis.gc import GcMixin

__all__ = ["RedisTransport"]


class RedisTransport(GcMixin):
    """Peers and mailboxes of one namespace on a Redis server."""

    @edge
    async def diagnostics(self) -> list[Check]:
        """Checks for `peers doctor`: server version, persistence, eviction policy, mode, permissions."""
        facts = await self._server_facts()
        if facts is None:
            return [
                Check(
                    name="redis server",
                    status=CheckStatus.WARN,
                    detail=f"{self._url} does not answer INFO (a fake or proxied server?)",
                )
            ]
        return [*server_checks(facts, self._url), *await permission_checks(self._client(), self._keys)]
