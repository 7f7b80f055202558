"""Whether a peer's process still runs, answered from a descriptor held on it once checked.

The liveness rule (:meth:`peers.models.Peer.is_live`) asks on every send and
every listing whether the process behind a (pid, start time) pair still exists.
Reading its process facts costs 50-100 us (``/proc``, through psutil); at a few
thousand sends a second that is a tenth of a core. So on Linux the facts are read
once, after ``/proc/PID/stat`` has been opened and kept open: the descriptor
stays bound to that one process, never to a later one that reuses its pid
(reads then fail with ESRCH). From then on the answer is one ``pread`` of it:
the process is gone when the read fails, dead when its state is zombie, as the
full check says, for about 2 us.

Elsewhere (no ``/proc``) every call does the full check, as before. A (pid,
start) found dead stays dead: the pair can never come back. At most
:data:`WATCHED` descriptors are held; the least recently asked is closed first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from peers.procinfo import process_alive

__all__ = ["WATCHED", "forget", "process_alive_watched"]

WATCHED = 256
_DEAD_KEPT = 4096

_lock = threading.Lock()  # the SQLite worker thread asks too
_watched: OrderedDict[tuple[int, float], int] = OrderedDict()
_dead: OrderedDict[tuple[int, float], None] = OrderedDict()
_procfs = os.path.isdir("/proc/self")


def _running(fd: int) -> bool:
    """The process behind a held /proc/PID/stat descriptor still runs (not gone, not a zombie)."""
    try:
        head = os.pread(fd, 64, 0)  # "pid (comm) S ...": comm is at most 15 bytes
    except OSError:
        return False  # ESRCH: reaped
    close = head.rfind(b")")
    return close >= 0 and head[close + 2 : close + 3] not in (b"Z", b"X", b"")


def _mark_dead(key: tuple[int, float]) -> None:
    _dead[key] = None
    while len(_dead) > _DEAD_KEPT:
        _dead.popitem(last=False)


def _watch(pid: int, start: float) -> bool:
    """First sight of (pid, start): a descriptor, then the full check (which it then stands for)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        with _lock:
            _mark_dead((pid, start))
        return False
    except OSError:
        return process_alive(pid, start)  # hidden from us (hidepid): no shortcut
    # Opened first, checked second: had the pid been reused before the open, the
    # start time differs now, and the descriptor is dropped with the dead verdict.
    if not process_alive(pid, start):
        os.close(fd)
        with _lock:
            _mark_dead((pid, start))
        return False
    with _lock:
        old = _watched.pop((pid, start), None)
        _watched[(pid, start)] = fd
        evicted = [_watched.popitem(last=False)[1] for _ in range(len(_watched) - WATCHED)]
    for stale in [*evicted, *([] if old is None else [old])]:
        os.close(stale)
    return True


def process_alive_watched(pid: int, start: float | None) -> bool:
    """:func:`peers.procinfo.process_alive`, answered from a held descriptor once checked."""
    if start is None or not _procfs or pid <= 0:
        return process_alive(pid, start)
    key = (pid, start)
    with _lock:
        if key in _dead:
            return False
        fd = _watched.get(key)
        if fd is not None:
            _watched.move_to_end(key)
            if _running(fd):
                return True
            del _watched[key]
            _mark_dead(key)
    if fd is not None:
        os.close(fd)
        return False
    return _watch(pid, start)


def forget() -> None:
    """Close every descriptor and drop every verdict (tests)."""
    with _lock:
        fds = list(_watched.values())
        _watched.clear()
        _dead.clear()
    for fd in fds:
        os.close(fd)
