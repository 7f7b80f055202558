"""update_peer and gc on Redis, on fakeredis and on a real server.

Most tests let another writer in at the worst moment: just before one
transport's write that depends on what it read (the write is held back until
the other writer is done). A transport that checks and writes in one script
notices the change; one that writes what it read a moment ago loses an update
or deletes mail it was told was queued. The update script also writes the
SUMMARY and RENAME events itself, JSON included: those are checked here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from support import HOST, make_peer

from peers.config import load_settings
from peers.errors import PeerNotFound
from peers.ids import new_message_id
from peers.keys import RedisKeys
from peers.models import EventKind, Message, Peer, PeerUpdate, ReceiveMode
from peers.transports.redis import RedisTransport

pytestmark = pytest.mark.anyio

# Commands that change a key; a hook runs before the first one that names the key.
_WRITES = frozenset({"HSET", "DEL", "UNLINK", "ZREM", "EVAL", "EVALSHA"})


def make_message(namespace: str, sender: Peer, recipient: Peer, body: str) -> Message:
    return Message(
        id=new_message_id(),
        namespace=namespace,
        sender_id=sender.id,
        recipient_id=recipient.id,
        body=body,
    )


def before_write(client: Any, key: str, hook: Callable[[], Awaitable[None]]) -> None:
    """Run ``hook`` once, just before the client first sends a write naming ``key``.

    Covers single commands (scripts included: EVALSHA names its keys) and pipelines.
    """
    fired = False

    async def maybe_fire(commands: list[tuple[Any, ...]]) -> None:
        nonlocal fired
        if fired:
            return
        for args in commands:
            if str(args[0]).upper() in _WRITES and key in args[1:]:
                fired = True
                await hook()
                return

    plain = client.execute_command
    make_pipeline = client.pipeline

    async def execute_command(*args: Any, **options: Any) -> Any:
        await maybe_fire([args])
        return await plain(*args, **options)

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make_pipeline(*args, **kwargs)
        run = pipe.execute

        async def execute(*eargs: Any, **ekwargs: Any) -> Any:
            await maybe_fire([command for command, _ in pipe.command_stack])
            return await run(*eargs, **ekwargs)

        pipe.execute = execute
        return pipe

    client.execute_command = execute_command
    client.pipeline = pipeline


Store = Callable[..., Awaitable[tuple[RedisTransport, Any]]]


@pytest.fixture(
    params=[
        pytest.param("fakeredis", id="fakeredis"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis_real),
    ]
)
async def store(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Store]:
    """``await store(**settings)``: a connected transport on its own client, and that client."""
    opened: list[tuple[RedisTransport, Any]] = []
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()

        def new_client() -> Any:
            return fakeredis.FakeAsyncRedis(server=server, decode_responses=True)

    else:
        redis_server = request.getfixturevalue("redis_server")
        if not redis_server.running:
            redis_server.start()

        def new_client() -> Any:
            return aioredis.from_url(redis_server.url, decode_responses=True)

    async def open_one(**overrides: Any) -> tuple[RedisTransport, Any]:
        client = new_client()
        settings = load_settings(url="redis://store/0", namespace=namespace, host=HOST, **overrides)
        transport = RedisTransport.from_client(client, settings)
        opened.append((transport, client))
        await transport.connect()
        return transport, client

    try:
        yield open_one
    finally:
        for transport, client in reversed(opened):
            await transport.close()
            await client.aclose()


# -- update_peer ------------------------------------------------------------------------


async def test_concurrent_summary_and_files_updates_both_survive(
    store: Store, namespace: str
) -> None:
    """The agent's set_summary and the server's files refresh, interleaved: neither is lost."""
    agent, agent_client = await store()
    refresher, _ = await store()
    peer = await agent.register(make_peer(namespace, name="busy", summary="old", files=("a.py",)))

    async def refresh_files() -> None:
        await refresher.update_peer(peer.id, PeerUpdate(files=("b.py", "c.py")))

    before_write(agent_client, RedisKeys(namespace).peer(peer.id), refresh_files)
    updated = await agent.update_peer(peer.id, PeerUpdate(summary="new work"))

    assert updated.summary == "new work"
    assert updated.files == ("b.py", "c.py")
    got = await refresher.get_peer(peer.id)
    assert got is not None
    assert (got.summary, got.files, got.name, got.online) == (
        "new work",
        ("b.py", "c.py"),
        "busy",
        True,
    )


async def test_update_of_a_peer_deleted_meanwhile_is_not_found_and_leaves_no_record(
    store: Store, namespace: str
) -> None:
    t, client = await store()
    other, _ = await store()
    peer = await t.register(make_peer(namespace))  # anonymous, no mail: unregister deletes it

    async def leave() -> None:
        await other.unregister(peer.id)

    before_write(client, RedisKeys(namespace).peer(peer.id), leave)
    with pytest.raises(PeerNotFound):
        await t.update_peer(peer.id, PeerUpdate(summary="too late"))
    assert await other.get_peer(peer.id) is None
    assert await client.exists(RedisKeys(namespace).peer(peer.id)) == 0


async def test_rename_of_a_peer_that_left_meanwhile_is_not_found(
    store: Store, namespace: str
) -> None:
    t, client = await store()
    other, _ = await store()
    peer = await t.register(make_peer(namespace, name="before"))

    async def leave() -> None:
        await other.unregister(peer.id)

    before_write(client, RedisKeys(namespace).peer(peer.id), leave)
    with pytest.raises(PeerNotFound):
        await t.update_peer(peer.id, PeerUpdate(name="after", summary="x"))
    got = await other.get_peer(peer.id)
    assert got is not None and not got.online and got.name == "before" and got.summary == ""
    assert await other.get_peer_by_name("after") is None


async def test_many_concurrent_writers_of_different_fields_lose_nothing(
    store: Store, namespace: str
) -> None:
    """Each field has one writer; whatever the interleaving, each field ends at its writer's last value."""
    owner, _ = await store()
    peer = await owner.register(make_peer(namespace, name="hot"))
    writers = [(await store())[0] for _ in range(3)]
    rounds = 30
    modes = [ReceiveMode.PUSH, ReceiveMode.POLL]

    async def summaries(t: RedisTransport) -> None:
        for i in range(rounds):
            await t.update_peer(peer.id, PeerUpdate(summary=f"s{i}"))

    async def files(t: RedisTransport) -> None:
        for i in range(rounds):
            await t.update_peer(peer.id, PeerUpdate(files=(f"f{i}.py",)))

    async def mode(t: RedisTransport) -> None:
        for i in range(rounds):
            await t.update_peer(peer.id, PeerUpdate(receive_mode=modes[i % 2]))

    await asyncio.wait_for(
        asyncio.gather(summaries(writers[0]), files(writers[1]), mode(writers[2])), 60
    )
    got = await owner.get_peer(peer.id)
    assert got is not None
    assert got.summary == f"s{rounds - 1}"
    assert got.files == (f"f{rounds - 1}.py",)
    assert got.receive_mode == modes[(rounds - 1) % 2]
    assert got.name == "hot" and got.online


