"""The MCP tool handlers of one ``peers serve`` session.

A thin face over :class:`peers.service.PeersService` and :class:`peers.session.Session`:
each handler checks its arguments (:mod:`peers.tools`), calls the service, and
renders the result twice, as ``structuredContent`` (all that Claude Code and
Codex show their model) and as text (all that Gemini CLI shows), each complete
on its own (:mod:`peers.mailview`). Unread mail rides along with every result,
and is acknowledged only once that result was written to the client
(:meth:`PeersServer.response_written`). The wire, the handshake and the process's
lifecycle are in :mod:`peers.serve`.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext

from peers.claiming import claim_json, claims_text
from peers.clients import loads_channel
from peers.config import PushMode, Settings
from peers.constants import CHANNEL_METHOD
from peers.errors import BackendError, PeerNotFound, PeersError
from peers.log import get_logger
from peers.mailview import error_block, error_text, mail_block, mail_text
from peers.models import Claim, Message, Peer, PushState, Scope
from peers.procinfo import ancestors
from peers.service import PeersService, Sender
from peers.session import Handout, Session
from peers.tools import KILL_TOOL, WAIT_TOOL, CheckedArgs, check_args, tools_for
from peers.views import iso, peer_json

__all__ = [
    "CHANNEL_METHOD",
    "PeersServer",
    "channel_meta",
    "initial_push",
    "print_mode",
]

log = get_logger("peers.server")

_CANCELLED_MEMORY = 1_000
_LIVE_NAMES_SHOWN = 20

RequestId = str | int
Handler = Callable[[dict[str, Any]], Awaitable[tuple[str, dict[str, Any]]]]


def _kind(exc: BaseException) -> str:
    """An error's kind for the model: ``PeerNotFound`` -> ``peer_not_found``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def _peer_view(peer: Peer) -> dict[str, Any]:
    view = peer_json(peer)
    del view["unread"]  # the CLI's per-peer mail count; tools do not compute it
    return view


def channel_meta(message: Message, sender: Peer | None) -> dict[str, str]:
    """The ``meta`` of a channel notification: string values, keys of letters, digits and _.

    ``message_id`` comes first: the transcript reader looks for it in the tag's attributes.
    """
    meta = {
        "message_id": message.id,
        "from_id": message.sender_id,
        "from_name": message.sender_name or "",
        "from_summary": sender.summary if sender else "",
        "from_cwd": sender.cwd if sender else "",
        "reply_to": message.reply_to or "",
        "sent_at": iso(message.sent_at) or "",
        "sender_kind": "cli (unverified)" if message.sender_kind.value == "cli" else "peer",
    }
    if message.broadcast:
        meta["broadcast"] = "true"
    return {k: v for k, v in meta.items() if v}


def _push_words(peer: Peer) -> str:
    if peer.push is PushState.CONFIRMED:
        return "push confirmed"
    if peer.push is PushState.UNCONFIRMED:
        return "push unconfirmed"
    return "poll"


def _format_peers(
    peers: list[Peer], scope: str, claims: dict[str, list[Claim]] | None = None
) -> str:
    if not peers:
        return f"No other live peers in scope '{scope}'."
    lines = [f"{len(peers)} peer{'s' if len(peers) != 1 else ''} in scope '{scope}':"]
    for p in peers:
        where = p.repo or p.cwd
        branch = f" @ {p.branch}" if p.branch else ""
        files = f"; files: {', '.join(p.files[:8])}" if p.files else ""
        held = (claims or {}).get(p.id)
        claimed = f"; claims: {claims_text(held[:8])}" if held else ""
        lines.append(
            f"- {p.label} [{p.client}, {_push_words(p)}] {where}{branch}: "
            f"{p.summary or '(no summary)'}{files}{claimed}"
        )
    return "\n".join(lines)


def _result(text: str, structured: dict[str, Any], error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured, is_error=error
    )


def _error(
    tool: str,
    kind: str,
    message: str,
    *,
    hint: str | None = None,
    allowed: Sequence[str] | None = None,
) -> types.CallToolResult:
    block = error_block(kind, message, hint=hint, allowed=allowed)
    return _result(error_text(tool, block), block, error=True)


def print_mode(argv: Sequence[str]) -> bool:
    """True if a Claude Code command line runs in print mode (``-p``), which ignores channels."""
    return any(arg in ("-p", "--print") or arg.startswith("--print=") for arg in argv[1:])


