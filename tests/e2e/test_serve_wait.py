"""End-to-end ``wait_for_messages``: real ``peers serve`` processes on SQLite and Redis.

An orchestrator hands out work and waits for the answer: the wait returns as
soon as a matching message is unread, takes it the way ``check_messages`` does
(acknowledged once the response was written), leaves the rest unread and says
so, and gives nothing away when it is cancelled or the server stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
import pytest

from peers.mcpclient import PeerClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# What does not depend on the backend's wake-up runs on SQLite alone.
sqlite_only = pytest.mark.parametrize("store_env", ["sqlite"], indirect=True)


def _text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def _wait(client: PeerClient, **args: Any) -> dict[str, Any]:
    result = await client.call("wait_for_messages", **args)
    if result.is_error:
        raise AssertionError(f"wait_for_messages failed: {_text(result)}")
    return dict(result.structured_content or {})


async def _error(client: PeerClient, **args: Any) -> tuple[dict[str, Any], str]:
    result = await client.call("wait_for_messages", **args)
    assert result.is_error, _text(result)
    return dict(result.structured_content or {}), _text(result)


def _bodies(block: dict[str, Any]) -> list[str]:
    return [m["body"] for m in block["messages"]]


async def _unread(store: Any, peer_id: str) -> list[str]:
    return [m.body for m in await store.fetch(peer_id)]


async def _until_unread(store: Any, peer_id: str, bodies: list[str]) -> None:
    """The mailbox holds exactly these unread bodies (acks go out in the background)."""
    with anyio.fail_after(15):
        while await _unread(store, peer_id) != bodies:
            await anyio.sleep(0.05)


class Waiting:
    """A wait_for_messages call running in the background, and the progress it reported."""

    def __init__(self, client: PeerClient, args: dict[str, Any]) -> None:
        self.client = client
        self.args = args
        self.progress: list[tuple[float, float | None, str | None, float]] = []
        self.started = anyio.Event()
        self.result: types.CallToolResult | None = None
        self.done = anyio.Event()
        self.returned_at = 0.0

    async def _on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, total, message, time.monotonic()))
        self.started.set()

    async def run(self) -> None:
        try:
            self.result = await self.client.session.call_tool(
                "wait_for_messages", self.args, progress_callback=self._on_progress
            )
            self.returned_at = time.monotonic()
        finally:
            self.done.set()

    async def block(self, timeout: float = 15) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            await self.done.wait()
        assert self.result is not None and not self.result.is_error, self.result
        return dict(self.result.structured_content or {})


async def test_a_reply_sent_while_waiting_returns_at_once_and_is_read_once_written(
    session: Callable[..., PeerClient], store: Any
) -> None:
    async with (
        session("orch", client="codex-mcp-client", channel=False) as orch,
        session("worker", client="codex-mcp-client", channel=False) as worker,
    ):
        o = await orch.wait_registered()
        await worker.wait_registered()
        task = await orch.call_ok(
            "send_message", to_id="worker", message="add validation; reply DONE"
        )
        waiting = Waiting(orch, {"timeout_s": 60, "from": "worker", "reply_to": task["message_id"]})
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting.run)
            with anyio.fail_after(15):
                await waiting.started.wait()  # the server is waiting now
            await worker.call_ok(
                "send_message", to_id="orch", message="DONE", reply_to=task["message_id"]
            )
            sent_at = time.monotonic()
            block = await waiting.block()
        assert _bodies(block) == ["DONE"]
        assert waiting.returned_at - sent_at < 2.0  # at once, not at a re-check (5 s)
        [message] = block["messages"]
        assert message["from_name"] == "worker" and message["reply_to"] == task["message_id"]
        assert message["reply_with"] == {
            "to_id": message["from_id"],
            "reply_to": message["message_id"],
        }
        assert block["timed_out"] is False and block["count"] == 1 and block["other_waiting"] == 0
        assert block["waiting_for"].startswith("a message from worker (")
        assert block["waiting_for"].endswith(f"answering {task['message_id']}")
        text = _text(waiting.result)  # type: ignore[arg-type]
        assert "DONE" in text and "to answer: send_message" in text and "not from your user" in text
        await _until_unread(store, o["id"], [])  # acknowledged: its response was written
        assert (await orch.call_ok("check_messages"))["messages"] == []


@sqlite_only
async def test_a_message_already_unread_returns_without_waiting(
    session: Callable[..., PeerClient],
) -> None:
    async with (
        session("orch", client="codex-mcp-client", channel=False) as orch,
        session("worker", client="codex-mcp-client", channel=False) as worker,
    ):
        await orch.wait_registered()
        await worker.wait_registered()
        await worker.call_ok("send_message", to_id="orch", message="early")
        started = time.monotonic()
        block = await _wait(orch, timeout_s=30)
        assert time.monotonic() - started < 5
        assert _bodies(block) == ["early"] and block["timed_out"] is False


async def test_the_timeout_returns_nothing_and_says_how_long_it_waited(
    session: Callable[..., PeerClient],
) -> None:
    async with session("orch", client="codex-mcp-client", channel=False) as orch:
        await orch.wait_registered()
        started = time.monotonic()
        result = await orch.call("wait_for_messages", timeout_s=1.5)
        took = time.monotonic() - started
        block = dict(result.structured_content or {})
        assert not result.is_error
        assert block["messages"] == [] and block["count"] == 0 and block["timed_out"] is True
        assert 1.5 <= block["waited_s"] < 3 and 1.5 <= took < 4
        assert block["timeout_s"] == 1.5
        assert "no message after 1.5 s" in _text(result)
        zero = await _wait(orch, timeout_s=0)  # looks without waiting
        assert zero["timed_out"] is True and zero["waited_s"] < 1


async def test_filters_take_only_what_matches_and_count_the_rest_left_unread(
    session: Callable[..., PeerClient], store: Any
) -> None:
    async with (
        session("orch", client="codex-mcp-client", channel=False) as orch,
        session("w1", client="codex-mcp-client", channel=False) as w1,
        session("w2", client="codex-mcp-client", channel=False) as w2,
    ):
        o = await orch.wait_registered()
        await w1.wait_registered()
        me2 = await w2.wait_registered()
        t1 = (await orch.call_ok("send_message", to_id="w1", message="task 1"))["message_id"]
        t2 = (await orch.call_ok("send_message", to_id="w2", message="task 2"))["message_id"]
        await w2.call_ok("send_message", to_id="orch", message="w2 done", reply_to=t2)
        await w1.call_ok("send_message", to_id="orch", message="w1 chatter")
        # Neither is from w1 answering t1: the wait times out, takes nothing, and says what waits.
        block = await _wait(orch, timeout_s=0.5, **{"from": "w1"}, reply_to=t1)
        assert block["timed_out"] is True and block["messages"] == []
        assert block["other_waiting"] == 2 and block["more_waiting"] == 2
        assert sorted((s["from_name"], s["count"]) for s in block["other_from"]) == [
            ("w1", 1),
            ("w2", 1),
        ]
        assert "2 other unread messages" in block["note"] and "check_messages" in block["note"]
        await _until_unread(store, o["id"], ["w2 done", "w1 chatter"])
        # reply_to alone: w2's answer; from alone, by an id prefix: w1's chatter.
        assert _bodies(await _wait(orch, timeout_s=5, reply_to=t2)) == ["w2 done"]
        await w1.call_ok("send_message", to_id="orch", message="w1 done", reply_to=t1)
        both = await _wait(orch, timeout_s=5, **{"from": "w1"}, reply_to=t1)
        assert _bodies(both) == ["w1 done"] and both["other_waiting"] == 1
        by_id = await _wait(orch, timeout_s=0.3, **{"from": me2["id"][:6]})
        assert by_id["messages"] == [] and by_id["timed_out"] is True  # w2 has nothing unread
        chatter = await _wait(orch, timeout_s=5, **{"from": "W1"})  # names are lowercase
        assert _bodies(chatter) == ["w1 chatter"] and chatter["other_waiting"] == 0
        await _until_unread(store, o["id"], [])


@sqlite_only
async def test_a_name_nobody_holds_yet_is_waited_for(
    session: Callable[..., PeerClient],
) -> None:
    """An orchestrator may start waiting before its worker's session is up."""
    async with session("orch", client="codex-mcp-client", channel=False) as orch:
        await orch.wait_registered()
        waiting = Waiting(orch, {"timeout_s": 60, "from": "late-worker"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting.run)
            with anyio.fail_after(15):
                await waiting.started.wait()
            async with session("late-worker", client="codex-mcp-client", channel=False) as late:
                await late.wait_registered()
                await late.call_ok("send_message", to_id="orch", message="up and done")
                block = await waiting.block()
        assert _bodies(block) == ["up and done"]
        assert "no session holds the name 'late-worker'" in block["note"]


@sqlite_only
async def test_progress_is_reported_to_a_client_that_asked(
    session: Callable[..., PeerClient],
) -> None:
    # Every second here (5 s by default: PEERS_WAIT_PROGRESS_EVERY).
    async with session(
        "orch", client="codex-mcp-client", channel=False, PEERS_WAIT_PROGRESS_EVERY="1"
    ) as orch:
        await orch.wait_registered()
        waiting = Waiting(orch, {"timeout_s": 2.5})
        started = time.monotonic()
        await waiting.run()
        block = await waiting.block()
        assert block["timed_out"] is True
        # One as the wait starts, then one a second until the timeout.
        assert len(waiting.progress) == 3, waiting.progress
        (p0, total0, msg0, at0), (p1, _, _, at1), (p2, _, _, at2) = waiting.progress
        assert total0 == 2.5 and p0 < 0.5 and 0.9 <= p1 <= 1.5 and 1.9 <= p2 <= 2.5
        assert at0 - started < 2 and 0.7 <= at1 - at0 <= 1.5 and 0.7 <= at2 - at1 <= 1.5
        assert msg0 is not None and "waiting for a message" in msg0
        assert [p for p, *_ in waiting.progress] == sorted(p for p, *_ in waiting.progress)


async def test_a_cancelled_wait_ends_and_takes_nothing(
    session: Callable[..., PeerClient], store: Any
) -> None:
    """Cancelled by the client: the wait ends (it no longer holds pushes back) and acks nothing."""
    async with (
        session("orch") as orch,  # channel loaded: push unconfirmed, no transcript
        session("worker", client="codex-mcp-client", channel=False) as worker,
    ):
        o = await orch.wait_registered()
        assert o["push"] == "unconfirmed"
        await worker.wait_registered()
        waiting = Waiting(orch, {"timeout_s": 120, "from": "worker"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting.run)
            with anyio.fail_after(15):
                await waiting.started.wait()
            tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled
        assert waiting.result is None
        # Were the wait still running, it would keep this message back from the channel.
        await worker.call_ok("send_message", to_id="orch", message="after the cancel")
        pushed = await orch.next_channel(timeout=10)
        assert pushed.content == "after the cancel"
        assert await _unread(store, o["id"]) == ["after the cancel"]  # pushed, not acked
        started = time.monotonic()
        await orch.call_ok("whoami")
        assert time.monotonic() - started < 5  # the server answers; nothing is stuck


async def test_shutdown_ends_a_wait_at_once_and_acks_nothing(
    session: Callable[..., PeerClient], store: Any
) -> None:
    async with (
        session("orch", client="codex-mcp-client", channel=False) as orch,
        session("worker", client="codex-mcp-client", channel=False) as worker,
    ):
        o = await orch.wait_registered()
        await worker.wait_registered()
        await worker.call_ok("send_message", to_id="orch", message="not what it waits for")
        waiting = Waiting(orch, {"timeout_s": 120, "from": "nobody-yet"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _swallow(waiting.run()))
            with anyio.fail_after(15):
                await waiting.started.wait()
            started = time.monotonic()
            os.kill(o["pid"], signal.SIGTERM)
            with anyio.fail_after(5):
                await waiting.done.wait()
            took = time.monotonic() - started
        assert took < 2
        with anyio.fail_after(10):
            while (peer := await store.get_peer(o["id"])) is not None and peer.online:
                await anyio.sleep(0.05)
        assert await _unread(store, o["id"]) == ["not what it waits for"]


async def _swallow(call: Any) -> None:
    with contextlib.suppress(Exception):  # the connection ends under the call: the point
        await call


async def test_a_push_session_gets_the_matching_message_in_the_result_and_the_rest_by_push(
    session: Callable[..., PeerClient], store: Any
) -> None:
    async with (
        session("orch") as orch,  # channel loaded, push unconfirmed
        session("worker", client="codex-mcp-client", channel=False) as worker,
        session("other", client="codex-mcp-client", channel=False) as other,
    ):
        o = await orch.wait_registered()
        await worker.wait_registered()
        await other.wait_registered()
        waiting = Waiting(orch, {"timeout_s": 60, "from": "worker"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting.run)
            with anyio.fail_after(15):
                await waiting.started.wait()
            await other.call_ok("send_message", to_id="orch", message="by push")
            assert (await orch.next_channel()).content == "by push"  # not held: no match
            await worker.call_ok("send_message", to_id="orch", message="in the result")
            block = await waiting.block()
        assert _bodies(block) == ["in the result"]
        assert "also_pushed" not in block["messages"][0]
        assert [c.content for c in orch.channels] == ["by push"]  # never pushed as well
        await _until_unread(store, o["id"], ["by push"])  # the push waits for proof


@sqlite_only
async def test_a_match_pushed_during_the_call_is_named_not_shown_twice(
    session: Callable[..., PeerClient],
) -> None:
    """Claude Code shows a push that came mid-call after the result: the result names it only."""
    async with (
        session("orch") as orch,
        session("worker", client="codex-mcp-client", channel=False) as worker,
    ):
        await orch.wait_registered()
        await worker.wait_registered()
        await worker.call_ok("send_message", to_id="orch", message="pushed first")
        pushed = await orch.next_channel()
        started = time.monotonic()
        block = await _wait(orch, timeout_s=60, **{"from": "worker"})
        assert time.monotonic() - started < 5  # it arrived: no reason to wait
        assert block["messages"] == [] and block["timed_out"] is False
        [named] = block["on_channel"]
        assert named["message_id"] == pushed.meta["message_id"] and named["from_name"] == "worker"
        assert "<channel>" in block["note"]
        # Not proven shown (no transcript): it comes with the next call, marked as maybe seen.
        [again] = (await orch.call_ok("check_messages"))["messages"]
        assert again["body"] == "pushed first" and "also_pushed" in again


async def test_two_waits_in_one_session_both_wake(
    session: Callable[..., PeerClient],
) -> None:
    """One doorbell, several waiters (two waits and the push loop): a ring reaches each."""
    async with (
        session("orch") as orch,
        session("a", client="codex-mcp-client", channel=False) as a,
        session("b", client="codex-mcp-client", channel=False) as b,
    ):
        await orch.wait_registered()
        await a.wait_registered()
        await b.wait_registered()
        wait_a = Waiting(orch, {"timeout_s": 60, "from": "a"})
        wait_b = Waiting(orch, {"timeout_s": 60, "from": "b"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_a.run)
            tg.start_soon(wait_b.run)
            with anyio.fail_after(15):
                await wait_a.started.wait()
                await wait_b.started.wait()
            await b.call_ok("send_message", to_id="orch", message="from b")
            sent_b = time.monotonic()
            assert _bodies(await wait_b.block()) == ["from b"]
            await a.call_ok("send_message", to_id="orch", message="from a")
            sent_a = time.monotonic()
            assert _bodies(await wait_a.block()) == ["from a"]
        assert wait_b.returned_at - sent_b < 2 and wait_a.returned_at - sent_a < 2
        assert orch.channels == []  # both were waited for: neither went by push


@sqlite_only
async def test_bad_arguments_are_explained(session: Callable[..., PeerClient]) -> None:
    async with (
        session("orch", client="codex-mcp-client", channel=False) as orch,
        session("worker", client="codex-mcp-client", channel=False) as worker,
    ):
        me = await orch.wait_registered()
        await worker.wait_registered()
        err, text = await _error(orch, timeout_s=-1)
        assert err["error"] == "tool_input_error" and "at least 0" in err["message"]
        assert "at least 0" in text and "600" in text
        err, _ = await _error(orch, timeout_s="soon")
        assert "must be a number" in err["message"]
        err, _ = await _error(orch, timeout=30)
        assert "did you mean 'timeout_s'" in err["message"]
        err, _ = await _error(orch, timeout_s=1, reply_to="01nosuchmessage")
        assert err["error"] == "message_not_found" and "reply_to" in err["hint"]
        err, _ = await _error(orch, timeout_s=1, **{"from": me["id"]})
        assert err["error"] == "invalid_input" and "is you" in err["message"]
        err, text = await _error(orch, timeout_s=1, **{"from": "No Such Peer"})
        assert err["error"] == "peer_not_found" and "worker" in err["allowed"]
        assert "'from'" in err["hint"] and "worker" in text
        # A quoted number is read as one; more than the maximum is cut to it, and said.
        await worker.call_ok("send_message", to_id="orch", message="ready")
        block = await _wait(orch, timeout_s="3600", **{"from": "worker"})
        assert _bodies(block) == ["ready"] and block["timeout_s"] == 600
        assert "timeout_s 3600 is more than the maximum" in block["note"]
