"""Events on Redis: pub/sub carries them live, the log stream fills in what pub/sub lost."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import pytest
from support import HOST, Opener, RedisProcess, make_message, make_peer

from peers.keys import RedisKeys
from peers.models import Event, EventKind, PeerUpdate
from peers.transports.redis import RedisTransport

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]


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
        assert [
            (entry_id, dict(zip(f[::2], f[1::2], strict=True))) for entry_id, f in published
        ] == log
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


async def test_foreign_payloads_on_the_events_channel_do_not_end_the_stream(
    opener: Opener, raw: Any, namespace: str
) -> None:
    watcher, actor = await opener(), await opener()
    stream = watcher.events()
    try:
        a = await actor.register(make_peer(namespace, name="a"))
        with anyio.fail_after(10):
            assert (await anext(stream)).peer_id == a.id
        channel = RedisKeys(namespace).events_channel
        for junk in ("not json", "[1, 2, 3]", '["1-0", ["odd"]]', '{"a": 1}'):
            await raw.publish(channel, junk)
        await actor.update_peer(a.id, PeerUpdate(summary="after the junk"))
        with anyio.fail_after(10):
            event = await anext(stream)
        assert (event.kind, event.data["summary"]) == (EventKind.SUMMARY, "after the junk")
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


class FreezingProxy:
    """A TCP proxy to Redis whose existing connections can go silent without closing."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.frozen: list[asyncio.Event] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for event in self.frozen:
            event.set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    def freeze_all(self) -> None:
        """Connections open now stop carrying bytes (a half-open link); new ones work."""
        for event in self.frozen:
            event.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        frozen = asyncio.Event()
        self.frozen.append(frozen)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if not frozen.is_set():
                    dst.write(data)
                    await dst.drain()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            up_writer.close()


@pytest.mark.slow  # the catch-up read waits out its own socket timeout on the frozen link
async def test_a_half_open_pubsub_link_is_noticed_and_nothing_is_lost(
    redis_server: RedisProcess, namespace: str
) -> None:
    if not redis_server.running:
        redis_server.start()
    async with FreezingProxy(redis_server.port) as proxy:
        via_proxy = Opener({"url": proxy.url, "namespace": namespace, "host": HOST})
        direct = Opener({"url": redis_server.url, "namespace": namespace, "host": HOST})
        try:
            watcher = await via_proxy()
            assert isinstance(watcher, RedisTransport)
            watcher.pubsub_quiet = 0.5
            actor = await direct()
            me = await watcher.register(make_peer(namespace, name="me"))
            stream = watcher.events()
            try:
                other = await actor.register(make_peer(namespace, name="other"))
                with anyio.fail_after(10):
                    assert (await anext(stream)).peer_id == other.id
                before = proxy.connections
                proxy.freeze_all()
                sent = await actor.send(make_message(namespace, other, me, "through the freeze"))
                await actor.update_peer(other.id, PeerUpdate(summary="still here"))
                with anyio.fail_after(20):
                    got = [await anext(stream), await anext(stream)]
                    # Rung after the doorbell connection was found dead and replaced.
                    assert await watcher.wait_for_mail(me.id, timeout=15)
                assert [e.kind for e in got] == [EventKind.MESSAGE, EventKind.SUMMARY]
                assert got[0].data["id"] == sent.id
                assert proxy.connections > before  # new pub/sub connections were made
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
        finally:
            await via_proxy.aclose()
            await direct.aclose()
