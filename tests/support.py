"""Helpers shared by the test modules (importable as ``support``: tests/ is on sys.path)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peers import procinfo
from peers.config import Settings, load_settings
from peers.ids import new_message_id, new_peer_id
from peers.models import Message, Peer
from peers.transports import create_transport
from peers.transports.base import Transport

__all__ = ["HOST", "Opener", "RedisProcess", "free_port", "make_message", "make_peer"]

# The host identity every test transport uses: the real one, so pid checks apply.
HOST = socket.gethostname()


class Opener:
    """Opens connected transports on one store and closes them all at teardown."""

    def __init__(
        self,
        base: dict[str, Any],
        build: Callable[[Settings], Transport] = create_transport,
    ) -> None:
        self._build = build
        self._base = base
        self.opened: list[Transport] = []

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(**{**self._base, **overrides})

    def unconnected(self, **overrides: Any) -> Transport:
        """A new instance on the store, not yet connected (closed at teardown all the same)."""
        transport = self._build(self.settings(**overrides))
        self.opened.append(transport)
        return transport

    async def __call__(self, **overrides: Any) -> Transport:
        transport = self.unconnected(**overrides)
        await transport.connect()
        return transport

    async def aclose(self) -> None:
        for transport in reversed(self.opened):
            await transport.close()


def make_peer(namespace: str, **fields: Any) -> Peer:
    """A valid live peer of this process (pid and start time of the test runner)."""
    pid = os.getpid()
    base: dict[str, Any] = {
        "id": new_peer_id(),
        "namespace": namespace,
        "host": HOST,
        "pid": pid,
        "pid_start": procinfo.process_start_time(pid),
        "cwd": "/work",
    }
    return Peer(**{**base, **fields})


def make_message(namespace: str, sender: Peer, recipient: Peer, body: str) -> Message:
    return Message(
        id=new_message_id(),
        namespace=namespace,
        sender_id=sender.id,
        sender_name=sender.name,
        recipient_id=recipient.id,
        body=body,
    )


def free_port() -> int:
    """A TCP port nobody listens on now (the developer's Redis on 6379 is never used)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisProcess:
    """A real redis-server child process on its own port and data directory."""

    def __init__(
        self, port: int, data_dir: Path, args: list[str], config: Path | None = None
    ) -> None:
        self.port = port
        self.dir = data_dir
        self.args = args
        self.config = config  # a redis.conf, loaded first (the arguments override it)
        self.url = f"redis://127.0.0.1:{port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server not found on PATH; .ci/run installs it")
        self._proc = subprocess.Popen(
            [binary, *([str(self.config)] if self.config else []),
             "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--logfile", str(self.dir / "redis.log"), *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}:\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    # Any reply (PONG, or NOAUTH when the default user is off) means it is up.
                    if sock.recv(64):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout}s")

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

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and nothing answers."""
        assert self._proc is not None, "not running"
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)
