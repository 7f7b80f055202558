"""Shared fixtures: the async runner, a real redis-server, and transports on every backend.

The contract suite asks for ``transport`` (parametrised over backend fixture
names, resolved with ``request.getfixturevalue``) and for ``transport_factory``
to open more instances on the same store: a second process's view of it.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import support
from support import HOST, Opener

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


# -- a real redis-server -----------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server child process on a fixed port and data dir (AOF kept across restarts)."""

    def __init__(self, binary: str, port: int, data_dir: Path) -> None:
        self.binary = binary
        self.port = port
        self.dir = data_dir
        self.url = f"redis://127.0.0.1:{port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        self._proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.dir),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--logfile", str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}:\n{log}")
            if _answers_ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not found on PATH; .ci/run installs it")
    # Port 0 picks a free port, so the developer's Redis on 6379 is never touched.
    server = RedisServer(binary, free_port(), tmp_path_factory.mktemp("redis"))
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
async def redis_factory(redis_server: RedisServer, namespace: str) -> AsyncIterator[Opener]:
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
