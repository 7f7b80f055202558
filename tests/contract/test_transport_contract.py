"""The transport contract (docs/CONTRACT.md), written once and run on every backend.

Every assertion reads stored state back, usually through a second instance on the
same store (another process's view of it), never through mocks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from peers import procinfo
from peers.config import load_settings
from peers.errors import (
    BackendUnavailable,
    InvalidInput,
    NameTaken,
    PeerNotFound,
    PeersError,
    StoreCorrupt,
)
from peers.ids import new_message_id, new_peer_id
from peers.models import (
    Check,
    DeliveryState,
    Event,
    EventKind,
    GcReport,
    HistoryQuery,
    Message,
    Peer,
    PeerFilter,
    PeerUpdate,
    PushState,
    ReceiveMode,
)
from peers.transports import create_transport
from peers.transports.base import Transport

pytestmark = pytest.mark.anyio

MakePeer = Callable[..., Peer]
MakeMessage = Callable[..., Message]
# conftest's opener: ``await factory(**settings_overrides)`` -> a new connected instance.
Factory = Any

HOST = socket.gethostname()
STRESS_WORKER = Path(__file__).parent.parent / "_stress_worker.py"
# Upper bound for anything the contract says takes milliseconds; generous for slow CI.
PROMPT = 3.0


# -- helpers ----------------------------------------------------------------------


def spawn_idle_process() -> subprocess.Popen[bytes]:
    """A real child process that idles until killed."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )


def dead_process() -> tuple[int, float | None]:
    """The pid and start time of a process that has exited and been reaped."""
    proc = spawn_idle_process()
    start = procinfo.process_start_time(proc.pid)
    proc.kill()
    proc.wait(timeout=30)
    return proc.pid, start


def ids(messages: list[Message]) -> list[str]:
    return [m.id for m in messages]


async def fetch_all(t: Transport, recipient_id: str) -> list[str]:
    return [m.id for m in await t.fetch(recipient_id, limit=10_000)]


async def live_ids(t: Transport, flt: PeerFilter | None = None) -> list[str]:
    return [p.id for p in await t.list_peers(flt)]


async def next_event(stream: AsyncIterator[Event], timeout: float = 10.0) -> Event:
    with anyio.fail_after(timeout):
        return await anext(stream)


