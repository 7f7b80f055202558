"""Shared fixtures: the async runner, a real redis-server, and transports on every backend.

The contract suite asks for ``transport`` (parametrised over backend fixture
names, resolved with ``request.getfixturevalue``) and for ``transport_factory``
to open more instances on the same store: a second process's view of it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import support
from support import HOST, Opener, RedisProcess, free_port

from peers.config import Settings
from peers.ids import new_message_id
from peers.models import Message, Peer
from peers.transports.base import Transport

TRANSPORT_FIXTURES = ["sqlite_transport", "fakeredis_transport", "redis_transport"]
# Which factory opens more instances on the store of each transport fixture.
FACTORY_OF = {
    "sqlite_transport": "sqlite_factory",
    "fakeredis_transport": "fakeredis_factory",
    "redis_transport": "redis_factory",
}


def redis_transport_missing() -> bool:
    return importlib.util.find_spec("peers.transports.redis") is None


# -- async runner ------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- hook sockets ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test's hook sockets in a directory of its own, never the user's real one.

    Set in the environment, so every ``peers serve`` and ``peers hook`` a test
    starts inherits it: a stale or foreign socket cannot leak from one test (or
    from a real session of the developer's) into another. Short, under /tmp:
    socket paths must fit sun_path (~100 bytes).
    """
    path = tempfile.mkdtemp(prefix="pr-", dir="/tmp")
    run = os.path.join(path, "run")
    monkeypatch.setenv("PEERS_RUNTIME_DIR", run)
    try:
        yield run
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- a real redis-server -----------------------------------------------------


# The shared server keeps an always-fsynced AOF, so fault tests can restart it.
REDIS_SERVER_ARGS = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(free_port(), tmp_path_factory.mktemp("redis"), REDIS_SERVER_ARGS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own: tests on the shared server never see each other."""
    return f"ns-{uuid.uuid4().hex[:12]}"


# -- transports ---------------------------------------------------------------


@pytest.fixture
async def sqlite_factory(tmp_path: Path, namespace: str) -> AsyncIterator[Opener]:
    base = {"url": f"sqlite:///{tmp_path / 'peers.db'}", "namespace": namespace, "host": HOST}
    opener = Opener(base)
    try:
        yield opener
    finally:
        await opener.aclose()


@pytest.fixture
async def fakeredis_factory(namespace: str) -> AsyncIterator[Opener]:
    if redis_transport_missing():
        pytest.skip("redis transport not implemented yet")
    import fakeredis

    from peers.transports.redis import RedisTransport

    server = fakeredis.FakeServer()
    clients: list[Any] = []

    def build(settings: Settings) -> Transport:
        # Each instance gets its own client on the shared fake server: a second process.
        client = fakeredis.FakeAsyncRedis(server=server)
        clients.append(client)
        transport: Transport = RedisTransport.from_client(client, settings)
        return transport

    base = {"url": "redis://fakeredis/0", "namespace": namespace, "host": HOST}
    opener = Opener(base, build)
    try:
        yield opener
    finally:
        await opener.aclose()
        for client in clients:
            await client.aclose()


@pytest.fixture
async def redis_factory(redis_server: RedisProcess, namespace: str) -> AsyncIterator[Opener]:
    if redis_transport_missing():
        pytest.skip("redis transport not implemented yet")
    if not redis_server.running:
        redis_server.start()  # a fault test may have left it stopped
    base = {"url": redis_server.url, "namespace": namespace, "host": HOST}
    opener = Opener(base)
    try:
        yield opener
    finally:
        await opener.aclose()


@pytest.fixture
async def sqlite_transport(sqlite_factory: Opener) -> Transport:
    return await sqlite_factory()


@pytest.fixture
async def fakeredis_transport(fakeredis_factory: Opener) -> Transport:
    return await fakeredis_factory()


@pytest.fixture
async def redis_transport(redis_factory: Opener) -> Transport:
    return await redis_factory()


@pytest.fixture(
    params=[
        pytest.param("sqlite_transport", id="sqlite"),
        pytest.param("fakeredis_transport", id="fakeredis"),
        pytest.param("redis_transport", id="redis", marks=pytest.mark.redis_real),
    ]
)
def transport(request: pytest.FixtureRequest) -> Transport:
    """A connected transport on a fresh store (or a fresh namespace on a shared server)."""
    value: Transport = request.getfixturevalue(request.param)
    return value


@pytest.fixture
def transport_factory(request: pytest.FixtureRequest, transport: Transport) -> Opener:
    """Opens more connected instances on the same store as ``transport`` (settings overridable)."""
    name = request.node.callspec.params["transport"]
    opener: Opener = request.getfixturevalue(FACTORY_OF[name])
    return opener


# -- model factories ------------------------------------------------------------


@pytest.fixture
def make_peer(namespace: str) -> Callable[..., Peer]:
    """Valid live peers of this process (pid and start time of the test runner)."""

    def make(**overrides: Any) -> Peer:
        fields = {"namespace": namespace, "cwd": "/work/project", **overrides}
        return support.make_peer(**fields)

    return make


@pytest.fixture
def make_message(namespace: str) -> Callable[..., Message]:
    def make(
        sender: Peer | str, recipient: Peer | str, body: str = "hello", **overrides: Any
    ) -> Message:
        fields: dict[str, Any] = {
            "id": new_message_id(),
            "namespace": namespace,
            "sender_id": sender if isinstance(sender, str) else sender.id,
            "sender_name": None if isinstance(sender, str) else sender.name,
            "recipient_id": recipient if isinstance(recipient, str) else recipient.id,
            "body": body,
        }
        fields.update(overrides)
        return Message(**fields)

    return make
