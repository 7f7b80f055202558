"""Taps on the wire of ``peers serve``: when a response really went out, or never will.

Mail carried by a tool result is acknowledged only once the client has it: when
the write of the JSON-RPC response that carries it to stdout completed, never
when the result was merely built. On pipes (every MCP client) the event-loop
writer of :mod:`peers.stdio` reports each response's id once the pipe took it
(``Wire.on_written``), and a client that died first makes the write fail:
nothing is reported. Two taps beside the
SDK report the rest:

- :class:`TrackedWriter` wraps the SDK's outgoing message stream: it reports a
  response that could not be handed on, counts channel notifications, and, where
  no stdout tap exists (stdio not on two pipes: a file or a terminal, never an
  MCP client), reports the response as written once the SDK's writer took it.
- :class:`CancelTap` wraps the incoming message stream: it reports each
  ``notifications/cancelled`` once the dispatcher has handled it. The client
  ignores the result of a call it cancelled, written or not, so the mail that
  result carried is given back (:meth:`peers.server.PeersServer.request_cancelled`).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
import mcp_types as types
from mcp.shared.dispatcher import as_request_id
from mcp.shared.message import SessionMessage

from peers.constants import CHANNEL_METHOD

__all__ = [
    "CancelTap",
    "StreamWrapper",
    "TrackedWriter",
    "cancelled_id",
    "is_push",
    "receive_eagerly",
    "response_id",
    "send_eagerly",
]

RequestId = str | int
Report = Callable[[RequestId], None]


# anyio's memory streams give the loop a turn on every send and receive, even when the
# item can pass at once: several turns per message on the wire of a busy session. These
# pass it at once when they can, and wait as send() and receive() do when not. Streams
# without the nowait methods (the SDK's own stdio streams wrap theirs) are awaited.
async def send_eagerly(stream: Any, item: Any) -> None:
    """``await stream.send(item)``, without a turn of the loop when there is room."""
    nowait = getattr(stream, "send_nowait", None)
    if nowait is not None:
        try:
            nowait(item)
        except anyio.WouldBlock:
            pass
        else:
            return
    await stream.send(item)


async def receive_eagerly(stream: Any) -> Any:
    """``await stream.receive()``, without a turn of the loop when an item waits."""
    nowait = getattr(stream, "receive_nowait", None)
    if nowait is not None:
        try:
            return nowait()
        except anyio.WouldBlock:
            pass
    return await stream.receive()


def cancelled_id(message: types.JSONRPCMessage) -> RequestId | None:
    """The id of the request a ``notifications/cancelled`` cancels, else None."""
    if isinstance(message, types.JSONRPCNotification) and message.method == "notifications/cancelled":
        return as_request_id((message.params or {}).get("requestId"))
    return None


def is_push(message: types.JSONRPCMessage) -> bool:
    """Whether a message is a channel push (Claude Code's channel notification)."""
    return isinstance(message, types.JSONRPCNotification) and message.method == CHANNEL_METHOD


def response_id(message: types.JSONRPCMessage) -> RequestId | None:
    """The id of a JSON-RPC response (or error), else None."""
    if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
        return as_request_id(message.id)
    return None


class MessageStream(Protocol):
    """The send half of the SDK's outgoing memory stream."""

    async def send(self, item: SessionMessage, /) -> None: ...
    async def aclose(self) -> None: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None: ...


class StreamWrapper:
    """A wrapped SDK memory stream: closing and the context manager go to the stream inside."""

    inner: Any

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        result: bool | None = await self.inner.__aexit__(exc_type, exc_val, exc_tb)
        return result


class TrackedWriter(StreamWrapper):
    """The SDK's outgoing stream: reports responses handed on and counts channel pushes.

    ``Connection.notify`` never raises: on a closed stream it drops the message,
    so a push is known to be handed on only when ``channel_sent`` went up.
    """

    def __init__(
        self,
        inner: MessageStream,
        *,
        failed: Report | None = None,
        written: Report | None = None,
    ) -> None:
        self.inner = inner
        self.channel_sent = 0
        self._failed = failed
        # Only where the stdio writer does not report the real write (no pipes).
        self._written = written

    async def send(self, item: SessionMessage, /) -> None:
        msg = item.message
        rid = msg.id if isinstance(msg, types.JSONRPCResponse | types.JSONRPCError) else None
        try:
            await self.inner.send(item)
        except BaseException:
            # Closed, or cancelled while the stream was full: it never goes out.
            if rid is not None and self._failed is not None:
                self._failed(rid)
            raise
        if rid is not None and self._written is not None:
            self._written(rid)
        if is_push(msg):
            self.channel_sent += 1



class CancelTap(StreamWrapper):
    """The SDK's incoming stream, reporting each cancelled request once it was handled.

    The dispatcher handles a notification synchronously before it asks for the
    next item, so the report comes at the start of that next ask: by then the
    request either started writing its response or never will.
    """

    def __init__(self, inner: Any, cancelled: Report) -> None:
        self.inner = inner
        self._cancelled = cancelled
        self._handled: RequestId | None = None

    def _report(self) -> None:
        rid, self._handled = self._handled, None
        if rid is not None:
            self._cancelled(rid)

    def _note(self, item: object) -> None:
        if not isinstance(item, SessionMessage):
            return
        rid = cancelled_id(item.message)
        if rid is not None:
            self._handled = rid

    @property
    def last_context(self) -> Any:
        # The SDK runs each handler in the sender's context when its stream carries one.
        return getattr(self.inner, "last_context", None)

    async def receive(self) -> Any:
        self._report()
        item = await receive_eagerly(self.inner)
        self._note(item)
        return item

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

