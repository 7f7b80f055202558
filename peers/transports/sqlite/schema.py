"""The SQLite schema: tables, migrations, column lists and row decoding.

``MIGRATIONS[i]`` takes a database from version i to i + 1; a new module (claims,
say) adds its tables as one more step here. All pending steps run in one
transaction, so a failing step leaves the file as it was.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from peers import constants as c
from peers.errors import StoreCorrupt
from peers.keys import SQLiteTables as T
from peers.models import Claim, Event, EventKind, Message, Peer
from peers.transports.sqlite.worker import is_busy

__all__ = [
    "CLAIM_COLS",
    "EVENT_COLS",
    "MIGRATIONS",
    "MSG_COLS",
    "PEER_COLS",
    "PEER_FIELDS",
    "claim_from_row",
    "claim_row",
    "event_from_row",
    "message_from_row",
    "migrate",
    "peer_from_row",
    "peer_row",
    "schema_version",
]

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
    # 3: mail dropped by the mailbox cap stays in history as expired; upkeep leases;
    # indexes that let gc delete a page at a time without scanning the table.
    (
        f"ALTER TABLE {T.MESSAGES} ADD COLUMN expired INTEGER NOT NULL DEFAULT 0",
        f"CREATE INDEX {T.MESSAGES}_sent ON {T.MESSAGES} (namespace, sent_at)",
        f"CREATE INDEX {T.EVENTS}_at ON {T.EVENTS} (namespace, at)",
        f"""CREATE TABLE {T.LEASES} (
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            holder TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (namespace, name)
        )""",
    ),
    # 4: file claims (issue 11).
    (
        f"""CREATE TABLE {T.CLAIMS} (
            namespace TEXT NOT NULL,
            repo TEXT NOT NULL,
            path TEXT NOT NULL,
            holder_id TEXT NOT NULL,
            exclusive INTEGER NOT NULL,
            reason TEXT NOT NULL,
            auto INTEGER NOT NULL,
            claimed_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            ttl REAL NOT NULL,
            PRIMARY KEY (namespace, repo, path, holder_id)
        )""",
        f"CREATE INDEX {T.CLAIMS}_holder ON {T.CLAIMS} (namespace, holder_id)",
        f"CREATE INDEX {T.CLAIMS}_expires ON {T.CLAIMS} (namespace, expires_at)",
    ),
]

if len(MIGRATIONS) != c.SQLITE_SCHEMA_VERSION:  # pragma: no cover - a packaging mistake
    raise RuntimeError("constants.SQLITE_SCHEMA_VERSION must equal len(MIGRATIONS)")

_VERSION_KEY = "schema_version"

PEER_COLS = (
    "id, namespace, name, host, pid, pid_start, cwd, git_root, git_common_dir, git_remote, "
    "branch, tty, client, receive_mode, summary, files, registered_at, last_seen, online, "
    "successor, push, hooks_at"
)
PEER_FIELDS = tuple(f.strip() for f in PEER_COLS.split(","))
MSG_COLS = (
    "id, namespace, sender_id, sender_name, sender_kind, recipient_id, body, reply_to, "
    "broadcast, sent_at"
)
EVENT_COLS = "seq, kind, at, peer_id, peer_name, data"
CLAIM_COLS = "holder_id, repo, path, exclusive, reason, auto, claimed_at, expires_at, ttl"


def peer_from_row(row: Sequence[Any]) -> Peer:
    data = dict(zip(PEER_FIELDS, row, strict=True))
    data["files"] = tuple(json.loads(data["files"]))
    data["online"] = bool(data["online"])
    return Peer(**data)


def message_from_row(row: Sequence[Any]) -> Message:
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


def claim_from_row(row: Sequence[Any]) -> Claim:
    return Claim(
        holder_id=row[0],
        repo=row[1],
        path=row[2],
        exclusive=bool(row[3]),
        reason=row[4],
        auto=bool(row[5]),
        claimed_at=row[6],
        expires_at=row[7],
        ttl=row[8],
    )


def claim_row(claim: Claim) -> tuple[Any, ...]:
    """A claim as the values of ``CLAIM_COLS``."""
    return (
        claim.holder_id,
        claim.repo,
        claim.path,
        int(claim.exclusive),
        claim.reason,
        int(claim.auto),
        claim.claimed_at,
        claim.expires_at,
        claim.ttl,
    )


def event_from_row(row: Sequence[Any]) -> Event:
    return Event(
        kind=EventKind(row[1]), at=row[2], peer_id=row[3], peer_name=row[4], data=json.loads(row[5])
    )


def peer_row(peer: Peer) -> tuple[Any, ...]:
    """A peer as the values of ``PEER_COLS``."""
    values = peer.model_dump(include=set(PEER_FIELDS))
    values["files"] = json.dumps(list(peer.files))
    values["online"] = int(peer.online)
    values["receive_mode"] = peer.receive_mode.value
    values["push"] = peer.push.value
    return tuple(values[f] for f in PEER_FIELDS)


def schema_version(conn: sqlite3.Connection) -> int:
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (T.META,)
    ).fetchone()
    if has_meta is None:
        return 0
    row = conn.execute(f"SELECT value FROM {T.META} WHERE key = ?", (_VERSION_KEY,)).fetchone()
    return int(row[0]) if row is not None else 0


def _check_version(path: Path, version: int, target: int) -> None:
    if version > target:
        raise StoreCorrupt(
            f"{path} has schema version {version}, but this peers knows only up to "
            f"{target}: a newer peers wrote it; upgrade peers (or point PEERS_URL elsewhere)"
        )


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database to ``len(MIGRATIONS)`` (busy errors propagate, to be retried)."""
    target = len(MIGRATIONS)
    version = schema_version(conn)
    _check_version(path, version, target)
    if version == target:
        return  # the common case: no write lock needed
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated while we waited for the lock.
        version = schema_version(conn)
        _check_version(path, version, target)
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
        if is_busy(exc):
            raise
        raise StoreCorrupt(
            f"cannot bring {path} to schema version {target} ({exc}); is it a peers "
            "database? Run `peers doctor`"
        ) from exc
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
