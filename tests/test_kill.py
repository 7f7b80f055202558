"""kill_peer's safety rules, on real process trees.

Each tree is built from processes of this test: Python interpreters started under
the names of the programs they stand for (a symlink named ``tmux`` runs Python,
and /proc shows ``tmux``), real ``sh``, ``env`` and ``timeout`` as launchers, and
at the bottom a script named ``peers`` run as ``peers serve``.

Safety: a wrong guess must never reach past the test's own processes (an early
version of the old rule, run against these trees, signalled the sandbox's
supervisor). So every tree starts with a sentinel that no rule takes for a
launcher, and ``os.kill`` is guarded: a signal to any pid outside the trees
fails the test instead of being sent. The regression tests are the cases where
the old rule guessed wrong (tmux, an interactive shell, a stale peer, a pid that
is no peers server).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peers import procinfo
from peers.config import load_settings
from peers.errors import NotPermitted, PeerNotFound
from peers.models import Peer
from peers.procinfo import ProcessInfo, launch_chain, process_alive, process_start_time
from peers.service import PeersService, signal_process
from peers.transports.base import Transport

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the trees are read through /proc"
)

HOST = socket.gethostname()
PYTHON = os.path.realpath(sys.executable)

# Every Python layer runs this: start the next process of the chain, wait for it.
LAYER = """
import json, os, subprocess
spec, *rest = json.loads(os.environ["KILL_TEST_CHAIN"])
os.environ["KILL_TEST_CHAIN"] = json.dumps(rest)
if "python" in spec:
    child = subprocess.Popen(spec["argv"], executable=spec["python"], stdin=subprocess.PIPE)
    with open(os.environ["KILL_TEST_LAYER"], "rb") as fh:
        child.stdin.write(fh.read())
    child.stdin.close()
else:
    child = subprocess.Popen(spec["argv"], stdin=subprocess.DEVNULL)
status = child.wait()
# How the child ended (-15: SIGTERM), for the test to read.
path = os.path.join(os.environ["KILL_TEST_DIR"], f"exit-{child.pid}")
with open(path + ".tmp", "w") as fh:
    fh.write(str(status))
os.replace(path + ".tmp", path)
"""

# The bottom of the tree: tells the test its pid, then lives until its parent is gone.
SERVER = """
import os, time
path = os.path.join(os.environ["KILL_TEST_DIR"], "server.pid")
with open(path + ".tmp", "w") as fh:
    fh.write(str(os.getpid()))
os.replace(path + ".tmp", path)
parent = os.getppid()
while os.getppid() == parent:
    time.sleep(0.05)
