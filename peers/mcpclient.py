"""A small MCP client for one ``peers serve`` subprocess (demo, tests, benchmarks).

It speaks like Claude Code or Codex would: refused ``server/discover`` first if
asked, then ``initialize`` with a chosen client name, revision and capabilities,
and it records ``notifications/claude/channel`` in wire order (the SDK drops
notifications it does not know, so the read stream is tapped before it).

With ``transcript`` it also writes a Claude Code session transcript where the
server looks for it (``CLAUDE_CODE_SESSION_ID``, ``CLAUDE_CONFIG_DIR``, the
project directory), in the format described in :mod:`peers.transcript`: each
tool call as a tool use and a tool result, and, when ``transcript="shows"``,
each channel message as received and shown to the model (a working channel).
With ``transcript="drops"`` channel messages leave no record, like a session
whose channel gate is off.
"""

from __future__ import annotations

import html
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage

from peers.constants import CHANNEL_METHOD
from peers.transcript import transcript_path

__all__ = ["Channel", "PeerClient", "channel_text", "serve_command"]


def serve_command() -> tuple[str, list[str]]:
    """How to start ``peers serve`` with this interpreter, from any directory."""
    return sys.executable, ["-m", "peers", "serve"]


@dataclass(frozen=True, slots=True)
class Channel:
    content: str
    meta: dict[str, str]
    received_at: float = field(default_factory=time.time)


