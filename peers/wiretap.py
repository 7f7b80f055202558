"""Taps on the wire of ``peers serve``: when a response really went out, or never will.

Mail carried by a tool result is acknowledged only once the client has it: when
the write of the JSON-RPC response that carries it to stdout completed, never
when the result was merely built. Three taps report it, each beside the SDK
rather than inside it:

- :class:`StdoutTap` wraps the stdout writer the SDK's ``stdio_server`` writes
  each message through (one ``write`` and one ``flush`` per line): once ``flush``
  returns the pipe has taken the whole line, and the response id is reported.
  A client that died first makes the write fail: nothing is reported.
- :class:`TrackedWriter` wraps the SDK's outgoing message stream: it reports that
  the write of a response started (from then on the SDK's dispatcher writes it,
  even if the request is cancelled), counts channel notifications, and, where no
  stdout tap exists (stdio not on two pipes: a file or a terminal, never an MCP
  client), reports the response as written once the SDK's writer took it.
- :class:`CancelTap` wraps the incoming message stream: after the dispatcher has
  handled a ``notifications/cancelled``, a response whose write did not start is
  never written (the dispatcher drops the results of cancelled requests), so the
  mail it carried is given back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self

import mcp_types as types
from mcp.shared.message import SessionMessage

__all__ = ["CancelTap", "StdoutTap", "TrackedWriter", "response_id"]

CHANNEL_METHOD = "notifications/claude/channel"

RequestId = str | int
Report = Callable[[RequestId], None]

# The SDK serialises responses with their fields in declaration order.
_RESPONSE_ID = re.compile(r'\{"jsonrpc":"2\.0","id":(-?\d+|"(?:[^"\\]|\\.)*"),"(?:result|error)"')


def response_id(line: str) -> RequestId | None:
    """The id of the JSON-RPC response (or error) on one line of the wire, else None."""
    found = _RESPONSE_ID.match(line)
    if found is not None:
        value: RequestId = json.loads(found.group(1))
        return value
    if '"id"' not in line:
        return None
    try:  # another serialisation than expected: parse it whole
        msg = json.loads(line)
    except ValueError:
        return None
    if isinstance(msg, dict) and ("result" in msg or "error" in msg):
        rid = msg.get("id")
        if isinstance(rid, str | int) and not isinstance(rid, bool):
            return rid
    return None


class LineOutput(Protocol):
    """What the SDK's ``stdio_server`` writes to: ``write`` a line, then ``flush`` it."""

    async def write(self, text: str) -> Any: ...
    async def flush(self) -> Any: ...


class StdoutTap:
    """The stdout writer, reporting each response once its line is written."""

    def __init__(self, inner: LineOutput, written: Report) -> None:
        self.inner = inner
        self._written = written
        self._line = ""

    async def write(self, text: str) -> None:
        self._line = text
        await self.inner.write(text)

    async def flush(self) -> None:
        await self.inner.flush()
        line, self._line = self._line, ""
        rid = response_id(line)
        if rid is not None:
            self._written(rid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


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


class _Stream:
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


class TrackedWriter(_Stream):
    """The SDK's outgoing stream: reports responses handed on and counts channel pushes.

    ``Connection.notify`` never raises: on a closed stream it drops the message,
    so a push is known to be handed on only when ``channel_sent`` went up.
    """

    def __init__(
        self,
        inner: MessageStream,
        *,
        started: Report | None = None,
        written: Report | None = None,
    ) -> None:
        self.inner = inner
        self.channel_sent = 0
        self._started = started
        # Only where no StdoutTap reports the real write.
        self._written = written

    async def send(self, item: SessionMessage, /) -> None:
        msg = item.message
        rid = msg.id if isinstance(msg, types.JSONRPCResponse | types.JSONRPCError) else None
        if rid is not None and self._started is not None:
            self._started(rid)
        await self.inner.send(item)
        if rid is not None and self._written is not None:
            self._written(rid)
        if isinstance(msg, types.JSONRPCNotification) and msg.method == CHANNEL_METHOD:
            self.channel_sent += 1



class CancelTap(_Stream):
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
        msg = item.message
        if isinstance(msg, types.JSONRPCNotification) and msg.method == "notifications/cancelled":
            rid = (msg.params or {}).get("requestId")
            if isinstance(rid, str | int) and not isinstance(rid, bool):
                self._handled = rid

    @property
    def last_context(self) -> Any:
        # The SDK runs each handler in the sender's context when its stream carries one.
        return getattr(self.inner, "last_context", None)

    async def receive(self) -> Any:
        self._report()
        item = await self.inner.receive()
        self._note(item)
        return item

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        self._report()
        item = await self.inner.__anext__()
        self._note(item)
        return item

