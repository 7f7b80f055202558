"""`peers kill`: it ends the agent process above a peer's MCP server, not just the server.

The fake server is a script named ``peers`` run as ``peers serve``, since kill refuses
to signal anything for a pid that is not a peers MCP server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Cli, subprocess_env

from peers.procinfo import find_agent_process, process_alive, process_info

pytestmark = pytest.mark.slow

# The fake agents and servers of the running test: the only processes it may signal.
_OWN: set[int] = set()


@pytest.fixture(autouse=True)
def _signals_only_to_own_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A signal to any other process (a wrong guess of the agent) fails the test unsent."""
    real_kill = os.kill

    def guarded_kill(pid: int, sig: int) -> None:
        if sig != 0 and pid not in _OWN:
            about = process_info(pid)
            if about is None or about.ppid != os.getpid():
                raise AssertionError(f"the test tried to send signal {sig} to pid {pid}")
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", guarded_kill)
    yield
    _OWN.clear()

# The "MCP server": registers itself as a peer with its own pid, then lives until
# its parent (the agent) is gone, like `peers serve` does.
SERVER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from peers.config import load_settings
    from peers.models import Peer
    from peers.procinfo import process_start_time
    from peers.transports import create_transport

    async def main():
        s = load_settings()
        async with create_transport(s) as t:
            await t.register(Peer(
                id="srv" + str(os.getpid()), namespace=s.namespace, name=sys.argv[2],
                host=s.host, pid=os.getpid(), pid_start=process_start_time(os.getpid()),
                cwd=os.getcwd(), client=os.environ["FAKE_CLIENT"],
            ))

    asyncio.run(main())
    print(os.getpid(), flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.05)
    """
)

# The "agent": a process whose name is no launcher (so it counts as the agent) that
# starts the server (`python .../peers serve NAME`) as its child and waits for it.
AGENT = textwrap.dedent(
    """
    import subprocess, sys
    server = subprocess.Popen(sys.argv[1:])
    server.wait()
    """
)


class FakeAgent:
    def __init__(self, cli: Cli, name: str, client: str = "test-harness") -> None:
        script = Path(cli.cwd).parent / "bin" / "peers"
        script.parent.mkdir(exist_ok=True)
        script.write_text(SERVER)
        # exec under another name: argv[0] is what the agent lookup reads.
        launcher = "import os, sys; os.execv(sys.executable, sys.argv[1:])"
        server = [sys.executable, str(script), "serve", name]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", launcher, "fake-agent", "-c", AGENT, *server],
            stdout=subprocess.PIPE,
            text=True,
            env={**subprocess_env(cli), "FAKE_CLIENT": client},
            cwd=cli.cwd,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), f"the fake server did not start: {line!r}"
        self.server_pid = int(line)
        _OWN.update((self.proc.pid, self.server_pid))
        agent = find_agent_process(self.server_pid)
        # Safety first: never let the test signal anything but its own fake agent.
        assert agent is not None and agent.pid == self.proc.pid, agent
        assert agent.exe_name == "fake-agent"

    def stop(self) -> None:
        for pid in (self.proc.pid, self.server_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


@pytest.fixture
def agent(cli: Cli) -> Iterator[FakeAgent]:
    fake = FakeAgent(cli, "victim")
    try:
        yield fake
    finally:
        fake.stop()


def test_kill_signals_the_agent_not_just_the_server(cli: Cli, agent: FakeAgent) -> None:
    result = cli("kill", "victim", "--yes", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["pid"] == agent.proc.pid
    assert doc["signal"] == "SIGTERM"
    assert doc["peer"]["name"] == "victim"
    assert "fake-agent" in doc["command"]
    assert agent.proc.wait(timeout=20) == -signal.SIGTERM
    # The server follows its agent out, as `peers serve` does.
    deadline = time.monotonic() + 20
    while process_alive(agent.server_pid, None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(agent.server_pid, None)


def test_kill_asks_first(cli: Cli, agent: FakeAgent) -> None:
    declined = cli("kill", "victim", input="n\n")
    assert declined.exit_code == 1
    assert "End victim" in declined.stderr
    # The question names the process it will signal: the agent, with its command line.
    assert f"agent process: pid {agent.proc.pid}: fake-agent -c" in declined.stderr
    assert f"MCP server, pid {agent.server_pid}" in declined.stderr
    assert "not confirmed" in declined.stderr
    time.sleep(0.2)
    assert agent.proc.poll() is None

    no_answer = cli("kill", "victim", input="")
    assert no_answer.exit_code == 1
    assert agent.proc.poll() is None

    accepted = cli("kill", "victim", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert f"(pid {agent.proc.pid}" in accepted.stdout
    assert agent.proc.wait(timeout=20) == -signal.SIGTERM


def test_kill_refusals_are_one_line(cli: Cli) -> None:
    remote = cli.register(name="remote", host="some-other-host")
    result = cli("kill", remote.id, "--yes")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "not this host" in result.stderr
    missing = cli("kill", "nobody", "--yes")
    assert missing.exit_code == 1
    assert "no peer 'nobody'" in missing.stderr


def test_kill_refuses_an_agent_that_is_not_the_registered_client(cli: Cli) -> None:
    fake = FakeAgent(cli, "impostor", client="claude-code")
    try:
        result = cli("kill", "impostor", "--yes")
        assert result.exit_code == 1
        assert result.stderr.count("\n") == 1
        assert "claude-code session" in result.stderr and "fake-agent" in result.stderr
        asked = cli("kill", "impostor", input="y\n")
        assert asked.exit_code == 1
        assert "End impostor" not in asked.stderr  # refused before asking
        time.sleep(0.2)
        assert fake.proc.poll() is None
    finally:
        fake.stop()