async def test_update_events_carry_exact_text(store: Store, namespace: str) -> None:
    t, _ = await store()
    stream = t.events()
    try:
        peer = await t.register(make_peer(namespace))
        summary = 'quote " back \\ slash / tab \t é 🎉 \u2028 end'
        files = ('dir/a "b".py', "ü.txt")
        await t.update_peer(peer.id, PeerUpdate(name="first"))
        await t.update_peer(peer.id, PeerUpdate(name="second", summary=summary, files=files))
        await t.update_peer(peer.id, PeerUpdate(receive_mode=ReceiveMode.PUSH))  # no event
        await t.update_peer(peer.id, PeerUpdate(summary=summary))  # unchanged: no event
        await t.update_peer(peer.id, PeerUpdate(files=()))
        seen = [await asyncio.wait_for(anext(stream), 10) for _ in range(5)]
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert [(e.kind, e.peer_name, e.data) for e in seen] == [
        (EventKind.JOIN, None, seen[0].data),
        (EventKind.RENAME, "first", {"old": None, "new": "first"}),
        (EventKind.RENAME, "second", {"old": "first", "new": "second"}),
        (EventKind.SUMMARY, "second", {"summary": summary, "files": list(files)}),
        (EventKind.SUMMARY, "second", {"summary": summary, "files": []}),
    ]
    got = await t.get_peer(peer.id)
    assert got is not None
    assert (got.name, got.summary, got.files, got.receive_mode) == (
        "second",
        summary,
        (),
        ReceiveMode.PUSH,
    )


# -- gc ---------------------------------------------------------------------------------


