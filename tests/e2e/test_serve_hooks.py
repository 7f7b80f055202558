"""Hooks end to end: real ``peers serve`` sessions, real ``peers hook`` processes, SQLite and Redis.

Each session carries a Claude Code session id (as Claude Code gives its MCP
servers), and each hook names it on stdin, as Claude Code's hooks do: that is
how a hook finds its own session's server here, where every server has the
test runner as its agent process. The agent-process path is exercised by the
relay's own tests and by the real-client tier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from peers import runtime
from peers.mcpclient import PeerClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PEERS = str(Path(sys.executable).parent / "peers")


def poll_session(session: Callable[..., PeerClient], name: str, **env: str) -> PeerClient:
    """A session without push (like most), addressed by a Claude Code session id."""
    return session(name, channel=False, CLAUDE_CODE_SESSION_ID=str(uuid.uuid4()), **env)


async def hook(
    client: PeerClient,
    event: str,
    payload: dict[str, Any] | None = None,
    *,
    flavour: str = "claude",
) -> tuple[int, str, str, float]:
    """Run ``peers hook EVENT --client FLAVOUR`` for ``client``'s session."""
    data = {
        "session_id": client.env["CLAUDE_CODE_SESSION_ID"],
        "cwd": client.cwd,
        "hook_event_name": event,
        **(payload or {}),
    }
    started = time.monotonic()
    done = await anyio.run_process(
        [PEERS, "hook", event, "--client", flavour],
        input=json.dumps(data).encode(),
        env=client.env,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode(), time.monotonic() - started


def silent(result: tuple[int, str, str, float]) -> bool:
    """The hook printed nothing, exited 0, and did so within its second."""
    code, out, err, seconds = result
    return (code, out, err) == (0, "", "") and seconds < 1.0


def context_of(stdout: str) -> str:
    return str(json.loads(stdout)["hookSpecificOutput"]["additionalContext"])


async def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    with anyio.fail_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(0.05)


async def test_mail_reaches_the_next_step_once_and_is_acknowledged(
    session: Callable[..., PeerClient], store: Any
) -> None:
    async with poll_session(session, "alice") as alice, poll_session(session, "bob") as bob:
        await alice.wait_registered()
        b = await bob.wait_registered()
        await alice.call_ok("set_summary", summary="reworking the parser")
        sent = await alice.call_ok(
            "send_message", to_id="bob", message="I'm rewriting types/auth.ts, hold off"
        )
        code, out, err, _ = await hook(bob, "PostToolUse", {"tool_name": "Read", "tool_input": {}})
        assert (code, err) == (0, "")
        doc = json.loads(out)
        assert doc["hookSpecificOutput"]["hookEventName"] == "PostToolUse"
        context = context_of(out)
        assert "I'm rewriting types/auth.ts, hold off" in context
        assert "alice" in context and "reworking the parser" in context
        assert f'send_message(to_id="{(await alice.call_ok("whoami"))["id"]}"' in context
        assert "not from your user" in context or "not from the user" in context
        # Acknowledged once the hook wrote it.
        await until(lambda: _acked(store, b["id"]))
        # Never shown again: not by a tool result, not by another hook.
        assert (await bob.call_ok("check_messages"))["count"] == 0
        assert silent(await hook(bob, "PostToolUse", {"tool_name": "Read"}))
        assert sent["message_id"]


async def _acked(store: Any, peer_id: str) -> bool:
    return (await store.pending_counts()).get(peer_id, 0) == 0


async def test_nothing_new_prints_nothing(session: Callable[..., PeerClient]) -> None:
    async with poll_session(session, "quiet") as quiet:
        await quiet.wait_registered()
        for event in ("UserPromptSubmit", "PostToolUse", "Stop", "SessionStart"):
            result = await hook(quiet, event, {"tool_name": "Bash"})
            if event == "SessionStart":
                assert "No other live session" in context_of(result[1])
                continue
            assert silent(result), event


async def test_a_tool_result_and_a_hook_never_show_the_same_message(
    session: Callable[..., PeerClient],
) -> None:
    async with poll_session(session, "a") as a, poll_session(session, "b") as b:
        await a.wait_registered()
        await b.wait_registered()
        await a.call_ok("send_message", to_id="b", message="first")
        shown = await b.call_ok("whoami")
        assert [m["body"] for m in shown["new_mail"]["messages"]] == ["first"]
        await a.call_ok("send_message", to_id="b", message="second")
        _, out, _, _ = await hook(b, "UserPromptSubmit", {"prompt": "go on"})
        context = context_of(out)
        assert "second" in context and "first" not in context
        assert "new_mail" not in await b.call_ok("whoami")


async def test_stop_continues_the_turn_once_with_unread_mail(
    session: Callable[..., PeerClient], store: Any
) -> None:
    async with poll_session(session, "s1") as s1, poll_session(session, "s2") as s2:
        await s1.wait_registered()
        me = await s2.wait_registered()
        await s1.call_ok("send_message", to_id="s2", message="wait, main is red")
        # A Stop hook already continuing the turn never blocks again (no loop) and shows nothing.
        assert silent(await hook(s2, "Stop", {"stop_hook_active": True}))
        assert (await store.pending_counts()).get(me["id"]) == 1
        code, out, _, _ = await hook(s2, "Stop", {"stop_hook_active": False})
        doc = json.loads(out)
        assert code == 0 and doc["decision"] == "block"
        assert "wait, main is red" in doc["hookSpecificOutput"]["additionalContext"]
        await until(lambda: _acked(store, me["id"]))
        code, out, _, _ = await hook(s2, "Stop", {"stop_hook_active": False})
        assert (code, out) == (0, "")


async def test_gemini_shapes(session: Callable[..., PeerClient]) -> None:
    async with poll_session(session, "g1") as g1, poll_session(session, "g2", PEERS_CLIENT="gemini") as g2:
        await g1.wait_registered()
        await g2.wait_registered()
        await g1.call_ok("send_message", to_id="g2", message="hello gemini")
        _, out, _, _ = await hook(g2, "AfterTool", {"tool_name": "read_file"}, flavour="gemini")
        doc = json.loads(out)["hookSpecificOutput"]
        assert doc["hookEventName"] == "AfterTool" and "hello gemini" in doc["additionalContext"]
        await g1.call_ok("send_message", to_id="g2", message="before you stop")
        _, out, _, _ = await hook(g2, "AfterAgent", {"stop_hook_active": False}, flavour="gemini")
        doc = json.loads(out)
        assert doc["decision"] == "deny" and "before you stop" in doc["reason"]


async def test_an_edit_shows_in_other_sessions_list_peers_at_once(
    session: Callable[..., PeerClient], tmp_path: Path
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    async with poll_session(session, "editor") as editor, poll_session(session, "looker") as looker:
        await editor.wait_registered()
        await looker.wait_registered()
        target = tmp_path / "src" / "api.py"
        started = time.monotonic()
        code, out, _, _ = await hook(
            editor,
            "PostToolUse",
            {"tool_name": "Edit", "tool_input": {"file_path": str(target), "old_string": "a"}},
        )
        assert (code, out) == (0, "")

        async def seen() -> bool:
            peers = (await looker.call_ok("list_peers", scope="directory"))["peers"]
            return any("src/api.py" in p["files"] for p in peers if p["name"] == "editor")

        await until(seen, timeout=5)
        assert time.monotonic() - started < 2.0
        # Codex's apply_patch names its files in the patch.
        patch = "*** Begin Patch\n*** Add File: lib/new.ts\n+x\n*** End Patch\n"
        await hook(editor, "PostToolUse", {"tool_name": "apply_patch", "tool_input": {"input": patch}}, flavour="codex")

        async def seen_patch() -> bool:
            peers = (await looker.call_ok("list_peers", scope="directory"))["peers"]
            return any("lib/new.ts" in p["files"] for p in peers if p["name"] == "editor")

        await until(seen_patch, timeout=5)


async def test_output_is_bounded_and_the_rest_stays_unread(
    session: Callable[..., PeerClient],
) -> None:
    async with poll_session(session, "loud", PEERS_RATE_LIMIT="1000") as loud, poll_session(
        session, "busy"
    ) as busy:
        await loud.wait_registered()
        await busy.wait_registered()
        for i in range(10):
            await loud.call_ok("send_message", to_id="busy", message=f"note {i}: " + "x" * 900)
        _, out, _, _ = await hook(busy, "PostToolUse", {"tool_name": "Read"})
        context = context_of(out)
        assert len(context.encode()) <= 4096
        assert "note 9: " in context  # the newest, whole
        assert "note 0: " not in context
        assert "check_messages" in context
        shown = [i for i in range(10) if f"note {i}: " in context]
        rest = await busy.call_ok("check_messages")
        bodies = [m["body"].split(":")[0] for m in rest["messages"]]
        assert bodies == [f"note {i}" for i in range(10) if i not in shown]


async def test_a_hook_that_dies_before_writing_gives_the_mail_back(
    session: Callable[..., PeerClient], store: Any
) -> None:
    async with poll_session(session, "x") as x, poll_session(session, "y") as y:
        await x.wait_registered()
        me = await y.wait_registered()
        await x.call_ok("send_message", to_id="y", message="do not lose me")
        path = runtime.session_socket(y.env["CLAUDE_CODE_SESSION_ID"], y.env["PEERS_RUNTIME_DIR"])
        stream = await anyio.connect_unix(path)
        request = {"v": 1, "event": "PostToolUse", "client": "claude", "input": {"tool_name": "Read"}}
        await stream.send(json.dumps(request).encode() + b"\n")
        reply = json.loads((await stream.receive()).decode())
        assert "do not lose me" in reply["stdout"]
        await stream.aclose()  # gone before saying it was written
        _, out, _, _ = await hook(y, "PostToolUse", {"tool_name": "Read"})
        assert "do not lose me" in context_of(out)
        await until(lambda: _acked(store, me["id"]))


async def test_session_start_briefs_on_the_repository(
    session: Callable[..., PeerClient], tmp_path: Path
) -> None:
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "i"],
    ):
        subprocess.run(argv, cwd=tmp_path, check=True)
    async with poll_session(session, "veteran") as veteran:
        await veteran.wait_registered()
        await veteran.call_ok("set_summary", summary="migrating the billing tables")
        await hook(
            veteran,
            "PostToolUse",
            {"tool_name": "Write", "tool_input": {"file_path": str(tmp_path / "db/billing.sql")}},
        )
        async with poll_session(session, "newcomer") as newcomer:
            await newcomer.wait_registered()
            await veteran.call_ok("send_message", to_id="newcomer", message="billing is mine today")
            _, out, _, _ = await hook(newcomer, "SessionStart", {"source": "startup"})
            brief = context_of(out)
            assert "veteran" in brief and "migrating the billing tables" in brief
            assert "db/billing.sql" in brief, brief
            assert "@ main" in brief, brief
            assert "send_message" in brief
            assert "billing is mine today" in brief


