"""The handshake front of ``peers serve``: ``initialize`` answered while the MCP SDK loads.

Importing the SDK takes most of a second here (``mcp_types`` builds the pydantic
models of two protocol eras) and Codex does not wait for a server that slow
(CLIENTS.md). So ``peers serve`` starts in this module, on the standard library
only: while the main thread imports the SDK and :mod:`peers.serve`, a thread reads
the first lines of stdin and answers what the SDK would answer to them:
``server/discover`` refused with -32601, and a well-formed ``initialize`` with the
SDK's protocol-version negotiation and the capabilities, ``serverInfo`` and
instructions of the server :mod:`peers.serve` builds.

Then the session is the SDK's. Every byte read here goes in front of its stdin
reader, the answered requests included: the SDK handles ``initialize`` itself, so
its session state is exactly what it would be without the front, and its own
answers to what was answered here are compared with ours and dropped. Whatever
the client sends after ``initialize`` waits in the pipe until the SDK reads it, in
order. The front stops at the first line it does not fully understand (a ping, an
``initialize`` with fields it does not check): the SDK answers that and
everything after, later but just as it always would.

It runs only when stdin and stdout are two pipes (every MCP client), where the
bytes read here can be handed to the event-loop reader of :mod:`peers.stdio`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType, ModuleType
from typing import Any

from peers import __version__, leanimport
from peers.constants import SERVER_NAME
from peers.tools import INSTRUCTIONS

__all__ = [
    "CAPABILITIES",
    "HANDSHAKE_PROTOCOL_VERSIONS",
    "Handover",
    "answer",
    "defer_model_builds",
    "handshake",
    "initialize_result",
    "load_sdk",
    "negotiate",
    "run",
    "two_pipes",
]

# The SDK's handshake table (mcp_types.version), checked against it by a test.
HANDSHAKE_PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_HANDSHAKE_VERSION = HANDSHAKE_PROTOCOL_VERSIONS[-1]

# What peers.serve's Server declares: tools, and the channel Claude Code pushes through.
CAPABILITIES: dict[str, Any] = {
    "experimental": {"claude/channel": {}},
    "tools": {"listChanged": False},
}

METHOD_NOT_FOUND = -32601
_READ_SIZE = 64 * 1024
# A first line longer than this is not a handshake: hand it to the SDK unread further.
_MAX_HANDSHAKE_LINE = 1024 * 1024
# JSON-RPC ids the SDK's parser takes as they are (a float id makes it a notification).
_MAX_ID = 2**53

_CLIENT_INFO_TEXT = ("title", "description", "websiteUrl")
_CAPABILITY_OBJECTS = ("sampling", "elicitation")


def negotiate(requested: str) -> str:
    """The revision the SDK answers a client's ``protocolVersion`` with."""
    return requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION


def initialize_result(requested: str) -> dict[str, Any]:
    return {
        "protocolVersion": negotiate(requested),
        "capabilities": CAPABILITIES,
        "serverInfo": {"name": SERVER_NAME, "version": __version__},
        "instructions": INSTRUCTIONS,
    }


def _is_object_of_objects(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, dict) for k, v in value.items()
    )


def _plain_initialize(params: object) -> str | None:
    """The requested revision of an ``initialize`` whose every checked field is valid, else None.

    Deliberately narrower than the SDK's models: what is not checked here is
    declined, and the SDK answers it. A test holds this to the SDK's verdicts.
    """
    if not isinstance(params, dict) or params.get("_meta") not in (None, {}):
        return None
    version, info, caps = (params.get(k) for k in ("protocolVersion", "clientInfo", "capabilities"))
    if not isinstance(version, str) or not isinstance(info, dict) or not isinstance(caps, dict):
        return None
    if not isinstance(info.get("name"), str) or not isinstance(info.get("version"), str):
        return None
    if "icons" in info or any(not isinstance(info.get(k, ""), str) for k in _CLIENT_INFO_TEXT):
        return None
    if "tasks" in caps or not _is_object_of_objects(caps.get("experimental", {})):
        return None
    if any(not _is_object_of_objects(caps.get(k, {})) for k in _CAPABILITY_OBJECTS):
        return None
    roots = caps.get("roots", {})
    if not isinstance(roots, dict) or set(roots) - {"listChanged"}:
        return None
    if not isinstance(roots.get("listChanged", False), bool):
        return None
    return version