"""


class Tree:
    """A chain of real processes, top first, ending in a fake MCP server."""

    def __init__(self, root: Path, layers: list[dict[str, Any]]) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        for script in ("peers", "not-peers"):
            path = self.bin / script
            path.write_text(f"#!{PYTHON}\n{SERVER}")
            path.chmod(0o755)
        layer = root / "layer.py"
        layer.write_text(LAYER)
        env = {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "KILL_TEST_DIR": str(root),
            "KILL_TEST_LAYER": str(layer),
            "KILL_TEST_CHAIN": json.dumps(layers[1:]),
        }
        top = layers[0]
        self.top = subprocess.Popen(
            top["argv"], executable=top["python"], stdin=subprocess.PIPE, env=env
        )
        assert self.top.stdin is not None
        self.top.stdin.write(LAYER.encode())
        self.top.stdin.close()
        pid_file = root / "server.pid"
        deadline = time.monotonic() + 30
        while not pid_file.exists():
            assert self.top.poll() is None, "the tree did not start"
            assert time.monotonic() < deadline, "the fake server did not start"
            time.sleep(0.02)
        self.server_pid = int(pid_file.read_text())
        # Every process between the server and the top (theirs to clean up, nothing else).
        self.members: list[tuple[int, float | None]] = []
        for info in procinfo.ancestors(self.server_pid):
            self.members.append((info.pid, info.start))
            if info.pid == self.top.pid:
                break
        else:
            self.members = [(self.server_pid, process_start_time(self.server_pid))]
        self.top_start = process_start_time(self.top.pid)

    @property
    def pids(self) -> set[int]:
        return {pid for pid, _ in self.members} | {self.top.pid}

    def pid_of(self, program: str) -> int:
        for info in procinfo.ancestors(self.server_pid):
            if info.program == program:
                return info.pid
        raise AssertionError(f"no {program} in the tree")

    def alive(self) -> bool:
        return all(process_alive(pid, start) for pid, start in self.members)

    def exit_status(self, pid: int) -> int:
        """How a process of the tree ended, as its parent saw it (-15: SIGTERM)."""
        path = self.root / f"exit-{pid}"
        deadline = time.monotonic() + 20
        while not path.exists():
            assert time.monotonic() < deadline, f"pid {pid} did not end"
            time.sleep(0.02)
        return int(path.read_text())

    def stop(self) -> None:
        for pid, start in self.members:
            if process_alive(pid, start):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.top.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.top.pid, signal.SIGKILL)
        self.top.wait(timeout=10)


def py(name: str, *args: str, title: str | None = None) -> dict[str, Any]:
    """A Python layer shown as ``name`` (argv[0] ``title`` when given, as sshd rewrites it)."""
    return {"python": name, "argv": [title or name, *args]}


def cmd(*argv: str) -> dict[str, Any]:
    """A real program (found on PATH, where the fake ``peers`` comes first)."""
    return {"argv": list(argv)}


SENTINEL = "kill-test-sentinel"


@pytest.fixture(autouse=True)
def own_pids(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Pids this test may signal (besides its direct children); any other signal fails it."""
    allowed: set[int] = set()
    real_kill = os.kill

    def check(pid: int, sig: int) -> None:
        if sig != 0 and pid not in allowed:
            about = procinfo.process_info(pid)
            if about is None or about.ppid != os.getpid():
                raise AssertionError(f"the test tried to send signal {sig} to pid {pid}")

    def guarded_kill(pid: int, sig: int) -> None:
        check(pid, sig)
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", guarded_kill)
    real_pidfd_send = getattr(signal, "pidfd_send_signal", None)
    if real_pidfd_send is not None:
        # kill_peer signals through a pidfd where it can: guard that way in too.
        def guarded_pidfd_send(fd: int, sig: int, *args: Any) -> None:
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
            pid = next(int(line.split()[1]) for line in info.splitlines() if line.startswith("Pid:"))
            check(pid, sig)
            real_pidfd_send(fd, sig, *args)

        monkeypatch.setattr(signal, "pidfd_send_signal", guarded_pidfd_send)
    return allowed


@pytest.fixture
def tree(tmp_path: Path, own_pids: set[int]) -> Iterator[Callable[..., Tree]]:
    made: list[Tree] = []

    def build(*layers: dict[str, Any]) -> Tree:
        root = tmp_path / f"tree{len(made)}"
        root.mkdir()
        bin_dir = root / "bin"
        bin_dir.mkdir()
        resolved = []
        for layer in (py(SENTINEL), *layers):
            if "python" in layer:
                link = bin_dir / layer["python"]
                if not link.exists():
                    link.symlink_to(PYTHON)
                argv = list(layer["argv"])
                if argv[0] == layer["python"]:
                    argv[0] = str(link)
                layer = {"python": str(link), "argv": argv}
            resolved.append(layer)
        made.append(Tree(root, resolved))
        own_pids.update(made[-1].pids)
        return made[-1]

    yield build
    for t in made:
        t.stop()


@pytest.fixture
def service(sqlite_transport: Transport) -> PeersService:
    return PeersService(sqlite_transport, _settings(sqlite_transport))


def _settings(transport: Transport, **overrides: Any) -> Any:
    return load_settings(
        url="sqlite:///unused.db", namespace=transport.namespace, host=HOST, **overrides
    )


async def register(
    service: PeersService, t: Tree, name: str = "victim", client: str = "other", **fields: Any
) -> Peer:
    peer = service.new_peer(
        name=name,
        cwd="/work/app",
        pid=t.server_pid,
        pid_start=fields.pop("pid_start", process_start_time(t.server_pid)),
        client=client,
        **fields,
    )
    return await service.register(peer)


