"""Doctor checks on Redis: the server (version, persistence, eviction, mode) and whether
the configured user may run every command peers needs.

ACL rules can allow a command on some keys and channels and not on others, so
instead of reading the rules this probes them: it runs each command the Redis
transport uses (directly or inside its scripts) once, on scratch keys under
the namespace's own prefix, and deletes them again. A ``NOPERM`` answer names
the missing permission; a ``READONLY`` answer means a replica. Works on every
Redis from 6.2, and with users that may not run ``ACL`` themselves.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from peers import constants as c
from peers.keys import RedisKeys
from peers.models import Check, CheckStatus
from peers.transports.redis.client import Client

__all__ = ["permission_checks", "server_checks"]

_NAME = "redis permissions"


async def permission_checks(client: Client, keys: RedisKeys) -> list[Check]:
    """One check: every command the transport needs succeeds on this namespace's keys."""
    base = f"{keys.prefix}doctor:{secrets.token_hex(4)}:"
    s, h, z, x, ch, st = (base + suffix for suffix in ("s", "h", "z", "x", "c", "t"))
    group = c.REDIS_GROUP
    denied: list[str] = []
    readonly = False
    other: list[str] = []

    async def probe(label: str, call: Callable[[], Awaitable[Any]]) -> Any:
        nonlocal readonly
        try:
            return await call()
        except NoPermissionError:
            denied.append(label)
        except ReadOnlyError:
            readonly = True
        except ResponseError as exc:
            text = str(exc)
            if text.upper().startswith("NOPERM"):
                denied.append(label)
            elif text.upper().startswith("READONLY"):
                readonly = True
            else:
                other.append(f"{label}: {text}")
        return None

    # execute_command is untyped in redis-py; every reply is checked by hand here.
    run: Callable[..., Awaitable[Any]] = client.execute_command
    try:
        await probe("SET", lambda: run("SET", s, "1", "PX", 60_000))
        await probe("GET", lambda: run("GET", s))
        await probe("EXISTS", lambda: run("EXISTS", s))
        await probe("PEXPIRE", lambda: run("PEXPIRE", s, 60_000))
        await probe("HSET", lambda: run("HSET", h, "f", "v"))
        await probe("HGET", lambda: run("HGET", h, "f"))
        await probe("HMGET", lambda: run("HMGET", h, "f"))
        await probe("HGETALL", lambda: run("HGETALL", h))
        await probe("HSETNX", lambda: run("HSETNX", h, "g", "v"))
        await probe("HDEL", lambda: run("HDEL", h, "g"))
        await probe("INCR", lambda: run("INCR", s))
        await probe("ZADD", lambda: run("ZADD", z, 1, "m"))
        await probe("ZRANGE", lambda: run("ZRANGE", z, 0, -1))
        await probe("ZREM", lambda: run("ZREM", z, "m"))
        await probe("SADD", lambda: run("SADD", st, "m"))
        await probe("SISMEMBER", lambda: run("SISMEMBER", st, "m"))
        await probe("SMEMBERS", lambda: run("SMEMBERS", st))
        await probe("SCARD", lambda: run("SCARD", st))
        await probe("SREM", lambda: run("SREM", st, "m"))
        entry = await probe("XADD", lambda: run("XADD", x, "*", "f", "v"))
        await probe("XGROUP", lambda: run("XGROUP", "CREATE", x, group, "0", "MKSTREAM"))
        await probe(
            "XREADGROUP",
            lambda: run("XREADGROUP", "GROUP", group, "doctor", "COUNT", 1, "STREAMS", x, ">"),
        )
        if entry is not None:
            await probe("XACK", lambda: run("XACK", x, group, entry))
            await probe("XDEL", lambda: run("XDEL", x, entry))
        await probe("XLEN", lambda: run("XLEN", x))
        await probe("XRANGE", lambda: run("XRANGE", x, "-", "+", "COUNT", 1))
        await probe("XREVRANGE", lambda: run("XREVRANGE", x, "+", "-", "COUNT", 1))
        await probe("XTRIM", lambda: run("XTRIM", x, "MAXLEN", "~", 1000))
        await probe("PUBLISH", lambda: run("PUBLISH", ch, ""))
        script = "return redis.call('EXISTS', KEYS[1])"
        sha = await probe("SCRIPT LOAD", lambda: run("SCRIPT", "LOAD", script))
        if sha is not None:
            await probe("EVALSHA", lambda: run("EVALSHA", sha, 1, s))
        await probe("EVAL", lambda: run("EVAL", script, 1, s))
        await probe("SUBSCRIBE", lambda: _subscribe(client, ch))
        await probe("INFO", lambda: run("INFO", "server"))
        await probe("DEL", lambda: run("DEL", s, h, z, x, st))
    except (RedisConnectionError, RedisTimeoutError) as exc:
        return [
            Check(
                name=_NAME,
                status=CheckStatus.FAIL,
                detail=f"the connection failed during the probe: {exc}",
                fix="check the server's reachability (see the backend checks above)",
            )
        ]
    finally:
        with contextlib.suppress(RedisError, OSError):
            await run("DEL", s, h, z, x, st)

    if readonly:
        return [
            Check(
                name=_NAME,
                status=CheckStatus.FAIL,
                detail="the server answered READONLY: PEERS_URL points at a read-only replica",
                fix="point PEERS_URL at the primary",
            )
        ]
    if denied:
        return [
            Check(
                name=_NAME,
                status=CheckStatus.FAIL,
                detail=f"this user may not run {', '.join(denied)} on {keys.prefix}*",
                fix=f"grant the user ~peers:* &peers:* and +{' +'.join(cmd.lower().replace(' ', '|') for cmd in denied)}",
            )
        ]
    if other:
        return [
            Check(
                name=_NAME,
                status=CheckStatus.WARN,
                detail="unexpected answers: " + "; ".join(other[:5]),
                fix="check that the server is a real Redis (>= 6.2) and not a proxy",
            )
        ]
    return [
        Check(
            name=_NAME,
            status=CheckStatus.OK,
            detail=f"every command peers uses runs on {keys.prefix}*",
        )
    ]


