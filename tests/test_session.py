"""The session's delivery rules, on a real SQLite store and a transcript file the test writes.

A message is acknowledged only once shown to the model: with a tool result that
was written (commit), or by the channel when the transcript shows it. A push made
while a call is in flight waits for a later call; a channel that drops messages
turns push off. Background loops survive failures.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from peers import constants as c
from peers import session as session_module
from peers.config import load_settings
from peers.errors import BackendUnavailable, PeersError
from peers.mcpclient import channel_text
from peers.models import Message, Peer, PushState, ReceiveMode
from peers.procinfo import process_start_time
from peers.service import PeersService, Sender
from peers.session import Session
from peers.transcript import Transcript
from peers.transports import create_transport

pytestmark = pytest.mark.anyio


class PipeClosed(PeersError):
    """Stands for the server's DeliveryFailed: the notification was not written."""


class Rig:
    """A session under test, another peer that sends to it, and the session's transcript."""

    def __init__(self, service: PeersService, session: Session, other: Peer, path: Path) -> None:
        self.service = service
        self.session = session
        self.other = other
        self.transcript_path = path
        self.pushed: list[str] = []

    @property
    def me(self) -> Peer:
        assert self.session.peer is not None
        return self.session.peer

    async def send(self, body: str) -> Message:
        result = await self.service.send(Sender.of(self.other), self.me.id, body)
        return result.message

    def record(self, record: dict[str, Any]) -> None:
        with self.transcript_path.open("a") as fh:
            fh.write(json.dumps({"timestamp": "2026-01-01T00:00:00.000Z", **record}) + "\n")

    def show(self, message: Message) -> None:
        """Write what Claude Code writes when a channel message reaches the model."""
        text = channel_text("peers", message.body, {"message_id": message.id})
        self.record({"type": "queue-operation", "operation": "enqueue", "content": text})
        self.record({"type": "user", "message": {"role": "user", "content": text},
                     "origin": {"kind": "channel", "server": "peers"}})  # fmt: skip

    async def deliver(self, message: Message, sender: Peer | None) -> None:
        self.pushed.append(message.id)

    async def pushed_all(self, *messages: Message) -> None:
        with anyio.fail_after(10):
            while not all(m.id in self.pushed for m in messages):
                await anyio.sleep(0.01)

    async def confirm_channel(self) -> None:
        """Push a message and show it in the transcript: the channel is proven to work."""
        first = await self.send("proves the channel")
        await self.pushed_all(first)
        self.show(first)
        with anyio.fail_after(10):
            while self.session.push_state is not PushState.CONFIRMED:
                await anyio.sleep(0.01)

    async def pending_ids(self) -> list[str]:
        return [m.id for m in await self.service.pending(self.me.id)]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    settings = load_settings(
        url=f"sqlite:///{tmp_path}/p.db", namespace="s", safety_recheck=0.2, rate_limit=10_000
    )
    async with create_transport(settings) as transport:
        service = PeersService(transport, settings)
        session = Session(service, settings)
        path = tmp_path / "transcript.jsonl"
        path.write_text("")
        session.transcript = Transcript(path, "peers")
        await session.build_context("claude-code", PushState.UNCONFIRMED, cwd=str(tmp_path))
        await session.register()
        other = await service.register(
            service.new_peer(cwd=str(tmp_path), pid=os.getpid(),
                             pid_start=process_start_time(os.getpid()), name="other")
        )  # fmt: skip
        yield Rig(service, session, other, path)


