"""SQLite transport: the default backend, one database file shared by every session of a user.

Supports
    Peers, mailboxes, history and events on one host, with push: a send
    commits, then pokes the recipient's Unix datagram socket (see
    :mod:`peers.transports.wakeup`), so ``wait_for_mail`` wakes within
    milliseconds without polling the database. Every process opens the file
    itself: no network listener, no daemon. Namespaces share the file.
    Not for several hosts: SQLite over a network filesystem is unsafe.

URL format
    ``sqlite:///abs/path/peers.db`` (an absolute path; ``sqlite:////abs/...``
    means the same, and ``sqlite:///~/...`` is under the home directory).
    The directory is created with mode 0700 and the database (with its -wal
    and -shm files) with mode 0600. Wake-up sockets live in ``<dir>/wake/``,
    or under ``/tmp/peers-<uid>/`` when that path is too long for a socket.

Options (URL query)
    ``busy_timeout_ms``: how long SQLite waits for the write lock before the
    transport's own retry loop takes over (default
    ``constants.SQLITE_BUSY_TIMEOUT_MS``).
    ``synchronous``: ``normal`` (default; in WAL mode it survives process
    crashes, a power cut may lose the last commits) or ``full``.

Design
    sqlite3 is synchronous, so every statement runs on one worker thread per
    transport with one connection: calls are serialised and the event loop
    never blocks on the disk. Writes are ``BEGIN IMMEDIATE`` transactions,
    retried with jittered backoff on SQLITE_BUSY, so "database is locked"
    never reaches a caller. One send is one transaction; writes that queue up
    behind each other (several tasks sending at once) share one, each in its
    own savepoint. The order of a mailbox is the commit order (an
    AUTOINCREMENT sequence column). Acked mail stays (``acked_at``) for
    history until ``gc`` removes it after the retention window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from peers import constants as c
from peers.config import Settings, redact_url
from peers.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    InvalidInput,
    NameTaken,
    PeerNotFound,
    PeersError,
    StoreCorrupt,
)
from peers.keys import SQLiteTables as T
from peers.log import get_logger
from peers.models import (
    Check,
    CheckStatus,
    DeliveryState,
    Event,
    EventKind,
    GcReport,
    HistoryQuery,
    Message,
    MessageRecord,
    Peer,
    PeerFilter,
    PeerUpdate,
    PushState,
    ReceiveMode,
    SenderKind,
)
from peers.transports.base import Capabilities, Transport
from peers.transports.wakeup import WakeDirectory, WakeEndpoint

__all__ = ["MIGRATIONS", "SQLiteTransport", "parse_sqlite_url"]

_R = TypeVar("_R")
_log = get_logger(__name__)

# -- schema ------------------------------------------------------------------

# MIGRATIONS[i] takes a database from version i to i + 1. All pending steps
# run in one transaction: a failing step leaves the file as it was.
MIGRATIONS: Final[list[tuple[str, ...]]] = [
    (
        f"CREATE TABLE {T.META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE {T.PEERS} (
            namespace TEXT NOT NULL,
            id TEXT NOT NULL,
            name TEXT,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            pid_start REAL,
            cwd TEXT NOT NULL,
            git_root TEXT,
            git_common_dir TEXT,
            git_remote TEXT,
            branch TEXT,
            tty TEXT,
            client TEXT NOT NULL,
            receive_mode TEXT NOT NULL,
            summary TEXT NOT NULL,
            files TEXT NOT NULL,
            registered_at REAL NOT NULL,
            last_seen REAL NOT NULL,
            online INTEGER NOT NULL,
            successor TEXT,
            PRIMARY KEY (namespace, id)
        )""",
        # One holder per name: the atomic part of a name claim.
        f"CREATE UNIQUE INDEX {T.PEERS}_name ON {T.PEERS} (namespace, name) WHERE name IS NOT NULL",
        f"CREATE INDEX {T.PEERS}_online ON {T.PEERS} (namespace, online, registered_at)",
        f"""CREATE TABLE {T.MESSAGES} (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            namespace TEXT NOT NULL,
            id TEXT NOT NULL,
            sender_id TEXT NOT NULL,
            sender_name TEXT,
            sender_kind TEXT NOT NULL,
            recipient_id TEXT NOT NULL,
            body TEXT NOT NULL,
            reply_to TEXT,
            broadcast INTEGER NOT NULL,
            sent_at REAL NOT NULL,
            acked_at REAL
        )""",
        f"CREATE UNIQUE INDEX {T.MESSAGES}_id ON {T.MESSAGES} (namespace, id)",
        # The hot query: a recipient's pending mail in commit order.
        f"CREATE INDEX {T.MESSAGES}_pending ON {T.MESSAGES} (namespace, recipient_id, seq) "
        "WHERE acked_at IS NULL",
        f"""CREATE TABLE {T.EVENTS} (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            namespace TEXT NOT NULL,
            kind TEXT NOT NULL,
            at REAL NOT NULL,
            peer_id TEXT NOT NULL,
            peer_name TEXT,
            data TEXT NOT NULL
        )""",
    ),
    # 2: the channel's state and when a hook last reached the session's server.
    (
        f"ALTER TABLE {T.PEERS} ADD COLUMN push TEXT NOT NULL DEFAULT 'off'",
        f"ALTER TABLE {T.PEERS} ADD COLUMN hooks_at REAL",
    ),
]

