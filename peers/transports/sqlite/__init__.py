"""SQLite transport: the default backend, one database file shared by every session of a user.

Supports
    Peers, mailboxes, history and events on one host, with push: a send
    commits, then pokes the recipient's Unix datagram socket (see
    :mod:`.wakeup`), so ``wait_for_mail`` wakes within
    milliseconds without polling the database. Every process opens the file
    itself: no network listener, no daemon. Namespaces share the file.
    Not for several hosts: SQLite over a network filesystem is unsafe.
    Where Unix datagram sockets are missing or refused (or with
    ``PEERS_WAKEUP=poll``), a waiting peer re-reads its mailbox every
    ``constants.WAKEUP_POLL_INTERVAL`` seconds instead.

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

Options (settings)
    ``PEERS_NAMESPACE``, ``PEERS_PEER_TTL``, ``PEERS_RETENTION``,
    ``PEERS_SAFETY_RECHECK``, ``PEERS_MAX_UNREAD`` (the mailbox cap: the oldest
    unread mail past it expires) and ``PEERS_WAKEUP`` (``auto`` or ``poll``).

Modules
    :mod:`.url` (the URL), :mod:`.schema` (tables, migrations, rows),
    :mod:`.worker` (the thread that owns the connection), :mod:`.store`
    (transactions, errors, lifecycle), :mod:`.registry` (peers, names,
    reaping), :mod:`.mailbox` (send, fetch, ack, history), :mod:`.claims`
    (file claims), :mod:`.events`,
    :mod:`.gc` (upkeep and leases), :mod:`.wakeup` (doorbells) and
    :mod:`.checks` (doctor).

Design
    sqlite3 is synchronous, so every statement runs on one worker thread per
    transport with one connection: calls are serialised and the event loop
    never blocks on the disk. Writes are ``BEGIN IMMEDIATE`` transactions,
    retried with jittered backoff on SQLITE_BUSY, so "database is locked"
    never reaches a caller. One send is one transaction; writes that queue up
    behind each other (several tasks sending at once) share one, each in its
    own savepoint. The order of a mailbox is the commit order (an
    AUTOINCREMENT sequence column). Acked mail stays (``acked_at``) for
    history until ``gc`` removes it after the retention window, a page per
    transaction.
"""

from __future__ import annotations

from peers.models import Check
from peers.transports.sqlite.checks import connection_checks, file_checks
from peers.transports.sqlite.events import EventsMixin
from peers.transports.sqlite.gc import GcMixin
from peers.transports.sqlite.mailbox import MailboxMixin
from peers.transports.sqlite.schema import MIGRATIONS
from peers.transports.sqlite.url import parse_sqlite_url

__all__ = ["MIGRATIONS", "SQLiteTransport", "parse_sqlite_url"]


class SQLiteTransport(GcMixin, MailboxMixin, EventsMixin):
    """Peers and mailboxes in one SQLite file, with Unix-socket doorbells for push."""

    async def diagnostics(self) -> list[Check]:
        """Backend-specific health checks for `peers doctor`: file modes, WAL, schema, integrity, doorbells."""
        # Path, filesystem and write-lock probes from outside the connection, then
        # what the open connection sees.
        outside = await file_checks(self.path)
        wake_dir = self._wake.path
        inside = await self._read(lambda conn: connection_checks(conn, self.path, wake_dir))
        return [*outside, *inside]
