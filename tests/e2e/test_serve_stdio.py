"""The wire of ``peers serve``: pipes on the event loop, other stdin kinds, full pipes, long lines."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import struct
import subprocess
import termios
import threading
from pathlib import Path
from typing import IO, Any

import anyio
import pytest

from peers.config import load_settings
from peers.ids import new_message_id, new_peer_id
from peers.mcpclient import serve_command
from peers.models import Message, Peer
from peers.stdio import LineReader
from peers.transports import create_transport

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def initialize(client: str = "claude-code", channel: bool = True) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"experimental": {"claude/channel": {}}} if channel else {},
            "clientInfo": {"name": client, "version": "1"},
        },
    }


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
WHOAMI = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "whoami", "arguments": {}},
}


@pytest.fixture
def env(tmp_path: Path, namespace: str) -> dict[str, str]:
    return {
        **os.environ,
        "PEERS_URL": f"sqlite:///{tmp_path}/peers.db",
        "PEERS_NAMESPACE": namespace,
        "PEERS_LOG_LEVEL": "debug",
        "CLAUDE_PROJECT_DIR": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }


def lines(*messages: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(m).encode() + b"\n" for m in messages)


def read_reply(stdout: IO[bytes], request_id: int) -> dict[str, Any]:
    """The next line answering ``request_id`` (notifications before it are skipped)."""
    while True:
        line = stdout.readline()
        assert line, "stdout closed before the reply"
        message: dict[str, Any] = json.loads(line)
        if message.get("id") == request_id:
            return message


def spawn_serve(env: dict[str, str], tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    """A real ``peers serve`` on two pipes, its log in ``tmp_path``."""
    command, args = serve_command()
    return subprocess.Popen(
        [command, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "serve.log", "w"),
        env={**env, "PEERS_NAME": name},
    )


def test_stdin_from_a_file_is_served_too(env: dict[str, str], tmp_path: Path) -> None:
    """Not a pipe: the SDK's threaded reader takes it, and EOF still ends the server."""
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(lines(initialize("codex-mcp-client", channel=False), INITIALIZED, WHOAMI))
    command, args = serve_command()
    with requests.open("rb") as stdin:
        out = subprocess.run(
            [command, *args], stdin=stdin, capture_output=True, env=env, timeout=60, check=True
        )
    replies = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert all(r["jsonrpc"] == "2.0" for r in replies)
    assert replies[0]["id"] == 1 and replies[0]["result"]["serverInfo"]["name"] == "peers"
    # EOF right behind the tool call ends the session: the call is answered, if only
    # with "connection closed".
    assert [r["id"] for r in replies[1:]] == [2]


def test_one_socket_as_stdin_and_stdout_is_served_too(env: dict[str, str], tmp_path: Path) -> None:
    """inetd style: the SDK's threads take it (asyncio would see the socket as closed)."""
    ours, theirs = socket.socketpair()
    command, args = serve_command()
    with ours, open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen([command, *args], stdin=theirs, stdout=theirs, stderr=log, env=env)
        theirs.close()
        try:
            ours.sendall(lines(initialize("codex-mcp-client", channel=False), INITIALIZED, WHOAMI))
            stdout = ours.makefile("rb")
            assert read_reply(stdout, 1)["result"]["serverInfo"]["name"] == "peers"
            assert read_reply(stdout, 2)["result"]["structuredContent"]["id"]
        finally:
            ours.shutdown(socket.SHUT_WR)  # EOF on its stdin
            assert proc.wait(timeout=30) == 0


def _buffered(fd: int) -> int:
    """Bytes waiting in a pipe."""
    count: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    return count


async def test_pushes_through_a_full_pipe_arrive_whole_and_in_order(
    env: dict[str, str], tmp_path: Path, namespace: str
) -> None:
    """The client stops reading while more than a pipe's worth of pushes is written."""
    proc = spawn_serve(env, tmp_path, "reader")
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(lines(initialize(), INITIALIZED, WHOAMI))
        proc.stdin.flush()
        me = read_reply(proc.stdout, 2)["result"]["structuredContent"]

        settings = load_settings(url=env["PEERS_URL"], namespace=namespace)
        bodies = [f"{i}:" + chr(ord("a") + i) * (32 * 1024 - 10) for i in range(8)]
        async with create_transport(settings) as store:
            sender = await store.register(
                Peer(id=new_peer_id(), namespace=namespace, name="writer", host=settings.host,
                     pid=os.getpid(), cwd=str(tmp_path))
            )  # fmt: skip
            for body in bodies:
                await store.send(
                    Message(
                        id=new_message_id(),
                        namespace=namespace,
                        sender_id=sender.id,
                        sender_name=sender.name,
                        recipient_id=me["id"],
                        body=body,
                    )
                )
            # 8 x 32 KiB is four times a pipe's buffer: wait until the pipe is full
            # (the server is blocked on writing then), then read everything.
            with anyio.fail_after(30):
                while _buffered(proc.stdout.fileno()) < 60_000:
                    await anyio.sleep(0.05)

            got: list[str] = []
            with anyio.fail_after(60):
                while len(got) < len(bodies):
                    line = await asyncio.to_thread(proc.stdout.readline)
                    assert line, "stdout closed early"
                    message = json.loads(line)
                    if message.get("method") == "notifications/claude/channel":
                        got.append(message["params"]["content"])
            assert got == bodies
            # A notification alone acknowledges nothing: no transcript shows them shown.
            assert (await store.pending_counts()).get(me["id"]) == len(bodies)
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