if len(MIGRATIONS) != c.SQLITE_SCHEMA_VERSION:  # pragma: no cover - a packaging mistake
    raise RuntimeError("constants.SQLITE_SCHEMA_VERSION must equal len(MIGRATIONS)")

_VERSION_KEY = "schema_version"

_PEER_COLS = (
    "id, namespace, name, host, pid, pid_start, cwd, git_root, git_common_dir, git_remote, "
    "branch, tty, client, receive_mode, summary, files, registered_at, last_seen, online, "
    "successor, push, hooks_at"
)
_PEER_FIELDS = tuple(f.strip() for f in _PEER_COLS.split(","))
_MSG_COLS = (
    "id, namespace, sender_id, sender_name, sender_kind, recipient_id, body, reply_to, "
    "broadcast, sent_at"
)
_EVENT_COLS = "seq, kind, at, peer_id, peer_name, data"

# ids per "IN (...)" list, below SQLite's variable limit.
_ID_CHUNK = 500
_EVENT_BATCH = 256

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

_OPTIONS = ("busy_timeout_ms", "synchronous")


def parse_sqlite_url(url: str) -> tuple[Path, dict[str, str]]:
    """The database path and options of a ``sqlite:///abs/path.db?opt=value`` URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigError(f"not a sqlite:// URL: {url!r}")
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(
            f"PEERS_URL {url!r}: the SQLite URL takes an absolute path after three slashes, "
            "like sqlite:///home/me/.local/state/peers/peers.db"
        )
    raw = unquote(parts.path)
    if raw.startswith("/~"):
        raw = raw[1:]
    elif raw.startswith("//"):
        # sqlite:////abs/path.db (SQLAlchemy's spelling, and what an f-string with
        # an absolute path gives) means the same file as sqlite:///abs/path.db.
        raw = "/" + raw.lstrip("/")
    path = Path(os.path.expanduser(raw))
    if not raw or not path.is_absolute() or raw.endswith("/"):
        raise ConfigError(
            f"PEERS_URL {url!r}: give the absolute path of a database file, "
            "like sqlite:///home/me/.local/state/peers/peers.db"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(
            f"PEERS_URL {url!r}: unknown option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}"
        )
    if "busy_timeout_ms" in options and not options["busy_timeout_ms"].isdigit():
        raise ConfigError(f"PEERS_URL {url!r}: busy_timeout_ms must be a whole number")
    if options.get("synchronous", "normal").lower() not in ("normal", "full"):
        raise ConfigError(f"PEERS_URL {url!r}: synchronous must be normal or full")
    return path, options


# A job: what to run on the worker (a function of no arguments, or a write
# operation taking the connection and an _Effects), whether it is a write, and
# where its result goes: the caller's event loop and a callback to run there
# (None for fire-and-forget).
_Settle = Callable[[Any, BaseException | None], None]
_WriteOp = Callable[[sqlite3.Connection, "_Effects"], Any]
_Job = tuple[Any, bool, asyncio.AbstractEventLoop | None, _Settle | None]
_Outcome = tuple[Any, BaseException | None]

# Results held back while more jobs are queued, at most: waking an event loop
# costs a context switch, so a burst of jobs is answered with one wake-up.
_SETTLE_BATCH = 32
# Writes queued back to back share one transaction (group commit), at most.
_WRITE_BATCH = 64


class _Worker:
    """One thread that runs jobs in submission order: the only user of the connection.

    Lighter than a one-thread ThreadPoolExecutor plus ``wrap_future``: one
    hand-off each way. When jobs queue up (several tasks of one process
    sending at once), consecutive writes commit together and their results go
    back to the event loop with one wake-up; one job alone is not delayed.
    """

    def __init__(self, name: str, write_batch: Callable[[list[_WriteOp]], list[_Outcome]]) -> None:
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

    async def write(self, op: Callable[[sqlite3.Connection, _Effects], _R]) -> _R:
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
class _Effects:
    """What to announce once a write transaction has committed."""

    wake: list[str] = field(default_factory=list)
    events: bool = False


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return True
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "is locked" in text


def _peer_from_row(row: Sequence[Any]) -> Peer:
    data = dict(zip(_PEER_FIELDS, row, strict=True))
    data["files"] = tuple(json.loads(data["files"]))
    data["online"] = bool(data["online"])
    return Peer(**data)


def _message_from_row(row: Sequence[Any]) -> Message:
    return Message(
        id=row[0],
        namespace=row[1],
        sender_id=row[2],
        sender_name=row[3],
        sender_kind=row[4],
        recipient_id=row[5],
        body=row[6],
        reply_to=row[7],
        broadcast=bool(row[8]),
        sent_at=row[9],
    )


def _event_from_row(row: Sequence[Any]) -> Event:
    return Event(
        kind=EventKind(row[1]), at=row[2], peer_id=row[3], peer_name=row[4], data=json.loads(row[5])
    )


class SQLiteTransport(Transport):
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
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous.upper()
        # The retry loop gives up (BackendUnavailable) after twice SQLite's own wait.
        self._lock_patience = max(2 * busy_timeout_ms / 1000, 1.0)
        self._conn: sqlite3.Connection | None = None
        self._worker: _Worker | None = None
        self._wake = WakeDirectory(path)
        self._endpoints: dict[str, WakeEndpoint] = {}
        self._tails: set[WakeEndpoint] = set()
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
            url=settings.url,
        )

    # -- the worker thread -----------------------------------------------------

    def _require_open(self) -> _Worker:
        if self._worker is None or self._closed:
            raise BackendUnavailable(
                f"the SQLite transport for {self.path} is not connected (call connect() first)"
            )
        return self._worker

    async def _read(self, fn: Callable[[sqlite3.Connection], _R]) -> _R:
        """Run a read on the worker thread."""
        return await self._require_open().call(lambda: self._guarded(fn))

    async def _write(self, fn: Callable[[sqlite3.Connection, _Effects], _R]) -> _R:
        """Run a write transaction on the worker thread; pokes go out after the commit."""
        return await self._require_open().write(fn)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendUnavailable(f"the SQLite transport for {self.path} is closed")
        return self._conn

    def _guarded(self, fn: Callable[[sqlite3.Connection], _R]) -> _R:
        """Run fn, retrying while the database is busy; convert every sqlite3 error."""
        return self._with_retry(lambda: fn(self._connection()))

    def _write_batch(self, ops: list[_WriteOp]) -> list[_Outcome]:
        """Run write operations in one transaction, each in its own savepoint.

        A job that fails (PeerNotFound, NameTaken, a bad value) is rolled back
        alone and gets its error; the others commit. Only a failure of the
        transaction itself (a lock held past patience, an I/O error) reaches
        every job. Pokes go out once, after the commit.
        """
        single = len(ops) == 1

        def attempt() -> tuple[list[_Outcome], _Effects]:
            conn = self._connection()
            effects = _Effects()
            outcomes: list[_Outcome] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for op in ops:
                    if single:
                        outcomes.append((op(conn, effects), None))
                        continue
                    conn.execute("SAVEPOINT peers_job")
                    mark = (len(effects.wake), effects.events)
                    try:
                        result = op(conn, effects)
                    except Exception as exc:
                        if isinstance(exc, sqlite3.Error) and _is_busy(exc):
                            raise
                        conn.execute("ROLLBACK TO peers_job")
                        conn.execute("RELEASE peers_job")
                        del effects.wake[mark[0] :]
                        effects.events = mark[1]
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
                busy = isinstance(exc, sqlite3.Error) and _is_busy(exc)
                if busy and time.monotonic() < deadline:
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
        if isinstance(exc, sqlite3.Error):
            return self._convert(exc)
        if isinstance(exc, UnicodeEncodeError):
            return InvalidInput(f"text that is not valid Unicode cannot be stored: {exc}")
        if isinstance(exc, OverflowError):
            return InvalidInput(f"a number too large to store: {exc}")
        if isinstance(exc, ValueError):
            # A stored row that does not decode (JSON, enum, model validation).
            return StoreCorrupt(
                f"{self.path} holds a record peers cannot read ({exc}); run `peers doctor`"
            )
        return exc

    def _convert(self, exc: sqlite3.Error) -> PeersError:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        text = str(exc)
        lower = text.lower()
        if (
            code in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
            or "not a database" in lower
            or "malformed" in lower
        ):
            return StoreCorrupt(
                f"{self.path} is not a readable peers database ({text}); run `peers doctor`, "
                "or move the file away to start with an empty one"
            )
        if _is_busy(exc):
            return BackendUnavailable(
                f"{self.path} stayed locked by another process for {self._lock_patience:.0f} s; "
                "something holds a long write transaction on it"
            )
        if code == _SQLITE_CANTOPEN or "unable to open" in lower:
            return BackendUnavailable(
                f"cannot open the SQLite database {self.path} ({text}); check that its directory "
                "exists and is writable"
            )
        if code == _SQLITE_READONLY or "readonly" in lower:
            return BackendUnavailable(f"the SQLite database {self.path} is read-only ({text})")
        if isinstance(exc, sqlite3.IntegrityError):
            return InvalidInput(f"the store refused the record: {text}")
        if "no such table" in lower or "no such column" in lower:
            return StoreCorrupt(
                f"{self.path} does not have the tables peers expects ({text}); run `peers doctor`"
            )
        if code in (_SQLITE_IOERR, _SQLITE_FULL):
            return BackendError(f"I/O error on the SQLite database {self.path}: {text}")
        return BackendError(f"SQLite error on {self.path}: {text}")

    # -- lifecycle ---------------------------------------------------------------

    async def connect(self) -> None:
        """Open connections and create or migrate the store (idempotent)."""
        if self._worker is not None and not self._closed:
            return
        self._closed = False
        self._worker = worker = _Worker(f"peers-sqlite {self.path.name}", self._write_batch)
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
        self._with_retry(self._migrate)
        self._tighten_permissions()
        try:
            self._wake.ensure()
        except BackendUnavailable as exc:
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

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int:
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (T.META,)
        ).fetchone()
        if has_meta is None:
            return 0
        row = conn.execute(f"SELECT value FROM {T.META} WHERE key = ?", (_VERSION_KEY,)).fetchone()
        return int(row[0]) if row is not None else 0

    def _migrate(self) -> None:
        conn = self._connection()
        target = len(MIGRATIONS)
        version = self._schema_version(conn)
        self._check_version(version, target)
        if version == target:
            return  # the common case: no write lock needed
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            version = self._schema_version(conn)
            self._check_version(version, target)
            for step in MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(
                f"INSERT INTO {T.META} (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_VERSION_KEY, str(target)),
            )
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if _is_busy(exc):
                raise
            raise StoreCorrupt(
                f"cannot bring {self.path} to schema version {target} ({exc}); is it a peers "
                "database? Run `peers doctor`"
            ) from exc
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _check_version(self, version: int, target: int) -> None:
        if version > target:
            raise StoreCorrupt(
                f"{self.path} has schema version {version}, but this peers knows only up to "
                f"{target}: a newer peers wrote it; upgrade peers (or point PEERS_URL elsewhere)"
            )

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
            return self._schema_version(conn), str(mode), sqlite3.sqlite_version

        version, mode, lib = await self._read(op)
        return {
            "backend": "sqlite",
            "url": redact_url(self.url),
            "path": str(self.path),
            "schema_version": str(version),
            "journal_mode": mode,
            "sqlite_version": lib,
            "wake_dir": str(self._wake.path),
        }

    # -- liveness ------------------------------------------------------------------

    def _is_live(self, peer: Peer, now: float) -> bool:
        return peer.is_live(self.host, fresh=peer.last_seen >= now - self.peer_ttl)

    def _emit(
        self,
        conn: sqlite3.Connection,
        effects: _Effects,
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
        self, conn: sqlite3.Connection, effects: _Effects, peer: Peer, now: float, reason: str
    ) -> Peer:
        conn.execute(
            f"UPDATE {T.PEERS} SET online = 0 WHERE namespace = ? AND id = ?",
            (self.namespace, peer.id),
        )
        self._emit(conn, effects, EventKind.LEAVE, peer.id, peer.name, {"reason": reason}, now)
        return peer.model_copy(update={"online": False})

    def _reap_rows(
        self, conn: sqlite3.Connection, effects: _Effects, ids: Sequence[str] | None
    ) -> list[Peer]:
        """Mark the given (or all) online peers offline that are no longer live."""
        now = time.time()
        rows = conn.execute(
            f"SELECT {_PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND online = 1",
            (self.namespace,),
        ).fetchall()
        wanted = None if ids is None else set(ids)
        reaped: list[Peer] = []
        for row in rows:
            peer = _peer_from_row(row)
            if wanted is not None and peer.id not in wanted:
                continue
            if not self._is_live(peer, now):
                reaped.append(self._mark_offline(conn, effects, peer, now, "reaped"))
        return reaped

    # -- peers ---------------------------------------------------------------------

    def _get_peer(self, conn: sqlite3.Connection, peer_id: str) -> Peer | None:
        row = conn.execute(
            f"SELECT {_PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND id = ?",
            (self.namespace, peer_id),
        ).fetchone()
        return None if row is None else _peer_from_row(row)

    def _claim_name(
        self, conn: sqlite3.Connection, effects: _Effects, name: str, claimant: str, now: float
    ) -> None:
        """Take a name for ``claimant`` (inside the write transaction) or raise NameTaken."""
        row = conn.execute(
            f"SELECT {_PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND name = ? AND id != ?",
            (self.namespace, name, claimant),
        ).fetchone()
        if row is None:
            return
        holder = _peer_from_row(row)
        if self._is_live(holder, now):
            raise NameTaken(
                f"the name '{name}' is held by live peer {holder.id} on {holder.host} "
                f"(pid {holder.pid}); choose another name or stop that session"
            )
        if holder.online:
            self._mark_offline(conn, effects, holder, now, "reaped")
        # The holder's unread mail moves to the claimant; updating the recipient
        # keeps each message's sequence number, so the original order holds and
        # it stays ahead of anything sent later.
        conn.execute(
            f"UPDATE {T.PEERS} SET name = NULL, successor = ? WHERE namespace = ? AND id = ?",
            (claimant, self.namespace, holder.id),
        )
        conn.execute(
            f"UPDATE {T.MESSAGES} SET recipient_id = ? "
            "WHERE namespace = ? AND recipient_id = ? AND acked_at IS NULL",
            (claimant, self.namespace, holder.id),
        )

    async def register(self, peer: Peer) -> Peer:
        """Add a live peer, claim its name atomically (NameTaken if a live peer holds it) and inherit the unread mail of the name's previous holders."""
        if peer.namespace != self.namespace:
            raise InvalidInput(
                f"peer {peer.id} is in namespace '{peer.namespace}', this transport serves "
                f"'{self.namespace}'"
            )
        # Bind the doorbell before the peer becomes visible, so that no poke sent
        # after the commit can find nobody listening.
        _, fresh = self._endpoint(peer.id)

        def op(conn: sqlite3.Connection, effects: _Effects) -> Peer:
            now = time.time()
            # A peer that registers again holds its id (and name) itself again.
            stored = peer.model_copy(update={"online": True, "last_seen": now, "successor": None})
            if stored.name is not None:
                self._claim_name(conn, effects, stored.name, stored.id, now)
            conn.execute(
                f"INSERT INTO {T.PEERS} ({_PEER_COLS}) "
                f"VALUES ({', '.join('?' * len(_PEER_FIELDS))}) "
                "ON CONFLICT (namespace, id) DO UPDATE SET "
                + ", ".join(f"{f} = excluded.{f}" for f in _PEER_FIELDS[2:]),
                (
                    stored.id,
                    stored.namespace,
                    stored.name,
                    stored.host,
                    stored.pid,
                    stored.pid_start,
                    stored.cwd,
                    stored.git_root,
                    stored.git_common_dir,
                    stored.git_remote,
                    stored.branch,
                    stored.tty,
                    stored.client,
                    stored.receive_mode.value,
                    stored.summary,
                    json.dumps(list(stored.files)),
                    stored.registered_at,
                    stored.last_seen,
                    1,
                    None,
                    PushState(stored.push).value,
                    stored.hooks_at,
                ),
            )
            self._emit(
                conn,
                effects,
                EventKind.JOIN,
                stored.id,
                stored.name,
                {
                    "host": stored.host,
                    "pid": stored.pid,
                    "cwd": stored.cwd,
                    "client": stored.client,
                },
                now,
            )
            return stored

        try:
            return await self._write(op)
        except BaseException:
            if fresh:
                self._drop_endpoint(peer.id)
            raise

    async def heartbeat(self, peer_id: str) -> None:
        """Refresh last-seen; raise PeerNotFound if the peer is offline or unknown."""

        def op(conn: sqlite3.Connection, effects: _Effects) -> int:
            return conn.execute(
                f"UPDATE {T.PEERS} SET last_seen = ? WHERE namespace = ? AND id = ? AND online = 1",
                (time.time(), self.namespace, peer_id),
            ).rowcount

        if await self._write(op) == 0:
            raise PeerNotFound(f"peer {peer_id} is not registered (or was reaped); register again")

    async def update_peer(self, peer_id: str, update: PeerUpdate) -> Peer:
        """Change summary, files, name or receive mode of a live peer; a new name is claimed as in register."""

        def op(conn: sqlite3.Connection, effects: _Effects) -> Peer:
            now = time.time()
            current = self._get_peer(conn, peer_id)
            if current is None or not current.online:
                raise PeerNotFound(
                    f"peer {peer_id} is not registered (or was reaped); register again"
                )
            changes: dict[str, Any] = {"last_seen": now}
            for key in ("summary", "files", "name", "receive_mode", "push", "hooks_at"):
                value = getattr(update, key)
                if value is not None and value != getattr(current, key):
                    changes[key] = value
            if "name" in changes:
                self._claim_name(conn, effects, changes["name"], peer_id, now)
            new = current.model_copy(update=changes)
            conn.execute(
                f"UPDATE {T.PEERS} SET summary = ?, files = ?, name = ?, receive_mode = ?, "
                "push = ?, hooks_at = ?, last_seen = ? WHERE namespace = ? AND id = ?",
                (
                    new.summary,
                    json.dumps(list(new.files)),
                    new.name,
                    ReceiveMode(new.receive_mode).value,
                    PushState(new.push).value,
                    new.hooks_at,
                    now,
                    self.namespace,
                    peer_id,
                ),
            )
            if "name" in changes:
                self._emit(
                    conn,
                    effects,
                    EventKind.RENAME,
                    peer_id,
                    new.name,
                    {"old": current.name, "new": new.name},
                    now,
                )
            if "summary" in changes or "files" in changes:
                self._emit(
                    conn,
                    effects,
                    EventKind.SUMMARY,
                    peer_id,
                    new.name,
                    {"summary": new.summary, "files": list(new.files)},
                    now,
                )
            return new

        return await self._write(op)

    async def unregister(self, peer_id: str) -> None:
        """Mark a peer offline; its name and unread mail wait for a successor (no-op if unknown)."""

        def op(conn: sqlite3.Connection, effects: _Effects) -> None:
            now = time.time()
            peer = self._get_peer(conn, peer_id)
            if peer is None:
                return
            if peer.online:
                self._mark_offline(conn, effects, peer, now, "unregistered")
            if peer.name is None:
                # Nothing can reach an anonymous peer that left without mail:
                # forget it now instead of at the next gc.
                conn.execute(
                    f"DELETE FROM {T.PEERS} WHERE namespace = ? AND id = ? AND NOT EXISTS ("
                    f"SELECT 1 FROM {T.MESSAGES} WHERE namespace = ? AND recipient_id = ? "
                    "AND acked_at IS NULL)",
                    (self.namespace, peer_id, self.namespace, peer_id),
                )

        try:
            await self._write(op)
        finally:
            self._drop_endpoint(peer_id)

    async def get_peer(self, peer_id: str) -> Peer | None:
        """The peer with this id, live or offline, or None."""
        return await self._read(lambda conn: self._get_peer(conn, peer_id))

    async def get_peer_by_name(self, name: str) -> Peer | None:
        """The latest holder of a name, live or offline, or None."""

        def op(conn: sqlite3.Connection) -> Peer | None:
            row = conn.execute(
                f"SELECT {_PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND name = ?",
                (self.namespace, name),
            ).fetchone()
            return None if row is None else _peer_from_row(row)

        return await self._read(op)

    async def list_peers(self, flt: PeerFilter | None = None) -> list[Peer]:
        """Live peers matching the filter, reaping dead ones on the way."""

        def op(conn: sqlite3.Connection) -> tuple[list[Peer], list[str]]:
            now = time.time()
            rows = conn.execute(
                f"SELECT {_PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND online = 1 "
                "ORDER BY registered_at, id",
                (self.namespace,),
            ).fetchall()
            live: list[Peer] = []
            dead: list[str] = []
            for row in rows:
                peer = _peer_from_row(row)
                if self._is_live(peer, now):
                    live.append(peer)
                else:
                    dead.append(peer.id)
            return live, dead

        live, dead = await self._read(op)
        if dead:
            # Re-checked inside the write transaction: one may have heartbeated since.
            await self._write(lambda conn, effects: self._reap_rows(conn, effects, dead))
        return [p for p in live if flt is None or flt.matches(p)]

    async def list_offline(self) -> list[Peer]:
        """Offline peers still kept (named, or with unread mail)."""

        def op(conn: sqlite3.Connection) -> list[Peer]:
            rows = conn.execute(
                f"SELECT {_PEER_COLS} FROM {T.PEERS} WHERE namespace = ? AND online = 0 "
                "ORDER BY registered_at, id",
                (self.namespace,),
            ).fetchall()
            return [_peer_from_row(r) for r in rows]

        return await self._read(op)

    async def reap(self) -> list[Peer]:
        """Mark peers offline whose TTL ran out or whose process (on this host) is gone; return them."""
        return await self._write(lambda conn, effects: self._reap_rows(conn, effects, None))

    # -- wake-up endpoints ------------------------------------------------------------

    def _endpoint(self, peer_id: str) -> tuple[WakeEndpoint | None, bool]:
        """This instance's doorbell for a peer, bound now if needed; (endpoint, newly bound).

        None when no socket can be bound: mail still arrives, found by the
        callers' re-checks instead of a push, so that is a warning, not an error.
        """
        self._require_open()
        endpoint = self._endpoints.get(peer_id)
        if endpoint is not None and not endpoint.closed:
            return endpoint, False
        try:
            endpoint = self._wake.bind_peer(self.namespace, peer_id)
        except BackendUnavailable as exc:
            self._warn_no_push(str(exc))
            return None, False
        self._endpoints[peer_id] = endpoint
        return endpoint, True

    def _warn_no_push(self, reason: str) -> None:
        if not self._push_warned:
            self._push_warned = True
            # A log line must never break delivery (stderr may be closed or gone).
            with contextlib.suppress(ValueError, OSError):
                _log.warning("no wake-up socket: delivery falls back to re-checks", reason=reason)

    def _drop_endpoint(self, peer_id: str) -> None:
        endpoint = self._endpoints.pop(peer_id, None)
        if endpoint is not None:
            endpoint.close()

    # -- messages -------------------------------------------------------------------

    async def send(self, message: Message) -> Message:
        """Store a message durably for its recipient (following successors), wake it, return it as stored."""
        if message.namespace != self.namespace:
            raise InvalidInput(
                f"message {message.id} is in namespace '{message.namespace}', this transport "
                f"serves '{self.namespace}'"
            )

        def op(conn: sqlite3.Connection, effects: _Effects) -> str:
            recipient = self._resolve_recipient(conn, message.recipient_id)
            try:
                conn.execute(
                    f"INSERT INTO {T.MESSAGES} ({_MSG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        message.id,
                        message.namespace,
                        message.sender_id,
                        message.sender_name,
                        SenderKind(message.sender_kind).value,
                        recipient,
                        message.body,
                        message.reply_to,
                        int(message.broadcast),
                        message.sent_at,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" not in str(exc):
                    raise
                raise InvalidInput(f"a message with id {message.id} already exists") from exc
            # Events are read only by live tails (from the moment they start):
            # with nobody tailing, a MESSAGE event would be written for nothing.
            if self._wake.has_tails(self.namespace):
                self._emit(
                    conn,
                    effects,
                    EventKind.MESSAGE,
                    message.sender_id,
                    message.sender_name,
                    {
                        "id": message.id,
                        "sender_id": message.sender_id,
                        "sender_name": message.sender_name,
                        "recipient_id": recipient,
                        "broadcast": message.broadcast,
                    },
                    time.time(),
                )
            effects.wake.append(recipient)
            return recipient

        recipient = await self._write(op)
        if recipient == message.recipient_id:
            return message
        return message.model_copy(update={"recipient_id": recipient})

    def _resolve_recipient(self, conn: sqlite3.Connection, peer_id: str) -> str:
        """Follow successor pointers from ``peer_id`` to the peer that gets its mail."""
        row = conn.execute(
            f"SELECT successor FROM {T.PEERS} WHERE namespace = ? AND id = ?",
            (self.namespace, peer_id),
        ).fetchone()
        if row is None:
            raise PeerNotFound(f"no peer with id {peer_id} in namespace '{self.namespace}'")
        current, successor = peer_id, row[0]
        seen = {peer_id}
        while successor is not None and successor not in seen and len(seen) < c.MAX_SUCCESSOR_HOPS:
            row = conn.execute(
                f"SELECT successor FROM {T.PEERS} WHERE namespace = ? AND id = ?",
                (self.namespace, successor),
            ).fetchone()
            if row is None:
                break  # the successor was collected: keep the mail with the last one we know
            seen.add(successor)
            current, successor = successor, row[0]
        return current

    async def fetch(self, recipient_id: str, limit: int = c.FETCH_LIMIT) -> list[Message]:
        """The recipient's pending messages, oldest first, without consuming them."""
        if limit < 1:
            raise InvalidInput(f"fetch limit must be at least 1, not {limit}")

        def op(conn: sqlite3.Connection) -> list[Message]:
            rows = conn.execute(
                f"SELECT {_MSG_COLS} FROM {T.MESSAGES} "
                "WHERE namespace = ? AND recipient_id = ? AND acked_at IS NULL ORDER BY seq LIMIT ?",
                (self.namespace, recipient_id, limit),
            ).fetchall()
            return [_message_from_row(r) for r in rows]

        return await self._read(op)

    async def ack(self, recipient_id: str, message_ids: Sequence[str]) -> int:
        """Mark the recipient's own pending messages delivered; return how many changed."""
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return 0

        def op(conn: sqlite3.Connection, effects: _Effects) -> int:
            now = time.time()
            changed = 0
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                changed += conn.execute(
                    f"UPDATE {T.MESSAGES} SET acked_at = ? WHERE namespace = ? AND recipient_id = ? "
                    f"AND acked_at IS NULL AND id IN ({', '.join('?' * len(chunk))})",
                    (now, self.namespace, recipient_id, *chunk),
                ).rowcount
            return changed

        return await self._write(op)

    async def wait_for_mail(self, recipient_id: str, timeout: float) -> bool:
        """Sleep until a send to the recipient (True) or the timeout (False); costs nothing while idle."""
        endpoint, _ = self._endpoint(recipient_id)
        if endpoint is None:
            # Degraded (see _endpoint): sleep out one re-check interval and let
            # the caller fetch again; a spurious True is allowed.
            await asyncio.sleep(max(0.0, min(timeout, self.safety_recheck)))
            return timeout > self.safety_recheck
        return await endpoint.wait(timeout)

    async def get_message(self, message_id: str) -> Message | None:
        """A message within the retention window, pending or delivered, or None."""

        def op(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(
                f"SELECT {_MSG_COLS} FROM {T.MESSAGES} WHERE namespace = ? AND id = ? AND sent_at >= ?",
                (self.namespace, message_id, time.time() - self.retention),
            ).fetchone()
            return None if row is None else _message_from_row(row)

        return await self._read(op)

    async def pending_counts(self) -> dict[str, int]:
        """Unread message count per recipient id (only recipients with mail)."""

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                f"SELECT recipient_id, COUNT(*) FROM {T.MESSAGES} "
                "WHERE namespace = ? AND acked_at IS NULL GROUP BY recipient_id",
                (self.namespace,),
            ).fetchall()
            return {r[0]: r[1] for r in rows}

        return await self._read(op)

    async def history(self, query: HistoryQuery) -> list[MessageRecord]:
        """Messages within retention, oldest first, with their delivery state."""
        if query.limit < 1:
            return []

        def op(conn: sqlite3.Connection) -> list[MessageRecord]:
            now = time.time()
            where = ["namespace = ?"]
            args: list[Any] = [self.namespace]
            if query.peer_id is not None:
                where.append("(sender_id = ? OR recipient_id = ?)")
                args += [query.peer_id, query.peer_id]
            if query.since is not None:
                where.append("sent_at >= ?")
                args.append(query.since)
            rows = conn.execute(
                f"SELECT {_MSG_COLS}, acked_at FROM {T.MESSAGES} WHERE {' AND '.join(where)} "
                "ORDER BY seq DESC LIMIT ?",
                (*args, query.limit),
            ).fetchall()
            records: list[MessageRecord] = []
            for row in reversed(rows):
                message = _message_from_row(row)
                acked_at = row[10]
                if acked_at is not None:
                    state = DeliveryState.DELIVERED
                elif message.sent_at < now - self.retention:
                    state = DeliveryState.EXPIRED
                else:
                    state = DeliveryState.PENDING
                records.append(MessageRecord(message=message, state=state, acked_at=acked_at))
            return records

        return await self._read(op)

    # -- events and upkeep ---------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Live join, leave, summary, rename and message events from now on, until closed."""
        self._require_open()
        # The doorbell is bound now, not at the first __anext__, so that pokes for
        # events written in between queue up; the start is fixed by the clock
        # (one host, one clock), since this call cannot wait for the worker.
        started = time.time()
        endpoint: WakeEndpoint | None = None
        try:
            endpoint = self._wake.bind_tail(self.namespace)
            self._tails.add(endpoint)
        except BackendUnavailable as exc:
            self._warn_no_push(str(exc))  # the stream still runs, on re-checks alone
        return self._event_stream(endpoint, started)

    async def _event_stream(
        self, endpoint: WakeEndpoint | None, started: float
    ) -> AsyncIterator[Event]:
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

            def op(conn: sqlite3.Connection) -> list[tuple[int, Event]]:
                rows = conn.execute(
                    f"SELECT {_EVENT_COLS} FROM {T.EVENTS} WHERE seq > ? AND namespace = ? "
                    "ORDER BY seq LIMIT ?",
                    (last, self.namespace, _EVENT_BATCH),
                ).fetchall()
                return [(r[0], _event_from_row(r)) for r in rows]

            while not self._closed and not (endpoint is not None and endpoint.closed):
                batch = await self._read(op)
                for seq, event in batch:
                    last = seq
                    yield event
                if len(batch) < _EVENT_BATCH:
                    # The safety re-check: a missed poke costs a delay, not an event.
                    if endpoint is None:
                        await asyncio.sleep(self.safety_recheck)
                    else:
                        await endpoint.wait(self.safety_recheck)
        finally:
            if endpoint is not None:
                self._tails.discard(endpoint)
                endpoint.close()

    async def diagnostics(self) -> list[Check]:
        """Backend-specific health checks for `peers doctor`: file modes, WAL, schema, integrity, doorbells."""

        def op(conn: sqlite3.Connection) -> list[Check]:
            checks: list[Check] = []
            loose = []
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    bits = os.stat(f"{self.path}{suffix}").st_mode & 0o777
                    if bits & 0o077:
                        loose.append(f"{self.path.name}{suffix} is {bits:o}")
            checks.append(
                Check(
                    name="sqlite file permissions",
                    status=CheckStatus.WARN if loose else CheckStatus.OK,
                    detail="; ".join(loose) or f"{self.path} is private (0600)",
                    fix=f"chmod 600 {self.path}*" if loose else "",
                )
            )
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            checks.append(
                Check(
                    name="sqlite journal mode",
                    status=CheckStatus.OK if mode == "wal" else CheckStatus.WARN,
                    detail=f"journal_mode={mode}",
                    fix="" if mode == "wal" else "keep the database on a local filesystem",
                )
            )
            version = self._schema_version(conn)
            checks.append(
                Check(
                    name="sqlite schema",
                    status=CheckStatus.OK if version == len(MIGRATIONS) else CheckStatus.FAIL,
                    detail=f"schema version {version} (this peers: {len(MIGRATIONS)})",
                    fix="" if version == len(MIGRATIONS) else "upgrade peers",
                )
            )
            # The full check (indexes against tables too); the store is small.
            problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(5)").fetchall()]
            healthy = problems == ["ok"]
            checks.append(
                Check(
                    name="sqlite integrity",
                    status=CheckStatus.OK if healthy else CheckStatus.FAIL,
                    detail="integrity_check ok" if healthy else "; ".join(problems),
                    fix="" if healthy else f"move {self.path} away; peers starts a new one",
                )
            )
            usable = os.access(self._wake.path, os.W_OK | os.X_OK)
            checks.append(
                Check(
                    name="wake-up directory",
                    status=CheckStatus.OK if usable else CheckStatus.FAIL,
                    detail=str(self._wake.path),
                    fix="" if usable else f"remove {self._wake.path}; peers recreates it",
                )
            )
            return checks

        # Path, filesystem and write-lock probes from outside the connection
        # (peers.transports.sqlite_checks), then what the open connection sees.
        from peers.transports.sqlite_checks import file_checks

        outside = await file_checks(self.path)
        return [*outside, *await self._read(op)]

    async def gc(self) -> GcReport:
        """Delete what outlived retention: offline peers, old mail, stale wake-up endpoints."""

        def op(conn: sqlite3.Connection, effects: _Effects) -> tuple[int, int]:
            cutoff = time.time() - self.retention
            messages = conn.execute(
                f"DELETE FROM {T.MESSAGES} WHERE namespace = ? AND sent_at < ?",
                (self.namespace, cutoff),
            ).rowcount
            # A peer with unread mail inside the window stays: that mail waits
            # for its successor.
            peers = conn.execute(
                f"DELETE FROM {T.PEERS} WHERE namespace = ? AND online = 0 AND last_seen < ? "
                f"AND NOT EXISTS (SELECT 1 FROM {T.MESSAGES} m WHERE m.namespace = ? "
                f"AND m.recipient_id = {T.PEERS}.id AND m.acked_at IS NULL)",
                (self.namespace, cutoff, self.namespace),
            ).rowcount
            conn.execute(
                f"DELETE FROM {T.EVENTS} WHERE namespace = ? AND at < ?", (self.namespace, cutoff)
            )
            return peers, messages

        peers, messages = await self._write(op)
        wakeups = await self._require_open().call(self._wake.remove_stale)
        return GcReport(peers_removed=peers, messages_removed=messages, wakeups_removed=wakeups)
