"""Upkeep in the background (peers/upkeep.py): gc under a lease, one process per store,
surviving failures, stopping promptly. On every backend, observed through the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from peers import constants as c
from peers.models import GcReport, Peer
from peers.transports.base import Transport
from peers.upkeep import run_upkeep, upkeep_round

pytestmark = pytest.mark.anyio

Factory = Any
MakePeer = Callable[..., Peer]
FAST = {"interval": 0.05, "retry": 0.05, "start_after": 0.0, "lease_ttl": 5.0}


@dataclass
class Service:
    transport: Transport


class FailingOnce:
    """The real transport, except that its first gc raises (an unexpected bug)."""

    def __init__(self, real: Transport) -> None:
        self._real = real
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def gc(self) -> GcReport:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in gc")
        return await self._real.gc()


async def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    async with asyncio.timeout(2.0):  # promptly, even mid-sleep or mid-round
        with pytest.raises(asyncio.CancelledError):
            await task


async def old_offline_peer(t: Transport, make_peer: MakePeer) -> Peer:
    peer = await t.register(make_peer(name="long-gone"))
    await t.unregister(peer.id)
    await asyncio.sleep(1.2)  # past the 1 s retention of these tests
    return peer


async def test_upkeep_collects_under_the_lease_and_hands_it_on(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    t = await transport_factory(retention=1.0)
    gone = await old_offline_peer(t, make_peer)
    task = asyncio.create_task(run_upkeep(Service(t), lambda: "server-a", **FAST))
    await wait_until(lambda: _missing(t, gone.id))
    # While it runs, nobody else gets the lease: one gc per store at a time.
    other = await transport_factory()
    assert await other.acquire_lease(c.UPKEEP_LEASE, "server-b", 5.0) is False
    await stop(task)
    # Stopped: the lease is given back at once, not left to expire.
    assert await other.acquire_lease(c.UPKEEP_LEASE, "server-b", 5.0) is True


async def _missing(t: Transport, peer_id: str) -> bool:
    return await t.get_peer(peer_id) is None


async def test_only_the_lease_holder_runs_gc(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    t = await transport_factory(retention=1.0)
    assert await t.acquire_lease(c.UPKEEP_LEASE, "someone-else", 30.0)
    gone = await old_offline_peer(t, make_peer)
    assert await upkeep_round(t, "server-a") is None
    assert await t.get_peer(gone.id) is not None  # not collected: not ours to do
    report = await upkeep_round(t, "someone-else")
    assert report is not None and report.peers_removed == 1


async def test_upkeep_survives_an_unexpected_error(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    real = await transport_factory(retention=1.0)
    gone = await old_offline_peer(real, make_peer)
    flaky = FailingOnce(real)
    service = Service(flaky)  # type: ignore[arg-type]
    task = asyncio.create_task(run_upkeep(service, lambda: "server-a", **FAST))
    await wait_until(lambda: _missing(real, gone.id))
    assert flaky.failed and not task.done()
    await stop(task)


async def test_no_holder_no_lease(transport_factory: Factory) -> None:
    t = await transport_factory()
    task = asyncio.create_task(run_upkeep(Service(t), lambda: None, **FAST))
    await asyncio.sleep(0.2)  # several rounds' worth
    other = await transport_factory()
    assert await other.acquire_lease(c.UPKEEP_LEASE, "server-b", 5.0) is True
    await stop(task)


async def test_upkeep_stops_promptly_during_its_first_wait(transport_factory: Factory) -> None:
    t = await transport_factory()
    task = asyncio.create_task(run_upkeep(Service(t), lambda: "server-a"))  # waits 10 s first
    await asyncio.sleep(0.05)
    await stop(task)
