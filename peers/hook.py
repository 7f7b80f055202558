"""``peers hook EVENT [--client NAME]``: the hook command the agent clients run at every step.

It is a relay, and a fast one: it reads the hook's JSON from stdin, finds
the ``peers serve`` of its own session (see :mod:`peers.runtime`), hands it
the event over that server's private socket, and writes back exactly what the
server answers (stdout, stderr, exit code). The server holds the store
connection and knows what the model has been shown, so what a hook prints is
decided in one place, once per message, whatever the backend.

It never gets in the agent's way: no server, a slow server, garbage on stdin,
an unknown event, anything unexpected all end in exit 0 with nothing printed,
within :data:`DEADLINE` seconds. Messages it shows are acknowledged only after
its output has been written (it tells the server so), so a hook killed in
between loses nothing: the mail comes again.

It hands its input only to its own user's server: not through a runtime
directory that is a symlink, another user's or open to others
(:func:`peers.runtime.unsafe_dir`), nor to a listener of another uid (the
kernel's SO_PEERCRED, where there is one). And not whole: tool output and the
prompt stay here, and a tool input's long strings (a Write's file) are cut to
what the server reads of them (:func:`_shrink`).

Standard library only, and its cheapest parts (a test fails when a heavy
module shows up): Python starts in ~10-17 ms here, ``import json, socket``
costs another ~10 ms (enum, re, selectors), their C halves ``_json`` and
``_socket`` about 1 ms, and this runs on every tool call.
"""

from __future__ import annotations

import os
import sys
import time

from peers import runtime

# typing costs the hook milliseconds (it imports re, collections): for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:  # CPython's C accelerators: the same parser and encoder as json's, without json's imports
    import _json
    import _socket as _sock
except ImportError:  # pragma: no cover - other Pythons
    import json as _pyjson
    import socket as _sock  # type: ignore[no-redef]

    _json = None  # type: ignore[assignment]

__all__ = ["DEADLINE", "PROTOCOL", "main"]

# From start to giving up, whatever happens (the issue: exit within 1 s; a loaded
# machine adds its own delay to start and end the process).
DEADLINE = 0.75
# At SessionStart, a socket not there yet is looked for again this often, until this long
# before the deadline (what the exchange with the server needs).
_SOCKET_RETRY = 0.02
_EXCHANGE_RESERVE = 0.35
PROTOCOL = 1
# A hook's stdin can carry a whole file (a Write's content, a tool's output).
_MAX_INPUT = 32 * 1024 * 1024
# Fields the server never reads: tool output, a pasted prompt can be megabytes.
_DROPPED = ("tool_response", "last_assistant_message", "prompt")
# A string of the tool input longer than this is cut to what the server reads of it
# (see _shrink): a Write's whole file, an Edit's old and new text.
_MAX_STRING = 4096
# What the server reads in any string of a tool input: the lines of an apply_patch
# patch that name files (peers.hookevents.edited_paths), and its paths by key.
_PATCH_MARKERS = ("*** Add File: ", "*** Update File: ", "*** Delete File: ", "*** Move to: ")
_PATH_KEYS = ("file_path", "notebook_path", "path", "filePath", "absolute_path")
_CLIENTS = ("claude", "codex", "gemini")


class _Context:
    """What _json's scanner reads from a json.JSONDecoder."""

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = {
            "NaN": float("nan"),
            "Infinity": float("inf"),
            "-Infinity": float("-inf"),
        }.__getitem__
        self.memo: dict[str, Any] = {}


def _loads(text: str) -> Any:
    if _json is None:  # pragma: no cover
        return _pyjson.loads(text)
    text = text.strip()
    # typeshed types the context as a scanner; it is any object with a decoder's attributes.
    value, end = _json.make_scanner(_Context())(text, 0)  # type: ignore[arg-type]
    if end != len(text):
        raise ValueError(f"extra data at {end}")
    return value


def _dumps(value: Any) -> str:
    if _json is None:  # pragma: no cover
        return _pyjson.dumps(value, separators=(",", ":"))
    # json.JSONEncoder's arguments: markers, default, encoder, indent, separators,
    # sort_keys, skipkeys, allow_nan (default=None: anything unserialisable raises).
    encode = _json.make_encoder(
        None, None, _json.encode_basestring_ascii, None, ":", ",", False, False, True  # type: ignore[arg-type]
    )
    return "".join(encode(value, 0))


def _debug(text: str) -> None:
    if os.environ.get("PEERS_LOG_LEVEL", "").lower() == "debug":
        try:  # noqa: SIM105 - contextlib would cost the hook an import
            sys.stderr.write(f"peers hook: {text}\n")
        except (OSError, ValueError):
            pass


def _parse_args(argv: list[str]) -> tuple[str, str | None] | None:
    event: str | None = None
    client: str | None = None
    args = iter(argv)
    for arg in args:
        if arg == "--client":
            client = next(args, None)
        elif arg.startswith("--client="):
            client = arg.split("=", 1)[1]
        elif event is None and not arg.startswith("-"):
            event = arg
    if client is not None and client not in _CLIENTS:
        client = None
    return None if event is None else (event, client)


def _read_input() -> dict[str, Any] | None:
    try:
        raw = sys.stdin.buffer.read(_MAX_INPUT + 1)
    except (OSError, ValueError):
        return None
    if len(raw) > _MAX_INPUT:
        return None
    try:
        data = _loads(raw.decode("utf-8") if raw.strip() else "{}")
    except Exception:  # _json's scanner reports some errors oddly (SystemError)
        return None
    return data if isinstance(data, dict) else None