def _request(line: bytes) -> dict[str, Any] | None:
    """A JSON-RPC request the SDK's parser would read as one, with a usable id."""
    try:
        message = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
        return None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return None
    ident = message.get("id")
    if type(ident) is int:
        if abs(ident) > _MAX_ID:
            return None
    elif type(ident) is not str:
        return None
    if not isinstance(message.get("method"), str):
        return None
    if "params" in message and not isinstance(message["params"], dict):
        return None
    return message


def answer(line: bytes) -> dict[str, Any] | None:
    """The front's response to one stdin line, or None when the SDK must answer it."""
    message = _request(line)
    if message is None:
        return None
    if message["method"] == "server/discover":
        # peers.serve refuses it so that Claude Code falls back to initialize.
        error = {"code": METHOD_NOT_FOUND, "message": "Method not found", "data": "server/discover"}
        return {"jsonrpc": "2.0", "id": message["id"], "error": error}
    if message["method"] == "initialize":
        requested = _plain_initialize(message.get("params"))
        if requested is not None:
            return {"jsonrpc": "2.0", "id": message["id"], "result": initialize_result(requested)}
    return None


@dataclass(frozen=True, slots=True)
class Handover:
    """What the front did: every byte it read (the SDK reads them first) and what it answered."""

    consumed: bytes = b""
    answered: tuple[dict[str, Any], ...] = ()

    @property
    def initialized(self) -> bool:
        return any("result" in response for response in self.answered)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def handshake(read_fd: int = 0, write_fd: int = 1) -> Handover:
    """Answer the handshake from ``read_fd`` on ``write_fd``, up to ``initialize`` or the first
    line the SDK must answer (or EOF, or a write the client does not take)."""
    consumed = bytearray()
    answered: list[dict[str, Any]] = []
    start = 0  # where the next unexamined line begins in ``consumed``
    while True:
        end = consumed.find(b"\n", start)
        if end < 0:
            if len(consumed) - start > _MAX_HANDSHAKE_LINE:
                break
            chunk = os.read(read_fd, _READ_SIZE)
            if not chunk:
                break
            consumed += chunk
            continue
        line = bytes(consumed[start:end]).strip()
        start = end + 1
        if not line:
            continue  # the SDK skips blank lines too
        response = answer(line)
        if response is None:
            break
        try:
            _write_all(write_fd, json.dumps(response).encode() + b"\n")
        except OSError:
            break  # the client is gone; the SDK finds that out by itself
        answered.append(response)
        if "result" in response:
            break
    return Handover(bytes(consumed), tuple(answered))


def two_pipes(read_fd: int = 0, write_fd: int = 1) -> bool:
    """True when the two descriptors are two different pipes (how MCP clients start servers)."""
    try:
        read_st, write_st = os.fstat(read_fd), os.fstat(write_fd)
    except OSError:
        return False
    return (
        stat.S_ISFIFO(read_st.st_mode)
        and stat.S_ISFIFO(write_st.st_mode)
        and (read_st.st_dev, read_st.st_ino) != (write_st.st_dev, write_st.st_ino)
    )


# -- loading the SDK -------------------------------------------------------------

# The SDK packages whose __init__ a session does not need: ``mcp`` loads the whole
# client runtime, ``mcp.server`` the high-level MCPServer (about 12 MB and a third
# of a second together). peers serve imports the server modules it uses by their
# own paths, which never read those packages' attributes.
_SKIPPED_INITS = ("mcp", "mcp.server")
_NOT_NEEDED = ("rich", "uvicorn")


# Modules that mcp.server.lowlevel.server imports for Server.streamable_http_app only
# (Starlette, OAuth, the HTTP session manager: with what they pull in, about 60
# modules and 3.3 MB of a stdio session). While it loads they are placeholders
# whose names resolve on first use, then they leave sys.modules, so that any later
# import of them is the real one.
_HTTP_ONLY = (
    "starlette.applications",
    "starlette.middleware",
    "starlette.middleware.authentication",
    "starlette.routing",
    "mcp.server.auth.middleware.auth_context",
    "mcp.server.auth.middleware.bearer_auth",
    "mcp.server.auth.provider",
    "mcp.server.auth.routes",
    "mcp.server.auth.settings",
    "mcp.server.streamable_http",
    "mcp.server.streamable_http_manager",
    "mcp.server.transport_security",
)
# Likewise the installed packages' metadata, which pydantic imports two names of as it
# loads: ``version`` (networks.py, asked only when an email field is validated) and
# ``entry_points`` (its plugin loader, which peers serve turns off: see
# PLUGINS_OFF). Not loading importlib.metadata leaves out email, zipfile, csv and
# the rest it takes, about 1 MB of a session.
_METADATA = ("importlib.metadata",)
# pydantic scans every installed package for plugins as it builds its first model,
# through importlib.metadata; an MCP server over stdio has no use for them. Unless set.
PLUGINS_OFF = ("PYDANTIC_DISABLE_PLUGINS", "__all__")


