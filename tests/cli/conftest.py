"""Fixtures for the CLI tests: a runner with its own store, HOME and namespace.

Commands run in-process through typer's CliRunner (sync tests: every command
calls ``asyncio.run`` itself); peers and mailboxes are set up and checked
through separate transport instances on the same store, the view another
process would have.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import Cli, run_env
from typer.testing import Result


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own PEERS_* settings must not leak into the commands under test.

    PEERS_RUNTIME_DIR stays: it is the test's own (tests/conftest.py).
    """
    for key in list(os.environ):
        if key == "PEERS_RUNTIME_DIR":
            continue
        if key.startswith("PEERS_") or key == "CODEX_HOME":
            monkeypatch.delenv(key)


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'peers.db'}"


@pytest.fixture
def cli(tmp_path: Path, sqlite_url: str, namespace: str, work_dir: Path) -> Cli:
    """A CLI on a SQLite file of its own."""
    env = run_env(tmp_path, sqlite_url, namespace)
    return Cli(env, Path(env["HOME"]), work_dir)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis_real)])
def any_cli(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str, namespace: str, work_dir: Path
) -> Cli:
    """A CLI on each real backend: a SQLite file, and a namespace on the test redis-server."""
    if request.param == "sqlite":
        url = sqlite_url
    else:
        server = request.getfixturevalue("redis_server")
        if not server.running:
            server.start()
        url = server.url
    env = run_env(tmp_path, url, namespace)
    return Cli(env, Path(env["HOME"]), work_dir)


@pytest.fixture
def no_traceback() -> Iterator[Callable[[Result], None]]:
    def check(result: Result) -> None:
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(
            result.exception
        )

    yield check