async def test_gc_keeps_an_old_offline_peer_that_just_got_mail(
    store: Store, namespace: str
) -> None:
    """A send that lands between gc's look and its delete was reported queued: it must stay."""
    collector, client = await store(retention=1.0)
    sender_side, _ = await store(retention=1.0)
    old = await collector.register(make_peer(namespace, name="old"))
    await collector.unregister(old.id)
    sender = await sender_side.register(make_peer(namespace))
    await asyncio.sleep(1.2)  # `old` is now past retention, offline, without mail
    await sender_side.heartbeat(sender.id)
    sent: list[Message] = []

    async def send_to_old() -> None:
        sent.append(await sender_side.send(make_message(namespace, sender, old, "queued")))

    before_write(client, RedisKeys(namespace).peer(old.id), send_to_old)
    report = await collector.gc()

    assert [m.recipient_id for m in sent] == [old.id]
    assert report.peers_removed == 0
    assert await collector.get_peer(old.id) is not None
    holder = await collector.get_peer_by_name("old")
    assert holder is not None and holder.id == old.id
    assert [m.id for m in await collector.fetch(old.id)] == [sent[0].id]
    # A successor still inherits it.
    heir = await sender_side.register(make_peer(namespace, name="old"))
    assert [m.id for m in await sender_side.fetch(heir.id)] == [sent[0].id]


async def test_gc_deletes_every_key_of_an_old_offline_peer(store: Store, namespace: str) -> None:
    t, client = await store(retention=1.0)
    keep, _ = await store(retention=1.0)
    named = await t.register(make_peer(namespace, name="gone"))
    await t.unregister(named.id)
    live = await keep.register(make_peer(namespace, name="stays"))
    await asyncio.sleep(1.2)
    await keep.heartbeat(live.id)

    report = await t.gc()

    assert report.peers_removed == 1
    k = RedisKeys(namespace)
    assert await client.exists(k.peer(named.id), k.mailbox(named.id), k.alive(named.id)) == 0
    assert await client.exists(k.name("gone")) == 0
    assert await client.zscore(k.registry, named.id) is None
    assert await t.get_peer(named.id) is None
    assert await t.get_peer_by_name("gone") is None
    got = await t.get_peer(live.id)
    assert got is not None and got.online
    assert await client.exists(k.name("stays")) == 1


async def test_gc_expiring_mail_that_a_successor_inherits_keeps_entry_and_record_together(
    store: Store, namespace: str
) -> None:
    """An inheritance that moves old mail just as gc expires it: all of it goes, or none."""
    collector, client = await store(retention=1.0)
    other, _ = await store(retention=1.0)
    old = await collector.register(make_peer(namespace, name="old"))
    sender = await other.register(make_peer(namespace))
    stale = await other.send(make_message(namespace, sender, old, "stale"))
    await collector.unregister(old.id)
    await asyncio.sleep(1.2)  # the mail is now past retention
    await other.heartbeat(sender.id)
    heirs: list[Peer] = []

    async def inherit() -> None:
        heirs.append(await other.register(make_peer(namespace, name="old")))

    keys = RedisKeys(namespace)
    before_write(client, keys.mailbox(old.id), inherit)
    await collector.gc()

    assert len(heirs) == 1
    inherited = [m.id for m in await other.fetch(heirs[0].id)]
    # Inheriting moves no mail (the heir reads the old mailbox as its backlog), so gc
    # may expire it right after: entry and record go together, or both stay for the
    # heir (and a later gc expires both).
    kept = await client.exists(keys.message(stale.id))
    assert (inherited, kept) in [([stale.id], 1), ([], 0)]
    await collector.gc()
    assert await other.fetch(heirs[0].id) == []
    assert await client.exists(keys.message(stale.id)) == 0


async def test_gc_expires_a_mailbox_larger_than_a_page_and_keeps_newer_mail(
    store: Store, namespace: str
) -> None:
    t, client = await store(retention=1.0)
    away = await t.register(make_peer(namespace, name="away"))
    sender = await t.register(make_peer(namespace))
    old = [make_message(namespace, sender, away, f"old {i}") for i in range(1_100)]
    await asyncio.gather(*(t.send(m) for m in old))
    await asyncio.sleep(1.2)  # past retention
    await t.heartbeat(sender.id)
    await t.heartbeat(away.id)
    fresh = [await t.send(make_message(namespace, sender, away, f"new {i}")) for i in range(3)]

    report = await t.gc()

    assert report.messages_removed == len(old)
    assert [m.id for m in await t.fetch(away.id)] == [m.id for m in fresh]
    keys = RedisKeys(namespace)
    assert await client.xlen(keys.mailbox(away.id)) == 3
    assert not any([await client.exists(keys.message(m.id)) for m in old[::97]])
