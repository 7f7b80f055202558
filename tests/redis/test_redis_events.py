"""Events on Redis: pub/sub carries them live, the log stream fills in what pub/sub lost."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from support import HOST, Opener, RedisProcess, make_message, make_peer

from peers.keys import RedisKeys
from peers.models import Event, EventKind, PeerUpdate

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]


@pytest.fixture
async def opener(redis_server: RedisProcess, namespace: str) -> Any:
    if not redis_server.running:
        redis_server.start()
    opener = Opener({"url": redis_server.url, "namespace": namespace, "host": HOST})
    try:
        yield opener
    finally:
        await opener.aclose()


@pytest.fixture
async def raw(redis_server: RedisProcess) -> Any:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def test_every_log_entry_is_published_with_its_id(
    opener: Opener, raw: Any, namespace: str
) -> None:
    keys = RedisKeys(namespace)
    pubsub = raw.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(keys.events_channel)
    try:
        t = await opener()
        a = await t.register(make_peer(namespace, name="a"))
        b = await t.register(make_peer(namespace, name="b"))
        await t.update_peer(a.id, PeerUpdate(summary="on the parser"))
        await t.send(make_message(namespace, a, b, "hi"))
        await t.unregister(b.id)

        log = await raw.xrange(keys.log, "-", "+")
        published: list[Any] = []
        with anyio.fail_after(10):
            while len(published) < len(log):
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    published.append(json.loads(message["data"]))
        # The same entries, ids and fields, in the same order.
        assert [(entry_id, dict(zip(f[::2], f[1::2], strict=True))) for entry_id, f in published] == log
        assert [fields["k"] for _, fields in log] == ["join", "join", "summary", "message", "leave"]
    finally:
        await pubsub.aclose()


async def test_events_missed_while_the_channel_was_down_come_from_the_log_once_each(
    opener: Opener, raw: Any, namespace: str
) -> None:
    watcher, actor = await opener(), await opener()
    stream = watcher.events()
    try:
        a = await actor.register(make_peer(namespace, name="a"))
        with anyio.fail_after(10):
            first: Event = await anext(stream)
        assert (first.kind, first.peer_id) == (EventKind.JOIN, a.id)

        # Cut the watcher's pub/sub connection. It cannot reconnect before the
        # stream is read again, so everything below misses the channel.
        killed = await raw.client_kill_filter(_type="pubsub")
        assert killed >= 1
        b = await actor.register(make_peer(namespace, name="b"))
        sent = [await actor.send(make_message(namespace, a, b, f"m{i}")) for i in range(5)]
        await actor.update_peer(b.id, PeerUpdate(summary="reviewing"))

        got: list[Event] = []
        with anyio.fail_after(20):
            while len(got) < 7:
                got.append(await anext(stream))
        assert [e.kind for e in got] == [EventKind.JOIN] + [EventKind.MESSAGE] * 5 + [
            EventKind.SUMMARY
        ]
        assert [e.data["id"] for e in got[1:6]] == [m.id for m in sent]

        # Live again through the channel, and nothing from before comes twice.
        await actor.unregister(a.id)
        with anyio.fail_after(10):
            last = await anext(stream)
        assert (last.kind, last.peer_id) == (EventKind.LEAVE, a.id)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_doorbells_survive_a_cut_pubsub_connection(
    opener: Opener, raw: Any, namespace: str
) -> None:
    """A peer registering while the doorbell connection is down still gets rung."""
    t, other = await opener(), await opener()
    a = await t.register(make_peer(namespace, name="a"))
    sender = await other.register(make_peer(namespace, name="sender"))
    assert await raw.client_kill_filter(_type="pubsub") >= 1
    b = await t.register(make_peer(namespace, name="b"))  # subscribes on the cut connection

    for peer in (a, b):
        await other.send(make_message(namespace, sender, peer, f"to {peer.name}"))
        with anyio.fail_after(10):
            # Rung, not the safety timeout: each wait is far shorter than a re-check.
            assert await t.wait_for_mail(peer.id, timeout=5.0)
        assert [m.body for m in await t.fetch(peer.id)] == [f"to {peer.name}"]
