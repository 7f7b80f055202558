"""The wire taps (peers.wiretap) and what the server does with their reports.

Mail that rides a tool result is acknowledged when that response was written,
and given back when the client cancelled the call before it had the result, or
the response could not be handed on.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.message import SessionMessage

from peers.config import load_settings
from peers.models import PushState
from peers.procinfo import process_start_time
from peers.server import PeersServer
from peers.service import PeersService, Sender
from peers.session import Session
from peers.transports import create_transport
from peers.wiretap import CancelTap, TrackedWriter, receive_eagerly, response_id, send_eagerly

pytestmark = pytest.mark.anyio


class AwaitOnly:
    """A stream with only the awaitable methods (as the SDK's own stdio streams)."""

    def __init__(self, send: Any, receive: Any) -> None:
        self._send, self._receive = send, receive

    async def send(self, item: Any) -> None:
        await self._send.send(item)

    async def receive(self) -> Any:
        return await self._receive.receive()


async def test_eager_sends_and_receives_take_no_turn_of_the_loop_when_they_can_pass() -> None:
    """A send with room and a receive with an item waiting let no other task run (anyio's
    own send and receive give the loop a turn each, several per message); otherwise they
    wait as send and receive do, and streams without the nowait methods are awaited."""
    send, receive = anyio.create_memory_object_stream[int](1)
    others: list[str] = []

    async def other() -> None:
        others.append("ran")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await send_eagerly(send, 1)
        assert await receive_eagerly(receive) == 1
        assert others == []  # neither gave the loop a turn
        tg.start_soon(send_eagerly, send, 2)
        assert await receive_eagerly(receive) == 2  # waited for the sender
        await send_eagerly(send, 3)
        tg.start_soon(receive_eagerly, receive)  # takes 3
        await send_eagerly(send, 4)  # full until the receiver ran: waited
        assert others == ["ran"]
        assert receive.receive_nowait() == 4
        wrapped = AwaitOnly(send, receive)
        await send_eagerly(wrapped, 5)
        assert await receive_eagerly(wrapped) == 5
        send.close()
        with pytest.raises(anyio.EndOfStream):
            await receive_eagerly(receive)


def test_response_ids() -> None:
    assert response_id(types.JSONRPCResponse(jsonrpc="2.0", id=7, result={})) == 7
    assert response_id(types.JSONRPCResponse(jsonrpc="2.0", id='a"b', result={})) == 'a"b'
    error = types.JSONRPCError(jsonrpc="2.0", id=9, error=types.ErrorData(code=1, message="m"))
    assert response_id(error) == 9
    note = types.JSONRPCNotification(jsonrpc="2.0", method="x", params={"id": 3})
    assert response_id(note) is None


class Pipe:
    """Stands for the stdout pipe behind the event-loop writer: records what went out; can break."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.broken = False

    async def write(self, text: str) -> None:
        self.lines.append(text)

    async def flush(self) -> None:
        if self.broken:
            raise BrokenPipeError("the client went away")

    async def drained(self) -> None:
        pass


async def test_the_stdio_writer_reports_each_message_once_the_pipe_took_it() -> None:
    from peers.stdio import Wire

    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](10)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](10)
    pipe = Pipe()
    wire = Wire(read_recv, write_send, pipe, write_recv, read_send)  # type: ignore[arg-type]
    written: list[Any] = []
    wire.on_written = written.append
    async with anyio.create_task_group() as tg:
        tg.start_soon(wire.run_writer)
        await write_send.send(SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=1, result={})))
        await wire.drained()
        assert written == [1] and len(pipe.lines) == 1
        pipe.broken = True
        await write_send.send(SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=2, result={})))
        # The failed write ends the session (as stdin EOF would) and reports nothing.
        with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
            await read_recv.receive()
        tg.cancel_scope.cancel()
    assert written == [1]


async def test_tracked_writer_counts_pushes() -> None:
    send, receive = anyio.create_memory_object_stream[SessionMessage](10)
    writer = TrackedWriter(send)
    await writer.send(SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=5, result={})))
    await writer.send(
        SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/claude/channel"))
    )
    assert writer.channel_sent == 1
    send.close()
    receive.close()


async def test_tracked_writer_reports_a_response_it_could_not_hand_on() -> None:
    send, receive = anyio.create_memory_object_stream[SessionMessage](0)
    failed: list[Any] = []
    writer = TrackedWriter(send, failed=failed.append)
    # Cancelled while the stream is full: the response never goes out.
    with anyio.move_on_after(0.05):
        await writer.send(SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=6, result={})))
    receive.close()
    with pytest.raises(anyio.BrokenResourceError):
        await writer.send(SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=7, result={})))
    assert failed == [6, 7]
    send.close()


async def test_cancel_tap_reports_a_cancel_once_the_dispatcher_handled_it() -> None:
    send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](10)
    cancelled: list[Any] = []
    tap = CancelTap(receive, cancelled.append)
    cancel = types.JSONRPCNotification(
        jsonrpc="2.0", method="notifications/cancelled", params={"requestId": 3}
    )
    await send.send(SessionMessage(cancel))
    await send.send(SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="ping")))
    send.close()
    items = tap.__aiter__()
    await items.__anext__()
    assert cancelled == []  # the dispatcher has not handled it yet
    await items.__anext__()
    assert cancelled == [3]
    receive.close()


@dataclass
class Ctx:
    """The one field of the SDK's request context the handler reads."""

    request_id: int | str | None


async def rig_poll() -> None:
    # The acks go out from the session's background loop; nothing to await on meanwhile.
    await anyio.sleep(0.01)


class Rig:
    def __init__(self, server: PeersServer, session: Session, service: PeersService) -> None:
        self.server, self.session, self.service = server, session, service

    async def call(self, request_id: int, tool: str = "whoami") -> list[str]:
        params = types.CallToolRequestParams(name=tool, arguments={})
        result = await self.server.call_tool(Ctx(request_id), params)  # type: ignore[arg-type]
        mail = (result.structured_content or {}).get("new_mail", {}).get("messages", [])
        return [m["body"] for m in mail]

    async def acked(self) -> None:
        with anyio.fail_after(10):
            while await self.unread():
                await rig_poll()

    async def unread(self) -> list[str]:
        assert self.session.peer is not None
        return [m.body for m in await self.service.pending(self.session.peer.id)]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    settings = load_settings(url=f"sqlite:///{tmp_path}/p.db", namespace="w")
    async with create_transport(settings) as transport:
        service = PeersService(transport, settings)
        session = Session(service, settings)
        await session.build_context("codex", PushState.OFF, cwd=str(tmp_path))
        me = await session.register()
        other = await service.register(
            service.new_peer(cwd=str(tmp_path), pid=os.getpid(),
                             pid_start=process_start_time(os.getpid()), name="other")
        )  # fmt: skip
        await service.send(Sender.of(other), me.id, "hello")
        server = PeersServer(settings)
        server.attach(session)
        async with anyio.create_task_group() as tg:
            session.start(tg)
            yield Rig(server, session, service)
            tg.cancel_scope.cancel()


async def test_mail_of_a_cancelled_call_comes_with_the_next_result(rig: Rig) -> None:
    assert await rig.call(7) == ["hello"]
    rig.server.request_cancelled(7)  # cancelled before its write started: never written
    assert await rig.call(8) == ["hello"]
    rig.server.request_cancelled(8)  # written or not, the client ignores it
    assert await rig.call(9) == ["hello"]
    rig.server.response_written(8)  # 8's mail went back: its write changes nothing
    assert await rig.unread() == ["hello"]
    rig.server.response_written(9)
    await rig.acked()
    assert rig.session.results_written == 1


async def test_a_result_that_failed_to_go_out_gives_its_mail_back(rig: Rig) -> None:
    assert await rig.call(7) == ["hello"]
    rig.server.response_not_written(7)
    rig.server.request_cancelled(7)  # the cancel that caused it changes nothing more
    assert await rig.call(8) == ["hello"]


async def test_a_call_cancelled_before_its_result_was_built_keeps_nothing(rig: Rig) -> None:
    rig.server.request_cancelled(11)  # the handler was still running
    assert await rig.call(11) == ["hello"]
    assert await rig.call(12) == ["hello"]  # 11's result was never going out
