"""Redis going away and coming back: restarts with and without the data, and no server at all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from support import HOST, Opener, RedisProcess, free_port, make_message, make_peer

from peers.config import load_settings
from peers.errors import BackendUnavailable, PeerNotFound
from peers.keys import RedisKeys
from peers.models import DeliveryState, EventKind, HistoryQuery
from peers.transports import create_transport

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]

T = TypeVar("T")


async def retrying(call: Callable[[], Awaitable[T]], deadline: float = 60.0) -> T:
    """What a careful caller does: retry the same call while the backend is unavailable."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            return await call()
        except BackendUnavailable:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.05)


# -- a restart that keeps the data (AOF) ------------------------------------------------


async def test_restart_mid_session_delivers_every_message_exactly_once(
    redis_server: Any, namespace: str
) -> None:
    if not redis_server.running:
        redis_server.start()
    opener = Opener({"url": redis_server.url, "namespace": namespace, "host": HOST})
    try:
        a, b = await opener(), await opener()
        sender = await a.register(make_peer(namespace, name="tx"))
        receiver = await b.register(make_peer(namespace, name="rx"))
        total = 300
        sent: list[str] = []
        received: list[str] = []
        acked: set[str] = set()
        seen_after_ack: list[str] = []
        events: list[Any] = []

        async def produce() -> None:
            for i in range(total):
                msg = make_message(namespace, sender, receiver, f"m{i}")
                # The same Message on every retry: a send whose reply was lost is not doubled.
                stored = await retrying(lambda msg=msg: a.send(msg))  # type: ignore[misc]
                assert stored.recipient_id == receiver.id
                sent.append(msg.id)
                await asyncio.sleep(0.003)

        async def consume() -> None:
            while len(acked) < total:
                try:
                    await b.wait_for_mail(receiver.id, timeout=0.5)
                    batch = await b.fetch(receiver.id, limit=50)
                    for m in batch:
                        if m.id in acked:
                            seen_after_ack.append(m.id)
                        if m.id not in received:
                            received.append(m.id)
                    if batch:
                        await b.ack(receiver.id, [m.id for m in batch])
                        acked.update(m.id for m in batch)
                except BackendUnavailable:
                    await asyncio.sleep(0.05)

        async def watch() -> None:
            stream = a.events()
            try:
                async for event in stream:
                    if event.kind == EventKind.MESSAGE:
                        events.append(event.data["id"])
                    if len(events) >= total:
                        return
            finally:
                await stream.aclose()  # type: ignore[attr-defined]

        restarted_at: list[int] = []

        async def chaos() -> None:
            for pause in (0.3, 0.4):
                await asyncio.sleep(pause)
                restarted_at.append(len(sent))
                await asyncio.to_thread(redis_server.restart)

        watcher = asyncio.create_task(watch())
        await asyncio.wait_for(asyncio.gather(produce(), consume(), chaos()), 120)

        assert len(sent) == total and len(set(sent)) == total
        assert all(0 < n < total for n in restarted_at), restarted_at  # mid-flow, both times
        assert sorted(received) == sorted(sent)
        assert seen_after_ack == [], "an acked message came back"
        # Nothing pending, nothing stored twice, everything delivered.
        assert await retrying(lambda: b.fetch(receiver.id)) == []
        assert await retrying(a.pending_counts) == {}
        history = await retrying(lambda: a.history(HistoryQuery(limit=10 * total)))
        assert sorted(r.message.id for r in history) == sorted(sent)
        assert {r.state for r in history} == {DeliveryState.DELIVERED}
        # Sessions carry on: the records survived, so heartbeats still find them.
        await retrying(lambda: b.heartbeat(receiver.id))
        # The event stream resumed across the restarts without losing a send.
        await asyncio.wait_for(watcher, 30)
        assert sorted(set(events)) == sorted(sent)
    finally:
        await opener.aclose()


# -- a restart that loses the data ----------------------------------------------------------


