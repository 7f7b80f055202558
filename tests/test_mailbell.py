"""The session's one doorbell listener (peers.mailbell) on real transports.

A transport's wait is for one waiter: a ring is consumed by whoever wakes on
it. The bell turns rings into a count, so a waiter that was busy reading its
mailbox when the ring came still sees it, and everyone waiting wakes.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from peers.errors import BackendUnavailable
from peers.mailbell import MailBell
from peers.models import Message, Peer
from peers.transports.base import Transport

pytestmark = pytest.mark.anyio


async def _peers(transport: Transport, make_peer: Callable[..., Peer]) -> tuple[Peer, Peer]:
    me = await transport.register(make_peer(name="me"))
    other = await transport.register(make_peer(name="other"))
    return me, other


def _bell(transport: Transport, peer: Peer) -> MailBell:
    return MailBell(lambda timeout: transport.wait_for_mail(peer.id, timeout), 5.0)


async def test_a_ring_reaches_every_waiter_even_one_busy_when_it_came(
    transport: Transport,
    make_peer: Callable[..., Peer],
    make_message: Callable[..., Message],
) -> None:
    me, other = await _peers(transport, make_peer)
    bell = _bell(transport, me)
    woke: list[str] = []
    async with anyio.create_task_group() as tg:
        bell.start(tg)
        busy_mark = bell.mark()  # a waiter that read its mailbox and has not waited yet

        async def waiter(name: str) -> None:
            if await bell.wait(bell.mark(), 10):
                woke.append(name)

        tg.start_soon(waiter, "a")
        tg.start_soon(waiter, "b")
        with anyio.fail_after(10):
            while not bell.listening:
                await anyio.sleep(0.01)
        await transport.send(make_message(other, me, "hello"))
        with anyio.fail_after(5):
            while len(woke) < 2:
                await anyio.sleep(0.01)
            # The ring came while it was busy: its wait returns at once, not at a re-check.
            assert await bell.wait(busy_mark, 10) is True
    assert sorted(woke) == ["a", "b"]


async def test_it_listens_only_while_someone_waits(
    transport: Transport, make_peer: Callable[..., Peer]
) -> None:
    me, _ = await _peers(transport, make_peer)
    bell = _bell(transport, me)
    async with anyio.create_task_group() as tg:
        bell.start(tg)
        assert not bell.listening
        assert await bell.wait(bell.mark(), 0.2) is False  # nothing came
        with anyio.fail_after(5):
            while bell.listening:  # the last waiter left: the listener stops
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


async def test_close_releases_every_waiter(
    transport: Transport, make_peer: Callable[..., Peer]
) -> None:
    me, _ = await _peers(transport, make_peer)
    bell = _bell(transport, me)
    results: list[bool] = []
    async with anyio.create_task_group() as tg:
        bell.start(tg)

        async def waiter() -> None:
            results.append(await bell.wait(bell.mark(), 60))

        tg.start_soon(waiter)
        tg.start_soon(waiter)
        with anyio.fail_after(10):
            while not bell.listening:
                await anyio.sleep(0.01)
        bell.close()
        with anyio.fail_after(5):
            while len(results) < 2:
                await anyio.sleep(0.01)
    assert results == [True, True]
    assert await bell.wait(bell.mark(), 60) is True  # closed: no wait at all


async def test_a_store_that_fails_wakes_the_waiters_to_find_out() -> None:
    async def listen(timeout: float) -> bool:
        raise BackendUnavailable("redis is down")

    bell = MailBell(listen, 5.0)
    async with anyio.create_task_group() as tg:
        bell.start(tg)
        with anyio.fail_after(5):
            assert await bell.wait(bell.mark(), 60) is True
        tg.cancel_scope.cancel()


async def test_a_bug_in_the_listener_wakes_the_waiters_and_ends_nothing() -> None:
    calls = 0

    async def listen(timeout: float) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("a bug")
        await anyio.sleep(0.01)
        return True  # mail came

    bell = MailBell(listen, 5.0)
    async with anyio.create_task_group() as tg:
        bell.start(tg)
        with anyio.fail_after(5):
            assert await bell.wait(bell.mark(), 60) is True
            # The task group still runs, and the bell listens again.
            while calls < 2:
                assert await bell.wait(bell.mark(), 60) is True
        tg.cancel_scope.cancel()