async def test_a_line_over_the_limit_is_dropped_and_the_next_one_read() -> None:
    stream = asyncio.StreamReader(limit=64)
    reader = LineReader(stream)
    stream.feed_data(b"x" * 200 + b"\n" + b'{"ok": true}\n')
    stream.feed_eof()
    got = [line async for line in reader]
    assert got == ["line too long\n", '{"ok": true}\n']


async def test_a_line_that_is_not_utf8_is_read_with_replacements() -> None:
    stream = asyncio.StreamReader()
    stream.feed_data(b'{"a": "\xff"}\n')
    stream.feed_eof()
    assert [line async for line in LineReader(stream)] == ['{"a": "\ufffd"}\n']


async def _pipe_wire() -> tuple[Any, Any, int]:
    """A Wire whose stdout is a real pipe (the read end returned), and its writer running."""
    import mcp_types as types  # noqa: F401 - the SDK types the wire carries

    from peers.stdio import READ_BUFFER, WRITE_BUFFER, LineWriter, Wire, _WriteProtocol

    read_fd, write_fd = os.pipe()
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(_WriteProtocol, os.fdopen(write_fd, "wb", 0))
    transport.set_write_buffer_limits(high=0)
    read_send, read_recv = anyio.create_memory_object_stream[Any](READ_BUFFER)
    write_send, write_recv = anyio.create_memory_object_stream[Any](WRITE_BUFFER)
    wire = Wire(read_recv, write_send, LineWriter(transport, protocol), write_recv, read_send)
    return wire, transport, read_fd


async def test_messages_sent_together_are_written_whole_and_once() -> None:
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    wire, transport, read_fd = await _pipe_wire()
    writes = 0
    inner = wire.writer.write

    async def counted(text: str) -> None:
        nonlocal writes
        writes += 1
        await inner(text)

    wire.writer.write = counted  # type: ignore[method-assign]
    got: list[dict[str, Any]] = []

    def read_all() -> None:
        with os.fdopen(read_fd, "rb") as out:
            got.extend(json.loads(line) for line in out)

    reader = asyncio.create_task(asyncio.to_thread(read_all))
    async with anyio.create_task_group() as tg:
        tg.start_soon(wire.run_writer)
        async with anyio.create_task_group() as senders:
            for i in range(200):
                message = types.JSONRPCResponse(jsonrpc="2.0", id=i, result={"n": "x" * i})
                senders.start_soon(wire.write.send, SessionMessage(message))
        await wire.write.aclose()
    await wire.drained()
    transport.close()
    await reader
    assert sorted(m["id"] for m in got) == list(range(200))
    assert all(m["result"]["n"] == "x" * m["id"] for m in got)
    assert writes < 200  # the ones ready together went out together


def _slowed(wire: Any, pause: anyio.Event | None = None, delay: float = 0.0) -> None:
    """A client slow to read: each batch's write waits for ``pause`` (or ``delay``) first."""
    inner = wire.writer.write

    async def slow(text: str) -> None:
        if pause is not None:
            await pause.wait()
        await anyio.sleep(delay)
        await inner(text)

    wire.writer.write = slow


def _push(n: int) -> Any:
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    from peers.constants import CHANNEL_METHOD

    return SessionMessage(
        types.JSONRPCNotification(jsonrpc="2.0", method=CHANNEL_METHOD, params={"n": n})
    )


async def test_drained_waits_for_messages_still_in_the_buffer() -> None:
    """A send returns once its message is in the writer's buffer: drained() (before exit)
    waits for those too, not only for the batch being written."""
    wire, transport, read_fd = await _pipe_wire()
    _slowed(wire, delay=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(wire.run_writer)
        for i in range(50):
            await wire.write.send(_push(i))
        await wire.drained()
        os.set_blocking(read_fd, False)
        lines = os.read(read_fd, 1 << 20).splitlines()
        assert [json.loads(line)["params"]["n"] for line in lines] == list(range(50))
        tg.cancel_scope.cancel()
    transport.close()
    os.close(read_fd)


async def test_a_push_counts_as_made_once_the_pipe_took_it_not_once_queued() -> None:
    """The send returns at once (the buffer took it); pushed() returns only after the
    write: what the push's time and epoch are taken from."""
    wire, transport, read_fd = await _pipe_wire()
    pause = anyio.Event()
    _slowed(wire, pause)
    os.set_blocking(read_fd, False)
    done: list[bool] = []
    confirmed = anyio.Event()

    async def confirm() -> None:
        done.append(await wire.pushed(2))
        confirmed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wire.run_writer)
        with anyio.fail_after(5):
            await wire.write.send(_push(0))
            await wire.write.send(_push(1))
        tg.start_soon(confirm)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()  # the writer took the batch and waits on the client
        assert done == [] and wire.pushes_written == 0  # queued, or held by the slow client
        with pytest.raises(BlockingIOError):
            os.read(read_fd, 1 << 16)  # nothing in the pipe yet
        pause.set()
        with anyio.fail_after(5):
            await confirmed.wait()
        assert done == [True]
        lines = os.read(read_fd, 1 << 16).splitlines()
        assert [json.loads(line)["params"]["n"] for line in lines] == [0, 1]
        tg.cancel_scope.cancel()
    transport.close()
    os.close(read_fd)


