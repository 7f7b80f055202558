"""Memory given back by a session: once it has started, and each time a busy spell ends.

Two things keep a ``peers serve`` process bigger than it needs to be. Start-up
leaves garbage (the SDK's pydantic models are built from temporary schemas),
and a burst of calls (a client with hundreds in flight) leaves its objects'
cycles in the oldest generation, which the collector seldom visits; what is
freed stays with the C allocator either way. So once the session is registered,
one full collection runs, the survivors are frozen (``gc.freeze``: later
collections skip them, so a full one costs milliseconds), and glibc's
``malloc_trim`` hands free pages back. After that the same collection and trim
run whenever the wire has been quiet for :data:`QUIET` seconds after traffic:
never while idle, never in the middle of a burst.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import anyio

from peers.log import get_logger

__all__ = ["QUIET", "Trimmer"]

log = get_logger("peers.trim")

QUIET = 2.0


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none (musl, macOS)."""
    try:
        import ctypes  # loaded only here: a session that never trims does not pay for it

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, ImportError):
        return None
    return lambda: trim(0)


class Trimmer:
    """Collects and trims after start-up, then after each busy spell (see the module doc)."""

    def __init__(self) -> None:
        self._traffic = anyio.Event()
        self._last = 0.0
        self._trim: Callable[[], object] | None = None
        self.settled = 0

    def touch(self) -> None:
        """Note traffic (called for every write to stdout: cheap)."""
        # A busy wire only moves the mark; the trimmer looks at it once per QUIET.
        self._last = time.monotonic()
        if not self._traffic.is_set():
            self._traffic.set()

    def settle(self) -> None:
        started = time.perf_counter()
        collected = gc.collect()
        if self._trim is not None:
            self._trim()
        self.settled += 1
        log.debug(
            "memory settled",
            collected=collected,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def run(self, ready: anyio.Event) -> None:
        """Settle once ``ready`` is set, then after every busy spell, until cancelled."""
        await ready.wait()
        gc.collect()
        gc.freeze()
        self._trim = _malloc_trim()
        self.settle()
        while True:
            await self._traffic.wait()
            # Busy: sleep until QUIET seconds have passed since the latest write. A timed
            # sleep, not an Event per write: waking on every write cost a busy session
            # about 3 % of its CPU.
            while (left := self._last + QUIET - time.monotonic()) > 0:  # noqa: ASYNC110
                await anyio.sleep(left)
            self._traffic = anyio.Event()
            self.settle()
