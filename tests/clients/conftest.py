"""Fixtures of the real-client tier: a fake model per test, the test's own store, drivers.

Every test here is marked ``clients`` (select with ``-m clients``, leave out with
``-m "not clients"``). A test that asks for a client whose CLI is missing or
does not run is skipped with the reason (see client_drivers.find_binary).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from client_drivers import DRIVERS, ClientBinary, Driver, Store, find_binary
from fake_model import FakeModel

CLIENTS_DIR = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if CLIENTS_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.clients)


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The drivers build each environment from scratch; this keeps helpers honest too.
    for key in list(os.environ):
        if key.startswith("PEERS_") and key not in (
            "PEERS_CLIENTS_DIR", "PEERS_CLIENTS_ENTRY",
            "PEERS_CLAUDE_BIN", "PEERS_CODEX_BIN", "PEERS_GEMINI_BIN",
        ):  # fmt: skip
            monkeypatch.delenv(key)


def binary(client: str) -> ClientBinary:
    found = find_binary(client)
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    with FakeModel() as fake:
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A SQLite store and namespace of this test's own."""
    home = tmp_path / "cli-home"
    home.mkdir()
    return Store(f"sqlite:///{tmp_path / 'peers.db'}", f"t-{uuid.uuid4().hex[:10]}", home)


@pytest.fixture
def redis_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A namespace of this test's own on the test session's real redis-server."""
    server = request.getfixturevalue("redis_server")
    if not server.running:
        server.start()
    home = tmp_path / "cli-home"
    home.mkdir(exist_ok=True)
    return Store(server.url, f"t-{uuid.uuid4().hex[:10]}", home)


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """The directory the clients run in (a plain folder, trusted by each client)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def make_driver(
    fake_model: FakeModel, store: Store, tmp_path: Path, work_dir: Path
) -> Iterator[Callable[..., Driver]]:
    default_store = store
    """``make_driver("claude", **options)``: a driver in a HOME of its own (skips without the CLI)."""
    made: list[Driver] = []

    def make(
        client: str,
        *,
        fake: FakeModel | None = None,
        cwd: Path | None = None,
        store: Store | None = None,
        **options: Any,
    ) -> Driver:
        home = tmp_path / f"home-{client}-{len(made)}"
        driver = DRIVERS[client](
            binary(client), fake or fake_model, store or default_store, home, cwd or work_dir,
            **options,
        )  # fmt: skip
        made.append(driver)
        return driver

    try:
        yield make
    finally:
        for driver in made:
            driver.stop()


@pytest.fixture
def claude(make_driver: Callable[..., Driver]) -> Driver:
    return make_driver("claude")


@pytest.fixture
def codex(make_driver: Callable[..., Driver]) -> Driver:
    return make_driver("codex")


@pytest.fixture
def gemini(make_driver: Callable[..., Driver]) -> Driver:
    return make_driver("gemini")


@pytest.fixture
def claude_tmux(claude: Driver, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``claude_tmux(*args)``: an interactive Claude Code in tmux (skips without tmux)."""
    from claude_tmux import ClaudeTmux, tmux_missing

    missing = tmux_missing()
    if missing:
        pytest.skip(missing)
    sessions: list[ClaudeTmux] = []

    def start(*args: str) -> ClaudeTmux:
        session = ClaudeTmux(claude, tmp_path, *args)  # type: ignore[arg-type]
        sessions.append(session)
        return session.start()

    try:
        yield start
    finally:
        for session in sessions:
            session.stop()
