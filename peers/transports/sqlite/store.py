"""The SQLite transport's core: the connection on its worker thread, transactions with
retry, error conversion at the edge, lifecycle (connect, close, ping, info) and the
write helpers every job module shares (events, taking a peer offline, doorbells).

The job modules (:mod:`.registry`, :mod:`.mailbox`, :mod:`.events`, :mod:`.gc`)
are mixins on :class:`SQLiteStore`; :class:`peers.transports.sqlite.SQLiteTransport`
puts them together. A new job (claims) is one more mixin and one more migration.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

from peers import constants as c
from peers.config import Settings, WakeupMode
from peers.errors import BackendError, BackendUnavailable, ConfigError, PeersError
from peers.keys import SQLiteTables as T
from peers.log import get_logger
from peers.models import EventKind, Peer
from peers.redact import redact_url
from peers.transports import common
from peers.transports.base import Capabilities, Transport
from peers.transports.sqlite import schema
from peers.transports.sqlite.convert import convert, translate
from peers.transports.sqlite.url import parse_sqlite_url
from peers.transports.sqlite.wakeup import Doorbell, WakeDirectory
from peers.transports.sqlite.worker import Effects, Outcome, Worker, WriteOp, is_busy

__all__ = ["SQLiteStore"]

_R = TypeVar("_R")
_log = get_logger(__name__)


class SQLiteStore(Transport):
    """Peers and mailboxes in one SQLite file, with Unix-socket doorbells for push."""

    capabilities = Capabilities(
        name="sqlite", cross_host=False, push=True, events=True, networked=False
    )

    def __init__(
        self,
        path: Path,
        *,
        namespace: str = c.DEFAULT_NAMESPACE,
        host: str,
        peer_ttl: float = c.PEER_TTL,
        retention: float = c.RETENTION_SECONDS,
        safety_recheck: float = c.SAFETY_RECHECK,
        busy_timeout_ms: int = c.SQLITE_BUSY_TIMEOUT_MS,
        synchronous: str = "normal",
        max_unread: int = c.MAX_UNREAD,
        wakeup: WakeupMode = WakeupMode.AUTO,
        url: str | None = None,
    ) -> None:
        if not path.is_absolute():
            raise ConfigError(f"the SQLite database path must be absolute, not {str(path)!r}")
        self.path = path
        self.url = url or f"sqlite:///{path}"
        self.namespace = namespace
        self.host = host
        self.peer_ttl = peer_ttl
        self.retention = retention
        self.safety_recheck = safety_recheck
        self.max_unread = max_unread
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous.upper()
        # The retry loop gives up (BackendUnavailable) after twice SQLite's own wait.
        self._lock_patience = max(2 * busy_timeout_ms / 1000, 1.0)
        self._conn: sqlite3.Connection | None = None
        self._worker: Worker | None = None
        self._wake = WakeDirectory(path)
        # Why wake-ups re-read instead of waiting on sockets (None: sockets work).
        self.polling: str | None = "PEERS_WAKEUP=poll" if wakeup is WakeupMode.POLL else None
        self._endpoints: dict[str, Doorbell] = {}
        self._tails: set[Doorbell] = set()
        self._closed = False
        self._push_warned = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build an unconnected transport from the settings (URL, namespace, host, TTL, retention)."""
        path, options = parse_sqlite_url(settings.url)
        return cls(
            path,
            namespace=settings.namespace,
            host=settings.host,
            peer_ttl=settings.peer_ttl,
            retention=settings.retention,
            safety_recheck=settings.safety_recheck,
            busy_timeout_ms=int(options.get("busy_timeout_ms", c.SQLITE_BUSY_TIMEOUT_MS)),
            synchronous=options.get("synchronous", "normal"),
            max_unread=settings.max_unread,
            wakeup=settings.wakeup,
            url=settings.url,
        )

    # -- the worker thread -----------------------------------------------------

    def _require_open(self) -> Worker:
        if self._worker is None or self._closed:
            raise BackendUnavailable(
                f"the SQLite transport for {self.path} is not connected (call connect() first)"
            )
        return self._worker

    async def _read(self, fn: Callable[[sqlite3.Connection], _R]) -> _R:
        """Run a read on the worker thread."""
        return await self._require_open().call(lambda: self._guarded(fn))

    async def _write(self, fn: Callable[[sqlite3.Connection, Effects], _R]) -> _R:
        """Run a write transaction on the worker thread; pokes go out after the commit."""
        return await self._require_open().write(fn)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendUnavailable(f"the SQLite transport for {self.path} is closed")
        return self._conn

    def _guarded(self, fn: Callable[[sqlite3.Connection], _R]) -> _R:
        """Run fn, retrying while the database is busy; convert every sqlite3 error."""
        return self._with_retry(lambda: fn(self._connection()))

    def _write_batch(self, ops: list[WriteOp]) -> list[Outcome]:
        """Run write operations in one transaction, each in its own savepoint.

        A job that fails (PeerNotFound, NameTaken, a bad value) is rolled back
        alone and gets its error; the others commit. Only a failure of the
        transaction itself (a lock held past patience, an I/O error) reaches
        every job. Pokes go out once, after the commit.
        """
        single = len(ops) == 1

        def attempt() -> tuple[list[Outcome], Effects]:
            conn = self._connection()
            effects = Effects()
            outcomes: list[Outcome] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for op in ops:
                    if single:
                        outcomes.append((op(conn, effects), None))
                        continue
                    conn.execute("SAVEPOINT peers_job")
                    mark = effects.mark()
                    try:
                        result = op(conn, effects)
                    except Exception as exc:
                        if is_busy(exc):
                            raise
                        conn.execute("ROLLBACK TO peers_job")
                        conn.execute("RELEASE peers_job")
                        effects.undo(mark)
                        outcomes.append((None, self._translate(exc)))
                    else:
                        conn.execute("RELEASE peers_job")
                        outcomes.append((result, None))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            return outcomes, effects

        try:
            outcomes, effects = self._with_retry(attempt)
        except BaseException as exc:
            return [(None, exc)] * len(ops)
        # Committed: now wake whoever cares. A failed poke only delays them.
        for peer_id in dict.fromkeys(effects.wake):
            self._wake.poke_peer(self.namespace, peer_id)
        if effects.events:
            self._wake.poke_tails(self.namespace)
        return outcomes

    def _with_retry(self, attempt: Callable[[], _R]) -> _R:
        deadline = time.monotonic() + self._lock_patience
        tries = 0
        while True:
            try:
                return attempt()
            except Exception as exc:
                if is_busy(exc) and time.monotonic() < deadline:
                    tries += 1
                    # Jittered exponential backoff, capped: writers that collided
                    # must not collide again in lockstep.
                    time.sleep(random.uniform(0, min(0.0005 * 2**tries, 0.1)))
                    continue
                translated = self._translate(exc)
                if translated is exc:
                    raise
                raise translated from exc

    def _translate(self, exc: Exception) -> Exception:
        """The peers error for an exception met on the worker (the same one if it already is)."""
        return translate(exc, self.path, self._lock_patience)

    def _convert(self, exc: sqlite3.Error) -> PeersError:
        return convert(exc, self.path, self._lock_patience)

    # -- lifecycle ---------------------------------------------------------------

    async def connect(self) -> None:
        """Open connections and create or migrate the store (idempotent)."""
        if self._worker is not None and not self._closed:
            return
        self._closed = False
        self._worker = worker = Worker(f"peers-sqlite {self.path.name}", self._write_batch)
        try:
            await worker.call(self._open)
        except BaseException:
            self._worker = None
            worker.post(self._close_connection)
            worker.stop()
            raise

    def _open(self) -> None:
        self._prepare_files()
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc
        self._conn = conn
        self._with_retry(self._configure)
        self._with_retry(lambda: schema.migrate(self._connection(), self.path))
        self._tighten_permissions()
        if self.polling is None:
            try:
                self._wake.ensure()
                self._wake.probe()
            except BackendUnavailable as exc:
                self.polling = str(exc)
                self._warn_no_push(str(exc))

    def _prepare_files(self) -> None:
        """Create the directory (0700) and the file (0600) before SQLite does."""
        directory = self.path.parent
        try:
            if not directory.is_dir():
                os.makedirs(directory, mode=0o700, exist_ok=True)
                os.chmod(directory, 0o700)
            # SQLite gives the -wal and -shm files the mode of the main file.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except IsADirectoryError as exc:
            raise BackendUnavailable(f"{self.path} is a directory, not a database file") from exc
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot create the SQLite database {self.path}: {exc.strerror}; check that "
                "its directory (and the file, if it exists) is writable by you"
            ) from exc

    def _tighten_permissions(self) -> None:
        uid = os.getuid()
        for suffix in ("", "-wal", "-shm"):
            path = f"{self.path}{suffix}"
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if st.st_uid == uid and st.st_mode & 0o077:
                    os.chmod(path, st.st_mode & 0o700)

    def _configure(self) -> None:
        conn = self._connection()
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        # Switching to WAL takes an exclusive lock: only do it when needed.
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise BackendUnavailable(
                    f"SQLite refused WAL mode on {self.path} (got {mode}); is it on a network "
                    "filesystem?"
                )
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        # Checkpoints keep the WAL near 4 MB; this caps what it keeps on disk afterwards.
        conn.execute("PRAGMA journal_size_limit = 16777216")

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._wake.close()

    async def close(self) -> None:
        """Release connections and wake-up endpoints; safe to call twice."""
        if self._worker is None:
            return
        self._closed = True
        for endpoint in [*self._endpoints.values(), *self._tails]:
            endpoint.close()
        self._endpoints.clear()
        self._tails.clear()
        worker, self._worker = self._worker, None
        try:
            await worker.call(self._close_connection)
        finally:
            worker.stop()

    async def ping(self) -> float:
        """Round-trip the store once; return the latency in seconds or raise BackendUnavailable."""
        start = time.perf_counter()
        try:
            await self._read(lambda conn: conn.execute("SELECT 1").fetchone())
        except BackendError as exc:
            if isinstance(exc, BackendUnavailable):
                raise
            raise BackendUnavailable(str(exc)) from exc
        return time.perf_counter() - start

    async def info(self) -> dict[str, str]:
        """Backend facts for status and doctor (version, schema, path or address)."""

        def op(conn: sqlite3.Connection) -> tuple[int, str, str]:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            return schema.schema_version(conn), str(mode), sqlite3.sqlite_version

        version, mode, lib = await self._read(op)
        return {
            "backend": "sqlite",
            "url": redact_url(self.url),
            "path": str(self.path),
            "schema_version": str(version),
            "journal_mode": mode,
            "sqlite_version": lib,
            "wake_dir": str(self._wake.path),
            "wakeup": "sockets" if self.polling is None else f"re-reads ({self.polling})",
        }

    # -- shared by the job modules ---------------------------------------------------

    def _fresh(self, peer: Peer, now: float) -> bool:
        return peer.last_seen >= now - self.peer_ttl

    def _emit(
        self,
        conn: sqlite3.Connection,
        effects: Effects,
        kind: EventKind,
        peer_id: str,
        peer_name: str | None,
        data: dict[str, Any],
        at: float,
    ) -> None:
        conn.execute(
            f"INSERT INTO {T.EVENTS} (namespace, kind, at, peer_id, peer_name, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (self.namespace, kind.value, at, peer_id, peer_name, json.dumps(data)),
        )
        effects.events = True

    def _mark_offline(
        self, conn: sqlite3.Connection, effects: Effects, peer: Peer, now: float, reason: str
    ) -> Peer:
        conn.execute(
            f"UPDATE {T.PEERS} SET online = 0 WHERE namespace = ? AND id = ?",
            (self.namespace, peer.id),
        )
        self._emit(conn, effects, EventKind.LEAVE, peer.id, peer.name, common.leave_data(reason), now)
        if peer.name is None:
            # No session can take over an anonymous peer's claims: they end with it.
            conn.execute(
                f"DELETE FROM {T.CLAIMS} WHERE namespace = ? AND holder_id = ?",
                (self.namespace, peer.id),
            )
        return peer.model_copy(update={"online": False})

    def _get_peer(self, conn: sqlite3.Connection, peer_id: str) -> Peer | None:
        row = conn.execute(
            f"SELECT {schema.PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND id = ?",
            (self.namespace, peer_id),
        ).fetchone()
        return None if row is None else schema.peer_from_row(row)

    def _warn_no_push(self, reason: str) -> None:
        if not self._push_warned:
            self._push_warned = True
            # A log line must never break delivery (stderr may be closed or gone).
            with contextlib.suppress(ValueError, OSError):
                _log.warning("no wake-up socket: delivery falls back to re-reads", reason=reason)
