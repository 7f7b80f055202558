"""Everything the Redis transport creates lives under ``peers:{<namespace>}:``.

A whole workload (names, inheritance, mail, acks, events, reaping, gc) runs in a
database of the shared server that nothing else uses; then SCAN (here only,
never in the transport) lists every key. Also the TTL rules: alive keys
expire, mailbox streams never do.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from support import HOST, Opener, make_peer

from peers.ids import new_message_id
from peers.keys import RedisKeys
from peers.models import HistoryQuery, Message, Peer, PeerUpdate

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]

# A database number no other test uses: SCAN there sees only this test's keys.
KEYS_DB = 7


@pytest.fixture
async def db_url(redis_server: Any) -> AsyncIterator[str]:
    if not redis_server.running:
        redis_server.start()
    url = f"redis://127.0.0.1:{redis_server.port}/{KEYS_DB}"
    raw = aioredis.from_url(url)
    await raw.flushdb()
    try:
        yield url
    finally:
        await raw.flushdb()
        await raw.aclose()


async def test_every_key_and_channel_is_under_the_namespace_prefix(
    db_url: str, namespace: str
) -> None:
    opener = Opener({"url": db_url, "namespace": namespace, "host": HOST})
    raw = aioredis.from_url(db_url, decode_responses=True)
    try:
        t = await opener()
        other = await opener()
        stream = t.events()
        a = await t.register(make_peer(namespace, name="alpha"))
        b = await other.register(make_peer(namespace))
        for i in range(3):
            await t.send(
                Message(
                    id=new_message_id(),
                    namespace=namespace,
                    sender_id=b.id,
                    recipient_id=a.id,
                    body=f"m{i}",
                )
            )
        first = await t.fetch(a.id)
        await t.ack(a.id, [first[0].id])
        await t.update_peer(a.id, PeerUpdate(summary="busy", name="beta"))
        await t.unregister(a.id)
        successor = await other.register(make_peer(namespace, name="beta"))
        assert len(await other.fetch(successor.id)) == 2
        await other.wait_for_mail(successor.id, timeout=0.01)
        await anext(stream)
        await t.history(HistoryQuery())
        await t.reap()
        await t.gc()
        await t.info()
        await t.diagnostics()

        prefix = f"peers:{{{namespace}}}:"
        keys = [k async for k in raw.scan_iter(match="*", count=1000)]
        assert keys, "the workload stored nothing?"
        strays = [k for k in keys if not k.startswith(prefix)]
        assert strays == [], strays
        channels = await raw.pubsub_channels()
        assert channels and all(ch.startswith(prefix) for ch in channels), channels

        # Every key is one of the kinds RedisKeys names.
        kinds = re.compile(
            r"(peer|alive|name|mbox|msg|ring|backlog|lease):.+"
            r"|registry|offline|inbox|history|log|meta"
        )
        assert [k for k in keys if not kinds.fullmatch(k[len(prefix) :])] == []

        # Liveness expires; mailboxes (which carry consumer groups) never do.
        k = RedisKeys(namespace)
        assert 0 < await raw.pttl(k.alive(successor.id)) <= 20_000
        assert await raw.ttl(k.mailbox(successor.id)) == -1
        assert await raw.ttl(k.peer(successor.id)) == -1
        assert await raw.type(k.mailbox(successor.id)) == "stream"
        groups = await raw.xinfo_groups(k.mailbox(successor.id))
        assert [g["name"] for g in groups] == ["peers"]
        # A delivered message expires with its retention window; a pending one waits for gc.
        assert await raw.ttl(k.message(first[0].id)) > 0
        assert await raw.ttl(k.message(first[1].id)) == -1
        await asyncio.sleep(0)
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await raw.aclose()
        await opener.aclose()


async def test_gc_leaves_no_orphaned_keys(db_url: str, namespace: str) -> None:
    opener = Opener({"url": db_url, "namespace": namespace, "host": HOST, "retention": 1.0})
    raw = aioredis.from_url(db_url, decode_responses=True)
    try:
        t = await opener()
        live = await t.register(make_peer(namespace))
        gone = await t.register(make_peer(namespace, name="gone"))
        anon = await t.register(make_peer(namespace))

        def msg(sender: Peer, recipient: Peer, body: str) -> Message:
            return Message(
                id=new_message_id(),
                namespace=namespace,
                sender_id=sender.id,
                recipient_id=recipient.id,
                body=body,
            )

        await t.send(msg(live, gone, "never read"))
        read = await t.send(msg(gone, live, "read"))
        await t.ack(live.id, [read.id])
        await t.send(msg(live, anon, "never read either"))
        await t.unregister(gone.id)
        await t.unregister(anon.id)  # anonymous, with mail: kept until gc
        await asyncio.sleep(1.3)
        await t.heartbeat(live.id)
        # Mail sent to an old offline peer inside the window keeps that peer.
        late = await t.send(msg(live, gone, "late"))
        report = await t.gc()
        assert report.peers_removed == 1  # anon; gone waits with its late mail
        assert report.messages_removed == 3
        k = RedisKeys(namespace)
        keys = set([k async for k in raw.scan_iter(match="*", count=1000)])
        expected = {
            k.peer(live.id), k.alive(live.id), k.mailbox(live.id), k.registry, k.log,
            k.peer(gone.id), k.mailbox(gone.id), k.name("gone"), k.message(late.id),
            k.ring(gone.id), k.offline, k.inbox, k.history, k.meta,
        }  # fmt: skip
        assert keys - expected == set()
        assert [m.id for m in await t.fetch(gone.id)] == [late.id]
    finally:
        await raw.aclose()
        await opener.aclose()
