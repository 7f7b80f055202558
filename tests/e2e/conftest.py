"""Fixtures of the end-to-end tests: sessions (real ``peers serve`` subprocesses) on one store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from peers.config import load_settings
from peers.mcpclient import PeerClient
from peers.transports import create_transport


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis_real)])
def store_env(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str, runtime_dir: str
) -> dict[str, str]:
    """Environment for sessions sharing one store: a SQLite file or the test redis-server.

    ``runtime_dir`` is the test's own (tests/conftest.py), named here too for the
    sessions started with an environment of their own.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/peers.db"
    else:
        url = request.getfixturevalue("redis_server").url
    return {
        "PEERS_URL": url,
        "PEERS_NAMESPACE": namespace,
        "PEERS_LOG_LEVEL": "debug",
        "PEERS_HEARTBEAT_INTERVAL": "1",
        "CLAUDE_PROJECT_DIR": str(tmp_path),
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PEERS_RUNTIME_DIR": runtime_dir,
    }


@pytest.fixture
def session(store_env: dict[str, str], tmp_path: Path) -> Callable[..., PeerClient]:
    """A factory of sessions: ``session(name, client="claude-code", channel=True, **env)``."""
    errlog = open(tmp_path / "servers.log", "a")  # noqa: SIM115 - closed by the finalizer

    def make(
        name: str | None = None,
        *,
        client: str = "claude-code",
        channel: bool = True,
        transcript: Literal["shows", "drops"] | None = None,
        **env: str,
    ) -> PeerClient:
        extra = {"PEERS_NAME": name} if name else {}
        return PeerClient(
            {**store_env, **extra, **env},
            client_name=client,
            channel=channel,
            cwd=str(tmp_path),
            errlog=errlog,
            transcript=transcript,
        )

    return make


@pytest.fixture
async def store(store_env: dict[str, str]) -> AsyncIterator[Any]:
    """A direct view of the same store, to check what the servers did."""
    transport = create_transport(
        load_settings(url=store_env["PEERS_URL"], namespace=store_env["PEERS_NAMESPACE"])
    )
    async with transport:
        yield transport
