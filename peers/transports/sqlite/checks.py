"""Doctor checks on a SQLite database: from outside the transport, and on its connection.

``file_checks`` looks at the file from the outside: where it is, who may write
it, what filesystem holds it, and whether some other process sits on the write
lock. ``connection_checks`` runs on the transport's own connection: file modes,
WAL, schema, integrity and the wake-up directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from pathlib import Path

from peers.models import Check, CheckStatus
from peers.transports.sqlite import schema

__all__ = ["LOCK_PROBE_SECONDS", "connection_checks", "file_checks"]

# How long the lock probe waits for the write lock before calling it contended.
LOCK_PROBE_SECONDS = 2.0
# A write lock that takes longer than this to get is worth a warning.
_SLOW_LOCK = 0.25
# SQLite's locking is unreliable on these (sqlite.org/faq.html#q5).
_NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "ceph", "glusterfs", "fuse.glusterfs"}
)


async def file_checks(path: Path) -> list[Check]:
    """Path, filesystem and lock-contention checks for the database at ``path``."""
    return await asyncio.to_thread(_file_checks, path)


def _file_checks(path: Path) -> list[Check]:
    checks = [_path_check(path)]
    fs = _filesystem_check(path)
    if fs is not None:
        checks.append(fs)
    if path.is_file():
        checks.append(_lock_check(path))
    return checks


def _path_check(path: Path) -> Check:
    name = "sqlite path"
    directory = path.parent
    if not directory.is_dir():
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            detail=f"the directory {directory} does not exist",
            fix=f"mkdir -p -m 700 {directory}",
        )
    if not path.exists():
        if os.access(directory, os.W_OK | os.X_OK):
            return Check(
                name=name,
                status=CheckStatus.WARN,
                detail=f"{path} does not exist yet",
                fix="nothing to do: the first session creates it",
            )
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            detail=f"{path} does not exist and {directory} is not writable",
            fix=f"chmod u+rwx {directory}, or point PEERS_URL at a directory you own",
        )
    if not path.is_file():
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            detail=f"{path} is not a regular file",
            fix="point PEERS_URL at a file path",
        )
    problems = []
    if not os.access(path, os.R_OK | os.W_OK):
        problems.append(f"{path.name} is not readable and writable by you")
    # SQLite creates the -wal and -shm files (and a journal) next to the database.
    if not os.access(directory, os.W_OK | os.X_OK):
        problems.append(f"{directory} is not writable by you")
    if path.stat().st_uid != os.getuid():
        problems.append(f"{path.name} belongs to uid {path.stat().st_uid}, not you")
    if problems:
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            detail="; ".join(problems),
            fix=f"chown $USER {path} && chmod 600 {path} && chmod 700 {directory}",
        )
    size = path.stat().st_size
    return Check(name=name, status=CheckStatus.OK, detail=f"{path} ({size / 1024:.0f} KiB)")


def _filesystem_check(path: Path) -> Check | None:
    """The filesystem type under the database (Linux only: /proc/self/mounts)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.parent.resolve()) if path.parent.exists() else str(path.parent)
    best, fstype = "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, fstype = point, fields[2]
    if not fstype:
        return None
    if fstype in _NETWORK_FS:
        return Check(
            name="sqlite filesystem",
            status=CheckStatus.FAIL,
            detail=f"{path} is on a {fstype} mount ({best}): SQLite's locks do not work there",
            fix="use a local path for PEERS_URL, or Redis to share peers between machines",
        )
    return Check(name="sqlite filesystem", status=CheckStatus.OK, detail=f"{fstype} at {best}")


def _lock_check(path: Path) -> Check:
    """Take the write lock once (and release it at once) to see whether anyone sits on it."""
    name = "sqlite write lock"
    started = time.monotonic()
    try:
        conn = sqlite3.connect(path, timeout=LOCK_PROBE_SECONDS, isolation_level=None)
    except sqlite3.Error as exc:
        return Check(
            name=name, status=CheckStatus.FAIL, detail=f"cannot open {path}: {exc}", fix="see `sqlite path`"
        )
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            return Check(
                name=name,
                status=CheckStatus.FAIL,
                detail=f"another process held the write lock for over {LOCK_PROBE_SECONDS:g} s",
                fix=f"find the process holding it (fuser {path}) and end its stuck transaction",
            )
        return Check(name=name, status=CheckStatus.FAIL, detail=str(exc), fix="see the checks above")
    except sqlite3.Error as exc:
        return Check(name=name, status=CheckStatus.FAIL, detail=str(exc), fix="see the checks above")
    finally:
        conn.close()
    waited = time.monotonic() - started
    if waited > _SLOW_LOCK:
        return Check(
            name=name,
            status=CheckStatus.WARN,
            detail=f"waited {waited * 1000:.0f} ms for the write lock: heavy contention",
            fix="look for a process that keeps long write transactions open (fuser on the file)",
        )
    return Check(name=name, status=CheckStatus.OK, detail=f"free (took {waited * 1000:.1f} ms)")


def connection_checks(conn: sqlite3.Connection, path: Path, wake_dir: Path) -> list[Check]:
    """What the open connection sees: file modes, WAL, schema version, integrity, doorbells."""
    checks: list[Check] = []
    loose = []
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            bits = os.stat(f"{path}{suffix}").st_mode & 0o777
            if bits & 0o077:
                loose.append(f"{path.name}{suffix} is {bits:o}")
    checks.append(
        Check(
            name="sqlite file permissions",
            status=CheckStatus.WARN if loose else CheckStatus.OK,
            detail="; ".join(loose) or f"{path} is private (0600)",
            fix=f"chmod 600 {path}*" if loose else "",
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
    version = schema.schema_version(conn)
    checks.append(
        Check(
            name="sqlite schema",
            status=CheckStatus.OK if version == len(schema.MIGRATIONS) else CheckStatus.FAIL,
            detail=f"schema version {version} (this peers: {len(schema.MIGRATIONS)})",
            fix="" if version == len(schema.MIGRATIONS) else "upgrade peers",
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
            fix="" if healthy else f"move {path} away; peers starts a new one",
        )
    )
    usable = os.access(wake_dir, os.W_OK | os.X_OK)
    checks.append(
        Check(
            name="wake-up directory",
            status=CheckStatus.OK if usable else CheckStatus.FAIL,
            detail=str(wake_dir),
            fix="" if usable else f"remove {wake_dir}; peers recreates it",
        )
    )
    return checks
