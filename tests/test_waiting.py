"""wait_for_messages' rules (peers.waiting) on a real SQLite store: filters, timeouts, the wait.

The end-to-end behaviour over ``peers serve`` is in tests/e2e/test_serve_wait.py;
here the filter's reading of ``from`` and ``reply_to``, the timeout rules, and
the wait on a session without a server around it.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from peers import constants as c
from peers.config import load_settings
from peers.errors import AmbiguousTarget, InvalidInput, MessageNotFound, PeerNotFound
from peers.models import Message, Peer, PushState
from peers.procinfo import process_start_time
from peers.service import PeersService, Sender
from peers.session import Session
from peers.transports import create_transport
from peers.waiting import MailFilter, mail_filter, wait_for_mail, wait_timeout

pytestmark = pytest.mark.anyio


class Rig:
    def __init__(self, service: PeersService, session: Session, cwd: str) -> None:
        self.service = service
        self.session = session
        self.cwd = cwd

    @property
    def me(self) -> Peer:
        assert self.session.peer is not None
        return self.session.peer

    async def peer(self, name: str | None) -> Peer:
        return await self.service.register(
            self.service.new_peer(cwd=self.cwd, pid=os.getpid(),
                                  pid_start=process_start_time(os.getpid()), name=name)
        )  # fmt: skip

    async def send(self, sender: Peer, body: str, reply_to: str | None = None) -> Message:
        return (await self.service.send(Sender.of(sender), self.me.id, body, reply_to)).message


async def _until_waiting(session: Session) -> None:
    """Until a wait sleeps on the session's bell (its listener runs only then)."""
    with anyio.fail_after(10):
        while not session.bell.listening:
            await anyio.sleep(0.01)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    settings = load_settings(
        url=f"sqlite:///{tmp_path}/p.db", namespace="w", safety_recheck=5.0, rate_limit=10_000
    )
    async with create_transport(settings) as transport:
        service = PeersService(transport, settings)
        session = Session(service, settings)
        await session.build_context("codex", PushState.OFF, cwd=str(tmp_path))
        await session.register()
        yield Rig(service, session, str(tmp_path))


def test_timeouts() -> None:
    # The figures the README and the tool's description give.
    assert (c.WAIT_DEFAULT_TIMEOUT, c.WAIT_MAX_TIMEOUT) == (60, 600)
    assert load_settings().wait_progress_every == 5
    assert wait_timeout(None) == (60, None)
    assert wait_timeout(0) == (0, None)
    assert wait_timeout(600) == (600, None)
    assert wait_timeout(3600) == (600, 3600)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(InvalidInput, match="from 0 to 600"):
            wait_timeout(bad)


async def test_from_matches_the_session_by_id_and_by_the_name_it_holds(rig: Rig) -> None:
    bob = await rig.peer("bob")
    await rig.peer("carol")
    by_name = await mail_filter(rig.service, rig.me, "bob", None)
    by_prefix = await mail_filter(rig.service, rig.me, bob.id[:5], None)
    for flt in (by_name, by_prefix):
        assert flt(await rig.send(bob, "hi"))
        # A later session under the name (a restarted worker) signs with it.
        assert flt(Message(id="m", namespace="w", sender_id="another", sender_name="bob",
                           recipient_id=rig.me.id, body="x"))  # fmt: skip
        assert not flt(Message(id="m", namespace="w", sender_id="x", sender_name="carol",
                               recipient_id=rig.me.id, body="x"))  # fmt: skip


async def test_from_errors_and_names_not_held_yet(rig: Rig) -> None:
    await rig.peer("bob")
    await rig.peer("bobby")
    with pytest.raises(AmbiguousTarget):
        await mail_filter(rig.service, rig.me, "bo", None)
    with pytest.raises(InvalidInput, match="is you"):
        await mail_filter(rig.service, rig.me, rig.me.id, None)
    with pytest.raises(InvalidInput, match="empty"):
        await mail_filter(rig.service, rig.me, "  ", None)
    with pytest.raises(PeerNotFound) as err:
        await mail_filter(rig.service, rig.me, "Not A Name!", None)
    assert err.value.hint and "'from'" in err.value.hint
    later = await mail_filter(rig.service, rig.me, "Worker-7", None)
    assert later.sender_names == {"worker-7"} and later.note and "worker-7" in later.note
    cli = await mail_filter(rig.service, rig.me, "cli-", None)
    assert cli(Message(id="m", namespace="w", sender_id="cli-abc", recipient_id="r", body="x"))
    assert not cli(Message(id="m", namespace="w", sender_id="abc", recipient_id="r", body="x"))


async def test_reply_to_must_be_a_message_of_this_session(rig: Rig) -> None:
    bob = await rig.peer("bob")
    carol = await rig.peer("carol")
    asked = await rig.service.send(Sender.of(rig.me), bob.id, "please do X")
    flt = await mail_filter(rig.service, rig.me, None, asked.message.id)
    assert flt(await rig.send(bob, "done", reply_to=asked.message.id))
    assert not flt(await rig.send(bob, "unrelated"))
    with pytest.raises(MessageNotFound):
        await mail_filter(rig.service, rig.me, None, "01nosuchid")
    between_others = await rig.service.send(Sender.of(bob), carol.id, "not yours")
    with pytest.raises(InvalidInput, match="not a message you sent or received"):
        await mail_filter(rig.service, rig.me, None, between_others.message.id)


async def test_the_wait_returns_on_a_match_and_leaves_the_rest_unread(rig: Rig) -> None:
    bob = await rig.peer("bob")
    carol = await rig.peer("carol")
    flt = await mail_filter(rig.service, rig.me, "bob", None)
    async with anyio.create_task_group() as tg:
        rig.session.start(tg)

        async def replies() -> None:
            await _until_waiting(rig.session)
            await rig.send(carol, "not this")
            await rig.send(bob, "this")

        tg.start_soon(replies)
        started = time.monotonic()
        outcome = await wait_for_mail(rig.session, flt, rig.session.call_started(), 30)
        assert time.monotonic() - started < 3
        assert [m.body for m in outcome.handout.messages] == ["this"]
        assert [m.body for m in outcome.handout.unmatched] == ["not this"]
        assert outcome.handout.more_waiting == 1 and not outcome.timed_out
        rig.session.result_written(outcome.handout)
        with anyio.fail_after(10):
            while [m.body for m in await rig.service.pending(rig.me.id)] != ["not this"]:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()


async def test_a_stopping_session_ends_the_wait_taking_nothing(rig: Rig) -> None:
    bob = await rig.peer("bob")
    await rig.send(bob, "unmatched")
    flt = MailFilter(sender_names=frozenset({"nobody"}), described={"from": "nobody"})
    async with anyio.create_task_group() as tg:
        rig.session.start(tg)
        result: list[object] = []

        async def wait() -> None:
            result.append(await wait_for_mail(rig.session, flt, 0, 120))

        tg.start_soon(wait)
        await _until_waiting(rig.session)
        with anyio.fail_after(5):
            await rig.session.unregister()
            while not result:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    [outcome] = result
    assert outcome.stopped and not outcome.handout  # type: ignore[attr-defined]
    assert [m.body for m in await rig.service.pending(rig.me.id)] == ["unmatched"]
