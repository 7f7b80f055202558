"""Name claims on a real Redis are race-free: many connections, one winner."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from support import HOST, Opener, make_peer

from peers import procinfo
from peers.errors import NameTaken
from peers.ids import new_message_id
from peers.models import Message, PeerUpdate
from peers.transports.base import Transport

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]

CLAIMANTS = 20


def dead_pid() -> tuple[int, float | None]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = procinfo.process_start_time(proc.pid)
    proc.wait(timeout=30)
    return proc.pid, start


async def claim_all(
    instances: list[Transport], claim: Callable[[Transport, int], Any]
) -> tuple[list[int], list[int]]:
    """Run every claim at once (each on its own connection); return winners and losers."""
    barrier = asyncio.Event()

    async def one(t: Transport, i: int) -> bool:
        await barrier.wait()
        try:
            await claim(t, i)
        except NameTaken:
            return False
        return True

    tasks = [asyncio.create_task(one(t, i)) for i, t in enumerate(instances)]
    await asyncio.sleep(0.05)
    barrier.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return [i for i, won in enumerate(results) if won], [
        i for i, won in enumerate(results) if not won
    ]


@pytest.fixture
async def instances(redis_server: Any, namespace: str) -> Any:
    if not redis_server.running:
        redis_server.start()
    opener = Opener({"url": redis_server.url, "namespace": namespace, "host": HOST})
    try:
        # Separate instances: separate connection pools, as separate sessions would have.
        yield opener, [await opener() for _ in range(CLAIMANTS)]
    finally:
        await opener.aclose()


async def test_concurrent_claims_of_a_free_name_have_one_winner(
    instances: tuple[Opener, list[Transport]], namespace: str
) -> None:
    _, transports = instances
    rivals = [make_peer(namespace, name="contested") for _ in transports]
    winners, losers = await claim_all(transports, lambda t, i: t.register(rivals[i]))
    assert len(winners) == 1, winners
    assert len(losers) == CLAIMANTS - 1
    winner = rivals[winners[0]]
    holder = await transports[0].get_peer_by_name("contested")
    assert holder is not None and holder.id == winner.id
    # The losers left no record behind.
    assert [p.id for p in await transports[0].list_peers()] == [winner.id]
    for i in losers:
        assert await transports[0].get_peer(rivals[i].id) is None


async def test_concurrent_claims_of_a_dead_holders_name_move_its_mail_once(
    instances: tuple[Opener, list[Transport]], namespace: str
) -> None:
    _, transports = instances
    t0 = transports[0]
    pid, start = dead_pid()
    sender = await t0.register(make_peer(namespace))
    crashed = await t0.register(make_peer(namespace, name="heir", pid=pid, pid_start=start))
    sent = []
    for i in range(5):
        msg = Message(
            id=new_message_id(),
            namespace=namespace,
            sender_id=sender.id,
            recipient_id=crashed.id,
            body=f"m{i}",
        )
        sent.append((await t0.send(msg)).id)

    rivals = [make_peer(namespace, name="heir") for _ in transports]
    winners, _ = await claim_all(transports, lambda t, i: t.register(rivals[i]))
    assert len(winners) == 1, winners
    winner = rivals[winners[0]]
    assert [m.id for m in await t0.fetch(winner.id, limit=100)] == sent
    assert await t0.pending_counts() == {winner.id: 5}
    old = await t0.get_peer(crashed.id)
    assert old is not None and not old.online and old.successor == winner.id


async def test_concurrent_renames_to_one_name_have_one_winner(
    instances: tuple[Opener, list[Transport]], namespace: str
) -> None:
    _, transports = instances
    peers = [await t.register(make_peer(namespace, name=f"p{i}")) for i, t in enumerate(transports)]
    winners, losers = await claim_all(
        transports, lambda t, i: t.update_peer(peers[i].id, PeerUpdate(name="chosen"))
    )
    assert len(winners) == 1, winners
    holder = await transports[0].get_peer_by_name("chosen")
    assert holder is not None and holder.id == peers[winners[0]].id
    # Every loser kept its own name.
    for i in losers:
        got = await transports[0].get_peer(peers[i].id)
        assert got is not None and got.name == f"p{i}"