def still_running(t: Tree) -> bool:
    time.sleep(0.2)
    return t.alive()


# -- what kill_peer signals ------------------------------------------------------------------

SERVE_THROUGH_LAUNCHERS = cmd("env", "PEERS_NAME=x", "sh", "-c", "timeout 600 peers serve; true")


@pytest.mark.anyio
async def test_kill_signals_the_agent_past_launchers_that_lead_to_peers(
    service: PeersService, tree: Callable[..., Tree]
) -> None:
    t = tree(py("fake-agent"), SERVE_THROUGH_LAUNCHERS)
    agent = t.pid_of("fake-agent")
    found = launch_chain(t.server_pid)
    assert found is not None and found.candidate is not None
    assert [p.program for p in found.launchers] == ["timeout", "sh"]
    assert found.candidate.pid == agent
    peer = await register(service, t)

    result = await service.kill_peer(peer.name)
    assert result.pid == agent
    assert result.command == str(t.bin / "fake-agent")
    assert t.exit_status(agent) == -signal.SIGTERM


@pytest.mark.anyio
async def test_dry_run_names_the_agent_and_signals_nothing(
    service: PeersService, tree: Callable[..., Tree]
) -> None:
    t = tree(py("fake-agent"), cmd("peers", "serve"))
    peer = await register(service, t)
    plan = await service.kill_peer(peer.id, dry_run=True)
    assert plan.pid == t.pid_of("fake-agent") and plan.signal == "SIGTERM"
    assert still_running(t)
    with pytest.raises(NotPermitted, match="confirmed"):
        await service.kill_peer(peer.id, expect_pid=plan.pid + 1)
    assert still_running(t)
    await service.kill_peer(peer.id, expect_pid=plan.pid)
    assert t.exit_status(plan.pid) == -signal.SIGTERM


# -- regressions: what the old rule would have signalled ----------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("layer", "program", "role"),
    [
        pytest.param(py("tmux"), "tmux", "a terminal multiplexer", id="tmux"),
        pytest.param(py("screen"), "screen", "a terminal multiplexer", id="screen"),
        pytest.param(
            py("systemd", "-", "--user"), "systemd", "an init system", id="systemd-user"
        ),
        pytest.param(
            py("sshd", title="sshd: me@pts/3"), "sshd", "an SSH server", id="sshd"
        ),
        pytest.param(
            py("gnome-terminal-server"), "gnome-terminal-server", "a terminal emulator",
            id="terminal",
        ),
        pytest.param(py("sudo"), "sudo", "a login or user-switching program", id="sudo"),
    ],
)
async def test_kill_refuses_what_is_clearly_no_agent(
    service: PeersService,
    tree: Callable[..., Tree],
    layer: dict[str, Any],
    program: str,
    role: str,
) -> None:
    # `tmux new "peers serve"` and the like: a shell -c in between, then the host program.
    t = tree(layer, cmd("sh", "-c", "peers serve; true"))
    peer = await register(service, t)
    with pytest.raises(NotPermitted, match=role) as refused:
        await service.kill_peer(peer.id)
    assert f"pid {t.pid_of(program)}" in str(refused.value)
    assert "nothing was signalled" in str(refused.value)
    assert still_running(t)


@pytest.mark.anyio
async def test_kill_refuses_an_interactive_shell_instead_of_walking_past_it(
    service: PeersService, tree: Callable[..., Tree]
) -> None:
    # `peers serve` typed at a prompt: the old rule skipped every shell and signalled
    # whatever ran the shell (here a stand-in; for real, a terminal or tmux).
    t = tree(py("fake-agent"), py("bash"), cmd("peers", "serve"))
    peer = await register(service, t)
    with pytest.raises(NotPermitted, match="an interactive shell") as refused:
        await service.kill_peer(peer.id)
    assert f"pid {t.pid_of('bash')}" in str(refused.value)
    assert still_running(t)


@pytest.mark.anyio
async def test_kill_refuses_a_pid_that_is_not_a_peers_server(
    service: PeersService, tree: Callable[..., Tree]
) -> None:
    t = tree(py("fake-agent"), cmd("not-peers", "serve"))
    peer = await register(service, t)
    with pytest.raises(NotPermitted, match="not a peers MCP server"):
        await service.kill_peer(peer.id)
    assert still_running(t)