def channel_text(server: str, content: str, meta: dict[str, str]) -> str:
    """A channel message as Claude Code 2.1.328 puts it before the model."""
    attrs = "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in meta.items())
    body = content.replace("<channel", "<\\channel").replace("</channel", "<\\/channel")
    return f'<channel source="{html.escape(server)}"{attrs}>\n{body}\n</channel>'


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PeerClient:
    """One agent session: a ``peers serve`` subprocess and an MCP client session."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        client_name: str = "claude-code",
        channel: bool = True,
        protocol_version: str = "2025-11-25",
        cwd: str | None = None,
        discover_first: bool = False,
        errlog: Any = None,
        transcript: Literal["shows", "drops"] | None = None,
    ) -> None:
        self.env = {**os.environ, **(env or {})}
        self.transcript_mode = transcript
        self.transcript: Path | None = None
        if transcript is not None:
            self.env.setdefault("CLAUDE_CODE_SESSION_ID", str(uuid.uuid4()))
            self.transcript = transcript_path(self.env, cwd or os.getcwd())
        self.client_name = client_name
        self.channel = channel
        self.protocol_version = protocol_version
        self.cwd = cwd
        self.discover_first = discover_first
        self.errlog = errlog if errlog is not None else sys.stderr
        self.initialize_result: types.InitializeResult | None = None
        self.discover_error: int | None = None
        self.channels: list[Channel] = []
        self._stack = AsyncExitStack()
        self._session: ClientSession | None = None
        self._chan_send: MemoryObjectSendStream[Channel]
        self._chan_recv: MemoryObjectReceiveStream[Channel]
        self._chan_send, self._chan_recv = anyio.create_memory_object_stream[Channel](10_000)

    async def __aenter__(self) -> Self:
        command, args = serve_command()
        params = StdioServerParameters(command=command, args=args, env=self.env, cwd=self.cwd)
        read, write = await self._stack.enter_async_context(stdio_client(params, errlog=self.errlog))
        tapped_send, tapped_recv = anyio.create_memory_object_stream[SessionMessage | Exception](1000)
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.callback(tg.cancel_scope.cancel)
        tg.start_soon(self._tap, read, tapped_send)
        session = await self._stack.enter_async_context(
            ClientSession(
                tapped_recv,
                write,
                client_info=types.Implementation(name=self.client_name, version="1.0.0"),
            )
        )
        self._session = session
        if self.discover_first:
            from mcp.shared.exceptions import MCPError

            try:
                await session.send_discover("2026-07-28")
            except MCPError as exc:
                self.discover_error = exc.code
        caps = types.ClientCapabilities(experimental={"claude/channel": {}} if self.channel else None)
        result = await session.send_request(
            types.InitializeRequest(
                params=types.InitializeRequestParams(
                    protocol_version=self.protocol_version,
                    capabilities=caps,
                    client_info=types.Implementation(name=self.client_name, version="1.0.0"),
                )
            ),
            types.InitializeResult,
        )
        session.adopt(result)
        await session.send_notification(types.InitializedNotification())
        self.initialize_result = result
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _tap(
        self,
        read: AsyncIterable[SessionMessage | Exception],
        forward: MemoryObjectSendStream[SessionMessage | Exception],
    ) -> None:
        async with forward:
            async for item in read:
                if isinstance(item, SessionMessage):
                    msg = item.message
                    if isinstance(msg, types.JSONRPCNotification) and msg.method == CHANNEL_METHOD:
                        params = msg.params or {}
                        chan = Channel(str(params.get("content", "")), dict(params.get("meta") or {}))
                        if self.transcript_mode == "shows":
                            self._show_channel(chan)
                        self.channels.append(chan)
                        self._chan_send.send_nowait(chan)
                        continue
                await forward.send(item)

    @property
    def session(self) -> ClientSession:
        if self._session is None:
            raise RuntimeError("not connected")
        return self._session

    async def call(self, tool: str, **arguments: Any) -> types.CallToolResult:
        if self.transcript is None:
            return await self.session.call_tool(tool, arguments)
        use_id = f"toolu_{uuid.uuid4().hex}"
        self.write_record(
            {"type": "assistant", "message": {"role": "assistant", "content": [
                {"type": "tool_use", "id": use_id, "name": f"mcp__peers__{tool}",
                 "input": arguments}]}}
        )  # fmt: skip
        result = await self.session.call_tool(tool, arguments)
        text = "".join(c.text for c in result.content if isinstance(c, types.TextContent))
        self.write_record(
            {"type": "user", "message": {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": use_id,
                 "content": [{"type": "text", "text": text}]}]}}
        )  # fmt: skip
        return result

    def write_record(self, record: dict[str, Any]) -> None:
        """Append one record to this session's transcript (as Claude Code would)."""
        if self.transcript is None:
            raise RuntimeError("this client keeps no transcript")
        full = {
            "uuid": str(uuid.uuid4()),
            "timestamp": _now_iso(),
            "sessionId": self.env["CLAUDE_CODE_SESSION_ID"],
            **record,
        }
        self.transcript.parent.mkdir(parents=True, exist_ok=True)
        with self.transcript.open("a") as fh:
            fh.write(json.dumps(full) + "\n")

    def _show_channel(self, chan: Channel) -> None:
        server = self.env.get("PEERS_SERVER_NAME", "peers")
        text = channel_text(server, chan.content, chan.meta)
        self.write_record({"type": "queue-operation", "operation": "enqueue", "content": text})
        self.write_record(
            {"type": "user", "message": {"role": "user", "content": text}, "isMeta": True,
             "origin": {"kind": "channel", "server": server}, "promptSource": "system"}
        )  # fmt: skip

    async def call_ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool and return its structured content, raising if it reported an error."""
        result = await self.call(tool, **arguments)
        text = "".join(c.text for c in result.content if isinstance(c, types.TextContent))
        if result.is_error:
            raise RuntimeError(f"{tool} failed: {text}")
        return dict(result.structured_content or {})

    async def next_channel(self, timeout: float = 10.0) -> Channel:
        with anyio.fail_after(timeout):
            return await self._chan_recv.receive()

    async def wait_registered(self, timeout: float = 15.0) -> dict[str, Any]:
        """whoami once the server has registered (tools wait for registration)."""
        with anyio.fail_after(timeout):
            return await self.call_ok("whoami")
