"""The SQLite transport's worker thread: the only user of the connection.

sqlite3 is synchronous, so every statement runs on one thread per transport:
calls are serialised and the event loop never blocks on the disk. Writes that
queue up behind each other share one transaction (group commit), each job in
its own savepoint (see ``SQLiteStore._write_batch``), and their results go back
to the event loop with one wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Effects", "Outcome", "Worker", "WriteOp", "error_code", "is_busy"]

_R = TypeVar("_R")

SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26


# A job: what to run on the worker (a function of no arguments, or a write
# operation taking the connection and an Effects), whether it is a write, and
# where its result goes: the caller's event loop and a callback to run there
# (None for fire-and-forget).
_Settle = Callable[[Any, BaseException | None], None]
WriteOp = Callable[[sqlite3.Connection, "Effects"], Any]
_Job = tuple[Any, bool, asyncio.AbstractEventLoop | None, _Settle | None]
Outcome = tuple[Any, BaseException | None]

# Results held back while more jobs are queued, at most: waking an event loop
# costs a context switch, so a burst of jobs is answered with one wake-up.
_SETTLE_BATCH = 32
# Writes queued back to back share one transaction (group commit), at most.
_WRITE_BATCH = 64


class Worker:
    """One thread that runs jobs in submission order: the only user of the connection.

    Lighter than a one-thread ThreadPoolExecutor plus ``wrap_future``: one
    hand-off each way. When jobs queue up (several tasks of one process
    sending at once), consecutive writes commit together and their results go
    back to the event loop with one wake-up; one job alone is not delayed.
    """

    def __init__(self, name: str, write_batch: Callable[[list[WriteOp]], list[Outcome]]) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._write_batch = write_batch
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _next(self, pending: list[Any]) -> _Job | None:
        while pending:
            try:
                return self._jobs.get_nowait()
            except queue.Empty:
                # Idle: hand the results over before sleeping.
                self._settle(pending)
                pending.clear()
        return self._jobs.get()

    def _run(self) -> None:
        pending: list[tuple[asyncio.AbstractEventLoop, _Settle, Any, BaseException | None]] = []
        carried: list[_Job | None] = []
        while True:
            job = carried.pop() if carried else self._next(pending)
            if job is None:
                break
            batch = [job]
            if job[1]:
                # Gather the writes queued right behind this one; the first job
                # of another kind waits for the next turn, keeping the order.
                while len(batch) < _WRITE_BATCH:
                    try:
                        following = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if following is None or not following[1]:
                        carried.append(following)
                        break
                    batch.append(following)
                outcomes = self._write_batch([j[0] for j in batch])
            else:
                try:
                    outcomes = [(job[0](), None)]
                except BaseException as exc:
                    outcomes = [(None, exc)]
            for (_, _, loop, settle), (result, error) in zip(batch, outcomes, strict=True):
                if loop is not None and settle is not None:
                    pending.append((loop, settle, result, error))
            if len(pending) >= _SETTLE_BATCH:
                self._settle(pending)
                pending.clear()
        self._settle(pending)

    @staticmethod
    def _settle(
        pending: list[tuple[asyncio.AbstractEventLoop, _Settle, Any, BaseException | None]],
    ) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Settle, Any, BaseException | None]]]
        by_loop = {}
        for loop, settle, result, error in pending:
            by_loop.setdefault(loop, []).append((settle, result, error))
        for loop, items in by_loop.items():
            # The loop may be gone already (a caller that never awaited us).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, items)

    async def call(self, fn: Callable[[], _R]) -> _R:
        """Run fn on the worker thread and await its result."""
        return await self._submit(fn, False)  # type: ignore[no-any-return]

    async def write(self, op: Callable[[sqlite3.Connection, Effects], _R]) -> _R:
        """Run a write operation in a transaction (perhaps shared) and await its result."""
        return await self._submit(op, True)  # type: ignore[no-any-return]

    async def _submit(self, what: Any, is_write: bool) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, exc: BaseException | None) -> None:
            if fut.cancelled():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        self._jobs.put((what, is_write, loop, settle))
        return await fut

    def post(self, fn: Callable[[], object]) -> None:
        """Queue fn without waiting for it (clean-up on a failure path)."""
        self._jobs.put((fn, False, None, None))

    def stop(self) -> None:
        """Let the thread end after the jobs already queued."""
        self._jobs.put(None)


def _settle_all(items: list[tuple[_Settle, Any, BaseException | None]]) -> None:
    for settle, result, error in items:
        settle(result, error)


@dataclass(slots=True)
class Effects:
    """What to announce once a write transaction has committed."""

    wake: list[str] = field(default_factory=list)
    events: bool = False

    def mark(self) -> tuple[int, bool]:
        return len(self.wake), self.events

    def undo(self, mark: tuple[int, bool]) -> None:
        """Forget what a job rolled back to its savepoint had announced."""
        del self.wake[mark[0] :]
        self.events = mark[1]


def error_code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of an error (0 when the driver does not say)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


def is_busy(exc: BaseException) -> bool:
    """Whether an error is SQLite's "database is locked" (retried, never shown)."""
    if not isinstance(exc, sqlite3.Error):
        return False
    if error_code(exc) in (SQLITE_BUSY, SQLITE_LOCKED):
        return True
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "is locked" in text
