"""Sends that queue up while one is in flight share one script call on a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from support import HOST, Opener, RedisProcess, make_message, make_peer

from peers.config import load_settings
from peers.errors import BackendError, BackendUnavailable, InvalidInput, PeerNotFound
from peers.keys import RedisKeys
from peers.models import Peer
from peers.service import PeersService, Sender
from peers.transports.redis import RedisTransport

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]


async def script_calls(raw: Any) -> int:
    """EVALSHA plus EVAL calls the server has run so far."""
    stats = await raw.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


async def break_mailbox(raw: Any, namespace: str, peer: Peer) -> None:
    """Make the peer's mailbox key a string: an XADD to it is an error reply."""
    mailbox = RedisKeys(namespace).mailbox(peer.id)
    await raw.delete(mailbox)
    await raw.set(mailbox, "not a stream")


async def test_concurrent_sends_share_script_calls_and_each_lands_once(
    opener: Opener, raw: Any, namespace: str
) -> None:
    t = await opener()
    alice = await t.register(make_peer(namespace, name="alice"))
    bob = await t.register(make_peer(namespace, name="bob"))
    messages = [make_message(namespace, alice, bob, f"m{i}") for i in range(60)]

    before = await script_calls(raw)
    stored = await asyncio.gather(*(t.send(m) for m in messages))
    calls = await script_calls(raw) - before

    assert [m.id for m in stored] == [m.id for m in messages]
    assert all(m.recipient_id == bob.id for m in stored)
    # One script call per message would be 60; batches of queued sends take far fewer.
    assert calls <= 10, f"{calls} script calls for 60 concurrent sends"
    got = await t.fetch(bob.id, limit=100)
    assert sorted(m.id for m in got) == sorted(m.id for m in messages)
    # Per sender, the order of the calls is the order in the mailbox.
    assert [m.id for m in got] == [m.id for m in messages]


async def test_a_batch_settles_each_send_on_its_own(opener: Opener, namespace: str) -> None:
    t = await opener()
    alice = await t.register(make_peer(namespace, name="alice"))
    bob = await t.register(make_peer(namespace, name="bob"))
    ghost = make_peer(namespace, name="ghost")  # never registered
    first = make_message(namespace, alice, bob, "first")
    await t.send(first)
    impostor = first.model_copy(update={"body": "not the same message"})
    good = [make_message(namespace, alice, bob, f"ok{i}") for i in range(5)]

    outcomes = await asyncio.gather(
        t.send(good[0]),
        t.send(make_message(namespace, alice, ghost, "to nobody")),
        t.send(good[1]),
        t.send(impostor),
        t.send(first),  # a retry of a stored send: the same message, not a second one
        *(t.send(m) for m in good[2:]),
        return_exceptions=True,
    )

    assert isinstance(outcomes[1], PeerNotFound) and ghost.id in str(outcomes[1])
    assert isinstance(outcomes[3], InvalidInput) and first.id in str(outcomes[3])
    assert not any(isinstance(o, BaseException) for i, o in enumerate(outcomes) if i not in (1, 3))
    got = await t.fetch(bob.id, limit=100)
    assert [m.body for m in got] == ["first", "ok0", "ok1", "ok2", "ok3", "ok4"]


async def test_sends_to_a_frozen_server_fail_within_the_deadline_then_recover(
    redis_spawner: Callable[..., RedisProcess], namespace: str
) -> None:
    server = redis_spawner("--save", "", "--appendonly", "no")
    opener = Opener({"url": server.url, "namespace": namespace, "host": HOST})
    try:
        t = await opener()
        assert isinstance(t, RedisTransport)
        t.op_timeout = 0.5
        alice = await t.register(make_peer(namespace, name="alice"))
        bob = await t.register(make_peer(namespace, name="bob"))
        server.pause()
        try:
            # One goes out at once, the rest queue behind it: all of them must give up.
            outcomes = await asyncio.wait_for(
                asyncio.gather(
                    *(t.send(make_message(namespace, alice, bob, f"m{i}")) for i in range(5)),
                    return_exceptions=True,
                ),
                timeout=10,
            )
        finally:
            server.resume()
        assert all(isinstance(o, BackendUnavailable) for o in outcomes), outcomes
        assert "did not answer within 0.5 s" in str(outcomes[0])
        # The connection that hung was dropped; the next send uses a fresh one.
        after = make_message(namespace, alice, bob, "after")
        assert (await t.send(after)).id == after.id
        assert "after" in [m.body for m in await t.fetch(bob.id, limit=100)]
    finally:
        await opener.aclose()