class _Deferred:
    """A name imported from a placeholder: the real object, imported when first used."""

    def __init__(self, module: str, name: str) -> None:
        self._where = (module, name)

    def _real(self) -> Any:
        module, name = self._where
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._real()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._real(), name)

    def __repr__(self) -> str:
        return f"<deferred {'.'.join(self._where)}>"


def _placeholder(name: str) -> ModuleType:
    module = ModuleType(name)

    def attribute(attr: str) -> _Deferred:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Deferred(name, attr)

    module.__getattr__ = attribute  # type: ignore[method-assign]
    return module


@contextlib.contextmanager
def _placeholders_while_loading() -> Iterator[None]:
    """The HTTP-only and metadata modules as placeholders while the SDK loads, real ones
    after."""
    with leanimport.standing_in({name: _placeholder(name) for name in (*_HTTP_ONLY, *_METADATA)}):
        yield


def defer_model_builds() -> bool:
    """Have pydantic build each model's validator on first use, not as its class is made.

    ``mcp_types`` defines every model of two protocol eras and a session uses a few
    dozen: building the rest cost each session memory for nothing (serve_bench's RSS
    idle). This is pydantic's own ``defer_build`` setting, made the default for models
    that do not set it (its defaults table is private, hence the checks). Only where
    pydantic rebuilds a deferred model under a lock (2.14 does): the SQLite worker
    thread builds messages too. False where not.
    """
    try:
        import pydantic.main
        from pydantic._internal import _config
    except ImportError:
        return False
    defaults: Any = getattr(_config, "config_defaults", None)
    if not hasattr(pydantic.main, "_rebuild_lock") or not isinstance(defaults, dict):
        return False
    if defaults.get("defer_build") is not False:
        return False  # not the table this was written for
    defaults["defer_build"] = True
    return True


def load_sdk() -> ModuleType:
    """Import :mod:`peers.serve` with the SDK's server half only (the whole SDK if that fails)."""
    os.environ.setdefault(*PLUGINS_OFF)
    defer_model_builds()
    # Optional imports of libraries on this path that nothing here needs: structlog
    # takes rich, when installed, for pretty tracebacks; sse_starlette (the SDK's HTTP
    # transports) takes uvicorn, to patch its shutdown. Blocked, each is 2-3 MB less.
    for optional in _NOT_NEEDED:
        sys.modules.setdefault(optional, None)  # type: ignore[arg-type]
    # An SDK release whose server modules need those packages, or use an HTTP name
    # as they load, is imported again, whole.
    return leanimport.import_without_inits("peers.serve", _SKIPPED_INITS, _placeholders_while_loading)


class _Stop(BaseException):
    """SIGTERM while the server's own handling is not on: before it starts (nothing is
    registered yet), or a second signal while it ends (end now)."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run() -> None:
    """``peers serve``: answer the handshake, load the SDK meanwhile, then serve."""
    leanimport.enable()  # nothing in this process needs redis-py's package inits
    if not two_pipes():
        load_sdk().run_serve(None)
        return
    handed: list[Handover] = []
    failed: list[BaseException] = []

    def answer_handshake() -> None:
        try:
            handed.append(handshake())
        except BaseException as exc:  # re-raised in the main thread
            failed.append(exc)

    signal.signal(signal.SIGTERM, _stop)
    try:
        # The handshake in a thread, the SDK in the main one: what the import allocates
        # then lives in the main thread's malloc arena, not in a second one (under 1 MB).
        front = threading.Thread(target=answer_handshake, name="peers-front", daemon=True)
        front.start()
        serve = load_sdk()
        front.join()
        if failed:
            raise failed[0]
        serve.run_serve(handed[0])
    except (_Stop, KeyboardInterrupt):
        # os._exit runs no finally clause: the hook sockets, if bound by now, go first.
        hookserver = sys.modules.get("peers.hookserver")
        if hookserver is not None:
            hookserver.remove_sockets()
        sys.stderr.flush()
        os._exit(0)
