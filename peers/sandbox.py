"""CLI commands inside a shell sandbox like Codex's: no sends on sockets, no view of other processes.

Codex runs the model's shell commands under seccomp and in their own PID
namespace. There ``send()`` on any socket fails with EPERM, even on an AF_UNIX
socketpair, and the processes outside the sandbox are invisible. Both break
the CLI in ways that have nothing to do with the store:

* asyncio wakes its loop from other threads by sending a byte on a socketpair
  (``call_soon_threadsafe``); the SQLite transport's worker thread, subprocess
  watchers and the default executor all hand results over that way. The byte
  is dropped silently and the loop sleeps forever: ``peers list`` hangs.
  Inside a sandbox the CLI's loop runs on a selector that never sleeps longer
  than :data:`POLL_INTERVAL`, so what threads queue runs within that delay
  without the self-pipe.
* Every session on this host looks dead (its pid is not there), and listing
  peers marks dead ones offline. Inside a sandbox the CLI therefore calls its
  host by another name (:func:`sandboxed_settings`): sessions are judged by
  their heartbeats alone, never by a pid it cannot see.

What cannot work there is refused at once with one line that says why
(:func:`refusal`): Redis (no network), ``kill`` (no signals across the
sandbox), ``demo`` (its servers would need the sockets). Outside a sandbox
nothing here changes anything.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import selectors
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from peers.config import Settings

__all__ = [
    "HOST_SUFFIX",
    "POLL_INTERVAL",
    "TOOLS_NOTE",
    "WHY",
    "CappedSelector",
    "refusal",
    "run",
    "sandboxed_settings",
    "sockets_blocked",
]

_T = TypeVar("_T")

# The longest a sandboxed loop sleeps before it runs what threads queued for it.
# A CLI command crosses threads a few dozen times; 2 ms each stays unnoticed,
# and the empty wake-ups of a short command cost next to nothing.
POLL_INTERVAL = 0.002

# What the CLI calls its host inside a sandbox (appended to the real name).
HOST_SUFFIX = " (sandboxed)"

WHY = (
    "this shell runs in a sandbox (as Codex runs the model's commands) that blocks "
    "sockets and hides the processes outside it"
)
TOOLS_NOTE = "this session's peers tools (list_peers, send_message, check_messages) still work"


@functools.cache
def sockets_blocked() -> bool:
    """Whether this process may not send on sockets (Codex's shell sandbox forbids it)."""
    try:
        a, b = socket.socketpair()
    except OSError:
        return True
    with a, b:
        try:
            a.send(b"\0")
        except OSError as exc:
            return exc.errno in (errno.EPERM, errno.EACCES)
    return False


def sandboxed_settings(settings: Settings) -> Settings:
    """The settings to use in a sandbox: a host name of its own (see the module docstring)."""
    if settings.host.endswith(HOST_SUFFIX):
        return settings
    return settings.model_copy(update={"host": settings.host + HOST_SUFFIX})


def refusal(command: str, what: str) -> str:
    """One line: what ``command`` cannot do here, why, and what still works."""
    return f"`{command}` {what}: {WHY}; {TOOLS_NOTE}"


class CappedSelector(selectors.DefaultSelector):
    """The platform's selector, never blocking longer than ``POLL_INTERVAL``."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > POLL_INTERVAL:
            timeout = POLL_INTERVAL
        return super().select(timeout)


def _capped_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(CappedSelector())


def run(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """``asyncio.run``, on a loop that needs no self-pipe where sockets are blocked."""
    loop_factory = _capped_loop if sockets_blocked() else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(factory())
