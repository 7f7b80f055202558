"""peers.trim: memory settled once a session is up, then after each busy spell, never while idle."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import anyio
import pytest

from peers import trim

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(trim, "QUIET", 0.05)
    yield
    gc.unfreeze()  # run() froze the test process's objects


async def _settled(trimmer: trim.Trimmer, count: int) -> None:
    with anyio.fail_after(10):
        while trimmer.settled < count:
            await anyio.sleep(0.01)


async def test_settles_once_ready_then_after_traffic_goes_quiet() -> None:
    trimmer = trim.Trimmer()
    ready = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(trimmer.run, ready)
        await anyio.sleep(0.1)
        assert trimmer.settled == 0  # not before the session is up
        ready.set()
        await _settled(trimmer, 1)
        assert gc.get_freeze_count() > 0
        # Idle: nothing more, however long.
        await anyio.sleep(trim.QUIET * 4)
        assert trimmer.settled == 1
        # A burst: no settling while it lasts, once after it.
        for _ in range(10):
            trimmer.touch()
            await anyio.sleep(trim.QUIET / 5)
        assert trimmer.settled == 1
        await _settled(trimmer, 2)
        await anyio.sleep(trim.QUIET * 4)
        assert trimmer.settled == 2
        tg.cancel_scope.cancel()


def test_malloc_trim_is_found_on_glibc_or_skipped() -> None:
    fn = trim._malloc_trim()
    if fn is not None:
        fn()  # returns memory to the system; must not raise