@pytest.mark.anyio
async def test_kill_refuses_a_peer_past_its_ttl(
    sqlite_transport: Transport, tree: Callable[..., Tree]
) -> None:
    # The store still lists it online (its own TTL is long); this service's TTL is not.
    t = tree(py("fake-agent"), cmd("peers", "serve"))
    peer = await register(PeersService(sqlite_transport, _settings(sqlite_transport)), t)
    strict = PeersService(sqlite_transport, _settings(sqlite_transport, peer_ttl=0.1))
    time.sleep(0.3)
    assert (await sqlite_transport.get_peer(peer.id)).online  # type: ignore[union-attr]
    with pytest.raises(PeerNotFound, match="not running"):
        await strict.kill_peer(peer.id)
    assert still_running(t)


@pytest.mark.anyio
async def test_kill_refuses_a_reused_pid(service: PeersService, tree: Callable[..., Tree]) -> None:
    t = tree(py("fake-agent"), cmd("peers", "serve"))
    start = process_start_time(t.server_pid)
    assert start is not None
    peer = await register(service, t, pid_start=start - 1)
    with pytest.raises(PeerNotFound, match="not running"):
        await service.kill_peer(peer.id)
    assert still_running(t)


# -- the registered client must match ---------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("client", "agent", "allowed"),
    [
        pytest.param("codex", "codex", True, id="codex"),
        pytest.param("gemini", "gemini", True, id="gemini"),
        pytest.param("claude-code", "claude", True, id="claude"),
        pytest.param("claude-code", "fake-agent", False, id="claude-mismatch"),
        pytest.param("codex", "claude", False, id="codex-mismatch"),
        pytest.param("some-new-client", "fake-agent", True, id="other-client"),
        pytest.param("unknown", "fake-agent", True, id="unknown-client"),
    ],
)
async def test_kill_requires_the_agent_to_match_the_registered_client(
    service: PeersService, tree: Callable[..., Tree], client: str, agent: str, allowed: bool
) -> None:
    t = tree(py(agent), cmd("peers", "serve"))
    agent_pid = t.pid_of(agent)
    peer = await register(service, t, client=client)
    if allowed:
        result = await service.kill_peer(peer.id)
        assert result.pid == agent_pid
        assert t.exit_status(agent_pid) == -signal.SIGTERM
    else:
        with pytest.raises(NotPermitted, match=f"registered as a {client} session"):
            await service.kill_peer(peer.id)
        assert still_running(t)


@pytest.mark.anyio
async def test_kill_refuses_the_session_running_the_command(
    service: PeersService, tmp_path: Path
) -> None:
    # A server started by this very process: its "agent" is the test runner itself.
    script = tmp_path / "peers"
    script.write_text(f"#!{PYTHON}\n{SERVER}")
    script.chmod(0o755)
    proc = subprocess.Popen([str(script), "serve"], env={**os.environ, "KILL_TEST_DIR": str(tmp_path)})
    try:
        pid_file = tmp_path / "server.pid"
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        peer = await service.register(
            service.new_peer(
                name="mine", cwd="/", pid=proc.pid, pid_start=process_start_time(proc.pid)
            )
        )
        with pytest.raises(NotPermitted, match="also running this command"):
            await service.kill_peer(peer.id, dry_run=True)
    finally:
        proc.kill()
        proc.wait(timeout=10)


# -- procinfo: what a command line says ---------------------------------------------------------


def info(*argv: str, comm: str = "") -> ProcessInfo:
    return ProcessInfo(pid=100, ppid=1, uid=0, start=1.0, argv=argv, comm=comm)


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (("sshd: me@pts/0",), "sshd"),
        (("tmux: server",), "tmux"),
        (("-bash",), "bash"),
        (("/usr/lib/systemd/systemd", "--user"), "systemd"),
        (("node", "/usr/local/bin/gemini"), "gemini"),
        (("/usr/bin/python3.12", "-X", "dev", "-m", "peers", "serve"), "peers"),
        (("python3", "/home/me/.local/bin/pipx", "run", "peers", "serve"), "pipx"),
        (("python3", "-c", "print()"), "python3"),
        (("claude --dangerously-load-development-channels server:peers",), "claude"),
    ],
)
def test_program_names(argv: tuple[str, ...], program: str) -> None:
    assert info(*argv).program == program


