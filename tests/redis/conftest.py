"""Fixtures for the Redis-only tests (helpers live in redis_helpers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_helpers import acl_server_args, spawn_redis
from support import HOST, Opener, RedisProcess


@pytest.fixture(scope="session")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A separate redis-server that enforces deploy/redis/users.acl."""
    data_dir = tmp_path_factory.mktemp("redis-acl")
    server = spawn_redis(data_dir, *acl_server_args(data_dir))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def open_on() -> AsyncIterator[Any]:
    """``open_on(url, namespace, **settings)``: an Opener for any URL, closed at teardown."""
    openers: list[Opener] = []

    def make(url: str, namespace: str, **overrides: Any) -> Opener:
        opener = Opener({"url": url, "namespace": namespace, "host": HOST, **overrides})
        openers.append(opener)
        return opener

    try:
        yield make
    finally:
        for opener in openers:
            await opener.aclose()


@pytest.fixture
def redis_spawner(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    """``redis_spawner(*args, port=None, start=True)``: private servers, always stopped at teardown."""
    servers: list[RedisProcess] = []

    def spawn(*args: str, port: int | None = None, start: bool = True) -> RedisProcess:
        data_dir = tmp_path / f"redis-{len(servers)}"
        data_dir.mkdir()
        server = spawn_redis(data_dir, *args, port=port, start=False)
        servers.append(server)
        if start:
            server.start()
        return server

    try:
        yield spawn
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def opener(redis_server: RedisProcess, namespace: str) -> AsyncIterator[Opener]:
    """Connected transports on the session's redis-server, in this test's namespace."""
    if not redis_server.running:
        redis_server.start()
    opener = Opener({"url": redis_server.url, "namespace": namespace, "host": HOST})
    try:
        yield opener
    finally:
        await opener.aclose()


@pytest.fixture
async def raw(redis_server: RedisProcess) -> AsyncIterator[Any]:
    """A plain client on the session's redis-server, to look at or tamper with keys."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()
