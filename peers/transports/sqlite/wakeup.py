"""Doorbells for the SQLite transport: one Unix datagram socket per waiting peer.

A sender commits a message, then pokes the recipient's socket with one byte.
The recipient's event loop sleeps on that socket's readability, so an idle
peer costs nothing and never reads the database to learn that nothing
happened. A poke carries no data: it only says "fetch again". A missed poke
(nobody bound, queue full) only delays delivery until the caller's safety
re-check; it never loses mail, which lives in the database.

Sockets live in ``<db dir>/wake/`` (mode 0700), named by a short hash of
(namespace, peer id). ``sun_path`` holds only about 104-108 bytes, so when that
directory's path is too long the sockets move to ``/tmp/peers-<uid>/<hash of
the db path>/``; the choice depends only on the database path, so every
process sharing a database picks the same directory.

``peers tail`` listeners bind ``t-<namespace hash>-<random>.sock`` in the same
directory; every writer of an event pokes all listeners of its namespace.

Where Unix datagram sockets are missing (Windows) or refused (a sandbox that
fails ``bind`` or ``sendto`` with EPERM), or when ``PEERS_WAKEUP=poll`` asks for
it, a waiting peer gets a :class:`PollEndpoint` instead: it re-reads the newest
sequence number of its pending mail every ``constants.WAKEUP_POLL_INTERVAL``
seconds while it waits, so delivery takes a fraction of a second rather than the
5 s safety re-check. A sender in a sandbox that refuses ``sendto`` cannot poke a
receiver outside it: that receiver finds the mail at its safety re-check.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from peers.errors import BackendUnavailable

__all__ = [
    "SOCKET_PATH_MAX",
    "Doorbell",
    "PollEndpoint",
    "WakeDirectory",
    "WakeEndpoint",
    "sockets_usable",
    "wake_dir_for",
]


# sun_path is 108 bytes on Linux and 104 on macOS, both counting the final NUL.
SOCKET_PATH_MAX = 100
# Every socket name has at most this many characters (see _peer_name, _tail_name).
_NAME_LEN = 24
_HASH_LEN = 16
# Datagrams drained per wake-up at most; the queue is short (max_dgram_qlen).
_DRAIN_MAX = 4096
# Filesystem timestamps are coarse (one kernel tick): a directory listing is
# trusted only when the directory changed longer ago than this.
_MTIME_SLACK = 0.05
# Short on every system (unlike $TMPDIR on macOS).
_FALLBACK_ROOT = Path("/tmp")


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:_HASH_LEN]


def _peer_name(namespace: str, peer_id: str) -> str:
    return f"p-{_short_hash(namespace, peer_id)}.sock"


def _tail_prefix(namespace: str) -> str:
    return f"t-{_short_hash('tail', namespace)[:6]}-"


def _tail_name(namespace: str) -> str:
    return f"{_tail_prefix(namespace)}{secrets.token_hex(4)}.sock"


def wake_dir_for(db_path: Path) -> Path:
    """The wake-up directory for a database: next to it, or under /tmp when that path is too long."""
    db_path = Path(os.path.realpath(db_path))
    near = db_path.parent / "wake"
    if len(os.fsencode(near)) + 1 + _NAME_LEN <= SOCKET_PATH_MAX:
        return near
    return _FALLBACK_ROOT / f"peers-{os.getuid()}" / _short_hash(str(db_path))


def _make_private_dir(path: Path) -> None:
    """Create a 0700 directory owned by us; refuse one that someone else controls."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise BackendUnavailable(f"wake-up directory {path} exists and is not a directory")
    if st.st_uid != os.getuid():
        raise BackendUnavailable(
            f"wake-up directory {path} belongs to uid {st.st_uid}, not to you; remove it"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


class Doorbell(Protocol):
    """What a waiting peer sleeps on: a socket, or a re-read loop."""

    closed: bool

    async def wait(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


def sockets_usable() -> str | None:
    """None when Unix datagram sockets exist here, else why not (Windows has none)."""
    if not hasattr(socket, "AF_UNIX"):
        return "this platform has no Unix datagram sockets"
    return None


class PollEndpoint:
    """The fallback doorbell: re-reads a mark (the newest pending sequence number) while waiting.

    The mark is kept between waits, like pokes queue up on a socket: mail that came
    while nobody waited is noticed by the next wait at once. The first wait, with no
    mark yet, reports any pending mail (a spurious True is allowed).
    """

    def __init__(self, probe: Callable[[], Awaitable[int]], interval: float) -> None:
        self._probe = probe
        self._interval = interval
        self._mark: int | None = None
        self.closed = False

    async def wait(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while not self.closed:
            current = await self._probe()
            known, self._mark = self._mark, current
            if current != known and (known is not None or current > 0):
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(self._interval, left))
        return True

    def close(self) -> None:
        self.closed = True


class WakeEndpoint:
    """A bound, non-blocking datagram socket; ``wait`` sleeps until a poke arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        try:
            self._bind()
        except BaseException:
            self._sock.close()
            raise
        self._inode = os.stat(path).st_ino
        self._waiters: set[asyncio.Future[bool]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def _bind(self) -> None:
        try:
            self._sock.bind(os.fsencode(self.path))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            # A socket file left by a dead process, or by an older session of
            # the same peer: the newest binder takes the doorbell over.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self._sock.bind(os.fsencode(self.path))
        os.chmod(self.path, 0o600)

    def drain(self) -> bool:
        """Read every queued poke; True if there was at least one."""
        got = False
        for _ in range(_DRAIN_MAX):
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            got = True
        return got

    async def wait(self, timeout: float) -> bool:
        """True as soon as a poke is queued (now or later), False after ``timeout`` seconds."""
        if self.closed:
            return True
        if self.drain():
            return True
        if timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        if not self._waiters:
            self._loop = loop
            loop.add_reader(self._sock.fileno(), self._on_readable)
        self._waiters.add(fut)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(fut)
            if not self._waiters:
                self._stop_reading()

    def _on_readable(self) -> None:
        self.drain()
        self._wake_all(True)

    def _wake_all(self, value: bool) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(value)
        self._stop_reading()

    def _stop_reading(self) -> None:
        if self._loop is not None:
            if not self._loop.is_closed() and not self.closed:
                self._loop.remove_reader(self._sock.fileno())
            self._loop = None

    def close(self) -> None:
        """Unbind and remove the socket file (unless another process took it over)."""
        if self.closed:
            return
        # A waiter on a closed doorbell returns True: the caller re-fetches and
        # finds out what changed.
        self._wake_all(True)
        self.closed = True
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        self._sock.close()


class WakeDirectory:
    """The wake-up directory of one database: binds endpoints and pokes them.

    ``poke_*`` run on the transport's worker thread, ``bind_*`` on the event
    loop thread; they share nothing but the directory itself.
    """

    def __init__(self, db_path: Path) -> None:
        self.path = wake_dir_for(db_path)
        self._sender: socket.socket | None = None
        # namespace -> (directory mtime, when listed, tail socket addresses)
        self._tails: dict[str, tuple[int, float, list[bytes]]] = {}
        # (namespace, peer id) -> socket address: a send must not hash and
        # build paths every time.
        self._addresses: dict[tuple[str, str], bytes] = {}

    def ensure(self) -> None:
        """Create the directory (and the /tmp parent of the fallback) as 0700."""
        try:
            if self.path.parent.parent == _FALLBACK_ROOT:
                _make_private_dir(self.path.parent)
            _make_private_dir(self.path)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot create the wake-up directory {self.path}: {exc.strerror}"
            ) from exc

    def probe(self) -> None:
        """Bind a socket and poke it once; BackendUnavailable saying why when that fails.

        A sandbox may allow the directory but refuse ``bind`` or ``sendto`` (EPERM):
        better to know at connect and re-read than to wait on pokes that never come.
        """
        missing = sockets_usable()
        if missing is not None:
            raise BackendUnavailable(missing)
        endpoint = self._bind(self.path / f"probe-{secrets.token_hex(4)}.sock")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                sender.sendto(b"\x01", os.fsencode(endpoint.path))
        except OSError as exc:
            raise BackendUnavailable(f"cannot poke a wake-up socket: {exc.strerror}") from exc
        finally:
            endpoint.close()

    def peer_path(self, namespace: str, peer_id: str) -> Path:
        return self.path / _peer_name(namespace, peer_id)

    def bind_peer(self, namespace: str, peer_id: str) -> WakeEndpoint:
        return self._bind(self.peer_path(namespace, peer_id))

    def bind_tail(self, namespace: str) -> WakeEndpoint:
        return self._bind(self.path / _tail_name(namespace))

    def _bind(self, path: Path) -> WakeEndpoint:
        try:
            return WakeEndpoint(path)
        except FileNotFoundError:
            # The directory was removed under us (a cleanup): recreate it once.
            self.ensure()
            try:
                return WakeEndpoint(path)
            except OSError as exc:
                raise BackendUnavailable(
                    f"cannot bind wake-up socket {path}: {exc.strerror}"
                ) from exc
        except OSError as exc:
            raise BackendUnavailable(f"cannot bind wake-up socket {path}: {exc.strerror}") from exc

    def _poke(self, address: bytes) -> None:
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        # Nobody bound (ENOENT, ECONNREFUSED) or pokes already queued (EAGAIN):
        # either way the recipient's next fetch finds the mail.
        with contextlib.suppress(OSError):
            self._sender.sendto(b"\x01", address)

    def poke_peer(self, namespace: str, peer_id: str) -> None:
        key = (namespace, peer_id)
        address = self._addresses.get(key)
        if address is None:
            if len(self._addresses) > 4096:
                self._addresses.clear()
            address = self._addresses[key] = os.fsencode(self.peer_path(namespace, peer_id))
        self._poke(address)

    def has_tails(self, namespace: str) -> bool:
        """Whether anyone tails this namespace (or crashed while tailing it)."""
        return bool(self._tail_addresses(namespace))

    def poke_tails(self, namespace: str) -> None:
        for address in self._tail_addresses(namespace):
            self._poke(address)

    def _tail_addresses(self, namespace: str) -> list[bytes]:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return []
        cached = self._tails.get(namespace)
        if cached is not None and cached[0] == mtime and cached[1] > mtime / 1e9 + _MTIME_SLACK:
            return cached[2]
        listed_at = time.time()
        prefix = _tail_prefix(namespace)
        try:
            names = [
                os.fsencode(self.path / n) for n in os.listdir(self.path) if n.startswith(prefix)
            ]
        except OSError:
            return []
        self._tails[namespace] = (mtime, listed_at, names)
        return names

    def remove_stale(self) -> int:
        """Delete socket files nobody is bound to; return how many."""
        removed = 0
        try:
            names = os.listdir(self.path)
        except OSError:
            return 0
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            for name in names:
                if not name.endswith(".sock"):
                    continue
                path = self.path / name
                try:
                    # connect() tells a bound socket from a dead one without
                    # sending anything (so no spurious wake-up).
                    probe.connect(os.fsencode(path))
                except ConnectionRefusedError:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        removed += 1
                except OSError:
                    continue
                else:
                    # Disconnect so that the next connect() starts afresh.
                    probe.close()
                    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        finally:
            probe.close()
        return removed

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None
