"""The Redis transport's core: clients, scripts, error conversion at the edge, lifecycle.

Every public call goes through :func:`edge`: redis-py's exceptions become peers'
own, and the call is bounded by ``op_timeout`` (a dead server is noticed without
a socket timeout on every command, which would cost a task per write). Scripts
run by EVALSHA, reloaded when a restarted server forgot them. At connect, a
namespace written by an older peers is brought to the current key layout
(``scripts/migrate.lua``), a page of registry ids per call.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from peers import constants as c
from peers.config import Settings
from peers.errors import BackendError, BackendUnavailable
from peers.keys import RedisKeys
from peers.redact import redact_url
from peers.transports.base import Capabilities, Transport
from peers.transports.redis import scripts
from peers.transports.redis.batching import Coalescer
from peers.transports.redis.client import Client
from peers.transports.redis.doorbell import Doorbell
from peers.transports.redis.replies import text
from peers.transports.redis.url import build_clients, check_redis_url, describe

__all__ = ["RedisStore", "edge", "edge_within"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="RedisStore")


Op = Callable[Concatenate[S, P], Coroutine[Any, Any, R]]


def edge_within(factor: float | None) -> Callable[[Op[S, P, R]], Op[S, P, R]]:
    """Convert redis exceptions into peers' own at the transport's edge; bound the call to
    ``factor`` times the transport's ``op_timeout`` (None: unbounded)."""

    def decorate(fn: Op[S, P, R]) -> Op[S, P, R]:
        @functools.wraps(fn)
        async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            seconds = None if factor is None else self.op_timeout * factor
            try:
                async with asyncio.timeout(seconds):
                    return await fn(self, *args, **kwargs)
            except RedisError as exc:
                raise self._convert(exc) from exc
            except TimeoutError as exc:  # the deadline (an OSError too: caught first)
                within = f" within {seconds:g} s" if seconds is not None else ""
                raise BackendUnavailable(f"Redis at {self._url} did not answer{within}") from exc
            except OSError as exc:  # TLS files, sockets outside redis-py's own wrapping
                raise BackendUnavailable(f"cannot reach Redis at {self._url}: {exc}") from exc

        return wrapper

    return decorate


edge = edge_within(1)


