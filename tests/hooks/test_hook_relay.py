"""``peers hook`` as a process: it finds its own session's socket, relays, and fails open.

The listener is the real :class:`peers.hookserver.HookListener` on real Unix
sockets; each test gives it a handler that stands for the session's answer.
The hooks are real ``peers hook`` processes, started by a stand-in agent
process (a shell) so that the agent key is a real ancestor.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from peers import runtime
from peers.hook import DEADLINE
from peers.hookserver import HANDLER_TIMEOUT, HookListener, HookReply, HookRequest

pytestmark = pytest.mark.anyio

PEERS = str(Path(sys.executable).parent / "peers")


# What a hook process may take beyond its own DEADLINE: Python's start and end, and the
# stand-in agent's polling, on a loaded machine.
MARGIN = 1.0


@pytest.fixture
def run_dir(runtime_dir: str) -> str:
    """The test's own PEERS_RUNTIME_DIR (tests/conftest.py)."""
    return runtime_dir


class Agent:
    """A stand-in agent process: a shell that runs hooks as its children when told to."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["sh", "-c", "while read -r line; do eval \"$line\"; done"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        identity = runtime.process_identity(self.proc.pid)
        assert identity is not None
        self.identity = identity

    @property
    def socket(self) -> str:
        return runtime.agent_socket(self.identity)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(5)


@pytest.fixture
def agents(run_dir: str) -> Iterator[list[Agent]]:
    made: list[Agent] = []
    yield made
    for agent in made:
        agent.close()


async def hook(
    agent: Agent | None,
    stdin: str | bytes,
    *args: str,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str, float]:
    """Run ``peers hook ARGS`` (as a child of ``agent``, or of the test); (exit, stdout, stderr, seconds)."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    full_env = {**os.environ, **(env or {})}
    if agent is None:
        started = time.monotonic()
        done = await anyio.run_process([PEERS, "hook", *args], input=data, check=False, env=full_env)
        return done.returncode, done.stdout.decode(), done.stderr.decode(), time.monotonic() - started
    # Through the agent shell: the hook's parent is the agent.
    work = tempfile.mkdtemp(prefix="ph-", dir="/tmp")
    try:
        Path(work, "in").write_bytes(data)
        # `env` execs the hook in its own place: the shell stays its parent.
        settings = [f"{k}={v}" for k, v in (env or {}).items()]
        quoted = " ".join(f"'{a}'" for a in ["env", *settings, PEERS, "hook", *args])
        command = (
            f"{quoted} < {work}/in > {work}/out 2> {work}/err; echo $? > {work}/rc.tmp; "
            f"mv {work}/rc.tmp {work}/rc\n"
        )
        assert agent.proc.stdin is not None
        started = time.monotonic()
        agent.proc.stdin.write(command)
        agent.proc.stdin.flush()
        rc = Path(work, "rc")
        with anyio.fail_after(10):
            while not rc.exists():
                await anyio.sleep(0.005)
        seconds = time.monotonic() - started
        return (
            int(rc.read_text()),
            Path(work, "out").read_text(),
            Path(work, "err").read_text(),
            seconds,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


class Recorder:
    """A handler that answers from a script and records what happened."""

    def __init__(self, stdout: str = "", *, exit: int = 0, delay: float = 0.0) -> None:
        self.stdout = stdout
        self.exit = exit
        self.delay = delay
        self.requests: list[HookRequest] = []
        self.outcomes: list[str] = []
        self.settled = anyio.Event()

    async def __call__(self, request: HookRequest) -> HookReply:
        self.requests.append(request)
        if self.delay:
            await anyio.sleep(self.delay)

        async def written() -> None:
            self.outcomes.append("written")
            self.settled.set()

        async def abandoned() -> None:
            self.outcomes.append("abandoned")
            self.settled.set()

        return HookReply(
            stdout=self.stdout, exit=self.exit, on_written=written, on_abandoned=abandoned
        )


async def test_the_hook_reaches_the_server_of_its_own_agent(
    agents: list[Agent], run_dir: str
) -> None:
    one, two = Agent(), Agent()
    agents += [one, two]
    first, second = Recorder("from one"), Recorder("from two")
    async with anyio.create_task_group() as tg:
        bound_one = await tg.start(HookListener([one.socket], first).serve)
        bound_two = await tg.start(HookListener([two.socket], second).serve)
        assert bound_one == [one.socket] and bound_two == [two.socket]
        assert oct(os.stat(one.socket).st_mode & 0o777) == "0o600"
        assert oct(os.stat(run_dir).st_mode & 0o777) == "0o700"

        code, out, err, _ = await hook(one, '{"cwd": "/x", "tool_response": "big"}', "PostToolUse", "--client", "codex")
        assert (code, out, err) == (0, "from one", "")
        code, out, _, _ = await hook(two, "{}", "AfterTool", "--client=gemini")
        assert (code, out) == (0, "from two")
        tg.cancel_scope.cancel()
    [request] = first.requests
    assert request.event == "PostToolUse" and request.client == "codex"
    # Large fields stay out of the request.
    assert request.input == {"cwd": "/x"}
    assert first.outcomes == ["written"] and second.outcomes == ["written"]
    # The sockets are gone with their server.
    assert not os.path.exists(one.socket) and not os.path.exists(two.socket)


async def test_a_claude_session_id_names_its_socket(agents: list[Agent], run_dir: str) -> None:
    handler = Recorder('{"hookSpecificOutput": {}}')
    path = runtime.session_socket("0b6f-session")
    async with anyio.create_task_group() as tg:
        await tg.start(HookListener([path], handler).serve)
        # Not a child of any agent with a socket: the session id alone finds it.
        code, out, _, _ = await hook(None, json.dumps({"session_id": "0b6f-session"}), "Stop")
        tg.cancel_scope.cancel()
    assert (code, out) == (0, '{"hookSpecificOutput": {}}')
    assert handler.requests[0].client is None


async def test_exit_code_2_and_stderr_are_relayed(agents: list[Agent], run_dir: str) -> None:
    agent = Agent()
    agents.append(agent)

    async def refuse(request: HookRequest) -> HookReply:
        return HookReply(stderr="src/api.py is claimed by alice", exit=2)

    async with anyio.create_task_group() as tg:
        await tg.start(HookListener([agent.socket], refuse).serve)
        code, out, err, _ = await hook(agent, "{}", "PreToolUse", "--client", "claude")
        tg.cancel_scope.cancel()
    assert (code, out, err) == (2, "", "src/api.py is claimed by alice")


async def test_no_server_means_nothing_printed_and_exit_0(agents: list[Agent], run_dir: str) -> None:
    agent = Agent()
    agents.append(agent)
    code, out, err, seconds = await hook(agent, '{"session_id": "nobody"}', "PostToolUse")
    assert (code, out, err) == (0, "", "")
    assert seconds < DEADLINE + MARGIN


@pytest.mark.parametrize(
    "stdin, args",
    [
        (b"not json at all", ("PostToolUse",)),
        (b"[1, 2, 3]", ("PostToolUse",)),
        (b"\xff\xfe garbage", ("Stop",)),
        (b'{"unterminated": ', ("Stop",)),
        (b"{}", ()),  # no event at all
        (b"{}", ("--client", "claude")),
    ],
)
async def test_garbage_means_nothing_printed_and_exit_0(
    agents: list[Agent], run_dir: str, stdin: bytes, args: tuple[str, ...]
) -> None:
    agent = Agent()
    agents.append(agent)
    handler = Recorder("must not be printed")
    async with anyio.create_task_group() as tg:
        await tg.start(HookListener([agent.socket], handler).serve)
        code, out, err, _ = await hook(agent, stdin, *args)
        tg.cancel_scope.cancel()
    assert (code, out, err) == (0, "", "")
    assert handler.requests == []


async def test_an_unknown_event_reaches_the_server_which_decides(
    agents: list[Agent], run_dir: str
) -> None:
    # The relay does not know the events; the server answers an unknown one with nothing.
    agent = Agent()
    agents.append(agent)

    async def nothing(request: HookRequest) -> HookReply:
        return HookReply()

    async with anyio.create_task_group() as tg:
        await tg.start(HookListener([agent.socket], nothing).serve)
        code, out, err, _ = await hook(agent, "{}", "PreCompress", "--client", "gemini")
        tg.cancel_scope.cancel()
    assert (code, out, err) == (0, "", "")


async def test_a_hung_server_costs_the_deadline_and_shows_nothing(
    agents: list[Agent], run_dir: str
) -> None:
    agent = Agent()
    agents.append(agent)
    slow = Recorder("too late", delay=5.0)
    async with anyio.create_task_group() as tg:
        await tg.start(HookListener([agent.socket], slow).serve)
        code, out, err, seconds = await hook(agent, "{}", "PostToolUse")
        tg.cancel_scope.cancel()
    assert (code, out, err) == (0, "", "")
    # The server cut its handler off (it sleeps 5 s) and answered nothing, in time.
    assert HANDLER_TIMEOUT <= seconds < DEADLINE + MARGIN
    # The handler was cut off before it answered: nothing was handed out to confirm.
    assert len(slow.requests) == 1 and slow.outcomes == []


async def test_a_server_that_never_answers_costs_the_relay_its_deadline(
    agents: list[Agent], run_dir: str
) -> None:
    # A listening socket nobody accepts on: the connection and the request go into
    # the kernel's queues, and no answer ever comes.
    agent = Agent()
    agents.append(agent)
    runtime.ensure_runtime_dir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(agent.socket)
        mute.listen(4)
        code, out, err, seconds = await hook(agent, "{}", "PostToolUse")
    assert (code, out, err) == (0, "", "")
    assert DEADLINE <= seconds < DEADLINE + MARGIN


async def test_a_socket_nobody_listens_on_is_passed_over(agents: list[Agent], run_dir: str) -> None:
    agent = Agent()
    agents.append(agent)
    runtime.ensure_runtime_dir()
    # A stale socket file left by a server that died.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(agent.socket)
    stale.close()
    code, out, err, seconds = await hook(agent, "{}", "PostToolUse")
    assert (code, out, err) == (0, "", "")
    assert seconds < DEADLINE + MARGIN
    # A new server takes the stale path over.
    handler = Recorder("back")
    async with anyio.create_task_group() as tg:
        assert await tg.start(HookListener([agent.socket], handler).serve) == [agent.socket]
        code, out, _, _ = await hook(agent, "{}", "PostToolUse")
        tg.cancel_scope.cancel()
    assert (code, out) == (0, "back")


async def test_a_live_socket_is_not_taken_over(agents: list[Agent], run_dir: str) -> None:
    agent = Agent()
    agents.append(agent)
    first, second = Recorder("first"), Recorder("second")
    async with anyio.create_task_group() as tg:
        await tg.start(HookListener([agent.socket], first).serve)
        assert await tg.start(HookListener([agent.socket], second).serve) == []
        _, out, _, _ = await hook(agent, "{}", "PostToolUse")
        tg.cancel_scope.cancel()
    assert out == "first"


async def test_output_not_confirmed_is_abandoned(run_dir: str) -> None:
    # A hook that reads the answer and dies before saying it was written.
    path = runtime.agent_socket("1-1")
    handler = Recorder("shown?")
    async with anyio.create_task_group() as tg:
        await tg.start(HookListener([path], handler).serve)
        stream = await anyio.connect_unix(path)
        await stream.send(json.dumps({"v": 1, "event": "Stop", "client": None, "input": {}}).encode() + b"\n")
        reply = json.loads((await stream.receive()).decode())
        assert reply["stdout"] == "shown?" and reply["token"]
        await stream.aclose()
        with anyio.fail_after(5):
            await handler.settled.wait()
        tg.cancel_scope.cancel()
    assert handler.outcomes == ["abandoned"]


def test_the_hook_path_imports_nothing_heavy(tmp_path: Path) -> None:
    # Everything `peers hook` loads, measured after a real run through the console entry.
    code = (
        "import sys, io\n"
        "sys.argv = ['peers', 'hook', 'PostToolUse', '--client', 'claude']\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(b'{\"session_id\": \"x\"}'))\n"
        "from peers.entry import main\n"
        "rc = main()\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PEERS_RUNTIME_DIR": str(tmp_path / "run")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    loaded = set(done.stdout.split())
    heavy = {
        # What the issue names, and what the standard library's convenient modules would
        # add (json, socket, re, typing, pathlib: about 10-15 ms together here).
        "mcp", "mcp_types", "typer", "rich", "pydantic", "pydantic_settings", "structlog",
        "redis", "anyio", "sqlite3", "asyncio", "json", "socket", "re", "typing", "pathlib",
        "hashlib", "subprocess", "peers.config", "peers.models", "peers.service",
    }  # fmt: skip
    assert loaded & heavy == set()


# -- whose sockets ----------------------------------------------------------------

NOBODY = 65534
root_only = pytest.mark.skipif(os.getuid() != 0, reason="needs root, to act as another user")


def _untrusted(run_dir: str, how: str) -> None:
    """Make the runtime directory one the hook must not trust (its sockets stay in it)."""
    if how == "open to others":
        os.chmod(run_dir, 0o755)
    elif how == "a symlink":
        real = run_dir + ".real"
        os.rename(run_dir, real)
        os.symlink(real, run_dir)
    else:  # another user's
        os.chown(run_dir, NOBODY, -1)


@pytest.mark.parametrize(
    "how",
    ["open to others", "a symlink", pytest.param("another user's", marks=root_only)],
)
async def test_a_runtime_dir_not_ours_alone_is_never_connected_to(
    agents: list[Agent], run_dir: str, how: str
) -> None:
    # Someone who made /tmp/peers-<uid> (or its run/) first would read the hook's input
    # (tool arguments) and could answer the model in our name.
    agent = Agent()
    agents.append(agent)
    runtime.ensure_runtime_dir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as spy:
        spy.bind(agent.socket)
        spy.listen(4)
        _untrusted(run_dir, how)
        code, out, err, _ = await hook(
            agent, '{"tool_input": {"command": "secret"}}', "PreToolUse",
            env={"PEERS_LOG_LEVEL": "debug"},
        )  # fmt: skip
        spy.setblocking(False)
        with pytest.raises(BlockingIOError):
            spy.accept()  # nobody ever connected
    assert (code, out) == (0, "")
    assert "not connecting" in err  # said only with the debug switch on


@root_only
async def test_a_server_of_another_user_is_never_talked_to(
    agents: list[Agent], run_dir: str
) -> None:
    # A listener that is not ours, in a directory that is (root can put one there):
    # the kernel's word on who listens (SO_PEERCRED) decides.
    agent = Agent()
    agents.append(agent)
    runtime.ensure_runtime_dir()
    script = (
        "import os, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)\n"
        f"os.setuid({NOBODY})\n"
        "s.listen(4); print('ready', flush=True)\n"
        "c, _ = s.accept(); c.recv(65536)\n"
        "c.sendall(b'{\"stdout\": \"from another user\", \"exit\": 0}\\n')\n"
        "c.recv(1)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, agent.socket], stdout=subprocess.PIPE, text=True
    ) as other:
        try:
            assert other.stdout is not None and other.stdout.readline() == "ready\n"
            code, out, err, _ = await hook(agent, "{}", "PostToolUse", env={"PEERS_LOG_LEVEL": "debug"})
        finally:
            other.kill()
    assert (code, out) == (0, "")
    assert f"another user (uid {NOBODY})" in err


@pytest.mark.parametrize(
    "how",
    ["a symlink", pytest.param("another user's", marks=root_only)],
)
async def test_the_server_binds_nothing_in_a_runtime_dir_not_ours(
    run_dir: str, how: str
) -> None:
    runtime.ensure_runtime_dir()
    _untrusted(run_dir, how)
    mode = os.lstat(run_dir).st_mode
    path = runtime.agent_socket("1-1")
    with pytest.raises(PermissionError):
        runtime.ensure_runtime_dir()
    async with anyio.create_task_group() as tg:
        assert await tg.start(HookListener([path], Recorder()).serve) == []
        tg.cancel_scope.cancel()
    assert not os.path.lexists(path)
    assert os.lstat(run_dir).st_mode == mode  # not chmod'ed either


def test_our_own_runtime_dir_opened_by_hand_is_narrowed_again(run_dir: str) -> None:
    runtime.ensure_runtime_dir()
    os.chmod(run_dir, 0o755)
    runtime.ensure_runtime_dir()
    assert os.lstat(run_dir).st_mode & 0o777 == 0o700


def test_the_parent_of_a_chosen_runtime_dir_is_left_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PEERS_RUNTIME_DIR=~/.peers-run: the home directory is not peers' to chmod.
    os.chmod(tmp_path, 0o755)
    monkeypatch.setenv("PEERS_RUNTIME_DIR", str(tmp_path / "run"))
    runtime.ensure_runtime_dir()
    assert os.lstat(tmp_path).st_mode & 0o777 == 0o755
    assert os.lstat(tmp_path / "run").st_mode & 0o777 == 0o700


def test_the_default_layout_checks_the_directory_peers_makes_in_tmp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PEERS_RUNTIME_DIR")
    run = runtime.runtime_dir()
    assert runtime.private_dirs() == [os.path.dirname(run), run]
    assert os.path.dirname(run) == f"/tmp/peers-{os.getuid()}"


# -- big inputs ---------------------------------------------------------------------


async def test_a_big_write_is_not_shipped_whole(agents: list[Agent], run_dir: str) -> None:
    # A Write of a 5 MB file: the server needs its path, not its content.
    agent = Agent()
    agents.append(agent)
    handler = Recorder()
    data = {
        "tool_name": "Write",
        "cwd": "/w",
        "tool_input": {"file_path": "/w/big.txt", "content": "y" * 5_000_000},
        "tool_response": {"success": True},
        "prompt": "p" * 100_000,
    }
    async with anyio.create_task_group() as tg:
        await tg.start(HookListener([agent.socket], handler).serve)
        code, _, _, _ = await hook(agent, json.dumps(data), "PreToolUse", "--client", "claude")
        tg.cancel_scope.cancel()
    assert code == 0
    [request] = handler.requests
    assert request.input == {
        "tool_name": "Write", "cwd": "/w", "tool_input": {"file_path": "/w/big.txt", "content": ""},
    }  # fmt: skip


async def test_a_big_request_in_small_pieces_is_read_whole(run_dir: str) -> None:
    # The server's line reader, on a request of megabytes arriving a little at a time,
    # with the "done" right behind it in the same stream.
    path = runtime.agent_socket("1-1")
    handler = Recorder("ok")
    body = "z" * 3_000_000
    line = json.dumps({"v": 1, "event": "Stop", "client": None, "input": {"body": body}}).encode()
    async with anyio.create_task_group() as tg:
        await tg.start(HookListener([path], handler).serve)
        stream = await anyio.connect_unix(path)
        for start in range(0, len(line), 4000):
            await stream.send(line[start : start + 4000])
        await stream.send(b"\n")
        reply = json.loads((await stream.receive()).decode())
        await stream.send(json.dumps({"done": reply["token"]}).encode() + b"\n")
        with anyio.fail_after(5):
            await handler.settled.wait()
        await stream.aclose()
        tg.cancel_scope.cancel()
    assert handler.requests[0].input == {"body": body}
    assert handler.outcomes == ["written"]


async def test_session_start_waits_a_moment_for_a_server_still_starting(
    agents: list[Agent], run_dir: str
) -> None:
    agent = Agent()
    agents.append(agent)
    handler = Recorder("the brief")
    done: list[tuple[int, str, str, float]] = []

    async def run_hook() -> None:
        done.append(await hook(agent, "{}", "SessionStart", "--client", "claude"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_hook)
        # The server binds its socket once the hook runs: past its first look (the hook
        # reaches it some 20 ms after it starts; nothing outside it shows that look).
        with anyio.fail_after(10):
            while not _hook_running(agent):
                await anyio.sleep(0.005)
        await anyio.sleep(0.15)
        await tg.start(HookListener([agent.socket], handler).serve)
        with anyio.fail_after(10):
            while not done:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    code, out, _, _ = done[0]
    assert (code, out) == (0, "the brief")


def _hook_running(agent: Agent) -> bool:
    import psutil

    try:
        children = psutil.Process(agent.proc.pid).children(recursive=True)
        return any("hook" in child.cmdline() for child in children)
    except psutil.Error:
        return False
