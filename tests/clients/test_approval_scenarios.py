"""Issue 9 §3-4 with the real CLIs: the clients' gates and the server's start and end.

Peers tools run without approval prompts in Codex and Gemini CLI; Gemini's own extra
argument is accepted; Codex sees the tools on its first request without waiting; a
``peers`` command in Codex's shell sandbox finishes; ``peers serve`` ends within
Claude Code's SIGINT grace. The timed ones (first request, 2 s, 100 ms) are load
sensitive on a busy machine.

Written against the behaviour the issue asks for; they fail on the code they were
written on (the report lists which, and why).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from client_config import peers_command
from client_drivers import ClaudeDriver, Driver, Store
from clients_common import result_of
from fake_model import Call, FakeModel, ModelRequest, Say
from peer_session import PeerSession

pytestmark = pytest.mark.scenarios

INSTRUCTIONS_START = "peers connects you with the other AI coding-agent sessions"


def _three_calls(alice_id: str, extra: dict[str, Any] | None = None) -> list[Call | Say]:
    extra = extra or {}
    return [
        Call("list_peers", {**extra}),
        Call("send_message", {"to_id": alice_id, "message": "approval probe", **extra}),
        Call("check_messages", {**extra}),
        Say("done"),
    ]


def _check_three_ran(fake: FakeModel, alice: PeerSession, json_results: bool) -> None:
    requests = fake.agent_requests()
    assert len(requests) == 4, fake.describe()
    listed = result_of(requests[1], "list_peers")
    sent = result_of(requests[2], "send_message")
    checked = result_of(requests[3], "check_messages")
    for result in (listed, sent, checked):
        assert not result.is_error, f"{result.name} did not run: {result.text}"
    if json_results:
        for result in (listed, sent, checked):
            try:
                result.json()
            except ValueError:
                raise AssertionError(f"{result.name} did not run: {result.text}") from None
        assert alice.id in {p["id"] for p in listed.json()["peers"]}, listed.text
        assert sent.json().get("message_id"), sent.text
        assert "messages" in checked.json(), checked.text
    else:
        assert alice.id in listed.payload, listed.text
        assert "approval probe" not in checked.payload  # sent, not received
    mail = alice.call_ok("check_messages")["messages"]
    assert [m["body"] for m in mail] == ["approval probe"], mail


# -- Codex ------------------------------------------------------------------------------------


def test_codex_runs_peers_tools_in_workspace_write_with_approval_never(
    make_driver: Callable[..., Driver], fake_model: FakeModel, store: Store, tmp_path: Path
) -> None:
    """Codex's default sandbox asks before every MCP call unless the tools say they are safe."""
    codex = make_driver("codex", sandbox="workspace-write", approval="never")
    with PeerSession(
        store.env, name="alice", cwd=codex.cwd, errlog=tmp_path / "alice.log"
    ) as alice:
        fake_model.play(*_three_calls(alice.id))
        codex.run("List your peers, greet alice, check your mail.")
        _check_three_ran(fake_model, alice, json_results=True)


def test_codex_first_request_has_the_peers_tools_and_instructions(
    make_driver: Callable[..., Driver], fake_model: FakeModel
) -> None:
    """`codex exec` does not wait for MCP servers: peers must answer initialize in time.

    The entry exactly as `peers install codex` writes it (no ``required = true``).
    """
    codex = make_driver("codex", extras=False)
    fake_model.play(Say("done"))
    run = codex.run("hello")
    first = fake_model.agent_requests()[0]
    assert first.offers("list_peers"), (
        f"peers tools missing: {first.tool_names()}\n{run.describe()}"
    )
    assert INSTRUCTIONS_START in json.dumps(first.body), "the server's instructions are missing"


def test_a_peers_command_in_codexs_shell_sandbox_finishes_within_two_seconds(
    make_driver: Callable[..., Driver], fake_model: FakeModel, store: Store
) -> None:
    """In Codex's sandbox ``send()`` on any socket fails (EPERM): asyncio's wake-up hangs.

    The command must work there, or say in one line why not (and that the session's
    peers tools still work) within 2 s.
    """
    codex = make_driver("codex", sandbox="workspace-write", approval="never")
    command, args = peers_command()
    peers = " ".join([command, *args[:-1]])
    shell = (
        f"PEERS_URL={store.url} PEERS_NAMESPACE={store.namespace} timeout 8 {peers} list; "
        "echo exit=$?"
    )
    fake_model.play(Call("exec_command", {"cmd": shell, "yield_time_ms": 10000}), Say("done"))
    run = codex.run("Run peers list.")
    (result,) = fake_model.agent_requests()[1].tool_results()
    wall = re.search(r"Wall time: ([0-9.]+) seconds", result.text)
    assert wall, run.describe()
    assert "exit=124" not in result.text, f"peers list hung in the sandbox:\n{result.text}"
    assert float(wall.group(1)) < 2.0, result.text
    if "exit=0" not in result.text:
        assert "tool" in result.text.lower(), f"no word on the peers tools: {result.text}"


def test_peers_serve_ends_within_claude_codes_sigint_grace(
    claude: Driver, fake_model: FakeModel
) -> None:
    """Claude Code sends SIGINT at exit and SIGTERM 100 ms later, logging "SIGINT failed"."""
    assert isinstance(claude, ClaudeDriver)
    fake_model.play(Call("whoami"), Say("done"))
    claude.run("Who am I?")
    lines = [str(e.get("debug") or e.get("error") or "") for e in claude.mcp_log()]
    assert any("Sending SIGINT" in line for line in lines), lines
    assert not any("SIGINT failed" in line for line in lines), (
        "peers serve outlived SIGINT by 100 ms:\n" + "\n".join(lines[-6:])
    )


# -- Gemini CLI ------------------------------------------------------------------------------


def test_gemini_runs_peers_tools_with_what_peers_install_wrote(
    make_driver: Callable[..., Driver], fake_model: FakeModel, store: Store, tmp_path: Path
) -> None:
    """`gemini -p` hides an untrusted server's tools: the installed entry must be trusted."""
    gemini = make_driver("gemini", entry="install")
    with PeerSession(
        store.env, name="alice", cwd=gemini.cwd, errlog=tmp_path / "alice.log"
    ) as alice:
        offered: list[bool] = []

        def first(request: ModelRequest) -> Call:
            offered.append(request.offers("list_peers"))
            return _three_calls(alice.id)[0]

        fake_model.play(first, *_three_calls(alice.id)[1:])
        gemini.run("List your peers, greet alice, check your mail.")
        assert offered == [True], fake_model.agent_requests()[0].tool_names()
        _check_three_ran(fake_model, alice, json_results=False)


def test_gemini_wait_for_previous_argument_is_accepted(
    gemini: Driver, fake_model: FakeModel, store: Store, tmp_path: Path
) -> None:
    """Gemini CLI adds ``wait_for_previous`` to every tool and tells its model to set it."""
    with PeerSession(
        store.env, name="alice", cwd=gemini.cwd, errlog=tmp_path / "alice.log"
    ) as alice:
        fake_model.play(*_three_calls(alice.id, {"wait_for_previous": True}))
        gemini.run("List your peers, greet alice, check your mail.")
        _check_three_ran(fake_model, alice, json_results=False)