async def test_a_broadcast_goes_out_in_a_few_script_calls(
    opener: Opener, raw: Any, redis_server: RedisProcess, namespace: str
) -> None:
    t = await opener()
    settings = load_settings(url=redis_server.url, namespace=namespace, host=HOST)
    service = PeersService(t, settings)
    sender = await t.register(make_peer(namespace, name="lead"))
    team = [await t.register(make_peer(namespace, name=f"dev{i}")) for i in range(30)]

    before = await script_calls(raw)
    result = await service.broadcast(Sender.of(sender), "freeze main", "all")
    calls = await script_calls(raw) - before

    assert sorted(r.recipient.id for r in result.results) == sorted(p.id for p in team)
    assert calls <= 4, f"{calls} script calls for a broadcast to 30 peers"
    for peer in team:
        assert [m.body for m in await t.fetch(peer.id)] == ["freeze main"]


async def test_an_error_reply_fails_only_its_own_message(
    opener: Opener, raw: Any, namespace: str
) -> None:
    t = await opener()
    alice = await t.register(make_peer(namespace, name="alice"))
    bob = await t.register(make_peer(namespace, name="bob"))
    broken = await t.register(make_peer(namespace, name="broken"))
    await break_mailbox(raw, namespace, broken)
    outcomes = await asyncio.gather(
        t.send(make_message(namespace, alice, bob, "one")),
        t.send(make_message(namespace, alice, broken, "lost cause")),
        t.send(make_message(namespace, alice, bob, "two")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], BackendError) and "WRONGTYPE" in str(outcomes[1])
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert [m.body for m in await t.fetch(bob.id)] == ["one", "two"]


async def test_ids_with_line_breaks_are_refused_before_they_reach_a_batch(
    opener: Opener, namespace: str
) -> None:
    t = await opener()
    alice = await t.register(make_peer(namespace, name="alice"))
    bob = await t.register(make_peer(namespace, name="bob"))
    odd = make_message(namespace, alice, bob, "x").model_copy(update={"recipient_id": "a\nb"})
    good = make_message(namespace, alice, bob, "still fine")
    outcomes = await asyncio.gather(t.send(odd), t.send(good), return_exceptions=True)
    assert isinstance(outcomes[0], InvalidInput) and "line breaks" in str(outcomes[0])
    assert not isinstance(outcomes[1], BaseException)


async def test_a_broadcast_that_fails_for_some_says_whom_it_reached(
    opener: Opener, raw: Any, redis_server: RedisProcess, namespace: str
) -> None:
    t = await opener()
    service = PeersService(t, load_settings(url=redis_server.url, namespace=namespace, host=HOST))
    lead = await t.register(make_peer(namespace, name="lead"))
    ok1 = await t.register(make_peer(namespace, name="ok1"))
    ok2 = await t.register(make_peer(namespace, name="ok2"))
    broken = await t.register(make_peer(namespace, name="broken"))
    await break_mailbox(raw, namespace, broken)
    with pytest.raises(BackendError, match="reached 2 of 3 peers") as failure:
        await service.broadcast(Sender.of(lead), "heads up", "all")
    assert "ok1" in str(failure.value) and "ok2" in str(failure.value)
    for peer in (ok1, ok2):
        assert [m.body for m in await t.fetch(peer.id)] == ["heads up"]
