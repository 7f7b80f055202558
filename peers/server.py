"""The MCP tool handlers of one ``peers serve`` session.

A thin face over :class:`peers.service.PeersService` and :class:`peers.session.Session`:
each handler checks its arguments (:mod:`peers.tools`), calls the service, and
renders the result as text and as ``structuredContent``. The wire, the handshake
and the process's lifecycle are in :mod:`peers.serve`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext

from peers.clients import session_loads_channel
from peers.config import PushMode, Settings
from peers.errors import BackendError, PeersError
from peers.log import get_logger
from peers.models import Message, Peer, ReceiveMode
from peers.service import PeersService, Sender
from peers.session import Session
from peers.tools import TOOLS, check_args
from peers.views import iso, message_json, peer_json

__all__ = ["CHANNEL_METHOD", "MCP_TOOLS", "PeersServer", "channel_meta", "receive_mode"]

log = get_logger("peers.server")

CHANNEL_METHOD = "notifications/claude/channel"

MCP_TOOLS = [types.Tool.model_validate(tool) for tool in TOOLS]


def _peer_view(peer: Peer) -> dict[str, Any]:
    view = peer_json(peer)
    del view["unread"]  # the CLI's per-peer mail count; tools do not compute it
    return view


def channel_meta(message: Message, sender: Peer | None) -> dict[str, str]:
    """The ``meta`` of a channel notification: string values, keys of letters, digits and _."""
    meta = {
        "from_id": message.sender_id,
        "from_name": message.sender_name or "",
        "from_summary": sender.summary if sender else "",
        "from_cwd": sender.cwd if sender else "",
        "message_id": message.id,
        "reply_to": message.reply_to or "",
        "sent_at": iso(message.sent_at),
        "sender_kind": "cli (unverified)" if message.sender_kind.value == "cli" else "peer",
    }
    if message.broadcast:
        meta["broadcast"] = "true"
    return {k: v for k, v in meta.items() if v}


def format_messages(messages: list[Message]) -> str:
    count = len(messages)
    lines = [f"{count} new message{'s' if count != 1 else ''}:"]
    for m in messages:
        who = f"{m.sender_name} ({m.sender_id})" if m.sender_name else m.sender_id
        extra = f", reply_to {m.reply_to}" if m.reply_to else ""
        kind = " [command line, unverified]" if m.sender_kind.value == "cli" else ""
        bcast = " [broadcast]" if m.broadcast else ""
        lines.append(f"--- message {m.id} from {who}{kind}{bcast} at {iso(m.sent_at)}{extra}")
        lines.append(m.body)
    return "\n".join(lines)


def _format_peers(peers: list[Peer], scope: str) -> str:
    if not peers:
        return f"No other live peers in scope '{scope}'."
    lines = [f"{len(peers)} peer{'s' if len(peers) != 1 else ''} in scope '{scope}':"]
    for p in peers:
        where = p.repo or p.cwd
        branch = f" @ {p.branch}" if p.branch else ""
        files = f"; files: {', '.join(p.files[:8])}" if p.files else ""
        lines.append(
            f"- {p.label} [{p.client}, {p.receive_mode.value}] {where}{branch}: "
            f"{p.summary or '(no summary)'}{files}"
        )
    return "\n".join(lines)


def _result(text: str, structured: dict[str, Any], error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured, is_error=error
    )


class PeersServer:
    """The MCP tool handlers of one session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The session (and its backend) arrives once initialize has been answered.
        self._session: Session | None = None
        self.attached = anyio.Event()
        self.startup_error: str | None = None
        self._handlers: dict[
            str, Callable[[dict[str, Any]], Awaitable[tuple[str, dict[str, Any]]]]
        ] = {
            "list_peers": self._list_peers,
            "send_message": self._send_message,
            "broadcast_message": self._broadcast,
            "set_summary": self._set_summary,
            "check_messages": self._check_messages,
            "whoami": self._whoami,
            "set_name": self._set_name,
            "kill_peer": self._kill_peer,
        }

    def attach(self, session: Session) -> None:
        self._session = session
        self.attached.set()

    @property
    def session(self) -> Session:
        if self._session is None:
            raise BackendError(self.startup_error or "peers is still starting")
        return self._session

    @property
    def service(self) -> PeersService:
        return self.session.service

    async def list_tools(
        self, ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=MCP_TOOLS)

    async def call_tool(
        self, ctx: ServerRequestContext, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        handler = self._handlers.get(params.name)
        if handler is None:
            return _result(
                f"unknown tool '{params.name}'; tools: {', '.join(self._handlers)}",
                {"error": "unknown_tool"},
                error=True,
            )
        try:
            args = check_args(params.name, params.arguments or {})
            if self._session is None and self.startup_error is None:
                with anyio.move_on_after(15):
                    await self.attached.wait()
            if not self.session.registered.is_set():
                # Wait out a normal start; answer at once when the backend is known down.
                with anyio.move_on_after(0.5 if self.session.backend_error else 15):
                    await self.session.registered.wait()
                if not self.session.registered.is_set():
                    why = self.session.backend_error or "registration is still running"
                    return _result(
                        f"peers is not connected yet ({why}); it keeps retrying by itself",
                        {"error": "unavailable"},
                        True,
                    )
            text, structured = await handler(args)
        except PeersError as exc:
            return _result(f"{params.name} failed: {exc}", {"error": type(exc).__name__}, True)
        except Exception as exc:  # never let one bad call take the server down
            log.exception("tool failed", tool=params.name)
            return _result(f"{params.name} failed unexpectedly: {exc}", {"error": "internal"}, True)
        if params.name != "check_messages" and self._polls():
            text, structured = await self._attach_mail(text, structured)
        return _result(text, structured)

    def _polls(self) -> bool:
        peer = self._session.peer if self._session is not None else None
        return peer is not None and peer.receive_mode is ReceiveMode.POLL

    async def _attach_mail(
        self, text: str, structured: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        try:
            async with self.session.mail_for_result() as mail:
                if mail:
                    structured = {**structured, "new_messages": [message_json(m) for m in mail]}
                    text = f"{text}\n\n{format_messages(mail)}"
        except PeersError as exc:
            log.warning("could not attach mail", error=str(exc))
        return text, structured

    # -- tools -------------------------------------------------------------------

    async def _list_peers(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        scope = args.get("scope") or "machine"
        peers = await self.service.list_peers(scope, self.session.require_peer())
        return _format_peers(peers, scope), {
            "scope": scope,
            "peers": [_peer_view(p) for p in peers],
        }

    async def _send_message(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        me = self.session.require_peer()
        result = await self.service.send(
            Sender.of(me), args["to_id"], args["message"], args.get("reply_to")
        )
        return result.summary, {
            "message_id": result.message.id,
            "to_id": result.recipient.id,
            "to_name": result.recipient.name,
            "delivery": result.delivery,
        }

    async def _broadcast(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        me = self.session.require_peer()
        result = await self.service.broadcast(Sender.of(me), args["message"], args["scope"])
        sent = [
            {
                "message_id": r.message.id,
                "to_id": r.recipient.id,
                "to_name": r.recipient.name,
                "delivery": r.delivery,
            }
            for r in result.results
        ]
        if not sent:
            text = f"nobody else is live in scope '{result.scope.value}'; nothing sent"
        else:
            text = (
                f"sent to {len(sent)} peer{'s' if len(sent) != 1 else ''} in scope '{result.scope.value}': "
                + ", ".join(r.recipient.label for r in result.results)
            )
        return text, {"scope": result.scope.value, "sent": sent}

    async def _set_summary(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        peer = await self.session.set_summary(args["summary"])
        return f"summary set: {peer.summary or '(empty)'}", {"summary": peer.summary}

    async def _set_name(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        peer = await self.session.set_name(args["name"])
        return f"you are now '{peer.name}' ({peer.id})", {"id": peer.id, "name": peer.name}

    async def _check_messages(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.session.require_peer()
        async with self.session.mail_for_result() as mail:
            text = format_messages(mail) if mail else "No new messages."
            return text, {"messages": [message_json(m) for m in mail]}

    async def _whoami(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        me = self.session.require_peer()
        view = _peer_view(me) | {
            "git_common_dir": me.git_common_dir,
            "wanted_name": self.session.wanted_name,
            "backend": self.service.transport.capabilities.name,
        }
        how = (
            "by push (<channel> notifications)"
            if me.receive_mode is ReceiveMode.PUSH
            else "by poll (check_messages, or attached to tool results)"
        )
        name = f"'{me.name}' " if me.name else ""
        text = (
            f"You are {name}{me.id} on {me.host} in {me.cwd}"
            f"{f' ({me.repo} @ {me.branch})' if me.repo else ''}; client {me.client}; "
            f"you receive messages {how}."
        )
        return text, view

    async def _kill_peer(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        me = self.session.require_peer()
        result = await self.service.kill_peer(args["peer_id"], requester=me)
        text = f"sent {result.signal} to {result.peer.label}'s agent (pid {result.pid}: {result.command})"
        return text, {"peer_id": result.peer.id, "pid": result.pid, "signal": result.signal}


def receive_mode(settings: Settings, client_caps: types.ClientCapabilities | None) -> ReceiveMode:
    if settings.push is PushMode.OFF:
        return ReceiveMode.POLL
    if settings.push is PushMode.CHANNEL:
        return ReceiveMode.PUSH
    advertised = bool(
        client_caps and client_caps.experimental and "claude/channel" in client_caps.experimental
    )
    if advertised or session_loads_channel(settings.server_name):
        return ReceiveMode.PUSH
    return ReceiveMode.POLL
