"""`peers watch` in a real terminal: tmux runs it, real sessions change, capture-pane reads it.

Each test owns a tmux server on a private socket, with one 80x24 window whose
shell runs the board, then prints its exit code and the terminal's modes
(``stty -a``), so that what the board left behind can be read too. tmux also
says whether the alternate screen is still on and the cursor shown.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import RedisProcess, free_port

from peers.config import load_settings
from peers.mcpclient import PeerClient
from peers.service import PeersService, Sender
from peers.transports import create_transport

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WAIT = 30.0


class Tmux:
    """One tmux server of the test's own, one window running one command."""

    def __init__(self, root: Path) -> None:
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed; .ci/run installs it")
        self.root = root
        self.socket = f"peers-test-{uuid.uuid4().hex[:10]}"

    def tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {done.stderr}")
        return done.stdout

    def start(
        self, command: str, env: dict[str, str], *, width: int = 80, height: int = 24
    ) -> None:
        script = self.root / f"{self.socket}.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
        # Ctrl-C reaches the whole foreground group: the shell notes it and goes on
        # (a trap, unlike an ignored signal, is not inherited by the board).
        script.write_text(f"{exports}trap : INT\ncd {shlex.quote(str(self.root))}\n{command}\n")
        self.tmux(
            "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), f"sh {script}"
        )  # fmt: skip
        self.tmux("set-option", "-t", "t", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def var(self, name: str) -> str:
        return self.tmux("display-message", "-p", "-t", "t", f"#{{{name}}}").strip()

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def kill(self) -> None:
        self.tmux("kill-server", check=False)
        # The server leaves its socket file behind.
        root = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (root / self.socket).unlink(missing_ok=True)

    async def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            await anyio.sleep(0.1)
        raise AssertionError(f"the screen never showed {what} within {timeout} s:\n{screen}")

    async def shows(self, *texts: str, timeout: float = WAIT) -> str:
        return await self.wait_for(lambda s: all(t in s for t in texts), repr(texts), timeout)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    term = Tmux(tmp_path)
    try:
        yield term
    finally:
        term.kill()


def base_env(tmp_path: Path, url: str, namespace: str) -> dict[str, str]:
    # TERM is tmux's own (the runner's may be "dumb").
    drop = ("TERM", "TMUX")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERS_") and k not in drop}
    env.update(
        PEERS_URL=url,
        PEERS_NAMESPACE=namespace,
        PEERS_HEARTBEAT_INTERVAL="1",
        PEERS_RUNTIME_DIR=os.environ["PEERS_RUNTIME_DIR"],  # the test's own (tests/conftest.py)
        HOME=str(tmp_path / "home"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        PYTHONUNBUFFERED="1",
    )
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


# The board's command, then what it leaves: its exit code and the terminal's modes.
WATCH = (
    f'{shlex.quote(sys.executable)} -m peers watch 2>watch.err; echo "EXIT=$?"; '
    "stty -a | tr '\\n' ' '; echo; echo END; exec sleep 600"
)


async def leaves_terminal_clean(term: Tmux, root: Path) -> None:
    screen = await term.shows("EXIT=0", "END")
    modes = screen.split("EXIT=0", 1)[1]
    # Back in line mode with echo: the board's single-key mode was put back.
    assert re.search(r"(?<!-)icanon", modes) and re.search(r"(?<!-)\becho\b", modes), modes
    assert term.var("alternate_on") == "0"  # the alternate screen was left
    assert term.var("cursor_flag") == "1"  # and the cursor is shown
    assert "peers watch" not in screen  # the board went with the alternate screen
    err = (root / "watch.err").read_text()
    assert "Traceback" not in err, err


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def two_worktrees(root: Path) -> tuple[Path, Path]:
    """One repository, two worktrees, the same file changed in both (a conflict)."""
    main = root / "app"
    main.mkdir()
    git(main, "init", "-q", "-b", "main")
    git(main, "config", "user.email", "t@example.com")
    git(main, "config", "user.name", "t")
    (main / "src").mkdir()
    (main / "src" / "api.py").write_text("x = 1\n")
    git(main, "add", ".")
    git(main, "commit", "-q", "-m", "init")
    feature = root / "app-feature"
    git(main, "worktree", "add", "-q", "-b", "feature", str(feature))
    (main / "src" / "api.py").write_text("x = 2\n")
    (feature / "src" / "api.py").write_text("x = 3\n")
    return main, feature


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis_real)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store/peers.db"
    server: RedisProcess = request.getfixturevalue("redis_server")
    if not server.running:
        server.start()
    return server.url


def session(env: dict[str, str], name: str, where: Path, errlog: Any) -> PeerClient:
    return PeerClient(
        {**env, "PEERS_NAME": name, "CLAUDE_PROJECT_DIR": str(where)},
        client_name="claude-code",
        channel=False,
        cwd=str(where),
        errlog=errlog,
    )


def board_rows(screen: str) -> list[str]:
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# NAME")) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line.split()[1])
    return rows


async def test_the_board_follows_real_sessions_and_leaves_the_terminal_clean(
    tmux: Tmux, tmp_path: Path, store_url: str, namespace: str
) -> None:
    main, feature = two_worktrees(tmp_path)
    env = base_env(tmp_path, store_url, namespace)
    tmux.start(WATCH, env)
    screen = await tmux.wait_for(
        lambda s: "SESSIONS  0 live" in s and s.splitlines()[-1].startswith("q quit  p pause"),
        "an empty board with the keys on the last row",
    )
    lines = screen.splitlines()
    assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("peers watch") and " live " in lines[0]

    errlog = open(tmp_path / "servers.log", "a")  # noqa: SIM115 - closed below
    try:
        async with session(env, "alice", main, errlog) as alice:
            await alice.wait_registered()
            screen = await tmux.shows("alice", "SESSIONS  1 live")
            async with session(env, "bob", feature, errlog) as bob:
                await bob.wait_registered()
                # Two worktrees of one repository change src/api.py: a conflict.
                screen = await tmux.shows("src/api.py (app): alice changing, bob changing")
                assert board_rows(screen) == ["alice", "bob"]
                assert "app:main" in screen and "app:feature" in screen

                await alice.call_ok("set_summary", summary="reworking the request validation")
                await tmux.shows("reworking the request")
                await alice.call_ok("send_message", to_id="bob", message="hold off src/api.py\nthx")
                screen = await tmux.shows("alice -> bob", "hold off src/api.py")
                line = next(x for x in screen.splitlines() if "alice -> bob" in x)
                assert "waiting" in line and "thx" not in line  # the first line only
                assert re.search(r"\bbob\b.*\b1\s+\S+\s*$", screen, re.MULTILINE)  # bob: 1 unread

                got = await bob.call_ok("check_messages")
                assert len(got["messages"]) == 1
                # No event says that mail was read: the slow refresh shows it (r: now).
                tmux.keys("r")
                await tmux.wait_for(
                    lambda s: any("alice -> bob" in x and "delivered" in x for x in s.splitlines()),
                    "the message delivered",
                )

                # A wider terminal: the board uses the width it has.
                tmux.tmux("resize-window", "-t", "t", "-x", "150", "-y", "30")
                screen = await tmux.shows("reworking the request validation")
                assert len(screen.splitlines()) == 30

                tmux.keys("2")  # bob's messages only
                await tmux.shows("MESSAGES  of bob (0: all)")
                tmux.keys("p")
                await tmux.shows("PAUSED")
                await alice.call_ok("send_message", to_id="bob", message="second note")
                await tmux.shows("1 change waiting")
                assert "second note" not in tmux.screen()
                tmux.keys("p")
                await tmux.shows("second note")
                tmux.keys("0")
                await tmux.shows("MESSAGES  newest first")
            # bob left: his row goes, and the conflict with it.
            screen = await tmux.wait_for(
                lambda s: "SESSIONS  1 live" in s and "CONFLICTS  none" in s, "bob gone"
            )
            assert board_rows(screen) == ["alice"]
    finally:
        errlog.close()

    tmux.keys("C-c")
    await leaves_terminal_clean(tmux, tmp_path)


async def test_sigterm_and_q_leave_the_terminal_clean(
    tmux: Tmux, tmp_path: Path, namespace: str
) -> None:
    env = base_env(tmp_path, f"sqlite:///{tmp_path}/store/peers.db", namespace)
    tmux.start(WATCH, env)
    await tmux.shows("live")
    pane = int(tmux.var("pane_pid"))
    watcher = _child_of(pane)
    os.kill(watcher, signal.SIGTERM)
    await leaves_terminal_clean(tmux, tmp_path)

    tmux.kill()
    again = Tmux(tmp_path)
    try:
        again.start(WATCH, env)
        await again.shows("live")
        again.keys("q")
        await leaves_terminal_clean(again, tmp_path)
    finally:
        again.kill()


async def test_a_closed_terminal_ends_the_board(tmux: Tmux, tmp_path: Path, namespace: str) -> None:
    env = base_env(tmp_path, f"sqlite:///{tmp_path}/store/peers.db", namespace)
    tmux.start(WATCH, env)
    await tmux.shows("live")
    watcher = _child_of(int(tmux.var("pane_pid")))
    tmux.kill()  # the terminal goes away: SIGHUP, then end of input
    deadline = time.monotonic() + 10
    while _alive(watcher) and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    assert not _alive(watcher), "peers watch kept running without its terminal"
    err = (tmp_path / "watch.err").read_text()
    assert "Traceback" not in err, err


async def test_the_board_shows_a_redis_restart_and_recovers(
    tmux: Tmux, tmp_path: Path, namespace: str
) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisProcess(
        free_port(), data, ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
    )
    server.start()
    try:
        env = base_env(tmp_path, server.url, namespace)
        env["PEERS_PEER_TTL"] = "600"  # the session below sends no heartbeats
        settings = load_settings(url=server.url, namespace=namespace, peer_ttl=600)
        async with create_transport(settings) as t:
            service = PeersService(t, settings)
            carol = await service.register(
                service.new_peer(cwd=str(tmp_path), pid=os.getpid(), pid_start=None, name="carol")
            )
        tmux.start(WATCH, env)
        await tmux.shows("live", "carol")

        server.stop()
        screen = await tmux.shows("BACKEND UNAVAILABLE", "retrying since")
        assert "carol" in screen  # the last picture stays, marked as such
        server.start()
        await tmux.wait_for(
            lambda s: "live" in s and "UNAVAILABLE" not in s and "carol" in s, "the board recover"
        )
        # Events flow again: a message sent now shows at once.
        async with create_transport(settings) as t:
            await PeersService(t, settings).send(Sender.cli("tester"), carol.id, "back again")
        await tmux.shows("cli:tester -> carol", "back again")
        tmux.keys("q")
        await leaves_terminal_clean(tmux, tmp_path)
    finally:
        server.stop()


def _child_of(pid: int) -> int:
    """The one process the pane's shell runs (the board)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        kids = [int(x) for x in found.split()]
        if kids:
            return kids[0]
        time.sleep(0.05)
    raise AssertionError(f"no child of pid {pid}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
