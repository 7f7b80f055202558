"""cancel_and_wait: ends a task whatever it does, without eating the caller's own cancellation."""

from __future__ import annotations

import asyncio

import pytest

from peers.tasks import cancel_and_wait

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_task_that_fails_or_is_cancelled_is_waited_for_quietly() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    async def sleeps() -> None:
        await asyncio.sleep(60)

    failing, sleeping = asyncio.create_task(fails()), asyncio.create_task(sleeps())
    await asyncio.sleep(0.01)
    await cancel_and_wait(failing)
    await cancel_and_wait(sleeping)
    assert failing.done() and sleeping.cancelled()


async def test_the_callers_own_deadline_still_fires() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await release.wait()  # cleanup that takes its time
            raise

    task = asyncio.create_task(slow_to_stop())
    await started.wait()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await cancel_and_wait(task)
    release.set()
    await asyncio.wait([task])
    assert task.cancelled()
