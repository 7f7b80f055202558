"""Helpers for the CLI tests: a runner bound to one store and HOME, and store access."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from typer.testing import CliRunner, Result

from peers import procinfo
from peers.cli import app
from peers.config import Settings, load_settings
from peers.ids import new_peer_id
from peers.models import Message, Peer, ReceiveMode
from peers.transports import create_transport
from peers.transports.base import Transport

HOST = socket.gethostname()
_T = TypeVar("_T")


def arun(coro: Awaitable[_T]) -> _T:
    async def wrap() -> _T:
        return await coro

    return asyncio.run(wrap())


@dataclass
class Cli:
    """Runs ``peers`` commands against one store with a private HOME."""

    env: dict[str, str]
    home: Path
    cwd: Path
    runner: CliRunner = field(default_factory=CliRunner)

    def __call__(self, *args: str, input: str | None = None, **env: str) -> Result:
        old = os.getcwd()
        os.chdir(self.cwd)
        try:
            return self.runner.invoke(app, list(args), env={**self.env, **env}, input=input)
        finally:
            os.chdir(old)

    def settings(self, **overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "url": self.env["PEERS_URL"],
            "namespace": self.env["PEERS_NAMESPACE"],
            "host": HOST,
            "peer_ttl": float(self.env["PEERS_PEER_TTL"]),
        }
        return load_settings(**{**base, **overrides})

    def with_transport(self, fn: Callable[[Transport], Awaitable[_T]]) -> _T:
        """Run ``fn`` on a fresh connected transport (another process's view of the store)."""

        async def go() -> _T:
            async with create_transport(self.settings()) as transport:
                return await fn(transport)

        return asyncio.run(go())

    def register(self, **fields: Any) -> Peer:
        """A live peer of this test process (its pid), registered in the store."""
        pid = fields.pop("pid", os.getpid())
        peer = Peer(
            **{
                "id": new_peer_id(),
                "namespace": self.env["PEERS_NAMESPACE"],
                "host": HOST,
                "pid": pid,
                "pid_start": procinfo.process_start_time(pid),
                "cwd": str(self.cwd),
                "client": "claude-code",
                "receive_mode": ReceiveMode.PUSH,
                **fields,
            }
        )
        return self.with_transport(lambda t: t.register(peer))

    def mailbox(self, peer_id: str) -> list[Message]:
        return self.with_transport(lambda t: t.fetch(peer_id, 1000))


def run_env(tmp_path: Path, url: str, namespace: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PEERS_URL": url,
        "PEERS_NAMESPACE": namespace,
        "PEERS_PEER_TTL": "600",
        # The test's own hook sockets (tests/conftest.py): children lose other PEERS_*.
        "PEERS_RUNTIME_DIR": os.environ["PEERS_RUNTIME_DIR"],
        "HOME": str(home),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "CODEX_HOME": str(home / ".codex"),
        "USER": "tester",
    }


def subprocess_env(cli: Cli) -> dict[str, str]:
    """The environment for ``python -m peers`` children of a test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERS_")}
    env.update(cli.env)
    env["PYTHONUNBUFFERED"] = "1"
    return env


PEERS = [sys.executable, "-m", "peers"]