def _shrink(value: Any) -> Any:
    """A tool input with its long strings cut to their patch lines that name files.

    The server reads a tool input only for the files an edit touches: path fields,
    and the marker lines of apply_patch text anywhere in it; it finds the same in
    the result. The content of a Write or an Edit (megabytes, maybe) stays here.
    """
    if isinstance(value, str):
        if len(value) <= _MAX_STRING:
            return value
        if not any(m in value for m in _PATCH_MARKERS):
            return ""
        return "\n".join(line for line in value.splitlines() if line.startswith(_PATCH_MARKERS))
    if isinstance(value, list):
        return [_shrink(item) for item in value]
    if isinstance(value, dict):
        return {
            key: item if key in _PATH_KEYS and isinstance(item, str) else _shrink(item)
            for key, item in value.items()
        }
    return value


def _unsafe_runtime_dir() -> str | None:
    """Why the sockets' directory is not to be trusted (None: it is ours alone)."""
    for directory in runtime.private_dirs():
        problem = runtime.unsafe_dir(directory)
        if problem is not None:
            return f"{directory} {problem}"
    return None


def _candidates(data: dict[str, Any]) -> list[str]:
    """Socket paths that may belong to this hook's session, most specific first."""
    directory = runtime.runtime_dir()
    paths: list[str] = []
    session_id = data.get("session_id")
    if isinstance(session_id, str) and session_id:
        paths.append(str(runtime.session_socket(session_id, directory)))
    for pid in runtime.ancestor_pids():
        identity = runtime.process_identity(pid)
        if identity is not None:
            paths.append(str(runtime.agent_socket(identity, directory)))
    return paths


def _open(data: dict[str, Any], deadline: float) -> Any:
    """A connection to this hook's session server, if it is there and ours."""
    problem = _unsafe_runtime_dir()
    if problem is not None:
        _debug(f"not connecting: {problem}")
        return None
    return _connect(_candidates(data), deadline)


def _connect(paths: list[str], deadline: float) -> Any:
    for path in paths:
        if not os.path.exists(path):
            continue
        sock = _sock.socket(_sock.AF_UNIX, _sock.SOCK_STREAM)
        try:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.connect(path)
            uid = _peer_uid(sock)
            if uid is None or uid == os.getuid():
                return sock
            _debug(f"{path} is served by another user (uid {uid}); not used")
        except OSError as exc:
            _debug(f"cannot connect to {path}: {exc}")
        sock.close()
    return None


def _peer_uid(sock: Any) -> int | None:
    """The uid of the process listening at the other end (Linux SO_PEERCRED), None where unknown."""
    option = getattr(_sock, "SO_PEERCRED", None)
    if option is None:
        return None
    # struct ucred: pid, uid, gid as native ints (struct would cost an import).
    raw = sock.getsockopt(_sock.SOL_SOCKET, option, 12)
    return int.from_bytes(raw[4:8], sys.byteorder)


def _read_line(sock: Any, deadline: float) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            return None
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)


def _write(stream: Any, text: str) -> bool:
    if not text:
        return True
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        return False
    return True


def run(argv: list[str]) -> int:
    """Relay one hook event to this session's server; the exit code the client should see."""
    deadline = time.monotonic() + DEADLINE
    parsed = _parse_args(argv)
    if parsed is None:
        _debug("usage: peers hook EVENT [--client claude|codex|gemini]")
        return 0
    event, client = parsed
    data = _read_input()
    if data is None:
        _debug("stdin is not one JSON object")
        return 0
    for key in _DROPPED:
        data.pop(key, None)
    if "tool_input" in data:
        data["tool_input"] = _shrink(data["tool_input"])
    sock = _open(data, deadline)
    if sock is None and event == "SessionStart":
        # The client starts its MCP servers and this hook together: the server's socket
        # may come a moment later, and the brief is worth that moment (once a session).
        settle = deadline - _EXCHANGE_RESERVE
        while sock is None and time.monotonic() < settle:
            time.sleep(_SOCKET_RETRY)
            sock = _open(data, deadline)
    if sock is None:
        _debug("no peers serve for this session")
        return 0
    try:
        return _exchange(sock, event, client, data, deadline)
    finally:
        sock.close()


def _exchange(
    sock: Any, event: str, client: str | None, data: dict[str, Any], deadline: float
) -> int:
    request = {"v": PROTOCOL, "event": event, "client": client, "input": data}
    try:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        sock.sendall(_dumps(request).encode() + b"\n")
        line = _read_line(sock, deadline)
    except OSError as exc:
        _debug(f"the server did not answer: {exc}")
        return 0
    if line is None:
        _debug("the server did not answer in time")
        return 0
    try:
        reply = _loads(line.decode("utf-8"))
        stdout, stderr = str(reply.get("stdout") or ""), str(reply.get("stderr") or "")
        code = int(reply.get("exit") or 0)
        token = reply.get("token")
    except Exception:
        _debug("the server's answer is not understood")
        return 0
    if code not in (0, 2):
        code = 0
    written = _write(sys.stdout, stdout) and _write(sys.stderr, stderr)
    if written and isinstance(token, str) and token:
        # Only now is the output the client's: the server may mark its messages shown.
        try:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            sock.sendall(_dumps({"done": token}).encode() + b"\n")
        except OSError:
            pass
    return code if written else 0


def main(argv: list[str] | None = None) -> int:
    """The ``peers hook`` command: never raises, never blocks the agent."""
    try:
        return run(sys.argv[2:] if argv is None else argv)
    except BaseException as exc:  # a hook must never break the agent
        _debug(f"unexpected {type(exc).__name__}: {exc}")
        return 0
