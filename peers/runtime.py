"""Where a session's ``peers serve`` listens for its own hooks.

A hook (``peers hook``) is a short process the agent client starts at every
step; it must reach the ``peers serve`` of its own session, never another's,
without any configuration. Both are children of the same agent process
(CLIENTS.md: Claude Code, Codex and Gemini CLI start hooks and MCP servers
themselves), so the agent process is the common key: the server listens on a
Unix socket named by the agent's pid and start time, and the hook walks up its
own ancestors until it finds a socket named by one of them. Claude Code also
gives both the session id (``CLAUDE_CODE_SESSION_ID`` in the server's
environment, ``session_id`` on the hook's stdin), which names a second path to
the same socket.

The sockets live in ``/tmp/peers-<uid>/run/`` (``PEERS_RUNTIME_DIR`` overrides
it): a path that does not depend on HOME or XDG variables, which the clients
pass differently to servers and hooks, and short enough for ``sun_path``. The
directory is 0700 and must belong to this user (so must ``/tmp/peers-<uid>``):
the server binds nothing and the hook connects to nothing in one that is a
symlink, another user's or open to others. Sockets are 0600, and each side
checks the other's uid where the platform tells it.

Standard library only, and only its cheapest parts (no pathlib, hashlib or
re): the hook imports this on every tool call.
"""

from __future__ import annotations

import os
import stat
import sys
import zlib

# typing and collections.abc cost the hook milliseconds: for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "MAX_ANCESTORS",
    "agent_socket",
    "ancestor_pids",
    "ensure_runtime_dir",
    "private_dirs",
    "process_identity",
    "runtime_dir",
    "session_socket",
    "unsafe_dir",
]

# How far up a hook looks for its agent (shells and launchers sit in between).
MAX_ANCESTORS = 16
# A session id longer than this is shortened (with a checksum) to fit sun_path.
_MAX_ID = 48
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def runtime_dir() -> str:
    """The private directory of hook sockets."""
    override = os.environ.get("PEERS_RUNTIME_DIR")
    return override or os.path.join("/tmp", f"peers-{os.getuid()}", "run")


def private_dirs(path: str | None = None) -> list[str]:
    """The directories that must be this user's alone for the sockets in ``path`` to be trusted.

    The runtime directory, and in the default layout its parent ``/tmp/peers-<uid>``,
    which peers creates in a directory everyone can write to. The parent of a
    ``PEERS_RUNTIME_DIR`` is the user's choice (a home directory may well be 0755).
    """
    path = path or runtime_dir()
    if os.environ.get("PEERS_RUNTIME_DIR"):
        return [path]
    return [os.path.dirname(path), path]


def unsafe_dir(directory: str, *, open_ok: bool = False) -> str | None:
    """Why a directory cannot hold our sockets (None: it is ours alone).

    Read with ``lstat``: a symlink is refused, not followed. Another user who
    created ``/tmp/peers-<uid>`` first could otherwise listen there, receive what
    the hooks send (tool arguments) and answer the model in our name.
    """
    try:
        st = os.lstat(directory)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return "is a symlink" if stat.S_ISLNK(st.st_mode) else "is not a directory"
    if st.st_uid != os.getuid():
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o077 and not open_ok:
        return f"is open to other users (mode {st.st_mode & 0o777:o})"
    return None


def ensure_runtime_dir() -> str:
    """The runtime directory, created 0700 (with its parent); refuses one someone else controls.

    Raises PermissionError for a directory that is not ours (another user's, a
    symlink, not a directory): never chmod'ed, the hook sockets then stay unbound.
    Only our own, made wider than 0700 by hand, is narrowed again.
    """
    path = runtime_dir()
    checked = private_dirs(path)
    for directory in (os.path.dirname(path), path):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if directory not in checked:
                continue  # a PEERS_RUNTIME_DIR's parent that was there: the user's choice
        # Checked before going on: nothing is made inside a directory that is not ours.
        problem = unsafe_dir(directory, open_ok=True)
        if problem is not None:
            raise PermissionError(f"{directory} {problem}")
        if os.lstat(directory).st_mode & 0o077:
            os.chmod(directory, 0o700)  # ours, and not a symlink (lstat said so)
    return path


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after its last ')'.
    return raw[raw.rfind(b")") + 2 :].split()


def process_identity(pid: int) -> str | None:
    """A process's pid and start time as text (``PID-START``), or None when it is gone.

    Linux reads /proc (the start in clock ticks since boot); elsewhere psutil's
    creation time. The server and the hook compute it the same way, so only the
    text has to match.
    """
    if sys.platform.startswith("linux"):
        fields = _stat_fields(pid)
        if fields is None or len(fields) < 20:
            return None
        return f"{pid}-{fields[19].decode()}"
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]  # off Linux only

        return f"{pid}-{int(psutil.Process(pid).create_time() * 1000)}"
    except Exception:
        return None


def _parent(pid: int) -> int | None:
    if sys.platform.startswith("linux"):
        fields = _stat_fields(pid)
        return int(fields[1]) if fields is not None and len(fields) > 1 else None
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]

        return int(psutil.Process(pid).ppid())
    except Exception:
        return None


def ancestor_pids(pid: int | None = None, limit: int = MAX_ANCESTORS) -> Iterator[int]:
    """The parents of a process, nearest first, stopping before pid 1."""
    current = os.getpid() if pid is None else pid
    for _ in range(limit):
        parent = _parent(current)
        if parent is None or parent <= 1:
            return
        yield parent
        current = parent


def agent_socket(identity: str, directory: str | None = None) -> str:
    """The socket of the server whose agent process has this identity (``PID-START``)."""
    return os.path.join(directory or runtime_dir(), f"a-{identity}.sock")


def session_socket(session_id: str, directory: str | None = None) -> str:
    """The socket of the server of a client session with this id (Claude Code's session id)."""
    safe = "".join(ch if ch in _SAFE else "_" for ch in session_id)
    if len(safe) > _MAX_ID or safe != session_id:
        # Shortened or rewritten: a checksum of the original keeps ids apart.
        safe = f"{safe[:_MAX_ID]}-{zlib.crc32(session_id.encode()):08x}"
    return os.path.join(directory or runtime_dir(), f"s-{safe}.sock")
