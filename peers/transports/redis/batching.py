"""Coalescing of concurrent calls into one round trip (a network backend's group commit).

A call made while the store is idle goes out at once, alone: a lone sender pays
no batching delay. Calls made while one is in flight wait, and all of them go
out together as the next batch, so N tasks sending at once cost about one round
trip per batch instead of N. At most one batch is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from peers.tasks import cancel_and_wait

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")

# Each item's outcome, in order: its result, or the exception its caller gets.
Flush = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]


class Coalescer(Generic[T, R]):
    """Runs ``flush`` one batch at a time; calls that arrive meanwhile share the next batch."""

    def __init__(self, flush: Flush[T, R], max_batch: int, name: str = "coalescer") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._flush = flush
        self._max_batch = max_batch
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._sending: list[asyncio.Future[R]] = []  # the drainer's batch in flight
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None
        self._closed: Exception | None = None

    async def submit(self, item: T) -> R:
        """Run ``item`` through ``flush`` (alone or with others) and return its outcome."""
        if self._closed is not None:
            raise self._closed
        if self._busy:
            future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            self._queue.append((item, future))
            return await future
        # Idle: go now, in the caller's task (no task switch on the lone-sender path).
        self._busy = True
        try:
            (outcome,) = await self._flush([item])
        finally:
            self._busy = False
            self._start_drain()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _start_drain(self) -> None:
        if self._queue and not self._busy and self._closed is None:
            self._busy = True
            self._drainer = asyncio.create_task(self._drain(), name=f"peers-{self._name}")

    async def _drain(self) -> None:
        try:
            while self._queue:
                # Callers that gave up (cancelled) before their turn are not sent at all.
                waiting = [(i, f) for i, f in self._queue if not f.done()]
                batch, rest = waiting[: self._max_batch], waiting[self._max_batch :]
                self._queue = rest
                if not batch:
                    continue
                self._sending = [future for _, future in batch]
                try:
                    outcomes = await self._flush([item for item, _ in batch])
                except Exception as exc:
                    outcomes = [exc] * len(batch)
                finally:
                    self._sending = []
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                # One turn of the loop for the callers just answered: a caller with more
                # to send queues it now and rides the next batch, rather than finding
                # the store idle and going out alone (batches of 1, 7, 1, 7...).
                await asyncio.sleep(0)
        finally:
            self._busy = False
            self._drainer = None

    async def close(self, reason: Exception) -> None:
        """Fail waiting calls with ``reason`` and refuse new ones (a batch in flight may have landed)."""
        self._closed = reason
        waiting = [future for _, future in self._queue] + self._sending
        self._queue.clear()
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            await cancel_and_wait(drainer)
        for future in waiting:
            if not future.done():
                future.set_exception(reason)
