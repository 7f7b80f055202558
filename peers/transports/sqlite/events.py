"""SQLite events: the live stream of join, leave, summary, rename, message and expired events.

Writers append to the events table in the transaction that changes state, then
poke every tail socket of the namespace (``t-*.sock``); a tail reads the rows
after the last one it handled. A missed poke costs a delay (the safety re-check,
or the poll interval where sockets are refused), never an event. A failed read
is logged and retried: only close ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from peers import constants as c
from peers.errors import BackendUnavailable, PeersError
from peers.keys import SQLiteTables as T
from peers.log import get_logger
from peers.models import Event
from peers.transports.sqlite import schema
from peers.transports.sqlite.store import SQLiteStore
from peers.transports.sqlite.wakeup import WakeEndpoint

__all__ = ["EventsMixin", "loop_retry_delay"]

_EVENT_BATCH = 256
_log = get_logger(__name__)


def _decoded(row: Sequence[Any]) -> Event | None:
    """An event row, or None (logged) for one that does not decode: skipped, not fatal."""
    try:
        return schema.event_from_row(row)
    except (ValueError, TypeError) as exc:
        with contextlib.suppress(ValueError, OSError):
            _log.warning("event unreadable; skipped", seq=row[0], error=repr(exc))
        return None


def loop_retry_delay(failures: int) -> float:
    """How long a background loop waits after its n-th failure in a row."""
    return min(c.LOOP_RETRY_CAP, c.LOOP_RETRY_BASE * 2.0 ** max(failures - 1, 0))


class EventsMixin(SQLiteStore):
    """``events()`` on SQLite."""

    def events(self) -> AsyncIterator[Event]:
        """Live join, leave, summary, rename and message events from now on, until closed."""
        self._require_open()
        # The doorbell is bound now, not at the first __anext__, so that pokes for
        # events written in between queue up; the start is fixed by the clock
        # (one host, one clock), since this call cannot wait for the worker.
        started = time.time()
        endpoint: WakeEndpoint | None = None
        if self.polling is None:
            try:
                endpoint = self._wake.bind_tail(self.namespace)
                self._tails.add(endpoint)
            except BackendUnavailable as exc:
                self._warn_no_push(str(exc))  # the stream still runs, on re-reads
        return self._event_stream(endpoint, started)

    async def _event_stream(
        self, endpoint: WakeEndpoint | None, started: float
    ) -> AsyncIterator[Event]:
        # Without a socket, re-read at the poll interval (the socket's own wait is
        # the safety re-check: a poke ends it early).
        pause = min(self.safety_recheck, c.WAKEUP_POLL_INTERVAL)
        try:
            # The newest event written before the call: scanning back from the
            # end touches only the few events since then.
            last: int = await self._read(
                lambda conn: int(
                    conn.execute(
                        f"SELECT COALESCE((SELECT seq FROM {T.EVENTS} WHERE at < ? "
                        "ORDER BY seq DESC LIMIT 1), 0)",
                        (started,),
                    ).fetchone()[0]
                )
            )

            def op(conn: sqlite3.Connection) -> list[tuple[int, Event | None]]:
                rows = conn.execute(
                    f"SELECT {schema.EVENT_COLS} FROM {T.EVENTS} WHERE seq > ? AND namespace = ? "
                    "ORDER BY seq LIMIT ?",
                    (last, self.namespace, _EVENT_BATCH),
                ).fetchall()
                return [(r[0], _decoded(r)) for r in rows]

            failures = 0
            while not self._closed and not (endpoint is not None and endpoint.closed):
                try:
                    batch = await self._read(op)
                except PeersError as exc:
                    if self._closed:
                        return
                    failures += 1
                    with contextlib.suppress(ValueError, OSError):
                        _log.warning("event stream read failed; retrying", error=str(exc))
                    await asyncio.sleep(loop_retry_delay(failures))
                    continue
                failures = 0
                for seq, event in batch:
                    last = seq
                    if event is not None:
                        yield event
                if len(batch) < _EVENT_BATCH:
                    if endpoint is None:
                        await asyncio.sleep(pause)
                    else:
                        await endpoint.wait(self.safety_recheck)
        finally:
            if endpoint is not None:
                self._tails.discard(endpoint)
                endpoint.close()
