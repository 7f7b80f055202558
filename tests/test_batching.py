"""The Coalescer: one batch in flight, calls made meanwhile share the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio
import pytest

from peers.transports.redis.batching import Coalescer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Store:
    """A flush target whose calls can be held open, recording every batch it got."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def flush(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.entered.set()
        await self.gate.wait()
        if -1 in items:
            raise ConnectionError("store went away")
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def hold_first_batch(store: Store, coalescer: Coalescer[int, int]) -> asyncio.Task[int]:
    """Start one call and keep its batch in flight until ``store.gate`` is set."""
    store.gate.clear()
    first = asyncio.create_task(coalescer.submit(0))
    await store.entered.wait()
    return first


async def test_a_lone_call_goes_out_alone_at_once() -> None:
    store = Store()
    coalescer = Coalescer(store.flush, max_batch=8)
    assert await coalescer.submit(3) == 30
    assert await coalescer.submit(4) == 40
    assert store.batches == [[3], [4]]


async def test_calls_made_during_a_flush_share_the_next_batch() -> None:
    store = Store()
    coalescer = Coalescer(store.flush, max_batch=8)
    first = await hold_first_batch(store, coalescer)
    rest = [asyncio.create_task(coalescer.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)  # let them queue
    store.gate.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [10, 20, 30, 40, 50]
    assert store.batches == [[0], [1, 2, 3, 4, 5]]


async def test_batches_stay_within_max_batch() -> None:
    store = Store()
    coalescer = Coalescer(store.flush, max_batch=3)
    first = await hold_first_batch(store, coalescer)
    rest = [asyncio.create_task(coalescer.submit(i)) for i in range(1, 8)]
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(first, *rest)
    assert store.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]


async def test_one_items_error_goes_to_its_caller_only() -> None:
    store = Store()
    coalescer = Coalescer(store.flush, max_batch=8)
    first = await hold_first_batch(store, coalescer)
    good = asyncio.create_task(coalescer.submit(1))
    bad = asyncio.create_task(coalescer.submit(-5))
    other = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0)
    store.gate.set()
    await first
    assert await good == 10 and await other == 20
    with pytest.raises(ValueError, match="bad -5"):
        await bad
    assert store.batches == [[0], [1, -5, 2]]


async def test_a_failed_flush_fails_its_batch_and_the_next_batch_still_runs() -> None:
    store = Store()
    coalescer = Coalescer(store.flush, max_batch=2)
    first = await hold_first_batch(store, coalescer)
    doomed = [asyncio.create_task(coalescer.submit(i)) for i in (1, -1)]
    later = asyncio.create_task(coalescer.submit(7))
    await asyncio.sleep(0)
    store.gate.set()
    await first
    for task in doomed:
        with pytest.raises(ConnectionError, match="went away"):
            await task
    assert await later == 70
    # A lone call that fails raises in its own task too.
    with pytest.raises(ConnectionError):
        await coalescer.submit(-1)
    assert await coalescer.submit(8) == 80


async def test_a_caller_that_gave_up_before_its_turn_is_not_sent() -> None:
    store = Store()
    coalescer = Coalescer(store.flush, max_batch=8)
    first = await hold_first_batch(store, coalescer)
    kept = asyncio.create_task(coalescer.submit(1))
    dropped = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0)
    dropped.cancel()
    store.gate.set()
    await first
    assert await kept == 10
    assert dropped.cancelled()
    assert store.batches == [[0], [1]]


async def test_close_fails_waiting_and_in_flight_calls_and_refuses_new_ones() -> None:
    store = Store()
    coalescer = Coalescer(store.flush, max_batch=1)
    first = await hold_first_batch(store, coalescer)
    queued = [asyncio.create_task(coalescer.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    # Let the first batch finish but hold the next one: the drainer takes [1], [2] waits.
    store.entered.clear()
    store.gate.set()
    store.gate.clear()
    assert await first == 0
    await store.entered.wait()
    assert store.batches == [[0], [1]]
    await coalescer.close(RuntimeError("closed"))
    for task in queued:
        with pytest.raises(RuntimeError, match="closed"), anyio.fail_after(5):
            await task  # the one in flight too: nobody is left to finish it
    with pytest.raises(RuntimeError, match="closed"):
        await coalescer.submit(9)
    assert store.batches == [[0], [1]]


async def test_busy_callers_keep_riding_full_batches() -> None:
    """Four tasks sending one after another: once busy, every batch carries all four."""
    batches: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int | Exception]:
        batches.append(list(items))
        await asyncio.sleep(0)  # the round trip
        return list(items)

    coalescer = Coalescer(flush, max_batch=8)

    async def pump(start: int) -> None:
        for i in range(start, start + 6):
            assert await coalescer.submit(i) == i

    await asyncio.gather(*(pump(100 * n) for n in range(4)))
    assert sorted(i for b in batches for i in b) == sorted(
        i for n in range(4) for i in range(100 * n, 100 * n + 6)
    )
    # The first call goes alone; after that the four share each batch (not 1, 3, 1, 3...).
    assert [len(b) for b in batches[1:-1]] == [4] * (len(batches) - 2), batches


def test_max_batch_must_be_positive() -> None:
    async def flush(items: Sequence[int]) -> list[int | Exception]:
        return list(items)

    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(flush, max_batch=0)