async def test_a_hook_for_a_session_without_a_server_prints_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PEERS_RUNTIME_DIR": str(tmp_path / "run")}
    done = subprocess.run(
        [PEERS, "hook", "UserPromptSubmit", "--client", "claude"],
        input=json.dumps({"session_id": str(uuid.uuid4())}),
        capture_output=True,
        text=True,
        env=env,
        timeout=5,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


async def test_an_event_peers_does_not_handle_prints_nothing(
    session: Callable[..., PeerClient],
) -> None:
    async with poll_session(session, "p1") as p1, poll_session(session, "p2") as p2:
        await p1.wait_registered()
        await p2.wait_registered()
        await p1.call_ok("send_message", to_id="p2", message="stays for a real step")
        assert silent(await hook(p2, "Notification", {"message": "idle"}))
        assert silent(await hook(p2, "PreCompress", {}, flavour="gemini"))
        assert (await p2.call_ok("check_messages"))["count"] == 1


@pytest.mark.parametrize("store_env", ["sqlite"], indirect=True)
async def test_a_write_locked_store_never_holds_the_agent_up(
    session: Callable[..., PeerClient], store_env: dict[str, str], store: Any, tmp_path: Path
) -> None:
    import sqlite3

    async with poll_session(session, "l1") as l1, poll_session(session, "l2") as l2:
        await l1.wait_registered()
        me = await l2.wait_registered()
        await l1.call_ok("send_message", to_id="l2", message="while the store is locked")
        # Another process holds the write lock (a long transaction): this session's writes
        # (heartbeat, acks) wait for it, and its store calls queue up behind them.
        db = sqlite3.connect(store_env["PEERS_URL"].removeprefix("sqlite:///"), isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            edit = {"tool_name": "Write", "tool_input": {"file_path": str(tmp_path / "a.py")}}
            assert silent(await hook(l2, "PostToolUse", edit))
            assert silent(await hook(l2, "UserPromptSubmit", {"prompt": "go"}))
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.close()
        # The lock gone, the mail comes at the next step, once: nothing was lost.
        async def shown() -> str:
            _, out, _, _ = await hook(l2, "PostToolUse", {"tool_name": "Read"})
            return out

        out = await until(shown)
        assert "while the store is locked" in context_of(out)
        assert silent(await hook(l2, "PostToolUse", {"tool_name": "Read"}))
        await until(lambda: _acked(store, me["id"]))


@pytest.mark.redis_real
async def test_redis_down_means_nothing_printed_within_a_second(
    tmp_path: Path, namespace: str, runtime_dir: str
) -> None:
    from support import RedisProcess, free_port

    server = RedisProcess(free_port(), tmp_path, ["--save", "", "--appendonly", "no"])
    server.start()
    env = {
        "PEERS_URL": server.url,
        "PEERS_NAMESPACE": namespace,
        "PEERS_RUNTIME_DIR": runtime_dir,
        "CLAUDE_PROJECT_DIR": str(tmp_path),
        "CLAUDE_CODE_SESSION_ID": str(uuid.uuid4()),
        "PEERS_LOG_LEVEL": "debug",
    }
    try:
        with open(tmp_path / "server.log", "a") as errlog:
            async with PeerClient(env, channel=False, cwd=str(tmp_path), errlog=errlog) as client:
                await client.wait_registered()
                # Frozen (a hung server): the hook gives up in time and prints nothing.
                server.pause()
                try:
                    assert silent(await hook(client, "UserPromptSubmit", {"prompt": "hi"}))
                finally:
                    server.resume()
                # Down: the same.
                server.stop()
                assert silent(await hook(client, "UserPromptSubmit", {"prompt": "hi"}))
                assert silent(await hook(client, "PostToolUse", {"tool_name": "Read"}))
    finally:
        server.stop()
