"""The rules where the backends once drifted apart, and the ones added with upkeep
(docs/CONTRACT.md): history within retention, reaping in gc and list_offline, name
validation, sort order, idempotent sends, the mailbox cap,
inheritance through a chain of holders, and upkeep leases.

Run on SQLite, fakeredis and a real redis-server like the rest of the contract.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from test_transport_contract import (
    Factory,
    MakeMessage,
    MakePeer,
    dead_process,
    fetch_all,
    live_ids,
    next_event,
)

from peers import constants as c
from peers.errors import InvalidInput
from peers.models import DeliveryState, EventKind, HistoryQuery, PeerUpdate
from peers.transports.base import Transport

pytestmark = pytest.mark.anyio


# -- history within retention -------------------------------------------------------------


async def test_history_drops_delivered_mail_past_retention_and_keeps_unread_as_expired(
    transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    brief = await transport_factory(retention=1.0)
    a = await brief.register(make_peer())
    b = await brief.register(make_peer())
    read = await brief.send(make_message(a, b, "read"))
    unread = await brief.send(make_message(a, b, "unread"))
    await brief.ack(b.id, [read.id])
    await anyio.sleep(1.3)  # both past retention; gc has not run
    fresh = await brief.send(make_message(a, b, "fresh"))
    records = await brief.history(HistoryQuery())
    assert [(r.message.id, r.state) for r in records] == [
        (unread.id, DeliveryState.EXPIRED),
        (fresh.id, DeliveryState.PENDING),
    ]


async def test_history_is_not_crowded_out_by_presence_events(
    transport_factory: Factory,
    make_peer: MakePeer,
    make_message: MakeMessage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A tiny event log (Redis caps it): summaries and joins must not push sends out of history.
    monkeypatch.setattr(c, "REDIS_EVENT_LOG_MAXLEN", 5)
    t = await transport_factory()
    a = await t.register(make_peer())
    b = await t.register(make_peer())
    sent = [await t.send(make_message(a, b, f"m{i}")) for i in range(5)]
    for i in range(300):
        await t.update_peer(a.id, PeerUpdate(summary=f"busy {i}"))
    assert [r.message.id for r in await t.history(HistoryQuery())] == [m.id for m in sent]


# -- reaping --------------------------------------------------------------------------------


async def test_list_offline_and_gc_reap_first(
    transport: Transport, make_peer: MakePeer
) -> None:
    pid, start = dead_process()
    crashed = await transport.register(make_peer(name="crashed", pid=pid, pid_start=start))
    assert crashed.id in [p.id for p in await transport.list_offline()]
    got = await transport.get_peer(crashed.id)
    assert got is not None and not got.online

    pid, start = dead_process()
    other = await transport.register(make_peer(name="other", pid=pid, pid_start=start))
    await transport.gc()
    got = await transport.get_peer(other.id)
    assert got is not None and not got.online  # reaped (kept: named, within retention)


async def test_dead_sessions_are_reaped_once(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    brief = await transport_factory(peer_ttl=0.3)
    dead = [await brief.register(make_peer(host="lost-host")) for _ in range(30)]
    await anyio.sleep(0.5)  # their TTL ran out: never unregistered, as after a crash
    live = await brief.register(make_peer())
    assert await live_ids(brief) == [live.id]
    # Reaped by that listing, once: nothing is left to reap, and they are kept offline
    # (for gc to collect) rather than listed again.
    assert await brief.reap() == []
    assert {p.id for p in await brief.list_offline()} == {p.id for p in dead}


# -- names and order ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Upper", "with space", "-leading", "x" * 65, "ünï"])
async def test_invalid_names_are_refused_on_every_backend(
    transport: Transport, make_peer: MakePeer, name: str
) -> None:
    with pytest.raises(InvalidInput, match="invalid"):
        await transport.register(make_peer(name=name))
    peer = await transport.register(make_peer())
    with pytest.raises(InvalidInput, match="invalid"):
        await transport.update_peer(peer.id, PeerUpdate(name=name))


async def test_list_sorts_by_registered_at_then_id(
    transport: Transport, make_peer: MakePeer
) -> None:
    at = 1_700_000_000.0
    ids = ["zzzzzzzzzz", "aaaaaaaaaa", "mmmmmmmmmm"]
    for peer_id in ids:
        await transport.register(make_peer(id=peer_id, registered_at=at))
    early = await transport.register(make_peer(registered_at=at - 1))
    assert await live_ids(transport) == [early.id, *sorted(ids)]


# -- sends carry their id -------------------------------------------------------------------


async def test_a_retried_send_is_stored_once(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    first = await transport.send(make_message(a, b, "once"))
    other = await transport_factory()
    again = await other.send(first)  # a retry from another process, same id and content
    assert again.id == first.id and again.recipient_id == b.id
    assert await fetch_all(transport, b.id) == [first.id]
    with pytest.raises(InvalidInput, match="already exists"):
        await other.send(first.model_copy(update={"body": "something else"}))
    assert await fetch_all(transport, b.id) == [first.id]
    # Acked, then retried: still one message, still delivered.
    await transport.ack(b.id, [first.id])
    await other.send(first)
    assert await fetch_all(transport, b.id) == []


# -- the mailbox cap ------------------------------------------------------------------------


async def test_a_full_mailbox_expires_its_oldest_unread_mail(
    transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    small = await transport_factory(max_unread=3)
    a = await small.register(make_peer())
    b = await small.register(make_peer())
    stream = small.events()
    sent = [await small.send(make_message(a, b, f"m{i}")) for i in range(5)]
    assert await fetch_all(small, b.id) == [m.id for m in sent[2:]]
    assert await small.pending_counts() == {b.id: 3}
    states = {r.message.id: r.state for r in await small.history(HistoryQuery())}
    assert [states[m.id] for m in sent] == [DeliveryState.EXPIRED] * 2 + [DeliveryState.PENDING] * 3
    expired: list[str] = []
    while len(expired) < 2:
        event = await next_event(stream)
        if event.kind is EventKind.EXPIRED:
            assert event.data["recipient_id"] == b.id
            expired += event.data["ids"]
    assert expired == [sent[0].id, sent[1].id]
    # Expired mail can no longer be acked: it was never read.
    assert await small.ack(b.id, [sent[0].id]) == 0
    await stream.aclose()  # type: ignore[attr-defined]


# -- inheritance through a chain of holders -------------------------------------------------


async def test_mail_follows_a_name_through_several_holders_in_order(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    sender = await transport.register(make_peer())
    first = await transport.register(make_peer(name="relay"))
    to_first = [await transport.send(make_message(sender, first, f"a{i}")) for i in range(3)]
    await transport.unregister(first.id)
    other = await transport_factory()
    second = await other.register(make_peer(name="relay"))
    to_second = await transport.send(make_message(sender, first, "b"))  # follows the pointer
    assert to_second.recipient_id == second.id
    await other.unregister(second.id)
    third = await transport.register(make_peer(name="relay"))
    expected = [*(m.id for m in to_first), to_second.id]
    assert await fetch_all(transport, third.id) == expected
    assert await fetch_all(transport, first.id) == []
    assert await fetch_all(transport, second.id) == []
    assert await other.pending_counts() == {third.id: 4}
    got = await other.get_message(to_first[0].id)
    assert got is not None and got.recipient_id == third.id
    assert await transport.ack(third.id, expected[:2]) == 2
    assert await fetch_all(other, third.id) == expected[2:]
    assert await other.pending_counts() == {third.id: 2}


# -- upkeep leases ----------------------------------------------------------------------------


async def test_a_lease_has_one_holder_until_released_or_expired(
    transport: Transport, transport_factory: Factory
) -> None:
    other = await transport_factory()
    assert await transport.acquire_lease("gc", "one", 30) is True
    assert await other.acquire_lease("gc", "two", 30) is False
    assert await transport.acquire_lease("gc", "one", 30) is True  # renewed
    await other.release_lease("gc", "two")  # not its lease: nothing changes
    assert await other.acquire_lease("gc", "two", 30) is False
    await transport.release_lease("gc", "one")
    assert await other.acquire_lease("gc", "two", 0.3) is True
    assert await transport.acquire_lease("other-lease", "one", 30) is True  # leases are by name
    await anyio.sleep(0.5)  # two's lease expires
    assert await transport.acquire_lease("gc", "one", 30) is True
    with pytest.raises(InvalidInput):
        await transport.acquire_lease("gc", "", 30)
    with pytest.raises(InvalidInput):
        await transport.acquire_lease("gc", "one", 0)


async def test_concurrent_lease_requests_have_one_winner(
    transport: Transport, transport_factory: Factory
) -> None:
    instances = [await transport_factory() for _ in range(10)]
    results: list[Any] = await asyncio.gather(
        *(t.acquire_lease("gc", f"holder-{i}", 30) for i, t in enumerate(instances))
    )
    assert results.count(True) == 1
