"""One session's doorbell, shared by everything in it that waits for mail.

A transport's ``wait_for_mail`` is made for one waiter: a ring is consumed by
whoever wakes on it (a SQLite wake-up socket is drained, a Redis doorbell's flag
cleared). A session has several: the push loop, and each ``wait_for_messages``
call. With two of them on the transport, one would take the ring the other
needed, and the other would find its mail only at the safety re-check.

So one task waits on the transport for the whole session, and turns each ring
into a count that every waiter compares with the count it saw before it last
read the mailbox (:meth:`MailBell.mark`): a ring that came since is never
missed, however many wait, and a ring while nobody waits costs nothing (the
next waiter reads the mailbox before it waits). That task runs only while
someone waits: a session waiting for nothing does not touch the transport.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from peers.errors import PeersError
from peers.log import get_logger

__all__ = ["MailBell"]

log = get_logger("peers.mailbell")

# After a failed wait on the transport (the store away), the next try comes this much later.
_RETRY = 1.0


class MailBell:
    """Rings of the session's doorbell as a count; one listener on the transport while anyone waits."""

    def __init__(self, listen: Callable[[float], Awaitable[bool]], slice_: float) -> None:
        # listen(timeout): the transport's wait for this session's mail.
        self._listen_once = listen
        self._slice = slice_
        self.rings = 0
        self._rang = anyio.Event()
        self._waiters = 0
        self._listening = False
        self._scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self.closed = False

    @property
    def listening(self) -> bool:
        """Whether the listener is on the transport (only while someone waits)."""
        return self._listening

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Where the listener runs (the session's task group)."""
        self._tg = tg

    def mark(self) -> int:
        """The rings so far: take it *before* reading the mailbox, then wait for a later one."""
        return self.rings

    def ring(self) -> None:
        """Wake every waiter (they read the mailbox again; a spurious ring is harmless)."""
        self.rings += 1
        rang, self._rang = self._rang, anyio.Event()
        rang.set()

    async def wait(self, mark: int, timeout: float) -> bool:
        """True once a ring came after ``mark`` (at once if one did), False after ``timeout``."""
        if self.rings != mark or self.closed:
            return True
        if timeout <= 0:
            return False
        self._waiters += 1
        self._ensure_listener()
        try:
            with anyio.move_on_after(timeout):
                while self.rings == mark and not self.closed:
                    await self._rang.wait()
                return True
            return False
        finally:
            self._waiters -= 1
            if self._waiters == 0 and self._scope is not None:
                # Nobody left to tell: stop listening until someone waits again.
                self._scope.cancel()

    def close(self) -> None:
        """Release every waiter for good (the session is stopping)."""
        self.closed = True
        if self._scope is not None:
            self._scope.cancel()
        self.ring()

    def _ensure_listener(self) -> None:
        if self._listening or self._tg is None:
            return
        self._listening = True
        self._tg.start_soon(self._listen)

    async def _listen(self) -> None:
        try:
            while self._waiters and not self.closed:
                with anyio.CancelScope() as scope:
                    self._scope = scope
                    try:
                        rang = await self._listen_once(self._slice)
                    except Exception as exc:
                        # The waiters read the mailbox and meet the error themselves;
                        # a bug here must not end the session's task group.
                        if isinstance(exc, PeersError):
                            log.debug("waiting for mail failed", error=str(exc))
                        else:
                            log.exception("waiting for mail failed unexpectedly")
                        self.ring()
                        await anyio.sleep(_RETRY)
                        continue
                    finally:
                        self._scope = None
                    if rang:
                        self.ring()
                if scope.cancelled_caught:
                    # Stopped mid-wait: a ring it took on the way would be lost, so ring.
                    self.ring()
        finally:
            self._listening = False
