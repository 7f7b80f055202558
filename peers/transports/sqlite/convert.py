"""sqlite3 errors converted into peers errors, at the SQLite transport's edge.

Callers never see a ``sqlite3`` exception: a locked database past the retry
loop's patience is ``BackendUnavailable``, an unreadable file ``StoreCorrupt``,
a refused value ``InvalidInput``; each message names the file and the fix.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from peers.errors import BackendError, BackendUnavailable, InvalidInput, PeersError, StoreCorrupt
from peers.transports.sqlite import worker as w
from peers.transports.sqlite.worker import is_busy

__all__ = ["convert", "translate"]


def translate(exc: Exception, path: Path, patience: float) -> Exception:
    """The peers error for an exception met on the worker (the same one if it already is)."""
    if isinstance(exc, sqlite3.Error):
        return convert(exc, path, patience)
    if isinstance(exc, UnicodeEncodeError):
        return InvalidInput(f"text that is not valid Unicode cannot be stored: {exc}")
    if isinstance(exc, OverflowError):
        return InvalidInput(f"a number too large to store: {exc}")
    if isinstance(exc, ValueError):
        # A stored row that does not decode (JSON, enum, model validation).
        return StoreCorrupt(
            f"{path} holds a record peers cannot read ({exc}); run `peers doctor`"
        )
    return exc

def convert(exc: sqlite3.Error, path: Path, patience: float) -> PeersError:
    """The peers error for a sqlite3 error: corrupt, locked, unopenable, read-only, refused."""
    code = w.error_code(exc)
    text = str(exc)
    lower = text.lower()
    if code in (w.SQLITE_CORRUPT, w.SQLITE_NOTADB) or "not a database" in lower or "malformed" in lower:
        return StoreCorrupt(
            f"{path} is not a readable peers database ({text}); run `peers doctor`, "
            "or move the file away to start with an empty one"
        )
    if is_busy(exc):
        return BackendUnavailable(
            f"{path} stayed locked by another process for {patience:.0f} s; "
            "something holds a long write transaction on it"
        )
    if code == w.SQLITE_CANTOPEN or "unable to open" in lower:
        return BackendUnavailable(
            f"cannot open the SQLite database {path} ({text}); check that its directory "
            "exists and is writable"
        )
    if code == w.SQLITE_READONLY or "readonly" in lower:
        return BackendUnavailable(f"the SQLite database {path} is read-only ({text})")
    if isinstance(exc, sqlite3.IntegrityError):
        return InvalidInput(f"the store refused the record: {text}")
    if "no such table" in lower or "no such column" in lower:
        return StoreCorrupt(
            f"{path} does not have the tables peers expects ({text}); run `peers doctor`"
        )
    if code in (w.SQLITE_IOERR, w.SQLITE_FULL):
        return BackendError(f"I/O error on the SQLite database {path}: {text}")
    return BackendError(f"SQLite error on {path}: {text}")