async def running(rig: Rig, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` with the session's loops (push, transcript, acks) running."""
    async with anyio.create_task_group() as tg:
        rig.session.start(tg, rig.deliver)
        await body()
        tg.cancel_scope.cancel()


async def test_a_failed_push_is_pushed_again_and_a_push_alone_acks_nothing(rig: Rig) -> None:
    attempts = 0

    async def deliver(message: Message, sender: Peer | None) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise PipeClosed("client pipe closed")
        rig.pushed.append(message.body)

    await rig.send("first")
    await rig.send("second")
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.session.push_loop, deliver)
        with anyio.fail_after(10):
            while len(rig.pushed) < 2:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert rig.pushed == ["first", "second"]
    assert len(await rig.pending_ids()) == 2  # written, not shown: still pending


async def test_a_push_made_during_a_call_waits_for_a_later_call(rig: Rig) -> None:
    async def body() -> None:
        since = rig.session.call_started()  # a call is in flight
        message = await rig.send("sent while the call runs")
        await rig.pushed_all(message)
        # A working channel records it as received at once, and shows it after this
        # call's result: not in that result.
        text = channel_text("peers", message.body, {"message_id": message.id})
        rig.record({"type": "queue-operation", "operation": "enqueue", "content": text})
        assert not (await rig.session.take_mail(since)).messages
        rig.session.result_written()
        # Later calls: Claude Code holds it queued until the model can read it, so no
        # result carries a second copy, however many go out meanwhile.
        for _ in range(3):
            assert not (await rig.session.take_mail(rig.session.call_started())).messages
            rig.session.result_written()
        assert await rig.pending_ids() == [message.id]
        rig.show(message)  # shown at last: acknowledged by the transcript alone
        with anyio.fail_after(10):
            while await rig.pending_ids():
                await anyio.sleep(0.01)
        assert not (await rig.session.take_mail(rig.session.call_started())).messages

    await running(rig, body)


async def test_a_push_the_transcript_is_silent_on_goes_with_a_later_result(rig: Rig) -> None:
    async def body() -> None:
        message = await rig.send("not in the transcript yet")
        await rig.pushed_all(message)
        rig.session.result_written()
        # Neither received nor proven dropped once the grace ran out: the result carries
        # it, marked as possibly seen in the channel already.
        handout = await rig.session.take_mail(rig.session.call_started())
        assert [m.id for m in handout.messages] == [message.id]
        assert handout.also_pushed == {message.id}
        assert await rig.pending_ids() == [message.id]  # not before the result is written
        rig.session.result_written(handout)
        with anyio.fail_after(10):
            while await rig.pending_ids():
                await anyio.sleep(0.01)
        # Never shown twice.
        assert not (await rig.session.take_mail(rig.session.call_started())).messages

    await running(rig, body)


async def test_a_push_the_transcript_shows_is_acked_and_never_attached(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ids nothing waits on are dropped at once, not in bulk past the usual slack.
    monkeypatch.setattr(session_module, "_TRANSCRIPT_SLACK", 0)

    async def body() -> None:
        message = await rig.send("shown by the channel")
        await rig.pushed_all(message)
        rig.show(message)
        with anyio.fail_after(10):
            while await rig.pending_ids():
                await anyio.sleep(0.01)
        assert rig.session.push_state is PushState.CONFIRMED
        stored = await rig.service.transport.get_peer(rig.me.id)
        assert stored is not None and stored.push is PushState.CONFIRMED
        rig.session.result_written()
        assert not (await rig.session.take_mail(rig.session.call_started())).messages
        # Proven, it is done with: the reader keeps no id nothing waits on.
        transcript = rig.session.transcript
        assert transcript is not None and not transcript.shown and not transcript.received

    await running(rig, body)


async def test_a_push_shown_while_a_call_waits_is_not_attached(rig: Rig) -> None:
    async def body() -> None:
        message = await rig.send("shown a moment late")
        await rig.pushed_all(message)
        rig.session.result_written()

        async def show_soon() -> None:
            await anyio.sleep(0.05)  # the transcript is written in batches, a little later
            rig.show(message)

        async with anyio.create_task_group() as tg:
            tg.start_soon(show_soon)
            handout = await rig.session.take_mail(rig.session.call_started())
        assert not handout.messages

    await running(rig, body)


async def test_a_transcript_written_on_without_the_push_turns_push_off(rig: Rig) -> None:
    async def body() -> None:
        message = await rig.send("dropped by the gate")
        await rig.pushed_all(message)
        rig.record({"type": "user", "message": {"role": "user", "content": "the user types"}})
        # Written well after the push (as a prompt typed later would be), with no record of it.
        later = time.time() + 60
        os.utime(rig.transcript_path, (later, later))
        with anyio.fail_after(10):
            while rig.session.push_state is not PushState.OFF:
                await anyio.sleep(0.01)
        stored = await rig.service.transport.get_peer(rig.me.id)
        assert stored is not None
        assert (stored.push, stored.receive_mode) == (PushState.OFF, ReceiveMode.POLL)
        # Proven unseen: it goes with the very next result, without the "maybe seen" mark.
        handout = await rig.session.take_mail(rig.session.call_started())
        assert [m.id for m in handout.messages] == [message.id]
        assert not handout.also_pushed
        # Push is off: a new message is no longer pushed, and goes with the next result.
        later_message = await rig.send("after the drop")
        assert later_message.id not in rig.pushed
        rig.session.release(handout)
        again = await rig.session.take_mail(rig.session.call_started())
        assert [m.id for m in again.messages] == [message.id, later_message.id]

    await running(rig, body)


async def test_a_received_push_is_not_taken_for_a_drop(rig: Rig) -> None:
    async def body() -> None:
        message = await rig.send("received, shown later")
        await rig.pushed_all(message)
        text = channel_text("peers", message.body, {"message_id": message.id})
        rig.record({"type": "queue-operation", "operation": "enqueue", "content": text})
        later = time.time() + 60
        os.utime(rig.transcript_path, (later, later))
        await rig.session._read_transcript()
        assert rig.session.push_state is PushState.UNCONFIRMED
        assert await rig.pending_ids() == [message.id]

    await running(rig, body)


async def test_released_mail_comes_again_and_committed_mail_is_acked(rig: Rig) -> None:
    rig.session.push_state = PushState.OFF
    first = await rig.send("one")
    handout = await rig.session.take_mail(rig.session.call_started())
    assert [m.id for m in handout.messages] == [first.id]
    # A second call meanwhile (parallel tool calls) does not get it as well.
    assert not (await rig.session.take_mail(rig.session.call_started())).messages
    rig.session.release(handout)  # its result was never written (the call was cancelled)
    again = await rig.session.take_mail(rig.session.call_started())
    assert [m.id for m in again.messages] == [first.id]
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.session.ack_loop)
        rig.session.result_written(again)
        with anyio.fail_after(10):
            while await rig.pending_ids():
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


async def test_one_result_carries_a_bounded_amount_of_mail(rig: Rig) -> None:
    rig.session.push_state = PushState.OFF
    sent = [await rig.send(f"{i}:" + "x" * 20_000) for i in range(5)]
    handout = await rig.session.take_mail(rig.session.call_started(), budget=50_000)
    assert [m.id for m in handout.messages] == [m.id for m in sent[:2]]
    assert handout.more_waiting == 3
    rig.session.commit(handout)
    rest = await rig.session.take_mail(rig.session.call_started(), budget=1)
    assert [m.id for m in rest.messages] == [sent[2].id]  # the first one always whole


async def test_a_failing_background_loop_is_restarted(rig: Rig) -> None:
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("a bug nobody foresaw")

    with anyio.fail_after(10):
        await rig.session.supervise("flaky", flaky, delay=0.01)
    assert runs == 3


async def test_pushes_waiting_for_proof_do_not_starve_newer_messages(rig: Rig) -> None:
    """Regression: with a full fetch of pushed, unconfirmed mail, newer mail was never pushed."""

    async def body() -> None:
        first = [await rig.send(f"early {i}") for i in range(105)]
        await rig.pushed_all(*first)
        late = await rig.send("late")
        await rig.pushed_all(late)

    await running(rig, body)


async def test_the_push_loop_reads_a_push_waiting_for_proof_about_once_a_second(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pushes waiting for proof stay unread in the store; the loop's reads between its
    full ones (c.PUSH_FULL_READ_EVERY) leave them there instead of decoding them again
    for every new message."""
    store = rig.service.transport
    fetch = store.fetch
    reads: list[list[str]] = []

    async def counted(recipient_id: str, limit: int = 100, skip: Collection[str] = ()) -> list[Message]:
        got = await fetch(recipient_id, limit, skip)
        reads.append([m.id for m in got])
        return got

    monkeypatch.setattr(store, "fetch", counted)
    monkeypatch.setattr(c, "PUSH_FULL_READ_EVERY", 60.0)  # one full read: the first

    async def body() -> None:
        sent = []
        for i in range(30):  # one at a time: each one its own read of the push loop
            sent.append(await rig.send(f"m{i}"))
            await rig.pushed_all(sent[-1])
        returned = [i for ids in reads for i in ids]
        assert len(reads) >= 30
        assert len(returned) == len(set(returned)) == 30  # each message read once
        assert len(await rig.pending_ids()) == 30  # pushed, not shown: all still pending

    await running(rig, body)


async def test_a_push_that_left_the_mailbox_stops_waiting_for_proof(rig: Rig) -> None:
    """A push the store no longer holds as unread (acknowledged elsewhere, expired) is
    dropped from those waiting for proof at the next full read, within about a second."""

    async def body() -> None:
        gone = await rig.send("acknowledged elsewhere")
        kept = await rig.send("still unread")
        await rig.pushed_all(gone, kept)
        assert {gone.id, kept.id} <= rig.session._pushed.keys()
        await rig.service.ack(rig.me.id, [gone.id])
        with anyio.fail_after(c.PUSH_FULL_READ_EVERY + 5):
            while gone.id in rig.session._pushed:
                await rig.send(f"traffic {time.monotonic()}")  # reads between full ones
                await anyio.sleep(0.05)
        assert kept.id in rig.session._pushed

    await running(rig, body)


async def test_acks_still_on_their_way_do_not_keep_newer_mail_from_a_full_read(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a full read's window counted pushes and reservations but not messages
    being acknowledged; with a window's worth of acks held up, newer mail was not pushed."""
    store = rig.service.transport
    ack = store.ack
    gate = anyio.Event()

    async def held_up(recipient_id: str, message_ids: Sequence[str]) -> int:
        await gate.wait()  # a slow store: the acks stay on their way
        return await ack(recipient_id, message_ids)

    monkeypatch.setattr(store, "ack", held_up)
    monkeypatch.setattr(c, "PUSH_FULL_READ_EVERY", 0.0)  # every read a full one

    async def body() -> None:
        early = [await rig.send(f"early {i}") for i in range(c.FETCH_LIMIT + 5)]
        await rig.pushed_all(*early)
        for message in early:
            rig.show(message)
        with anyio.fail_after(10):
            while len(rig.session._acking) < len(early):
                await anyio.sleep(0.01)
        late = await rig.send("late")
        await rig.pushed_all(late)
        gate.set()

    await running(rig, body)


async def test_a_shown_message_whose_ack_failed_is_remembered_until_acknowledged(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only acknowledged ids are forgotten past _SHOWN_MEMORY: one whose ack the store
    refused comes back with the next read and is acknowledged then, never shown again."""
    monkeypatch.setattr(session_module, "_SHOWN_MEMORY", 5)
    store = rig.service.transport
    ack = store.ack
    refusing = True

    async def flaky(recipient_id: str, message_ids: Sequence[str]) -> int:
        if refusing:
            raise BackendUnavailable("the store is restarting")
        return await ack(recipient_id, message_ids)

    monkeypatch.setattr(store, "ack", flaky)

    async def shown(count: int) -> list[str]:
        """The mail of one written result (the poll path), its ack handed to the store."""
        handout = await rig.session.take_mail(rig.session.call_started())
        assert len(handout.messages) == count
        rig.session.result_written(handout)
        await rig.session._flush_acks()
        return [m.id for m in handout.messages]

    refused = [(await rig.send(f"refused {i}")).id for i in range(3)]
    assert await shown(3) == refused
    for i in range(4):  # well past _SHOWN_MEMORY, every ack refused
        for j in range(5):
            await rig.send(f"later {i}.{j}")
        await shown(5)  # only the new ones: what was shown stays remembered
    assert len(await rig.pending_ids()) == 23  # the store took none of those acks
    refusing = False
    # The next read finds them all: acknowledged now, and not in this result.
    await rig.send("newest")
    await shown(1)
    await rig.session._flush_acks()
    assert await rig.pending_ids() == []
    for i in range(3):  # from here on they are forgotten like any other
        await rig.send(f"last {i}")
        await shown(1)
    assert not set(refused) & rig.session._shown.keys()
    assert len(rig.session._shown) == 5


async def test_a_message_shown_while_the_push_loop_works_is_not_pushed_after_all(
    rig: Rig,
) -> None:
    """Regression (a reviewer's find): the loop checked each message as it reached it, so
    one shown, acknowledged and forgotten by _shown meanwhile (a burst of proofs) was
    pushed again."""
    early = await rig.send("older, pushed first")
    shown = await rig.send("newer, shown with a result")
    rig.session._mark_shown([shown.id])  # its ack queued, not committed
    pushed: list[str] = []

    async def deliver(message: Message, sender: Peer | None) -> None:
        pushed.append(message.id)
        if message.id == early.id:
            # While this push is written, the ack goes through and the transcript proves
            # more pushes shown than _shown remembers.
            await rig.session._flush_acks()
            rig.session._mark_shown([f"burst{i}" for i in range(session_module._SHOWN_MEMORY + 1)])

    with anyio.move_on_after(1.0):
        await rig.session.push_loop(deliver)
    assert pushed == [early.id]


async def test_a_record_created_after_the_push_without_it_is_proof_of_a_drop(rig: Rig) -> None:
    """Claude Code records a channel message as it receives it: a later record without it
    (a prompt the user typed a moment after the push) proves the drop, without waiting
    for the file's own clock."""
    async def body() -> None:
        message = await rig.send("dropped while idle")
        await rig.pushed_all(message)
        typed = datetime.fromtimestamp(time.time() + 0.5, UTC).isoformat().replace("+00:00", "Z")
        rig.record(
            {"type": "user", "message": {"role": "user", "content": "the user types"},
             "origin": {"kind": "human"}, "timestamp": typed}
        )  # fmt: skip
        # The very next result carries it, proven unseen, on its first call: no step later.
        handout = await rig.session.take_mail(rig.session.call_started())
        assert [m.id for m in handout.messages] == [message.id]
        assert not handout.also_pushed

    await running(rig, body)


async def test_a_call_well_after_a_push_with_a_silent_transcript_proves_the_drop(rig: Rig) -> None:
    """Claude Code would have recorded the push on receipt: a tool call it sent later, and a
    transcript that still holds nothing of the push once it had time to write, is proof."""
    async def body() -> None:
        message = await rig.send("dropped before this call")
        await rig.pushed_all(message)
        pushed_at = rig.session._pushed[message.id].at
        with anyio.fail_after(10):  # the call comes a moment after the push
            while time.time() < pushed_at + c.PUSH_RECORD_MARGIN:
                await anyio.sleep(0.01)
        handout = await rig.session.take_mail(rig.session.call_started())
        assert [m.id for m in handout.messages] == [message.id]
        assert not handout.also_pushed
        assert rig.session.push_state is PushState.OFF

    await running(rig, body)


async def test_the_hook_right_after_our_result_leaves_a_push_of_that_call_to_the_channel(
    rig: Rig,
) -> None:
    from peers.hookhandler import SessionHooks
    from peers.hookserver import HookRequest

    hooks = SessionHooks(rig.session)

    async def post_tool_use(tool: str) -> str:
        reply = await hooks(HookRequest("PostToolUse", "claude", {"tool_name": tool}))
        if reply.on_written is not None:
            await reply.on_written()
        return reply.stdout

    async def body() -> None:
        rig.session.call_started()  # a peers tool call is in flight
        message = await rig.send("pushed during the call")
        await rig.pushed_all(message)
        rig.session.result_written()
        # Claude Code runs PostToolUse before the model reads the result, and shows the
        # push after that result: the hook must not carry a second copy.
        assert message.id not in await post_tool_use("mcp__peers__whoami")
        # A later step, the transcript still silent on it: now it comes with the hook.
        assert message.body in await post_tool_use("Read")

    await running(rig, body)


async def test_after_clear_the_session_follows_the_new_transcript(rig: Rig, tmp_path: Path) -> None:
    from peers.hookhandler import SessionHooks
    from peers.hookserver import HookRequest

    hooks = SessionHooks(rig.session)
    fresh = tmp_path / "after-clear.jsonl"
    fresh.write_text("")

    async def body() -> None:
        message = await rig.send("pushed into the conversation that /clear ended")
        await rig.pushed_all(message)
        # The next hook names the new transcript: the push the old one never showed
        # did not reach the new conversation, so that hook's output carries it.
        reply = await hooks(
            HookRequest("UserPromptSubmit", "claude", {"transcript_path": str(fresh)})
        )
        assert rig.session.transcript is not None and rig.session.transcript.expected == fresh
        assert message.body in reply.stdout and reply.on_written is not None
        await reply.on_written()
        with anyio.fail_after(10):
            while await rig.pending_ids():
                await anyio.sleep(0.01)
        assert rig.session.push_state is PushState.UNCONFIRMED  # not taken for a drop


async def test_more_unproven_pushes_than_the_fetch_window_do_not_stop_newer_pushes(
    rig: Rig,
) -> None:
    """Regression: past MAX_FETCH_WINDOW pushes the transcript says nothing of yet (an idle
    session makes no tool call), every fetch of the push loop held only those, and newer
    mail was never pushed."""
    early = [await rig.send(f"early {i}") for i in range(c.MAX_FETCH_WINDOW)]

    async def body() -> None:
        await rig.pushed_all(*early)
        late = await rig.send("late")
        await rig.pushed_all(late)
        # Pushed, not shown: all still pending.
        assert len(await rig.service.pending(rig.me.id, 5_000)) == c.MAX_FETCH_WINDOW + 1

    await running(rig, body)


async def test_with_a_confirmed_channel_results_leave_new_mail_to_it(rig: Rig) -> None:
    async def body() -> None:
        await rig.confirm_channel()
        # A result of a busy session: new mail is the channel's, not this result's...
        rig.pushed.clear()
        message = await rig.send("comes by channel")
        handout = await rig.session.take_mail(rig.session.call_started(), channel_first=True)
        assert not handout.messages
        await rig.pushed_all(message)
        # ...but a push the transcript stays silent on is still owed to a later result.
        rig.session.result_written()
        owed = await rig.session.take_mail(rig.session.call_started(), channel_first=True)
        assert [m.id for m in owed.messages] == [message.id]
        assert owed.also_pushed == {message.id}
        # check_messages reads the mailbox as ever.
        rig.session.release(owed)
        checked = await rig.session.take_mail(rig.session.call_started())
        assert [m.id for m in checked.messages] == [message.id]

    await running(rig, body)


async def test_a_result_takes_its_owed_pushes_while_a_push_is_being_written(rig: Rig) -> None:
    """With a confirmed channel, a result's mail is what pushes owe it, known in memory: it
    does not wait for the push loop, which holds the mail lock while a push is written
    (a slow client, or a busy one: before, nearly every result waited for a write)."""
    writing = anyio.Event()
    stuck_body = "written to a client that does not read"

    async def deliver(message: Message, sender: Peer | None) -> None:
        if message.body == stuck_body:
            writing.set()
            await anyio.sleep_forever()
        rig.pushed.append(message.id)

    async with anyio.create_task_group() as tg:
        rig.session.start(tg, deliver)
        await rig.confirm_channel()
        owed = await rig.send("pushed, the transcript silent on it")
        await rig.pushed_all(owed)
        rig.session.result_written()  # a result went out after it: it is due
        await rig.send(stuck_body)
        with anyio.fail_after(10):
            await writing.wait()
        with anyio.fail_after(5):
            handout = await rig.session.take_mail(rig.session.call_started(), channel_first=True)
        assert [m.id for m in handout.messages] == [owed.id]
        tg.cancel_scope.cancel()
