"""The private socket on which a session's ``peers serve`` answers its own hooks.

Each ``peers hook`` process connects (see :mod:`peers.runtime` for how it finds
the socket), sends one line of JSON (``{"v", "event", "client", "input"}``),
and gets one line back: ``{"stdout", "stderr", "exit", "token"}``. When the
reply carries a token, the hook sends ``{"done": token}`` once it has written
that output for the client; only then does the server treat what it showed as
delivered (``HookReply.on_written``). A hook that dies, times out or closes
without it leaves the mail pending (``HookReply.on_abandoned``), to be shown
again.

Only this user can connect: the directory is 0700, the socket 0600, and the
peer credentials of each connection are checked where the platform has them.
A slow or broken handler costs the hook nothing but its own deadline: the
reply is then empty (exit 0), as if the server were not there.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from peers.log import get_logger
from peers.runtime import ensure_runtime_dir

__all__ = ["HookHandler", "HookListener", "HookReply", "HookRequest", "remove_sockets"]

log = get_logger("peers.hooks")

# The hook gives up 0.75 s after it started (peers.hook.DEADLINE), some of it
# spent starting Python and connecting: answer well within that.
HANDLER_TIMEOUT = 0.65
# How long a connection may take to send its request, and its "done".
READ_TIMEOUT = 1.0
MAX_REQUEST = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class HookRequest:
    """One hook event as the client sent it."""

    # The event as named on the hook's command line (the client's own name for it).
    event: str
    # The client named by ``--client`` (claude, codex, gemini), if any.
    client: str | None
    # The hook's stdin JSON (large fields such as tool_response left out, the long
    # strings of tool_input cut to the patch lines that name files: peers.hook._shrink).
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HookReply:
    """What the hook should print, and what to do once it has (or has not)."""

    stdout: str = ""
    stderr: str = ""
    exit: int = 0
    on_written: Callable[[], Awaitable[None]] | None = None
    on_abandoned: Callable[[], Awaitable[None]] | None = None


HookHandler = Callable[[HookRequest], Awaitable[HookReply]]

_NOTHING = HookReply()


def _peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (Linux SO_PEERCRED), None where unknown."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    _, uid, _ = struct.unpack("3i", raw)
    return int(uid)


def _parse(line: bytes) -> HookRequest | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("v") != 1:
        return None
    event, client, data = doc.get("event"), doc.get("client"), doc.get("input")
    if not isinstance(event, str) or not isinstance(data, dict):
        return None
    return HookRequest(event, client if isinstance(client, str) else None, data)


class _Lines:
    """Newline-delimited reads from a stream, bounded in size."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        # Where the search for a newline goes on: each byte is looked at once.
        self._searched = 0

    async def line(self) -> bytes | None:
        while (end := self._buffer.find(b"\n", self._searched)) < 0:
            self._searched = len(self._buffer)
            if len(self._buffer) > MAX_REQUEST:
                return None
            try:
                chunk = await self._stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._searched = 0
        return line


# The listeners serving in this process: ``peers serve`` ends with os._exit, which
# runs no finally clause, so it removes their sockets through remove_sockets first.
_serving: set[HookListener] = set()


def remove_sockets() -> None:
    """Unlink the sockets of every listener of this process (before an ``os._exit``)."""
    for listener in list(_serving):
        listener.remove()


class HookListener:
    """Serves hook connections on one or more socket paths until cancelled."""

    def __init__(self, paths: Sequence[str], handler: HookHandler) -> None:
        self.paths = list(dict.fromkeys(paths))
        self.handler = handler
        self._bound: dict[str, int] = {}  # path -> inode, to remove only our own

    async def serve(self, *, task_status: anyio.abc.TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind every path that is free, report which, and serve until cancelled."""
        listeners: list[anyio.abc.SocketListener] = []
        _serving.add(self)
        try:
            try:
                ensure_runtime_dir()
            except OSError as exc:
                # Another user's directory, or a symlink: a socket there is not private.
                log.warning("no hook socket: the runtime directory is unusable", error=str(exc))
            else:
                for path in self.paths:
                    listener = await self._bind(path)
                    if listener is not None:
                        listeners.append(listener)
            task_status.started(list(self._bound))
            if not listeners:
                await anyio.sleep_forever()
            async with anyio.create_task_group() as tg:
                for listener in listeners:
                    tg.start_soon(listener.serve, self._connection)
        finally:
            _serving.discard(self)
            self.remove()
            with anyio.CancelScope(shield=True):
                for listener in listeners:
                    with contextlib.suppress(Exception):
                        await listener.aclose()

    async def _bind(self, path: str) -> anyio.abc.SocketListener | None:
        if os.path.lexists(path):  # noqa: ASYNC240 - one stat of a local socket file
            if await self._answers(path):
                log.warning("another peers serve holds this hook socket; hooks go there", path=path)
                return None
            with contextlib.suppress(OSError):
                os.unlink(path)  # left behind by a server that died
        old_umask = os.umask(0o177)
        try:
            listener = await anyio.create_unix_listener(path)
        except OSError as exc:
            log.warning("cannot listen for hooks", path=path, error=str(exc))
            return None
        finally:
            os.umask(old_umask)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
            self._bound[path] = os.stat(path).st_ino
        return listener

    @staticmethod
    async def _answers(path: str) -> bool:
        try:
            with anyio.fail_after(0.5):
                stream = await anyio.connect_unix(path)
        except (OSError, TimeoutError):
            return False
        await stream.aclose()
        return True

    def remove(self) -> None:
        """Unlink the sockets this listener bound (not a successor's that took the path)."""
        bound, self._bound = self._bound, {}
        for path, inode in bound.items():
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:
                    os.unlink(path)

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            uid = _peer_uid(raw)
            if uid is not None and uid != os.getuid():
                log.warning("hook connection from another user refused", uid=uid)
                return
            lines = _Lines(stream)
            with anyio.move_on_after(READ_TIMEOUT):
                line = await lines.line()
            request = _parse(line) if line else None
            if request is None:
                return
            reply = _NOTHING
            try:
                with anyio.fail_after(HANDLER_TIMEOUT):
                    reply = await self.handler(request)
            except TimeoutError:
                log.debug("hook handler too slow; the hook prints nothing", hook_event=request.event)
            except Exception:
                log.exception("hook handler failed; the hook prints nothing", hook_event=request.event)
            await self._answer(stream, lines, reply)

    async def _answer(self, stream: anyio.abc.SocketStream, lines: _Lines, reply: HookReply) -> None:
        token = os.urandom(8).hex() if reply.on_written is not None else None
        doc = {"stdout": reply.stdout, "stderr": reply.stderr, "exit": reply.exit, "token": token}
        written = False
        try:
            await stream.send(json.dumps(doc, ensure_ascii=False).encode() + b"\n")
            if token is not None:
                with anyio.move_on_after(READ_TIMEOUT):
                    done = await lines.line()
                    with contextlib.suppress(ValueError):
                        answer = json.loads(done) if done else None
                        written = isinstance(answer, dict) and answer.get("done") == token
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            written = False
        finally:
            callback = reply.on_written if written else reply.on_abandoned
            if callback is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await callback()
                    except Exception:
                        log.exception("hook delivery callback failed")
