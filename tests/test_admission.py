"""How many requests ``peers serve`` reads ahead (peers.admission)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
import pytest

from peers.admission import Admission

pytestmark = pytest.mark.anyio


def call(rid: Any, tool: str = "send_message") -> types.JSONRPCRequest:
    return types.JSONRPCRequest(
        jsonrpc="2.0", id=rid, method="tools/call", params={"name": tool, "arguments": {}}
    )


def cancel(rid: Any) -> types.JSONRPCNotification:
    return types.JSONRPCNotification(
        jsonrpc="2.0", method="notifications/cancelled", params={"requestId": rid}
    )


async def admitted_later(
    tg: anyio.abc.TaskGroup, admission: Admission, message: types.JSONRPCMessage
) -> anyio.Event:
    """Start admitting ``message`` in the background; the event is set once it is in."""
    done = anyio.Event()

    async def admit() -> None:
        await admission.admit(message)
        done.set()

    tg.start_soon(admit)
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    return done


async def test_requests_past_the_limit_wait_until_one_is_answered() -> None:
    admission = Admission(limit=3, patience=60)
    for rid in range(3):
        await admission.admit(call(rid))
    assert admission.open == 3
    async with anyio.create_task_group() as tg:
        fourth = await admitted_later(tg, admission, call(3))
        assert not fourth.is_set()
        admission.done(1)
        with anyio.fail_after(5):
            await fourth.wait()
    assert admission.open == 3


async def test_a_cancelled_request_frees_its_room() -> None:
    """A cancelled request is never answered: the cancel itself ends it."""
    admission = Admission(limit=2, patience=60)
    await admission.admit(call("a"))
    await admission.admit(call("b"))
    async with anyio.create_task_group() as tg:
        third = await admitted_later(tg, admission, call("c"))
        assert not third.is_set()
        await admission.admit(cancel("a"))
        with anyio.fail_after(5):
            await third.wait()
    assert admission.open == 2


async def test_waiting_calls_the_handshake_notifications_and_responses_are_not_counted() -> None:
    admission = Admission(limit=1, patience=60)
    with anyio.fail_after(5):
        for rid in range(20):
            await admission.admit(call(rid, tool="wait_for_messages"))
        await admission.admit(
            types.JSONRPCRequest(jsonrpc="2.0", id=1, method="initialize", params={})
        )
        await admission.admit(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized"))
        await admission.admit(types.JSONRPCResponse(jsonrpc="2.0", id=5, result={}))
        await admission.admit(cancel(99))  # never open: nothing to free
    assert admission.open == 0


async def test_a_request_id_open_twice_counts_once() -> None:
    admission = Admission(limit=2, patience=60)
    with anyio.fail_after(5):
        for _ in range(5):
            await admission.admit(call(7))
    assert admission.open == 1
    admission.done(7)
    assert admission.open == 0


async def test_a_request_never_answered_costs_a_moment_not_the_session() -> None:
    """Past its patience admission lets a request in anyway, over the limit."""
    admission = Admission(limit=1, patience=0.05)
    await admission.admit(call(1))  # never answered
    with anyio.fail_after(5):
        await admission.admit(call(2))
    assert admission.open == 2
    admission.done(2)
    admission.done(1)
    assert admission.open == 0


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(limit=0)


async def test_ids_are_one_request_as_the_sdk_correlates_them() -> None:
    """A cancel naming request 7 as "7" ends it (the SDK cancels it too)."""
    admission = Admission(limit=4, patience=60)
    await admission.admit(call(7))
    await admission.admit(call("x"))
    await admission.admit(cancel("7"))
    admission.done("x")
    assert admission.open == 0


async def test_a_request_open_far_too_long_stops_taking_room() -> None:
    """Leaks must not add up: past ``stale`` a request no answer will end stops counting."""
    admission = Admission(limit=1, patience=0.01, stale=0.0)
    await admission.admit(call(1))  # never answered
    with anyio.fail_after(5):
        await admission.admit(call(2))
    assert admission.open == 1  # 1 is gone, 2 is in
    admission.done(2)
    assert admission.open == 0


async def test_the_stdin_reader_reads_on_only_with_room() -> None:
    """The reader itself asks for room: past the limit the next line stays unread."""
    import json

    from peers.stdio import LineReader, _read_messages

    stream = asyncio.StreamReader()
    for rid in range(3):
        stream.feed_data(json.dumps(call(rid).model_dump(exclude_none=True)).encode() + b"\n")
    stream.feed_eof()
    admission = Admission(limit=2, patience=60)
    send, receive = anyio.create_memory_object_stream[Any](10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_read_messages, LineReader(stream), send, admission)
        with anyio.fail_after(5):
            got = [await receive.receive(), await receive.receive()]
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        with pytest.raises(anyio.WouldBlock):
            receive.receive_nowait()  # the third waits for room
        admission.done(0)
        with anyio.fail_after(5):
            got.append(await receive.receive())
    assert [item.message.id for item in got] == [0, 1, 2]
