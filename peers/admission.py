"""How many of a client's requests ``peers serve`` works on at once.

A client may send hundreds of calls without waiting (a benchmark, a model
fanning out). Taken all at once, each holds a task, its parsed request and its
half-built result while the store answers them one batch at a time: the
process's memory grows by megabytes that the C allocator then keeps, and the
calls finish no sooner. So stdin is read ahead only while fewer than
:data:`LIMIT` requests are open; the rest wait unread, as bytes in the
reader's buffer and the pipe (the client sees ordinary back-pressure). A
request is open from the line read until its response was written (or the
handshake front's was), the write failed, or the client cancelled it (a
cancelled request is never answered).

Calls that wait by design (``wait_for_messages``, up to ten minutes) are not
counted: a client waiting on replies in many calls at once must not starve
its own sends; nor is ``initialize``, which the handshake front answers. And
admission never waits longer than :data:`PATIENCE`: a request the server
somehow never answers costs a moment, never the session, and once it has been
open for :data:`STALE` seconds (far past any tool's deadline) it stops taking
room at all.

Ids are compared as the SDK correlates them: ``"7"`` and ``7`` are one request.
"""

from __future__ import annotations

import time
from typing import Final

import anyio
import mcp_types as types
from mcp.shared.dispatcher import as_request_id, coerce_request_id

from peers import constants as c
from peers.log import get_logger
from peers.wiretap import cancelled_id

__all__ = ["LIMIT", "PATIENCE", "STALE", "Admission"]

log = get_logger(__name__)

RequestId = str | int

LIMIT: Final = c.SERVE_READ_AHEAD
PATIENCE: Final = c.SERVE_ADMIT_PATIENCE
STALE: Final = c.SERVE_ADMIT_STALE
# Tool calls that wait on purpose: never counted against the limit.
WAITING_TOOLS: Final = frozenset({"wait_for_messages"})


def _key(value: object) -> RequestId | None:
    rid = as_request_id(value)
    return None if rid is None else coerce_request_id(rid)


def _uncounted(request: types.JSONRPCRequest) -> bool:
    if request.method == "initialize":
        return True  # the handshake front answers it; the SDK's second answer is dropped
    params = request.params or {}
    return request.method == "tools/call" and params.get("name") in WAITING_TOOLS


class Admission:
    """The open requests; ``admit`` waits (a little) for room, ``done`` makes it."""

    def __init__(self, limit: int = LIMIT, patience: float = PATIENCE, stale: float = STALE) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._patience = patience
        self._stale = stale
        self._open: dict[RequestId, float] = {}  # id -> when it was admitted (monotonic)
        self._room = anyio.Event()
        self._room.set()

    @property
    def open(self) -> int:
        """How many counted requests are open now."""
        return len(self._open)

    async def admit(self, message: types.JSONRPCMessage) -> None:
        """Note a message read from the client, first waiting for room if it is a counted request."""
        if isinstance(message, types.JSONRPCNotification):
            cancelled = cancelled_id(message)
            if cancelled is not None:
                self.done(cancelled)
            return
        if not isinstance(message, types.JSONRPCRequest) or _uncounted(message):
            return
        rid = _key(message.id)
        # An id already open is not counted twice: it leaves once, with one answer.
        if rid is None or rid in self._open:
            return
        if len(self._open) >= self._limit:
            with anyio.move_on_after(self._patience) as waited:
                while len(self._open) >= self._limit:
                    await self._room.wait()
            if waited.cancelled_caught:
                self._drop_stale()
        self._open[rid] = time.monotonic()
        if len(self._open) >= self._limit:
            self._room = anyio.Event()

    def done(self, rid: RequestId) -> None:
        """The request ``rid`` is answered, unanswerable, or cancelled: its room is free."""
        self._open.pop(coerce_request_id(rid), None)
        if len(self._open) < self._limit:
            self._room.set()

    def _drop_stale(self) -> None:
        cutoff = time.monotonic() - self._stale
        stale = [rid for rid, at in self._open.items() if at < cutoff]
        for rid in stale:
            del self._open[rid]
        if stale:
            log.warning("requests open far too long no longer count", count=len(stale))