async def test_restart_that_lost_the_data_makes_sessions_register_again(
    redis_spawner: Callable[..., RedisProcess], namespace: str
) -> None:
    server = redis_spawner("--save", "", "--appendonly", "no")
    opener = Opener({"url": server.url, "namespace": namespace, "host": HOST})
    try:
        t = await opener()
        alice = make_peer(namespace, name="alice")
        bob = make_peer(namespace)
        await t.register(alice)
        await t.register(bob)
        await t.send(make_message(namespace, bob, alice, "before"))

        server.stop()
        server.start()  # empty: no AOF, no RDB

        # The records are gone: heartbeat says so, and the server registers again.
        with pytest.raises(PeerNotFound):
            await retrying(lambda: t.heartbeat(alice.id))
        await t.register(alice)
        await t.register(bob)
        fresh = await t.send(make_message(namespace, bob, alice, "after"))
        assert [m.id for m in await t.fetch(alice.id)] == [fresh.id]

        # Push works again: the doorbell subscription came back with the connection.
        waiter = asyncio.create_task(t.wait_for_mail(alice.id, timeout=10))
        await asyncio.sleep(0.1)
        later = await t.send(make_message(namespace, bob, alice, "ring"))
        assert await asyncio.wait_for(waiter, 5) is True
        assert [m.id for m in await t.fetch(alice.id)] == [fresh.id, later.id]
    finally:
        await opener.aclose()


async def test_missing_consumer_group_is_recreated(redis_server: Any, namespace: str) -> None:
    if not redis_server.running:
        redis_server.start()
    opener = Opener({"url": redis_server.url, "namespace": namespace, "host": HOST})
    raw = aioredis.from_url(redis_server.url)
    try:
        t = await opener()
        alice = await t.register(make_peer(namespace))
        bob = await t.register(make_peer(namespace))
        await raw.delete(RedisKeys(namespace).mailbox(alice.id))  # stream and group gone
        assert await t.fetch(alice.id) == []
        msg = await t.send(make_message(namespace, bob, alice, "after"))
        assert [m.id for m in await t.fetch(alice.id)] == [msg.id]
        assert await t.ack(alice.id, [msg.id]) == 1
        # A stream re-created by XADD alone (no group) is read from its start too.
        await raw.delete(RedisKeys(namespace).mailbox(alice.id))
        again = await t.send(make_message(namespace, bob, alice, "again"))
        assert [m.id for m in await t.fetch(alice.id)] == [again.id]
    finally:
        await raw.aclose()
        await opener.aclose()


# -- no server at all, then one ----------------------------------------------------------------


async def test_unreachable_at_start_names_the_address_then_recovers(
    redis_spawner: Callable[..., RedisProcess], namespace: str
) -> None:
    port = free_port()  # nothing listens there yet
    url = f"redis://:s3cret-pw@127.0.0.1:{port}/0"
    server = redis_spawner("--save", "", "--requirepass", "s3cret-pw", port=port, start=False)
    t = create_transport(load_settings(url=url, namespace=namespace, host=HOST))
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as info:
            await t.connect()
        assert time.monotonic() - started < 15  # a few quick retries, not a hang
        text = str(info.value)
        assert f"redis://:***@127.0.0.1:{port}/0" in text
        assert "s3cret-pw" not in text
        with pytest.raises(BackendUnavailable):
            await t.ping()

        server.start()
        # The same instance recovers: no restart of the session needed.
        await t.connect()
        assert await t.ping() >= 0
        peer = await t.register(make_peer(namespace))
        assert [p.id for p in await t.list_peers()] == [peer.id]
        # An outage later on is BackendUnavailable again, and passes the same way.
        server.stop()
        with pytest.raises(BackendUnavailable):
            await t.list_peers()
        server.start()
        assert await retrying(t.list_peers) == []  # this server keeps nothing across restarts
    finally:
        await t.close()