def initial_push(settings: Settings, client_caps: types.ClientCapabilities | None) -> PushState:
    """The push state a session starts with: unconfirmed where a channel may work, else off."""
    if settings.push is PushMode.OFF:
        return PushState.OFF
    if settings.push is PushMode.CHANNEL:
        return PushState.UNCONFIRMED
    advertised = bool(
        client_caps and client_caps.experimental and "claude/channel" in client_caps.experimental
    )
    agent = next(
        (a for a in ancestors(os.getpid()) if loads_channel(a.argv, settings.server_name)), None
    )
    if agent is not None and print_mode(agent.argv):
        return PushState.OFF  # `claude -p` ignores the channel flag (CLIENTS.md)
    return PushState.UNCONFIRMED if agent is not None or advertised else PushState.OFF


class PeersServer:
    """The MCP tool handlers of one session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The session (and its backend) arrives once initialize has been answered.
        self._session: Session | None = None
        self.attached = anyio.Event()
        self.startup_error: str | None = None
        self.tools = [types.Tool.model_validate(tool) for tool in tools_for(settings.allow_kill)]
        self._handlers: dict[str, Handler] = {
            "list_peers": self._list_peers,
            "send_message": self._send_message,
            "broadcast_message": self._broadcast,
            "set_summary": self._set_summary,
            "check_messages": self._check_messages,
            "whoami": self._whoami,
            "set_name": self._set_name,
            "claim_files": self._claim_files,
            "release_files": self._release_files,
        }
        if settings.allow_kill:
            self._handlers[KILL_TOOL] = self._kill_peer
        # Tool calls not yet answered on the wire, with the mail their result carries, by
        # request id as text (a client may cancel 7 as "7"; the SDK treats them as one).
        self._calls: dict[str, Handout] = {}
        self._cancelled: OrderedDict[str, None] = OrderedDict()

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

    # -- the wire's reports (peers.serve calls these) ------------------------------

    def response_not_written(self, request_id: RequestId) -> None:
        """Handing the response to ``request_id`` on failed: its mail was never shown."""
        handout = self._calls.pop(str(request_id), None)
        if handout is not None and self._session is not None:
            self._session.release(handout)

    def response_written(self, request_id: RequestId) -> None:
        """The response to ``request_id`` reached the client's pipe: its mail was shown."""
        handout = self._calls.pop(str(request_id), None)
        if handout is not None and self._session is not None:
            self._session.result_written(handout)

    def request_cancelled(self, request_id: RequestId) -> None:
        """The client cancelled ``request_id``: it ignores the result, written or not.

        The result's mail goes back to be shown again, when the result was never
        written and when it is being written. One whose write completed counts as
        shown: a cancel that crossed it on the wire is not told apart.
        """
        key = str(request_id)
        self._cancelled[key] = None
        while len(self._cancelled) > _CANCELLED_MEMORY:
            self._cancelled.popitem(last=False)
        handout = self._calls.pop(key, None)
        if handout is not None and self._session is not None:
            self._session.release(handout)

    # -- MCP handlers ------------------------------------------------------------

    async def list_tools(
        self, ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools)

    async def call_tool(
        self, ctx: ServerRequestContext, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        # A push written from here on may be shown by the channel after this result.
        since = self._session.call_started() if self._session is not None else 0
        result, handout = await self._call(params.name, dict(params.arguments or {}), since, ctx)
        # No await from here to the dispatcher's write: see request_cancelled().
        request_id = ctx.request_id
        if request_id is None:
            # Not over JSON-RPC (no id to follow the response by): shown once built.
            if self._session is not None:
                self._session.result_written(handout)
        elif str(request_id) in self._cancelled:
            if self._session is not None:
                self._session.release(handout)
        else:
            # Every tool result counts (see Session.call_started), with mail or without.
            self._calls[str(request_id)] = handout
        return result

    async def _call(
        self, name: str, args: dict[str, Any], since: int, ctx: ServerRequestContext | None = None
    ) -> tuple[types.CallToolResult, Handout]:
        handler = self._handlers.get(name)
        if handler is None and name != WAIT_TOOL:
            if name == KILL_TOOL:
                return _error(
                    name,
                    "kill_disabled",
                    "kill_peer is turned off in this peers server",
                    hint="the user can end a session with `peers kill NAME` in a terminal, or "
                    "turn the tool on with PEERS_ALLOW_KILL=true in this server's environment",
                ), Handout()
            return _error(
                name, "unknown_tool", f"unknown tool '{name}'", allowed=[t.name for t in self.tools]
            ), Handout()
        try:
            checked = check_args(name, args)
            if self._session is None and self.startup_error is None:
                with anyio.move_on_after(15):
                    await self.attached.wait()
            if not self.session.registered.is_set():
                # Wait out a normal start; answer at once when the backend is known down.
                with anyio.move_on_after(0.5 if self.session.backend_error else 15):
                    await self.session.registered.wait()
                if not self.session.registered.is_set():
                    why = self.session.backend_error or "registration is still running"
                    return _error(
                        name,
                        "unavailable",
                        f"peers is not connected yet ({why})",
                        hint="it keeps retrying by itself; call again in a few seconds",
                    ), Handout()
            if handler is None:  # wait_for_messages takes its own mail
                return await self._wait_for_messages(checked, since, ctx)
            text, structured = await handler(checked.args)
        except PeersError as exc:
            return await self._failed(name, exc), Handout()
        except Exception as exc:  # never let one bad call take the server down
            log.exception("tool failed", tool=name)
            return _error(
                name,
                "internal",
                f"{name} failed unexpectedly: {exc}",
                hint="this is a bug in peers; the server keeps serving, try again",
            ), Handout()
        if checked.ignored:
            structured["ignored_arguments"] = list(checked.ignored)
            text += f"\n(ignored unknown argument(s): {', '.join(checked.ignored)})"
        return await self._with_mail(name, since, text, structured)

    async def _with_mail(
        self, name: str, since: int, text: str, structured: dict[str, Any]
    ) -> tuple[types.CallToolResult, Handout]:
        """The result with the unread mail it carries (reserved until it is written)."""
        try:
            handout = await self.session.take_mail(
                since, channel_first=name != "check_messages"
            )
        except PeersError as exc:
            log.warning("could not read mail for a result", error=str(exc))
            if name == "check_messages":
                return await self._failed(name, exc), Handout()
            return _result(text, structured), Handout()
        try:
            block = mail_block(await self.session.mail_items(handout), handout.more_waiting)
            if name == "check_messages":
                text, structured = mail_text(block), block
            elif handout:
                structured = {**structured, "new_mail": block}
                text = f"{text}\n\n{mail_text(block)}"
            return _result(text, structured), handout
        except BaseException:
            self.session.release(handout)
            raise

    async def _failed(self, tool: str, exc: PeersError) -> types.CallToolResult:
        allowed = exc.allowed
        if isinstance(exc, PeerNotFound) and allowed is None and self._session is not None:
            allowed = await self._live_labels()
        return _error(tool, _kind(exc), str(exc), hint=exc.hint, allowed=allowed)

    async def _live_labels(self) -> list[str] | None:
        """The live peers one could have meant, for an unknown recipient's error."""
        try:
            me = self.session.peer
            peers = await self.service.list_peers(Scope.ALL, me)
        except PeersError:
            return None
        labels = [p.name or p.id for p in peers][:_LIVE_NAMES_SHOWN]
        return labels or ["(no other session is live)"]

    # -- tools -------------------------------------------------------------------

    async def _list_peers(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        scope = args.get("scope") or "machine"
        peers = await self.service.list_peers(scope, self.session.require_peer())
        claims = await self.service.claims.by_holder() if peers else {}
        views = [
            _peer_view(p) | {"claims": [claim_json(cl) for cl in claims.get(p.id, [])]}
            for p in peers
        ]
        return _format_peers(peers, scope, claims), {
            "scope": scope,
            "count": len(peers),
            "peers": views,
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
            "recipient_push": result.recipient.push.value,
            "how": result.how,
            "repeat": result.repeat,
            "note": result.summary,
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
        return text, {"scope": result.scope.value, "count": len(sent), "sent": sent, "note": text}

    async def _set_summary(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        peer = await self.session.set_summary(args["summary"])
        return f"summary set: {peer.summary or '(empty)'}", {"summary": peer.summary}

    async def _set_name(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        peer = await self.session.set_name(args["name"])
        return f"you are now '{peer.name}' ({peer.id})", {"id": peer.id, "name": peer.name}

    async def _check_messages(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.session.require_peer()
        return "", {}  # the mail itself is added by _with_mail, like for every tool

    async def _whoami(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        me = self.session.require_peer()
        how = {
            PushState.CONFIRMED: "by push (<channel> notifications), confirmed: your session's "
            "transcript shows them reaching you",
            PushState.UNCONFIRMED: "by push (<channel> notifications), not confirmed yet: a "
            "pushed message stays unread until it is shown to you, and comes with your next "
            "peers tool call if the channel does not show it",
            PushState.OFF: "with your peers tool calls (check_messages, or attached to any "
            "result); push is off",
        }[self.session.push_state]
        view = _peer_view(me) | {
            "push": self.session.push_state.value,
            "git_common_dir": me.git_common_dir,
            "wanted_name": self.session.wanted_name,
            "backend": self.service.transport.capabilities.name,
            "receives": how,
        }
        mine = await self.service.claims.of(me.id)
        view["claims"] = [claim_json(cl) for cl in mine]
        name = f"'{me.name}' " if me.name else ""
        claimed = f" Your file claims: {claims_text(mine)}." if mine else " You claim no files."
        text = (
            f"You are {name}{me.id} on {me.host} in {me.cwd}"
            f"{f' ({me.repo} @ {me.branch})' if me.repo else ''}; client {me.client}; "
            f"you receive messages {how}.{claimed}"
        )
        return text, view

    async def _claim_files(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        me = self.session.require_peer()
        outcome = await self.service.claims.claim(
            me,
            args["paths"],
            exclusive=args.get("exclusive", True),
            reason=args.get("reason"),
            ttl=args.get("ttl"),
        )
        lines: list[str] = []
        if outcome.granted:
            lines.append(f"claimed: {claims_text(outcome.granted)}")
        if outcome.refused:
            refused = sorted({held.path for held in outcome.refused})
            lines.append(
                f"refused (held by another live session, nothing was claimed for them): "
                f"{', '.join(refused)}"
            )
            lines += [f"- {held.describe()}" for held in outcome.refused]
        if outcome.shared:
            lines.append("also claimed (shared) by other sessions:")
            lines += [f"- {held.describe()}" for held in outcome.shared]
        text = "\n".join(lines)
        return text, {
            "repo": outcome.repo,
            "granted": [claim_json(cl) for cl in outcome.granted],
            "refused": [held.json() for held in outcome.refused],
            "shared_with": [held.json() for held in outcome.shared],
            "note": text,
        }

    async def _release_files(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        me = self.session.require_peer()
        given = args.get("paths")
        paths = self.service.claims.paths(me, given, required=False) if given else None
        released = await self.service.claims.release(me.id, paths)
        left = await self.service.claims.of(me.id)
        if released:
            text = f"released: {', '.join(cl.path for cl in released)}"
        elif paths is None:
            text = "you held no claims; nothing to release"
        else:
            text = f"none of your claims matched {', '.join(paths)}; nothing released"
        text += f". Still claimed: {claims_text(left)}" if left else ". You claim no files now."
        return text, {
            "released": [cl.path for cl in released],
            "claims": [claim_json(cl) for cl in left],
            "note": text,
        }

    async def _wait_for_messages(
        self, checked: CheckedArgs, since: int, ctx: ServerRequestContext | None
    ) -> tuple[types.CallToolResult, Handout]:
        """Wait for matching mail (:mod:`peers.waiting`); it carries no other mail."""
        from mcp.shared.jsonrpc_dispatcher import progress_token_from_params

        from peers.waiting import mail_filter, wait_block, wait_for_mail, wait_text, wait_timeout

        args = checked.args
        session = self.session
        timeout, asked = wait_timeout(args.get("timeout_s"))
        match = await mail_filter(
            self.service, session.require_peer(), args.get("from"), args.get("reply_to")
        )
        progress = None
        if ctx is not None and progress_token_from_params(ctx.params) is not None:
            progress = ctx.session.report_progress  # the client asked for progress
        outcome = await wait_for_mail(session, match, since, timeout, progress)
        try:
            items = await session.mail_items(outcome.handout)
            block = wait_block(outcome, match, items, timeout, asked)
            text = wait_text(block)
            if checked.ignored:
                block["ignored_arguments"] = list(checked.ignored)
                text += f"\n(ignored unknown argument(s): {', '.join(checked.ignored)})"
            return _result(text, block), outcome.handout
        except BaseException:
            session.release(outcome.handout)
            raise

    async def _kill_peer(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        me = self.session.require_peer()
        result = await self.service.kill_peer(args["peer_id"], requester=me)
        text = f"sent {result.signal} to {result.peer.label}'s agent (pid {result.pid}: {result.command})"
        return text, {
            "peer_id": result.peer.id,
            "pid": result.pid,
            "signal": result.signal,
            "note": text,
        }