async def close_stream(stream: AsyncIterator[Event]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def send_many(
    t: Transport, make_message: MakeMessage, sender: Peer, recipient: Peer, n: int, tag: str = "m"
) -> list[str]:
    sent = []
    for i in range(n):
        msg = await t.send(make_message(sender, recipient, f"{tag}{i}"))
        sent.append(msg.id)
    return sent


# -- lifecycle ----------------------------------------------------------------------


async def test_ping_returns_latency_in_seconds(transport: Transport) -> None:
    latency = await transport.ping()
    assert isinstance(latency, float)
    assert 0 <= latency < PROMPT


async def test_info_names_the_backend(transport: Transport) -> None:
    info = await transport.info()
    assert isinstance(info["backend"], str) and info["backend"]
    assert "url" in info


async def test_diagnostics_are_checks(transport: Transport) -> None:
    checks = await transport.diagnostics()
    assert isinstance(checks, list)
    assert all(isinstance(c, Check) for c in checks)


async def test_capabilities_are_data(transport: Transport) -> None:
    caps = transport.capabilities
    assert caps.name
    for flag in (caps.cross_host, caps.push, caps.events, caps.networked):
        assert isinstance(flag, bool)


async def test_bound_to_namespace_and_host(transport: Transport, namespace: str) -> None:
    assert transport.namespace == namespace
    assert transport.host == HOST


async def test_async_context_manager_connects_and_closes(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    t = transport_factory.unconnected()
    peer = make_peer(name="ctx")
    async with t as entered:
        assert entered is t
        await t.ping()
        await t.register(peer)
    # What it wrote is durable and visible to another instance after close.
    other = await transport_factory()
    got = await other.get_peer(peer.id)
    assert got is not None and got.name == "ctx"
    await t.close()  # safe to call twice


async def test_connect_is_idempotent(transport: Transport, make_peer: MakePeer) -> None:
    peer = await transport.register(make_peer())
    await transport.connect()
    assert await live_ids(transport) == [peer.id]


# -- register / get / list ----------------------------------------------------------


async def test_register_stores_peer_visible_to_other_instance(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    peer = make_peer(
        name="alice",
        summary="fixing the parser",
        files=("a.py", "b.py"),
        git_root="/work/project",
        branch="main",
        client="claude-code",
        receive_mode=ReceiveMode.PUSH,
    )
    stored = await transport.register(peer)
    assert stored.id == peer.id and stored.online

    other = await transport_factory()
    got = await other.get_peer(peer.id)
    assert got is not None
    for field in ("name", "namespace", "host", "pid", "pid_start", "cwd", "git_root",
                  "branch", "client", "receive_mode", "summary", "files"):  # fmt: skip
        assert getattr(got, field) == getattr(peer, field), field
    assert got.online
    by_name = await other.get_peer_by_name("alice")
    assert by_name is not None and by_name.id == peer.id
    assert await live_ids(other) == [peer.id]


async def test_register_marks_live_whatever_the_record_says(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    before = time.time()
    stale = make_peer(online=False, last_seen=before - 10_000)
    stored = await transport.register(stale)
    assert stored.online
    assert stored.last_seen >= before - 1
    other = await transport_factory()
    got = await other.get_peer(stale.id)
    assert got is not None and got.online and got.last_seen >= before - 1
    assert stale.id in await live_ids(other)


async def test_register_other_namespace_is_invalid(
    transport: Transport, make_peer: MakePeer
) -> None:
    peer = make_peer(namespace="somewhere-else")
    with pytest.raises(InvalidInput):
        await transport.register(peer)
    assert await transport.get_peer(peer.id) is None


async def test_get_unknown_returns_none(transport: Transport) -> None:
    assert await transport.get_peer(new_peer_id()) is None
    assert await transport.get_peer_by_name("nobody-here") is None


async def test_list_peers_in_registration_order_and_filtered(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    t0 = time.time()
    a = make_peer(cwd="/w/a", registered_at=t0)
    b = make_peer(cwd="/w/b", registered_at=t0 + 0.001, git_common_dir="/w/.git")
    c = make_peer(cwd="/w/a", registered_at=t0 + 0.002, git_remote="github.com/x/y")
    for p in (a, b, c):
        await transport.register(p)
    other = await transport_factory()
    assert await live_ids(other) == [a.id, b.id, c.id]
    assert await live_ids(other, PeerFilter(cwd="/w/a")) == [a.id, c.id]
    assert await live_ids(other, PeerFilter(exclude_id=b.id)) == [a.id, c.id]
    assert await live_ids(other, PeerFilter(git_common_dir="/w/.git")) == [b.id]
    assert await live_ids(other, PeerFilter(git_remote="github.com/x/y")) == [c.id]
    assert await live_ids(other, PeerFilter(host="other-host")) == []


async def test_namespaces_on_one_store_never_see_each_other(
    transport: Transport,
    transport_factory: Factory,
    make_peer: MakePeer,
    make_message: MakeMessage,
    namespace: str,
) -> None:
    ns2 = f"{namespace}-two"
    t2 = await transport_factory(namespace=ns2)
    a = await transport.register(make_peer(name="same"))
    a2 = await transport.register(make_peer())
    # The same name is free in the other namespace.
    b = await t2.register(make_peer(name="same", namespace=ns2))
    b2 = await t2.register(make_peer(namespace=ns2))

    assert await live_ids(transport) == [a.id, a2.id]
    assert await live_ids(t2) == [b.id, b2.id]
    assert await transport.get_peer(b.id) is None
    assert await t2.get_peer(a.id) is None
    held = await transport.get_peer_by_name("same")
    assert held is not None and held.id == a.id
    held2 = await t2.get_peer_by_name("same")
    assert held2 is not None and held2.id == b.id

    # Mail cannot cross: the other namespace's id is unknown here.
    with pytest.raises(PeerNotFound):
        await transport.send(make_message(a, b, "across"))
    m2 = await t2.send(make_message(b2, b, "inside", namespace=ns2))
    m1 = await transport.send(make_message(a2, a, "inside"))
    assert await transport.pending_counts() == {a.id: 1}
    assert await t2.pending_counts() == {b.id: 1}
    assert await fetch_all(transport, b.id) == []
    assert await transport.get_message(m2.id) is None
    assert [r.message.id for r in await transport.history(HistoryQuery())] == [m1.id]
    assert [r.message.id for r in await t2.history(HistoryQuery())] == [m2.id]

    # Going offline in one namespace does not show in the other's offline list.
    await t2.unregister(b.id)
    assert b.id not in [p.id for p in await transport.list_offline()]
    assert b.id in [p.id for p in await t2.list_offline()]
    assert await live_ids(transport) == [a.id, a2.id]


# -- names ---------------------------------------------------------------------


async def test_name_held_by_live_peer_is_taken(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    holder = await transport.register(make_peer(name="alice"))
    other = await transport_factory()
    rival = make_peer(name="alice")
    with pytest.raises(NameTaken) as info:
        await other.register(rival)
    text = str(info.value)
    assert holder.id in text
    assert HOST in text
    assert str(holder.pid) in text
    # The loser left nothing behind and the holder keeps the name.
    assert await other.get_peer(rival.id) is None
    current = await other.get_peer_by_name("alice")
    assert current is not None and current.id == holder.id
    assert await live_ids(other) == [holder.id]


async def test_concurrent_registrations_of_one_name_have_one_winner(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    instances = [await transport_factory() for _ in range(10)]
    rivals = [make_peer(name="contested") for _ in instances]
    winners: list[str] = []
    losers: list[str] = []

    async def claim(t: Transport, peer: Peer) -> None:
        try:
            await t.register(peer)
        except NameTaken:
            losers.append(peer.id)
        else:
            winners.append(peer.id)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for t, peer in zip(instances, rivals, strict=True):
                tg.start_soon(claim, t, peer)

    assert len(winners) == 1, winners
    assert len(losers) == 9
    holder = await transport.get_peer_by_name("contested")
    assert holder is not None and holder.id == winners[0]
    assert await live_ids(transport) == winners


async def test_concurrent_successors_inherit_mail_exactly_once(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    sender = await transport.register(make_peer())
    old = await transport.register(make_peer(name="heir"))
    sent = await send_many(transport, make_message, sender, old, 3)
    await transport.unregister(old.id)

    instances = [await transport_factory() for _ in range(10)]
    rivals = [make_peer(name="heir") for _ in instances]
    winners: list[str] = []

    async def claim(t: Transport, peer: Peer) -> None:
        try:
            await t.register(peer)
        except NameTaken:
            return
        winners.append(peer.id)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for t, peer in zip(instances, rivals, strict=True):
                tg.start_soon(claim, t, peer)

    assert len(winners) == 1, winners
    assert await fetch_all(transport, winners[0]) == sent
    previous = await transport.get_peer(old.id)
    assert previous is not None and previous.successor == winners[0]
    assert await fetch_all(transport, old.id) == []
    assert await transport.pending_counts() == {winners[0]: 3}


async def test_name_of_dead_holder_is_reclaimed_with_its_mail(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    pid, start = dead_process()
    sender = await transport.register(make_peer())
    crashed = await transport.register(make_peer(name="bob", pid=pid, pid_start=start))
    sent = await send_many(transport, make_message, sender, crashed, 2)

    other = await transport_factory()
    successor = await other.register(make_peer(name="bob"))
    assert successor.online
    holder = await transport.get_peer_by_name("bob")
    assert holder is not None and holder.id == successor.id
    old = await transport.get_peer(crashed.id)
    assert old is not None and not old.online and old.successor == successor.id
    assert await fetch_all(transport, successor.id) == sent
    # In-flight mail to the dead id follows the successor.
    late = await transport.send(make_message(sender, crashed.id, "late"))
    assert late.recipient_id == successor.id


async def test_name_of_ttl_expired_holder_on_other_host_is_reclaimed(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    short = await transport_factory(peer_ttl=0.5)
    gone = await short.register(make_peer(name="carol", host="other-host", pid=1))
    await anyio.sleep(0.8)  # let the TTL run out without a heartbeat
    successor = await short.register(make_peer(name="carol"))
    holder = await short.get_peer_by_name("carol")
    assert holder is not None and holder.id == successor.id
    old = await short.get_peer(gone.id)
    assert old is not None and not old.online and old.successor == successor.id


async def test_reregistering_an_id_keeps_its_mailbox(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    sender = await transport.register(make_peer())
    peer = make_peer(name="dave")
    await transport.register(peer)
    sent = await send_many(transport, make_message, sender, peer, 2)
    # Re-registering while still live (backend restart): no NameTaken against itself.
    await transport.register(peer)
    await transport.unregister(peer.id)
    other = await transport_factory()
    again = await other.register(peer)
    assert again.online and again.id == peer.id
    assert await fetch_all(other, peer.id) == sent
    holder = await other.get_peer_by_name("dave")
    assert holder is not None and holder.id == peer.id


async def test_offline_named_peer_queues_mail_and_successor_inherits_in_order(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    sender = await transport.register(make_peer())
    first = await transport.register(make_peer(name="worker"))
    read = await transport.send(make_message(sender, first, "already read"))
    unread = await send_many(transport, make_message, sender, first, 3, "unread")
    assert await transport.ack(first.id, [read.id]) == 1
    await transport.unregister(first.id)

    # Mail to the offline name waits in its mailbox.
    queued = await transport.send(make_message(sender, first, "while offline"))
    assert queued.recipient_id == first.id
    assert await fetch_all(transport, first.id) == [*unread, queued.id]

    other = await transport_factory()
    second = await other.register(make_peer(name="worker"))
    newer = await other.send(make_message(sender, second, "newer"))
    assert await fetch_all(transport, second.id) == [*unread, queued.id, newer.id]
    assert await fetch_all(transport, first.id) == []
    previous = await other.get_peer(first.id)
    assert previous is not None and previous.successor == second.id
    # The acked message did not move and stays readable.
    kept = await transport.get_message(read.id)
    assert kept is not None and kept.recipient_id == first.id


async def test_send_follows_successor_chain(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    sender = await transport.register(make_peer())
    a = await transport.register(make_peer(name="chain"))
    m1 = await transport.send(make_message(sender, a, "1"))
    await transport.unregister(a.id)
    b = await transport.register(make_peer(name="chain"))
    m2 = await transport.send(make_message(sender, a, "2"))
    assert m2.recipient_id == b.id
    await transport.unregister(b.id)
    other = await transport_factory()
    c = await other.register(make_peer(name="chain"))
    m3 = await other.send(make_message(sender, a, "3"))
    assert m3.recipient_id == c.id
    stored = await transport.get_message(m3.id)
    assert stored is not None and stored.recipient_id == c.id
    assert await fetch_all(transport, c.id) == [m1.id, m2.id, m3.id]
    assert await fetch_all(transport, a.id) == []
    assert await fetch_all(transport, b.id) == []
    got_a, got_b = await other.get_peer(a.id), await other.get_peer(b.id)
    assert got_a is not None and got_a.successor == b.id
    assert got_b is not None and got_b.successor == c.id


# -- heartbeat ---------------------------------------------------------------------


async def test_heartbeat_refreshes_last_seen(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    peer = await transport.register(make_peer())
    other = await transport_factory()
    before = await other.get_peer(peer.id)
    assert before is not None
    await anyio.sleep(0.05)  # let the clock move
    await transport.heartbeat(peer.id)
    after = await other.get_peer(peer.id)
    assert after is not None and after.last_seen > before.last_seen


async def test_heartbeat_keeps_peer_alive_past_ttl(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    short = await transport_factory(peer_ttl=0.5)
    peer = await short.register(make_peer(host="other-host"))
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        await short.heartbeat(peer.id)
        await anyio.sleep(0.1)
    assert await live_ids(short) == [peer.id]


async def test_heartbeat_unknown_or_offline_raises(
    transport: Transport, make_peer: MakePeer
) -> None:
    with pytest.raises(PeerNotFound):
        await transport.heartbeat(new_peer_id())
    named = await transport.register(make_peer(name="hb"))
    anon = await transport.register(make_peer())
    await transport.unregister(named.id)
    await transport.unregister(anon.id)
    with pytest.raises(PeerNotFound):
        await transport.heartbeat(named.id)
    with pytest.raises(PeerNotFound):
        await transport.heartbeat(anon.id)


# -- update_peer ------------------------------------------------------------------


async def test_update_summary_files_and_mode(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    peer = await transport.register(make_peer(name="upd", summary="old", files=("x.py",)))
    updated = await transport.update_peer(peer.id, PeerUpdate(summary="new work"))
    assert updated.summary == "new work" and updated.files == ("x.py",) and updated.name == "upd"
    await transport.update_peer(peer.id, PeerUpdate(files=("y.py", "z.py")))
    await transport.update_peer(peer.id, PeerUpdate(receive_mode=ReceiveMode.PUSH))
    other = await transport_factory()
    got = await other.get_peer(peer.id)
    assert got is not None
    assert got.summary == "new work"
    assert got.files == ("y.py", "z.py")
    assert got.receive_mode == ReceiveMode.PUSH
    assert got.name == "upd"
    assert got.online


async def test_push_state_and_hooks_seen_round_trip(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    peer = await transport.register(
        make_peer(receive_mode=ReceiveMode.PUSH, push=PushState.UNCONFIRMED)
    )
    assert peer.push is PushState.UNCONFIRMED and peer.hooks_at is None
    other = await transport_factory()
    got = await other.get_peer(peer.id)
    assert got is not None and got.push is PushState.UNCONFIRMED and got.hooks_at is None
    await transport.update_peer(peer.id, PeerUpdate(push=PushState.CONFIRMED, hooks_at=1234.5))
    got = await other.get_peer(peer.id)
    assert got is not None
    assert got.push is PushState.CONFIRMED
    assert got.hooks_at == 1234.5
    assert got.receive_mode is ReceiveMode.PUSH
    # Fields not given stay as they are.
    await transport.update_peer(peer.id, PeerUpdate(summary="busy"))
    got = await other.get_peer(peer.id)
    assert got is not None and got.push is PushState.CONFIRMED and got.hooks_at == 1234.5


async def test_update_unknown_or_offline_raises(transport: Transport, make_peer: MakePeer) -> None:
    with pytest.raises(PeerNotFound):
        await transport.update_peer(new_peer_id(), PeerUpdate(summary="x"))
    peer = await transport.register(make_peer(name="gone"))
    await transport.unregister(peer.id)
    with pytest.raises(PeerNotFound):
        await transport.update_peer(peer.id, PeerUpdate(summary="x"))


async def test_rename_releases_old_name(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    peer = await transport.register(make_peer(name="before"))
    renamed = await transport.update_peer(peer.id, PeerUpdate(name="after"))
    assert renamed.name == "after"
    other = await transport_factory()
    holder = await other.get_peer_by_name("after")
    assert holder is not None and holder.id == peer.id
    assert await other.get_peer_by_name("before") is None
    # The released name can be taken by someone else while the renamed peer lives.
    newcomer = await other.register(make_peer(name="before"))
    holder = await other.get_peer_by_name("before")
    assert holder is not None and holder.id == newcomer.id
    assert set(await live_ids(other)) == {peer.id, newcomer.id}


async def test_rename_to_live_name_is_taken(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    holder = await transport.register(make_peer(name="taken"))
    peer = await transport.register(make_peer(name="mine"))
    other = await transport_factory()
    with pytest.raises(NameTaken) as info:
        await other.update_peer(peer.id, PeerUpdate(name="taken"))
    assert holder.id in str(info.value)
    got = await transport.get_peer(peer.id)
    assert got is not None and got.name == "mine"
    current = await transport.get_peer_by_name("taken")
    assert current is not None and current.id == holder.id


async def test_concurrent_renames_to_one_name_have_one_winner(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    peers = [await transport.register(make_peer(name=f"p{i}")) for i in range(10)]
    instances = [await transport_factory() for _ in peers]
    winners: list[str] = []

    async def rename(t: Transport, peer: Peer) -> None:
        try:
            await t.update_peer(peer.id, PeerUpdate(name="target"))
        except NameTaken:
            return
        winners.append(peer.id)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for t, peer in zip(instances, peers, strict=True):
                tg.start_soon(rename, t, peer)

    assert len(winners) == 1, winners
    holder = await transport.get_peer_by_name("target")
    assert holder is not None and holder.id == winners[0]
    names = sorted(p.name or "" for p in await transport.list_peers())
    assert names == sorted(["target", *(p.name or "" for p in peers if p.id != winners[0])])


async def test_rename_to_offline_name_inherits_its_mail(
    transport: Transport, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    sender = await transport.register(make_peer())
    old = await transport.register(make_peer(name="eve"))
    inherited = await send_many(transport, make_message, sender, old, 2)
    await transport.unregister(old.id)
    peer = await transport.register(make_peer())
    await transport.update_peer(peer.id, PeerUpdate(name="eve"))
    newer = await transport.send(make_message(sender, peer, "newer"))
    assert await fetch_all(transport, peer.id) == [*inherited, newer.id]
    # Inherited mail is skipped like the session's own.
    assert ids(await transport.fetch(peer.id, skip=[inherited[0]])) == [inherited[1], newer.id]
    assert ids(await transport.fetch(peer.id, limit=1, skip=inherited)) == [newer.id]
    late = await transport.send(make_message(sender, old, "to old id"))
    assert late.recipient_id == peer.id
    previous = await transport.get_peer(old.id)
    assert previous is not None and previous.successor == peer.id


# -- unregister and offline ---------------------------------------------------------


async def test_unregister_keeps_named_record_offline(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    peer = await transport.register(make_peer(name="leaver"))
    await transport.unregister(peer.id)
    other = await transport_factory()
    got = await other.get_peer(peer.id)
    assert got is not None and not got.online
    by_name = await other.get_peer_by_name("leaver")
    assert by_name is not None and by_name.id == peer.id and not by_name.online
    assert peer.id in [p.id for p in await other.list_offline()]
    assert await live_ids(other) == []


async def test_unregister_anonymous_and_unknown(transport: Transport, make_peer: MakePeer) -> None:
    peer = await transport.register(make_peer())
    await transport.unregister(peer.id)
    got = await transport.get_peer(peer.id)
    assert got is None or not got.online
    assert await live_ids(transport) == []
    await transport.unregister(peer.id)  # twice: no-op
    await transport.unregister(new_peer_id())  # unknown: no-op


# -- liveness ------------------------------------------------------------------------


async def test_list_excludes_ttl_expired_and_reaps_them(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    short = await transport_factory(peer_ttl=0.5)
    here = await short.register(make_peer(name="here"))
    there = await short.register(make_peer(host="other-host", pid=1))
    assert await live_ids(short) == [here.id, there.id]
    await anyio.sleep(0.8)  # let the TTL run out without a heartbeat
    assert await live_ids(short) == []
    # list_peers reaped them on the way: another instance sees them offline.
    for peer_id in (here.id, there.id):
        got = await transport.get_peer(peer_id)
        assert got is None or not got.online
    assert here.id in [p.id for p in await transport.list_offline()]


async def test_reap_returns_what_it_changed(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    # A TTL long enough that `fresh` stays fresh until reap() even on a loaded machine.
    short = await transport_factory(peer_ttl=2.0)
    stale = await short.register(make_peer(name="stale", host="other-host", pid=1))
    await anyio.sleep(2.3)
    fresh = await short.register(make_peer())
    reaped = await short.reap()
    assert [p.id for p in reaped] == [stale.id]
    assert all(not p.online for p in reaped)
    assert await short.reap() == []
    got = await transport.get_peer(stale.id)
    assert got is not None and not got.online
    still = await transport.get_peer(fresh.id)
    assert still is not None and still.online


async def test_list_excludes_peer_whose_process_died(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    proc = spawn_idle_process()
    try:
        start = procinfo.process_start_time(proc.pid)
        peer = await transport.register(make_peer(name="mortal", pid=proc.pid, pid_start=start))
        other = await transport_factory()
        assert await live_ids(other) == [peer.id]
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert await live_ids(other) == []
    got = await transport.get_peer(peer.id)
    assert got is not None and not got.online


async def test_list_excludes_reused_pid_with_other_start_time(
    transport: Transport, make_peer: MakePeer
) -> None:
    start = procinfo.process_start_time(os.getpid())
    if start is None:
        pytest.skip("process start times are unknown on this platform")
    impostor = await transport.register(make_peer(pid_start=start + 12345))
    real = await transport.register(make_peer())
    assert await live_ids(transport) == [real.id]
    assert impostor.id not in await live_ids(transport)


async def test_other_host_judged_by_ttl_only(transport: Transport, make_peer: MakePeer) -> None:
    pid, start = dead_process()
    remote = await transport.register(make_peer(host="other-host", pid=pid, pid_start=start))
    local = await transport.register(make_peer(pid=pid, pid_start=start))
    # The same dead pid: meaningless on another host, fatal on this one.
    assert await live_ids(transport) == [remote.id]
    assert local.id not in await live_ids(transport, PeerFilter(host=HOST))


# -- send / fetch / ack -------------------------------------------------------------


async def test_send_to_unknown_peer_raises(
    transport: Transport, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    sender = await transport.register(make_peer())
    with pytest.raises(PeerNotFound):
        await transport.send(make_message(sender, new_peer_id(), "lost"))
    assert await transport.pending_counts() == {}


async def test_send_returns_message_as_stored(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer(name="sender-a"))
    b = await transport.register(make_peer())
    msg = make_message(a, b, "hello b", reply_to=new_message_id())
    stored = await transport.send(msg)
    assert stored.id == msg.id and stored.recipient_id == b.id and stored.body == "hello b"
    other = await transport_factory()
    [got] = await other.fetch(b.id)
    assert got.id == msg.id
    assert got.body == "hello b"
    assert got.sender_id == a.id
    assert got.sender_name == "sender-a"
    assert got.reply_to == msg.reply_to
    assert got.namespace == msg.namespace


async def test_fetch_does_not_consume_and_honours_limit_and_skip(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    sent = await send_many(transport, make_message, a, b, 6)
    other = await transport_factory()
    first = ids(await other.fetch(b.id))  # the first read (Redis: new entries)
    second = ids(await other.fetch(b.id))
    assert first == second == sent
    assert ids(await transport.fetch(b.id, limit=2)) == sent[:2]
    assert await fetch_all(transport, a.id) == []
    # Skipped ones are left out and the limit counts the rest, read again or new.
    assert ids(await other.fetch(b.id, limit=2, skip=sent[:3])) == sent[3:5]
    assert ids(await other.fetch(b.id, skip={sent[1], sent[4]})) == [
        sent[0], sent[2], sent[3], sent[5]
    ]  # fmt: skip
    assert ids(await other.fetch(b.id, skip=[new_message_id(), sent[0]])) == sent[1:]
    assert await other.fetch(b.id, skip=sent) == []
    # Skipping consumes nothing, and neither do ids of another mailbox.
    newer = await transport.send(make_message(a, b, "newer"))
    assert ids(await transport.fetch(b.id, limit=3, skip=sent[:5])) == [sent[5], newer.id]
    assert await fetch_all(transport, b.id) == [*sent, newer.id]


async def test_ack_is_recipient_scoped_and_idempotent(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    to_b = await transport.send(make_message(a, b, "for b"))
    to_a = await transport.send(make_message(b, a, "for a"))
    # Acking someone else's message changes nothing.
    assert await transport.ack(a.id, [to_b.id]) == 0
    other = await transport_factory()
    assert await fetch_all(other, b.id) == [to_b.id]
    assert await other.ack(b.id, [to_b.id, to_a.id, new_message_id()]) == 1
    assert await other.ack(b.id, [to_b.id]) == 0
    assert await other.ack(b.id, []) == 0
    assert await fetch_all(transport, b.id) == []
    assert await fetch_all(transport, a.id) == [to_a.id]


async def test_ack_counts_a_repeated_id_once(
    transport: Transport, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    msg = await transport.send(make_message(a, b, "once"))
    assert await transport.ack(b.id, [msg.id, msg.id, msg.id]) == 1
    assert await transport.pending_counts() == {}


async def test_ack_some_keeps_order_of_rest(
    transport: Transport, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    sent = await send_many(transport, make_message, a, b, 5)
    assert await transport.ack(b.id, [sent[1], sent[3]]) == 2
    assert await fetch_all(transport, b.id) == [sent[0], sent[2], sent[4]]


async def test_order_kept_across_many_messages(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    sent = await send_many(transport, make_message, a, b, 150)
    other = await transport_factory()
    assert await fetch_all(other, b.id) == sent
    received: list[str] = []
    while page := await other.fetch(b.id, limit=40):
        received.extend(m.id for m in page)
        assert await other.ack(b.id, [m.id for m in page]) == len(page)
    assert received == sent


async def test_interleaved_senders_keep_their_own_order(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    recipient = await transport.register(make_peer())
    senders = [await transport.register(make_peer()) for _ in range(4)]
    instances = [await transport_factory() for _ in senders]
    sent: dict[str, list[str]] = {}

    async def run(t: Transport, sender: Peer) -> None:
        sent[sender.id] = await send_many(t, make_message, sender, recipient, 30)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for t, sender in zip(instances, senders, strict=True):
                tg.start_soon(run, t, sender)

    got = await transport.fetch(recipient.id, limit=10_000)
    assert len(got) == 120
    assert len({m.id for m in got}) == 120
    for sender in senders:
        assert [m.id for m in got if m.sender_id == sender.id] == sent[sender.id]


async def test_crash_between_fetch_and_ack_redelivers(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer(name="crashy"))
    sent = await send_many(transport, make_message, a, b, 4)
    doomed = await transport_factory()
    assert await fetch_all(doomed, b.id) == sent
    # The reader dies here without acking (its instance is simply dropped).
    reborn = await transport_factory()
    assert await fetch_all(reborn, b.id) == sent
    assert await reborn.ack(b.id, sent[:2]) == 2
    again = await transport_factory()
    assert await fetch_all(again, b.id) == sent[2:]


# -- wait_for_mail ----------------------------------------------------------------


async def test_wait_wakes_on_send_from_another_instance(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    recipient = await transport.register(make_peer())
    sender_t = await transport_factory()
    sender = await sender_t.register(make_peer())

    async def waiter(woke: list[bool], done: anyio.Event) -> None:
        woke.append(await transport.wait_for_mail(recipient.id, timeout=30))
        done.set()

    for round_ in range(3):
        woke: list[bool] = []
        done = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, woke, done)
            # Give the waiter time to block; it must wake promptly whichever came first.
            await anyio.sleep(0.2)
            msg = await sender_t.send(make_message(sender, recipient, f"ping {round_}"))
            with anyio.fail_after(PROMPT):
                await done.wait()
        assert woke == [True]
        assert await fetch_all(transport, recipient.id) == [msg.id]
        assert await transport.ack(recipient.id, [msg.id]) == 1


async def test_wait_returns_false_at_timeout_without_mail(
    transport: Transport, make_peer: MakePeer
) -> None:
    recipient = await transport.register(make_peer())
    started = time.monotonic()
    with anyio.fail_after(0.5 + PROMPT):
        woke = await transport.wait_for_mail(recipient.id, timeout=0.5)
    elapsed = time.monotonic() - started
    assert woke is False
    assert elapsed >= 0.4


async def test_idle_wait_costs_no_cpu(transport: Transport, make_peer: MakePeer) -> None:
    recipient = await transport.register(make_peer())
    before = resource.getrusage(resource.RUSAGE_SELF)
    assert await transport.wait_for_mail(recipient.id, timeout=1.5) is False
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Polling every few milliseconds would burn far more than this in 1.5 s.
    assert cpu < 0.15, f"an idle wait used {cpu:.3f} s of CPU"


async def test_wait_wakes_on_send_from_another_process(
    transport: Transport,
    transport_factory: Factory,
    make_peer: MakePeer,
    request: pytest.FixtureRequest,
) -> None:
    if request.node.callspec.params["transport"] == "fakeredis_transport":
        pytest.skip("fakeredis lives in this process only")
    recipient = await transport.register(make_peer())
    settings = transport_factory.settings()
    args = {
        "url": settings.url,
        "namespace": settings.namespace,
        "sender": new_peer_id(),
        "recipients": [recipient.id],
        "count": 1,
    }
    result = Path(request.getfixturevalue("tmp_path")) / "sender.json"
    command = [sys.executable, str(STRESS_WORKER), "send", json.dumps(args), str(result)]
    async with await anyio.open_process(command) as child:
        with anyio.fail_after(30):
            woke = await transport.wait_for_mail(recipient.id, timeout=25)
        await child.wait()
    assert woke is True
    assert child.returncode == 0, result.read_text()
    [msg] = await transport.fetch(recipient.id)
    assert msg.sender_id == args["sender"]


async def test_send_between_fetch_and_wait_is_not_missed(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    recipient = await transport.register(make_peer())
    assert await transport.fetch(recipient.id) == []
    other = await transport_factory()
    sender = await other.register(make_peer())
    msg = await other.send(make_message(sender, recipient, "in the gap"))
    with anyio.fail_after(PROMPT):
        woke = await transport.wait_for_mail(recipient.id, timeout=30)
    assert woke is True
    assert await fetch_all(transport, recipient.id) == [msg.id]


# -- reading back -------------------------------------------------------------------


async def test_get_message_pending_and_acked(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    pending = await transport.send(make_message(a, b, "pending"))
    acked = await transport.send(make_message(a, b, "acked"))
    await transport.ack(b.id, [acked.id])
    other = await transport_factory()
    got_pending = await other.get_message(pending.id)
    got_acked = await other.get_message(acked.id)
    assert got_pending is not None and got_pending.body == "pending"
    assert got_acked is not None and got_acked.body == "acked" and got_acked.recipient_id == b.id
    assert await other.get_message(new_message_id()) is None


async def test_pending_counts(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    c = await transport.register(make_peer())
    assert await transport.pending_counts() == {}
    to_b = await send_many(transport, make_message, a, b, 2)
    await transport.send(make_message(a, c, "c"))
    other = await transport_factory()
    assert await other.pending_counts() == {b.id: 2, c.id: 1}
    await other.ack(b.id, to_b)
    assert await transport.pending_counts() == {c.id: 1}


async def test_history_states(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    pending = await transport.send(make_message(a, b, "p"))
    delivered = await transport.send(make_message(a, b, "d"))
    before_ack = time.time()
    await transport.ack(b.id, [delivered.id])
    other = await transport_factory()
    records = await other.history(HistoryQuery())
    assert [r.message.id for r in records] == [pending.id, delivered.id]
    by_id = {r.message.id: r for r in records}
    assert by_id[pending.id].state == DeliveryState.PENDING
    assert by_id[pending.id].acked_at is None
    assert by_id[delivered.id].state == DeliveryState.DELIVERED
    acked_at = by_id[delivered.id].acked_at
    assert acked_at is not None and acked_at >= before_ack - 1


async def test_history_filters_by_peer_since_and_limit(
    transport: Transport, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    c = await transport.register(make_peer())
    m1 = await transport.send(make_message(a, b, "1"))
    m2 = await transport.send(make_message(b, a, "2"))
    m3 = await transport.send(make_message(b, c, "3"))
    await anyio.sleep(0.05)  # a clear gap in sent_at for `since`
    mark = time.time()
    await anyio.sleep(0.05)
    m4 = await transport.send(make_message(c, a, "4"))
    m5 = await transport.send(make_message(c, b, "5"))

    def of(records: list[Any]) -> list[str]:
        return [r.message.id for r in records]

    assert of(await transport.history(HistoryQuery())) == [m1.id, m2.id, m3.id, m4.id, m5.id]
    assert of(await transport.history(HistoryQuery(peer_id=a.id))) == [m1.id, m2.id, m4.id]
    assert of(await transport.history(HistoryQuery(since=mark))) == [m4.id, m5.id]
    assert of(await transport.history(HistoryQuery(limit=2))) == [m4.id, m5.id]
    assert of(await transport.history(HistoryQuery(peer_id=c.id, limit=2))) == [m4.id, m5.id]
    assert of(await transport.history(HistoryQuery(peer_id=b.id, since=mark))) == [m5.id]


async def test_history_marks_old_pending_mail_expired(
    transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    brief = await transport_factory(retention=1.0)
    a = await brief.register(make_peer())
    b = await brief.register(make_peer())
    old = await brief.send(make_message(a, b, "old"))
    await anyio.sleep(1.3)  # let the retention window pass (gc has not run)
    fresh = await brief.send(make_message(a, b, "fresh"))
    by_id = {r.message.id: r for r in await brief.history(HistoryQuery())}
    assert by_id[old.id].state == DeliveryState.EXPIRED
    assert by_id[fresh.id].state == DeliveryState.PENDING


# -- events ------------------------------------------------------------------------


async def test_events_from_another_instance(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    stream = transport.events()
    try:
        actor = await transport_factory()
        a = await actor.register(make_peer(name="ev-a"))
        b = await actor.register(make_peer())
        await actor.update_peer(a.id, PeerUpdate(summary="busy"))
        await actor.update_peer(a.id, PeerUpdate(name="ev-b"))
        msg = await actor.send(make_message(b, a, "hi"))
        await actor.unregister(a.id)

        seen: list[Event] = []
        while not (seen and seen[-1].kind == EventKind.LEAVE and seen[-1].peer_id == a.id):
            seen.append(await next_event(stream))
    finally:
        await close_stream(stream)

    kinds = [(e.kind, e.peer_id) for e in seen if e.kind != EventKind.MESSAGE]
    assert kinds == [
        (EventKind.JOIN, a.id),
        (EventKind.JOIN, b.id),
        (EventKind.SUMMARY, a.id),
        (EventKind.RENAME, a.id),
        (EventKind.LEAVE, a.id),
    ]
    summary = next(e for e in seen if e.kind == EventKind.SUMMARY)
    assert summary.data["summary"] == "busy"
    rename = next(e for e in seen if e.kind == EventKind.RENAME)
    assert rename.data["old"] == "ev-a" and rename.data["new"] == "ev-b"
    [message] = [e for e in seen if e.kind == EventKind.MESSAGE]
    assert message.data["id"] == msg.id
    assert message.data["sender_id"] == b.id
    assert message.data["recipient_id"] == a.id
    assert message.data["broadcast"] is False
    assert "sender_name" in message.data
    # MESSAGE came between the rename and the leave.
    order = [e.kind for e in seen]
    assert (
        order.index(EventKind.RENAME)
        < order.index(EventKind.MESSAGE)
        < order.index(EventKind.LEAVE)
    )


async def test_events_report_reaped_peer_leaving(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer
) -> None:
    pid, start = dead_process()
    actor = await transport_factory()
    ghost = await actor.register(make_peer(name="ghost", pid=pid, pid_start=start))
    stream = transport.events()
    try:
        assert await actor.reap() != []
        event = await next_event(stream)
    finally:
        await close_stream(stream)
    assert event.kind == EventKind.LEAVE and event.peer_id == ghost.id


async def test_events_stay_in_their_namespace(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, namespace: str
) -> None:
    ns2 = f"{namespace}-two"
    t2 = await transport_factory(namespace=ns2)
    stream = t2.events()
    try:
        await transport.register(make_peer())
        mine = await t2.register(make_peer(namespace=ns2))
        # The first event the other namespace sees is its own join.
        event = await next_event(stream)
    finally:
        await close_stream(stream)
    assert event.kind == EventKind.JOIN and event.peer_id == mine.id


# -- upkeep ------------------------------------------------------------------------


async def test_gc_keeps_everything_within_retention(
    transport: Transport, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer(name="keep"))
    b = await transport.register(make_peer())
    pending = await transport.send(make_message(b, a, "p"))
    acked = await transport.send(make_message(a, b, "d"))
    await transport.ack(b.id, [acked.id])
    await transport.unregister(a.id)
    report = await transport.gc()
    assert isinstance(report, GcReport)
    assert report.peers_removed == 0 and report.messages_removed == 0
    assert await transport.get_peer(a.id) is not None
    assert await transport.get_message(acked.id) is not None
    assert await fetch_all(transport, a.id) == [pending.id]


async def test_gc_removes_what_outlived_retention(
    transport: Transport, transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    brief = await transport_factory(retention=1.0)
    gone = await brief.register(make_peer(name="gone"))
    live = await brief.register(make_peer())
    pending = await brief.send(make_message(live, gone, "never read"))
    acked = await brief.send(make_message(gone, live, "read"))
    await brief.ack(live.id, [acked.id])
    await brief.unregister(gone.id)
    await anyio.sleep(1.3)  # let the retention window pass
    await brief.heartbeat(live.id)
    report = await brief.gc()
    assert isinstance(report, GcReport)
    assert min(report.peers_removed, report.messages_removed, report.wakeups_removed) >= 0
    # Checked through an instance with the default retention: really deleted, not hidden.
    assert await transport.get_peer(gone.id) is None
    assert await transport.get_message(pending.id) is None
    assert await transport.get_message(acked.id) is None
    assert await fetch_all(transport, gone.id) == []
    assert await transport.pending_counts() == {}
    assert await transport.history(HistoryQuery()) == []
    # A live peer is never collected.
    kept = await transport.get_peer(live.id)
    assert kept is not None and kept.online


# -- errors ------------------------------------------------------------------------


async def test_odd_inputs_raise_only_peers_errors(
    transport: Transport, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    odd = ["\x00", "x" * 5000, "'; DROP TABLE peers; --", "peers:{x}:*", "ü\u2028"]
    calls: list[Callable[[], Awaitable[object]]] = []
    for value in odd:
        calls += [
            lambda v=value: transport.get_peer(v),
            lambda v=value: transport.get_peer_by_name(v),
            lambda v=value: transport.heartbeat(v),
            lambda v=value: transport.unregister(v),
            lambda v=value: transport.update_peer(v, PeerUpdate(summary="s")),
            lambda v=value: transport.fetch(v),
            lambda v=value: transport.ack(v, [v]),
            lambda v=value: transport.ack(a.id, [v]),
            lambda v=value: transport.get_message(v),
            lambda v=value: transport.send(make_message(a, v, "x")),
            lambda v=value: transport.history(HistoryQuery(peer_id=v)),
        ]
    calls += [
        lambda: transport.fetch(a.id, limit=0),
        lambda: transport.fetch(a.id, limit=-1),
        lambda: transport.history(HistoryQuery(limit=0)),
        lambda: transport.history(HistoryQuery(since=float("inf"))),
        lambda: transport.send(make_message(a, a, "other ns", namespace="not-mine")),
    ]
    for call in calls:
        with contextlib.suppress(PeersError):
            await call()
    # The store is intact afterwards.
    assert await live_ids(transport) == [a.id]
    await transport.ping()


async def test_unknown_recipient_in_odd_form_is_peer_not_found(
    transport: Transport, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    a = await transport.register(make_peer())
    with pytest.raises(PeerNotFound):
        await transport.send(make_message(a, "'; DROP TABLE peers; --", "x"))


async def test_use_after_close_raises_backend_unavailable(
    transport_factory: Factory, make_peer: MakePeer, make_message: MakeMessage
) -> None:
    t = await transport_factory()
    peer = await t.register(make_peer())
    await t.close()
    calls: list[Callable[[], Awaitable[object]]] = [
        t.ping,
        lambda: t.fetch(peer.id),
        lambda: t.list_peers(),
        lambda: t.heartbeat(peer.id),
        lambda: t.send(make_message(peer, peer, "late")),
        lambda: t.gc(),
        lambda: t.acquire_lease("gc", peer.id, 10),
    ]
    for call in calls:
        with pytest.raises(BackendUnavailable):
            await call()


# -- unreachable and unreadable stores ------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_unreachable_store_is_backend_unavailable(
    backend: str, tmp_path: Path, namespace: str
) -> None:
    if backend == "sqlite":
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where the store's directory should be")
        url = f"sqlite:///{blocker / 'peers.db'}"
    else:
        if importlib.util.find_spec("peers.transports.redis") is None:
            pytest.skip("redis transport not implemented yet")
        with socket.socket() as sock:  # a port nobody listens on once this closes
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"redis://127.0.0.1:{port}/0"
    t = create_transport(load_settings(url=url, namespace=namespace))
    try:
        with anyio.fail_after(30), pytest.raises(BackendUnavailable):
            await t.connect()
            await t.ping()
    finally:
        await t.close()


async def test_garbage_sqlite_file_is_store_corrupt(tmp_path: Path, namespace: str) -> None:
    path = tmp_path / "peers.db"
    path.write_bytes(b"this is not a database\n" * 512)
    t = create_transport(load_settings(url=f"sqlite:///{path}", namespace=namespace))
    try:
        with pytest.raises(StoreCorrupt):
            await t.connect()
            await t.list_peers()
    finally:
        await t.close()