class RedisStore(Transport):
    """Peers and mailboxes of one namespace on a Redis server."""

    capabilities = Capabilities(
        name="redis", cross_host=True, push=True, events=True, networked=True
    )

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.namespace = settings.namespace
        self.host = settings.host
        self._settings = settings
        self._keys = RedisKeys(settings.namespace)
        self._ttl_ms = max(1, int(settings.peer_ttl * 1000))
        self._peer_ttl = settings.peer_ttl
        self._retention = settings.retention
        self._max_unread = settings.max_unread
        self._given = client
        self._url = redact_url(settings.url) if client is None else describe(client, settings)
        # Commands, and a second client for pub/sub (doorbells, events).
        self._r: Client | None = None
        self._rb: Client | None = None
        self._doorbell: Doorbell | None = None
        self._scripts: dict[str, Any] = {}
        self._sends: Coalescer[Any, str] | None = None
        # How long a call may take before the server counts as gone (see REDIS_OP_TIMEOUT),
        # and how long a pub/sub connection may stay silent before it is checked.
        self.op_timeout = c.REDIS_OP_TIMEOUT
        self.pubsub_quiet = c.REDIS_PUBSUB_QUIET

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build an unconnected transport from the settings (URL, namespace, host, TTL, retention)."""
        check_redis_url(settings.url)
        return cls(settings)

    @classmethod
    def from_client(cls, client: Any, settings: Settings) -> Self:
        """A transport on a ready-made redis.asyncio client (fakeredis in tests); the caller closes it.

        Any ``redis.asyncio.Redis`` has every method of :class:`Client` that the transport calls."""
        return cls(settings, client=client)

    # -- lifecycle ---------------------------------------------------------------

    def _batcher(self) -> Coalescer[Any, str]:
        """The coalescer of sends (the mailbox module's; built at connect)."""
        raise NotImplementedError

    @edge
    async def connect(self) -> None:
        """Open connections and create or migrate the store (idempotent)."""
        if self._r is None:
            if self._given is not None:
                self._r = self._rb = self._given
            else:
                self._r, self._rb = build_clients(self._settings, self._url)
            self._scripts = {
                name: self._r.register_script(scripts.source(name, self._keys))
                for name in scripts.SCRIPTS
            }
            self._doorbell = Doorbell(self._rb, self._keys, lambda: self.pubsub_quiet)
            self._sends = self._batcher()
        await self._r.ping()
        await self._load_scripts()
        await self._migrate()

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD them all in one round trip, so no call pays for a NOSCRIPT miss."""
        async with self._client().pipeline(transaction=False) as pipe:
            for compiled in self._scripts.values():
                pipe.script_load(compiled.script)
            await pipe.execute()

    async def _migrate(self) -> None:
        """Bring a namespace of an older key layout up to date (a no-op once done)."""
        client = self._client()
        version = await client.hget(self._keys.meta, "version")
        if version is not None and int(text(version)) >= c.REDIS_LAYOUT_VERSION:
            return
        ids = [text(x) for x in await client.zrange(self._keys.registry, 0, -1)]
        pages = [ids[i : i + c.GC_PAGE] for i in range(0, len(ids), c.GC_PAGE)] or [[]]
        for n, page in enumerate(pages):
            last = "1" if n == len(pages) - 1 else "0"
            await self._run("migrate", self._keys.meta, c.REDIS_LAYOUT_VERSION, last, *page)

    async def close(self) -> None:
        """Release connections and wake-up endpoints; safe to call twice."""
        sends, self._sends = self._sends, None
        if sends is not None:
            await sends.close(BackendUnavailable(f"the connection to Redis at {self._url} closed"))
        doorbell, self._doorbell = self._doorbell, None
        if doorbell is not None:
            await doorbell.close()
        clients = {id(x): x for x in (self._r, self._rb) if x is not None}
        self._r = self._rb = None
        if self._given is None:
            for client in clients.values():
                try:
                    await client.aclose()
                except (RedisError, OSError):
                    continue

    def _not_connected(self) -> BackendUnavailable:
        return BackendUnavailable(f"not connected to Redis at {self._url}: call connect() first")

    def _client(self) -> Client:
        if self._r is None:
            raise self._not_connected()
        return self._r

    def _bell(self) -> Doorbell:
        if self._doorbell is None:
            raise self._not_connected()
        return self._doorbell

    def _convert(self, exc: RedisError) -> Exception:
        where = f"Redis at {self._url}"
        if isinstance(exc, AuthenticationError | AuthorizationError):
            return BackendError(
                f"{where} refused the login ({exc}); check the user and password in PEERS_URL "
                "(redis://user:password@host:port/db)"
            )
        if isinstance(exc, NoPermissionError):
            return BackendError(
                f"{where} denied a command to this user ({exc}); grant it the rules in "
                "deploy/redis/users.acl"
            )
        if isinstance(exc, BusyLoadingError):
            return BackendUnavailable(f"{where} is still loading its data; try again shortly")
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            return BackendUnavailable(f"cannot reach {where}: {exc}")
        if isinstance(exc, OutOfMemoryError):
            return BackendError(
                f"{where} is out of memory and refuses writes ({exc}); raise maxmemory "
                "or run `peers gc`"
            )
        if isinstance(exc, ReadOnlyError):
            return BackendError(f"{where} is a read-only replica; point PEERS_URL at the primary")
        return BackendError(f"{where} failed: {exc}")

    async def _run(self, script: str, key: str, *args: Any) -> Any:
        """Run one of the server-side scripts; ``key`` routes it to the namespace's slot."""
        client = self._client()
        compiled = self._scripts[script]
        try:
            # EVALSHA directly: the hot path (send) pays for one command, nothing more.
            return await client.evalsha(compiled.sha, 1, key, *args)
        except NoScriptError:
            # A restarted server forgot its script cache: load the script and run it again.
            return await compiled(keys=[key], args=args)

    @edge
    async def ping(self) -> float:
        """Round-trip the store once; return the latency in seconds or raise BackendUnavailable."""
        client = self._client()
        started = time.perf_counter()
        await client.ping()
        return time.perf_counter() - started

    async def _server_facts(self) -> dict[str, str] | None:
        """Version, mode and persistence facts from INFO, or None (fakeredis has no INFO)."""
        client = self._client()
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.info("server")
                pipe.info("persistence")
                pipe.info("memory")
                server, persistence, memory = await pipe.execute()
        except ResponseError:
            return None
        return {
            "server_version": text(server.get("redis_version", "unknown")),
            "mode": text(server.get("redis_mode", "standalone")),
            "aof": "on" if str(persistence.get("aof_enabled", "0")) == "1" else "off",
            "maxmemory_policy": text(memory.get("maxmemory_policy", "unknown")),
        }

    @edge
    async def info(self) -> dict[str, str]:
        """Backend facts for status and doctor (version, schema, path or address)."""
        facts = await self._server_facts()
        info = {"backend": "redis", "url": self._url, "namespace": self.namespace}
        if facts is None:
            info.update(server_version="unknown (no INFO)", mode="unknown")
        else:
            info.update(facts)
        return info
