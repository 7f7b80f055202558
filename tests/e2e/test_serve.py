"""End-to-end: real ``peers serve`` subprocesses over MCP stdio, on SQLite and real Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from peers.mcpclient import PeerClient, serve_command

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

META_KEY = re.compile(r"[A-Za-z0-9_]+")


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def test_discover_is_refused_and_initialize_carries_the_channel(
    session: Callable[..., PeerClient],
) -> None:
    client = session("alice")
    client.discover_first = True
    client.protocol_version = "2026-07-28"
    async with client:
        assert client.discover_error == -32601
        init = client.initialize_result
        assert init is not None
        # A revision that cannot carry channel messages is never accepted.
        assert init.protocol_version == "2025-11-25"
        assert init.server_info.name == "peers"
        assert init.capabilities.experimental == {"claude/channel": {}}
        assert init.capabilities.tools is not None
        assert init.instructions and "send_message" in init.instructions
        assert "SendMessage" in init.instructions and "authority" in init.instructions
        tools = {t.name for t in (await client.session.list_tools()).tools}
        # kill_peer is off unless PEERS_ALLOW_KILL=true (test_kill_peer_is_off_by_default).
        assert tools == {
            "list_peers",
            "send_message",
            "set_summary",
            "check_messages",
            "wait_for_messages",
            "broadcast_message",
            "whoami",
            "set_name",
            "claim_files",
            "release_files",
        }


async def test_older_revision_is_negotiated(session: Callable[..., PeerClient]) -> None:
    client = session(client="codex-mcp-client", channel=False)
    client.protocol_version = "2025-06-18"
    async with client:
        assert client.initialize_result is not None
        assert client.initialize_result.protocol_version == "2025-06-18"
        me = await client.wait_registered()
        assert me["client"] == "codex"
        assert me["receive_mode"] == "poll"


async def test_push_arrives_with_valid_meta_and_is_acked_once_the_transcript_shows_it(
    session: Callable[..., PeerClient], store: Any
) -> None:
    async with session("alice") as alice, session("bob", transcript="shows") as bob:
        a = await alice.wait_registered()
        b = await bob.wait_registered()
        assert b["receive_mode"] == "push"
        assert b["push"] == "unconfirmed"  # the flag is there; nothing proven yet
        await alice.call_ok("set_summary", summary="refactoring the parser")
        sent = await alice.call_ok("send_message", to_id="bob", message="hello <b>\x07bob")
        assert sent["delivery"] == "push"
        chan = await bob.next_channel()
        assert chan.content == "hello <b>bob"  # control character removed
        assert all(META_KEY.fullmatch(k) for k in chan.meta)
        assert all(isinstance(v, str) for v in chan.meta.values())
        assert chan.meta["from_id"] == a["id"]
        assert chan.meta["from_name"] == "alice"
        assert chan.meta["message_id"] == sent["message_id"]
        assert chan.meta["from_summary"] == "refactoring the parser"
        assert chan.meta["sender_kind"] == "peer"
        assert "sent_at" in chan.meta and "from_cwd" in chan.meta
        # Acked once the transcript shows it reached the model; never shown twice.
        with anyio.fail_after(10):
            while await store.fetch(b["id"]):
                await anyio.sleep(0.05)
        assert (await bob.call_ok("check_messages"))["messages"] == []
        assert (await bob.call_ok("whoami"))["push"] == "confirmed"
        seen = await alice.call_ok("list_peers")
        assert [p["push"] for p in seen["peers"]] == ["confirmed"]

        # A reply with reply_to reaches alice with it in meta.
        await bob.call_ok(
            "send_message",
            to_id=chan.meta["from_id"],
            message="hi",
            reply_to=chan.meta["message_id"],
        )
        back = await alice.next_channel()
        assert back.meta["reply_to"] == sent["message_id"]


async def test_poll_session_gets_every_message_once_in_order(
    session: Callable[..., PeerClient],
) -> None:
    async with (
        session("alice") as alice,
        session("carol", client="codex-mcp-client", channel=False) as carol,
    ):
        await alice.wait_registered()
        c = await carol.wait_registered()
        assert c["receive_mode"] == "poll"
        bodies = [f"message {i}" for i in range(25)]
        for body in bodies:
            await alice.call_ok("send_message", to_id="carol", message=body)
        # The poll session calls nothing for a while: nothing may be lost meanwhile.
        await anyio.sleep(3)
        assert carol.channels == []
        received: list[str] = []
        first = await carol.call_ok("list_peers", scope="all")
        received += [m["body"] for m in first.get("new_mail", {}).get("messages", [])]
        while True:
            batch = (await carol.call_ok("check_messages"))["messages"]
            if not batch:
                break
            received += [m["body"] for m in batch]
        assert received == bodies
        again = await carol.call_ok("whoami")
        assert "new_mail" not in again


async def test_sigkilled_recipient_loses_nothing(
    session: Callable[..., PeerClient],
) -> None:
    async with session("alice") as alice:
        await alice.wait_registered()
        async with session("bob", client="codex-mcp-client", channel=False) as bob:
            b = await bob.wait_registered()
            for i in range(3):
                await alice.call_ok("send_message", to_id="bob", message=f"before {i}")
            os.kill(b["pid"], signal.SIGKILL)
            with anyio.fail_after(10):
                while _alive(b["pid"]):
                    await anyio.sleep(0.05)
            for i in range(2):
                sent = await alice.call_ok("send_message", to_id="bob", message=f"after {i}")
                assert sent["delivery"] == "queued"
        async with session("bob", client="codex-mcp-client", channel=False) as successor:
            s = await successor.wait_registered()
            assert s["id"] != b["id"] and s["name"] == "bob"
            # A poll session's mail rides along with any tool result, whoami included.
            got = (
                s.get("new_mail", {}).get("messages", [])
                + (await successor.call_ok("check_messages"))["messages"]
            )
            assert [m["body"] for m in got] == [
                "before 0",
                "before 1",
                "before 2",
                "after 0",
                "after 1",
            ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_stdin_eof_ends_the_server_and_unregisters(
    store_env: dict[str, str], store: Any, tmp_path: Path
) -> None:
    command, args = serve_command()
    proc = subprocess.Popen(
        [command, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "eof.log", "w"),  # noqa: SIM115
        env={**os.environ, **store_env, "PEERS_NAME": "eofer"},
    )
    assert proc.stdin is not None and proc.stdout is not None

    def rpc(obj: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(obj) + "\n").encode())
        proc.stdin.flush()

    rpc(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "codex-mcp-client", "version": "1"},
            },
        }
    )
    assert json.loads(proc.stdout.readline())["result"]["serverInfo"]["name"] == "peers"
    rpc({"jsonrpc": "2.0", "method": "notifications/initialized"})
    rpc(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}},
        }
    )
    me = json.loads(proc.stdout.readline())["result"]["structuredContent"]
    assert (await store.get_peer(me["id"])).online
    proc.stdin.close()
    # Only EOF was given: no signal is sent, so exiting proves EOF handling.
    assert proc.wait(timeout=15) == 0
    assert proc.stdout.read() == b""  # nothing but JSON-RPC ever went to stdout
    peer = await store.get_peer(me["id"])
    assert peer is not None and not peer.online


async def test_sigterm_unregisters(session: Callable[..., PeerClient], store: Any) -> None:
    async with session("termed", client="codex-mcp-client", channel=False) as client:
        me = await client.wait_registered()
        os.kill(me["pid"], signal.SIGTERM)
        with anyio.fail_after(10):
            while _alive(me["pid"]):
                await anyio.sleep(0.05)
        peer = await store.get_peer(me["id"])
        assert peer is not None and not peer.online


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("no_such_tool", {}, "unknown tool"),
    ("list_peers", {"scope": "galaxy"}, "scope"),
    ("send_message", {"to": "alice", "message": "hi"}, "did you mean 'to_id'"),
    ("send_message", {"message": "hi"}, "missing required argument 'to_id'"),
    ("send_message", {"to_id": "nobody-here", "message": "hi"}, "no peer"),
    ("send_message", {"to_id": "alice", "message": "   "}, "empty"),
    ("send_message", {"to_id": "alice", "message": 42}, "must be a string"),
    ("send_message", {"to_id": "alice", "message": "x" * (32 * 1024 + 1)}, "limit is 32,768 bytes"),
    (
        "send_message",
        {"to_id": "alice", "message": "hi", "reply_to": "01nosuchmessage"},
        "reply_to",
    ),
    ("broadcast_message", {"message": "hi", "scope": "everywhere"}, "scope"),
    ("set_summary", {"summary": "y" * 2000}, "limit is 1,024 bytes"),
    ("set_name", {"name": "Bad Name!"}, "invalid name"),
    ("set_name", {"name": "cli-abc123"}, "reserved for command-line senders"),
    ("kill_peer", {"peer_id": "nobody-here"}, "turned off"),
    ("send_message", {"to_id": "tester", "message": "me"}, "your own id"),
]


async def test_every_bad_argument_gets_a_tool_error(session: Callable[..., PeerClient]) -> None:
    async with (
        session("alice") as alice,
        session("tester", client="codex-mcp-client", channel=False) as client,
    ):
        # initialize is answered before registration: wait for both to be there.
        await alice.wait_registered()
        await client.wait_registered()
        for tool, args, expected in BAD_CALLS:
            result = await client.call(tool, **args)
            assert result.is_error, (tool, args)
            assert expected.lower() in _text(result).lower(), (tool, _text(result))
        # The server kept serving.
        assert (await client.call_ok("whoami"))["name"] == "tester"


async def test_names_scopes_and_two_hosts(session: Callable[..., PeerClient]) -> None:
    async with (
        session("here", PEERS_HOST="host-a") as here,
        session("there", PEERS_HOST="host-b") as there,
    ):
        await here.wait_registered()
        await there.wait_registered()
        everyone = await here.call_ok("list_peers", scope="all")
        assert [p["name"] for p in everyone["peers"]] == ["there"]
        local = await here.call_ok("list_peers", scope="machine")
        assert local["peers"] == []
        renamed = await there.call_ok("set_name", name="over-there")
        assert renamed["name"] == "over-there"
        chan_task = there.next_channel()
        await here.call_ok("send_message", to_id="over", message="by prefix")
        assert (await chan_task).content == "by prefix"


async def test_broadcast_reaches_push_and_poll_sessions(session: Callable[..., PeerClient]) -> None:
    async with (
        session("a") as a,
        session("b") as b,
        session("c", client="codex-mcp-client", channel=False) as c,
    ):
        for client in (a, b, c):
            await client.wait_registered()
        sent = await a.call_ok("broadcast_message", message="freeze", scope="machine")
        assert sorted(s["to_name"] for s in sent["sent"]) == ["b", "c"]
        assert (await b.next_channel()).meta["broadcast"] == "true"
        got = (await c.call_ok("check_messages"))["messages"]
        assert [m["body"] for m in got] == ["freeze"] and got[0]["broadcast"]
        assert a.channels == []  # never to oneself


async def test_server_opens_no_listening_tcp_port(session: Callable[..., PeerClient]) -> None:
    async with session("quiet") as client:
        me = await client.wait_registered()
        pid = me["pid"]
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        listening = set()
        for table in ("tcp", "tcp6", "udp", "udp6"):
            path = Path(f"/proc/{pid}/net/{table}")
            for line in path.read_text().splitlines()[1:]:
                fields = line.split()
                # TCP state 0A is LISTEN; any bound UDP socket counts as a port too.
                if table.startswith("udp") or fields[3] == "0A":
                    listening.add(fields[9])
        assert not (inodes & listening)


async def test_nothing_but_json_rpc_on_stdout(store_env: dict[str, str], tmp_path: Path) -> None:
    command, args = serve_command()
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "claude-code", "version": "1"},
        },
    }
    out = subprocess.run(
        [command, *args],
        input=(json.dumps(init) + "\n").encode(),
        capture_output=True,
        env={**os.environ, **store_env, "PEERS_LOG_LEVEL": "debug"},
        timeout=30,
        check=True,
    )
    lines = out.stdout.decode().splitlines()
    assert lines and all(json.loads(line)["jsonrpc"] == "2.0" for line in lines)
    assert b"peers serve starting" in out.stderr  # the logs went to stderr


@pytest.mark.parametrize("python", [sys.executable])
def test_demo_runs_from_any_directory(python: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [python, "-m", "peers", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert "bob received" in out.stdout and "new message" in out.stdout


async def test_server_exits_when_its_parent_dies(
    store_env: dict[str, str], store: Any, tmp_path: Path
) -> None:
    command, args = serve_command()
    # A launcher in between, like uv or a shell: it dies, the server must not linger.
    launcher = (
        "import subprocess, sys; "
        f"p = subprocess.Popen({[command, *args]!r}); print(p.pid, flush=True); p.wait()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "orphan.log", "w"),  # noqa: SIM115
        env={**os.environ, **store_env, "PEERS_NAME": "orphan"},
    )
    assert proc.stdin is not None and proc.stdout is not None
    server_pid = int(proc.stdout.readline())
    for obj in (
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "codex-mcp-client", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "whoami", "arguments": {}}},
    ):
        proc.stdin.write((json.dumps(obj) + "\n").encode())
    proc.stdin.flush()
    proc.stdout.readline()  # initialize
    me = json.loads(proc.stdout.readline())["result"]["structuredContent"]
    assert me["pid"] == server_pid
    proc.kill()
    proc.wait()
    # stdin stays open (the test holds it): only the parent's death can end the server.
    with anyio.fail_after(20):
        while _alive(server_pid):
            await anyio.sleep(0.1)
    peer = await store.get_peer(me["id"])
    assert peer is not None and not peer.online
    proc.stdin.close()


async def test_a_taken_name_is_claimed_once_its_holder_leaves(
    session: Callable[..., PeerClient],
) -> None:
    async with session("busy", client="codex-mcp-client", channel=False) as first:
        holder = await first.wait_registered()
        async with session("busy", client="codex-mcp-client", channel=False) as second:
            me = await second.wait_registered()
            assert me["name"] is None  # runs unnamed rather than not at all
            os.kill(holder["pid"], signal.SIGTERM)  # the holder leaves
            with anyio.fail_after(20):
                while (await second.call_ok("whoami"))["name"] != "busy":
                    await anyio.sleep(0.2)


async def test_a_push_the_client_cannot_take_stays_pending() -> None:
    import mcp_types as types
    from mcp.server.connection import Connection
    from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
    from mcp.shared.message import SessionMessage

    from peers.serve import TrackedWriter
    from peers.server import CHANNEL_METHOD

    send, receive = anyio.create_memory_object_stream[SessionMessage](0)
    in_send, in_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    writer = TrackedWriter(send)
    conn = Connection.for_loop(JSONRPCDispatcher(in_receive, writer))
    async with anyio.create_task_group() as tg:
        got: list[Any] = []

        async def read_one() -> None:
            got.append(await receive.receive())

        tg.start_soon(read_one)
        await conn.notify(CHANNEL_METHOD, {"content": "hi", "meta": {}})
    assert writer.channel_sent == 1
    assert isinstance(got[0].message, types.JSONRPCNotification)
    await receive.aclose()  # the client went away
    await conn.notify(CHANNEL_METHOD, {"content": "lost?", "meta": {}})
    # notify() swallowed the failure; the count tells the push loop not to ack.
    assert writer.channel_sent == 1
    await send.aclose()
    await in_send.aclose()


async def test_a_bad_store_url_keeps_serving_and_says_why(tmp_path: Path) -> None:
    env = {"PEERS_URL": "sqlite://relative/path.db", "XDG_STATE_HOME": str(tmp_path)}
    with open(tmp_path / "server.log", "w") as errlog:
        async with PeerClient(env, client_name="codex-mcp-client", channel=False,
                              errlog=errlog) as client:
            for _ in range(2):  # it keeps answering
                result = await client.call("whoami")
                assert result.is_error
                assert "peers cannot start" in _text(result) and "sqlite" in _text(result)
