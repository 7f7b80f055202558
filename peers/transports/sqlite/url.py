"""The SQLite URL: ``sqlite:///abs/path/peers.db?option=value``.

An absolute path after three slashes (``sqlite:////abs/...`` means the same, and
``sqlite:///~/...`` is under the home directory). Options: ``busy_timeout_ms``
(how long SQLite waits for the write lock before the transport's own retry loop
takes over) and ``synchronous`` (``normal`` or ``full``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from peers.errors import ConfigError

__all__ = ["OPTIONS", "parse_sqlite_url"]

OPTIONS = ("busy_timeout_ms", "synchronous")


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
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"PEERS_URL {url!r}: unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}"
        )
    if "busy_timeout_ms" in options and not options["busy_timeout_ms"].isdigit():
        raise ConfigError(f"PEERS_URL {url!r}: busy_timeout_ms must be a whole number")
    if options.get("synchronous", "normal").lower() not in ("normal", "full"):
        raise ConfigError(f"PEERS_URL {url!r}: synchronous must be normal or full")
    return path, options