async def _subscribe(client: Client, channel: str) -> None:
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(channel)
        # The confirmation (or the NOPERM error) arrives as the next reply.
        await pubsub.get_message(timeout=1.0)
        await pubsub.unsubscribe(channel)
    finally:
        await pubsub.aclose()


def server_checks(facts: dict[str, str], url: str) -> list[Check]:
    """Version, persistence, eviction policy and mode, from the server's INFO."""
    version = facts["server_version"]
    try:
        major_minor = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        major_minor = (0, 0)
    aof = facts["aof"] == "on"
    noeviction = facts["maxmemory_policy"] == "noeviction"
    standalone = facts["mode"] == "standalone"
    return [
        Check(
            name="redis server",
            status=CheckStatus.OK if major_minor >= (6, 2) else CheckStatus.FAIL,
            detail=f"Redis {version} at {url}",
            fix="" if major_minor >= (6, 2) else "upgrade to Redis 7 (6.2 at least)",
        ),
        Check(
            name="redis persistence",
            status=CheckStatus.OK if aof else CheckStatus.WARN,
            detail="AOF on" if aof else "AOF off: a restart may lose unread mail",
            fix="" if aof else "run Redis with appendonly yes (deploy/redis/compose.yaml)",
        ),
        Check(
            name="redis eviction policy",
            status=CheckStatus.OK if noeviction else CheckStatus.FAIL,
            detail=f"maxmemory-policy {facts['maxmemory_policy']}",
            fix=""
            if noeviction
            else "set maxmemory-policy noeviction: eviction silently deletes mailboxes",
        ),
        Check(
            name="redis mode",
            status=CheckStatus.OK if standalone else CheckStatus.FAIL,
            detail=facts["mode"],
            fix="" if standalone else "point PEERS_URL at a standalone Redis",
        ),
    ]