@pytest.mark.parametrize(
    ("argv", "server", "mentions"),
    [
        (("/home/me/.local/bin/peers", "serve"), True, True),
        (("/venv/bin/python", "/venv/bin/peers", "serve"), True, True),
        (("python", "-m", "peers", "serve"), True, True),
        (("uv", "run", "peers", "serve"), True, True),
        (("sh", "-c", "exec peers serve"), True, True),
        (("env", "PEERS_NAME=x", "peers", "serve"), True, True),
        (("/venv/bin/peers", "list"), False, True),
        (("claude", "--dangerously-load-development-channels", "server:peers"), False, False),
        (("python", "-c", "serve()"), False, False),
        (("vim", "notes-about-peers.md"), False, False),
    ],
)
def test_peers_servers_and_launchers_are_told_by_their_command_line(
    argv: tuple[str, ...], server: bool, mentions: bool
) -> None:
    assert info(*argv).is_peers_server is server
    assert info(*argv).mentions_peers is mentions


@pytest.mark.parametrize(
    ("process", "role"),
    [
        (info("bash"), "an interactive shell"),
        (info("-zsh"), "an interactive shell"),
        (info("bash", "-l"), "an interactive shell"),
        (info("bash", "/home/me/run.sh"), "a shell script"),
        (info("sh", "-c", "something else"), "a shell running a command"),
        (info("/usr/bin/env", "FOO=1", "thing"), "a launcher"),
        (info("/usr/sbin/sshd", "-D"), "an SSH server"),
        (info("sshd-session: me [priv]"), "an SSH server"),
        (info("/usr/bin/kitty"), "a terminal emulator"),
        (info("/Applications/iTerm.app/Contents/MacOS/iTerm2"), "a terminal emulator"),
        (info("weird-title", comm="tmux: server"), None),
        (info("whatever", comm="tmux"), "a terminal multiplexer"),
        (info("claude", "--dangerously-load-development-channels", "server:peers"), None),
        (info("node", "/usr/local/bin/codex"), None),
        (info("/usr/bin/python3", "-m", "aider"), None),
    ],
)
def test_process_roles(process: ProcessInfo, role: str | None) -> None:
    assert process.role == role


def test_launchers_are_passed_only_when_they_lead_to_peers() -> None:
    assert info("uv", "run", "peers", "serve").is_launcher
    assert info("sh", "-c", "peers serve; true").is_launcher
    assert not info("bash").is_launcher
    assert not info("claude").is_launcher


def test_command_line_is_one_printable_line() -> None:
    assert info("python", "-c", "a\n\tb\x1b[31m").command_line == "python -c a b [31m"


# -- signalling: the pid-reuse window ---------------------------------------------------


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "kill"])
def test_a_signal_reaches_the_checked_process_or_none(use_pidfd: bool) -> None:
    """The pid-reuse window: the process signalled is the one whose start time was checked."""
    if use_pidfd and not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfds on this platform")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = process_start_time(child.pid)
        assert start is not None
        # The pid now belongs to a process that started at another time (a reused pid).
        with pytest.raises(PeerNotFound, match="belongs to another process"):
            signal_process(child.pid, start + 1, signal.SIGTERM, use_pidfd=use_pidfd)
        assert child.poll() is None  # nothing was signalled
        signal_process(child.pid, start, signal.SIGTERM, use_pidfd=use_pidfd)
        assert child.wait(timeout=10) == -signal.SIGTERM
        with pytest.raises(PeerNotFound):  # gone (and reaped): nothing to signal
            signal_process(child.pid, start, signal.SIGTERM, use_pidfd=use_pidfd)
        with pytest.raises(NotPermitted):  # no start time known: no way to check
            signal_process(child.pid, None, signal.SIGTERM, use_pidfd=use_pidfd)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