async def test_pushes_queued_when_stdout_closes_are_never_made() -> None:
    """The writer dies with pushes in its buffer: pushed() says they were not written (the
    messages stay pending) and drained() returns instead of waiting on a writer gone."""
    wire, transport, read_fd = await _pipe_wire()
    pause = anyio.Event()
    _slowed(wire, pause)
    async with anyio.create_task_group() as tg:
        tg.start_soon(wire.run_writer)
        for i in range(10):
            await wire.write.send(_push(i))
        os.close(read_fd)  # the client went away
        pause.set()
        with anyio.fail_after(5):
            assert await wire.pushed(10) is False
            await wire.drained()
        assert wire.pushes_written == 0
        tg.cancel_scope.cancel()
    transport.close()


async def test_a_closed_stdout_ends_the_session_like_eof() -> None:
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    wire, transport, read_fd = await _pipe_wire()
    os.close(read_fd)  # the client stopped reading us for good
    async with anyio.create_task_group() as tg:
        tg.start_soon(wire.run_writer)
        message = types.JSONRPCNotification(jsonrpc="2.0", method="notifications/x")
        await wire.write.send(SessionMessage(message))
        with anyio.fail_after(10):
            # What the dispatcher reads ends, as at stdin EOF.
            with pytest.raises(anyio.EndOfStream):
                await wire.read.receive()
    transport.close()


async def test_a_written_response_frees_its_request_room() -> None:
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    wire, transport, read_fd = await _pipe_wire()
    for i in range(5):
        await wire.admission.admit(
            types.JSONRPCRequest(jsonrpc="2.0", id=i, method="tools/call", params={"name": "whoami"})
        )
    assert wire.admission.open == 5

    def read_all() -> None:
        with os.fdopen(read_fd, "rb") as out:
            out.read()

    reader = asyncio.create_task(asyncio.to_thread(read_all))
    async with anyio.create_task_group() as tg:
        tg.start_soon(wire.run_writer)
        for i in range(3):
            await wire.write.send(SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=i, result={})))
        await wire.write.aclose()
    await wire.drained()
    transport.close()
    await reader
    assert wire.admission.open == 2  # the two never answered


def test_hundreds_of_calls_at_once_beside_waiting_calls_are_all_answered(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The client writes 40 long waits and then 300 calls without reading: the server reads
    ahead only a few calls at a time, and the waits never hold back the rest (counted, each
    call past the limit would stand a second in the pipe)."""
    proc = spawn_serve(env, tmp_path, "busy")
    assert proc.stdin is not None and proc.stdout is not None
    waits = [
        {"jsonrpc": "2.0", "id": 1000 + i, "method": "tools/call",
         "params": {"name": "wait_for_messages", "arguments": {"timeout_s": 120}}}
        for i in range(40)
    ]  # fmt: skip
    calls = [{**WHOAMI, "id": 10 + i} for i in range(300)]
    # A server that stalls is ended after a minute: the read below then sees EOF.
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        proc.stdin.write(lines(initialize(), INITIALIZED, *waits, *calls))
        proc.stdin.flush()
        answered: set[int] = set()
        while len(answered) < len(calls):
            line = proc.stdout.readline()
            assert line, f"stdout closed with {len(answered)} of {len(calls)} answered"
            message = json.loads(line)
            if message.get("id") in range(10, 310):
                assert "result" in message, message
                answered.add(message["id"])
    finally:
        watchdog.cancel()
        proc.stdin.close()
        code = proc.wait(timeout=30)
    assert code == 0


async def test_requests_the_front_answered_free_their_room() -> None:
    """The SDK answers server/discover and initialize again, and that answer is dropped: the
    request is answered all the same, and holds no room for the rest of the session."""
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    from peers.admission import Admission
    from peers.serve import _FrontAnswered

    error = {"code": -32601, "message": "Method not found", "data": "server/discover"}
    front = {"jsonrpc": "2.0", "id": 0, "error": error}
    admission = Admission(limit=4, patience=60)
    await admission.admit(types.JSONRPCRequest(jsonrpc="2.0", id=0, method="server/discover"))
    assert admission.open == 1
    send, receive = anyio.create_memory_object_stream[SessionMessage](10)
    stream = _FrontAnswered(send, (front,), dropped=admission.done)
    duplicate = types.JSONRPCError(jsonrpc="2.0", id=0, error=types.ErrorData(**error))
    await stream.send(SessionMessage(duplicate))
    with pytest.raises(anyio.WouldBlock):
        receive.receive_nowait()  # dropped, not written twice
    assert admission.open == 0
