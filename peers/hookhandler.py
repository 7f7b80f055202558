"""What a session's ``peers serve`` answers its own hooks (the handler of :mod:`peers.hookserver`).

The hooks put peers inside the agent loop, for the sessions that have no
working channel (most Claude Code sessions, every Codex and Gemini CLI one):

- SessionStart: a short brief: who else is live in this repository (name,
  branch, summary, files they are changing), the unread mail, and how to reach
  them.
- UserPromptSubmit (Gemini: BeforeAgent) and PostToolUse (AfterTool): the unread
  mail as context for the model, each message once, in the same words as a tool
  result (:mod:`peers.mailview`: sender, trust note, how to answer); nothing at
  all when nothing is new. At most :data:`peers.hookevents.OUTPUT_BUDGET` bytes:
  the newest messages whole, then how many wait for ``check_messages``.
  PostToolUse of an edit tool also records the files edited, so other sessions'
  ``list_peers`` shows them at once.
- PreToolUse (BeforeTool) of an edit tool: the edit guard. An edit of a path under
  another live session's exclusive claim is refused, naming the holder, why, until
  when and the ``send_message`` arguments that reach it; any other edit takes a
  shared "editing" claim of its paths, and what another live session claims or has
  uncommitted changes in is said once, with the next hook's context. A store that
  does not answer in time lets the edit through (the hook server's cut-off).
- Stop (AfterAgent): when unread mail is waiting, the turn is continued once
  with it as the reason (never when the client says a Stop hook is already
  active, so it cannot loop).

Mail goes through the session's one hand-out (:meth:`Session.take_mail`): a
message a hook shows is reserved, then acknowledged once the hook reports that
its output was written, and never shown again by a tool result, the channel or
another hook; a hook that died gives it back.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

import anyio

from peers import claimrules, clients
from peers import constants as c
from peers.claiming import claims_text
from peers.clients import HookEvent
from peers.errors import PeersError
from peers.hookevents import (
    OUTPUT_BUDGET,
    Outcome,
    canonical_event,
    edited_paths,
    fit_to_budget,
    render_outcome,
)
from peers.hookserver import HookReply, HookRequest
from peers.log import get_logger
from peers.mailview import headline, mail_block, mail_text
from peers.models import Peer, Scope
from peers.session import Handout, Session

__all__ = ["SessionHooks"]

log = get_logger("peers.hooks")

# How long a hook may wait for a session that is still registering (the server cuts its
# answer off at 0.65 s, peers.hookserver).
_REGISTER_WAIT = 0.4
# Ids of messages announced but too long to show whole, remembered at most (see _mail).
_ANNOUNCED_MEMORY = 1_000


def _more(count: int) -> str:
    plural = "s" if count != 1 else ""
    return (
        f"{count} more unread message{plural} not shown here: call the peers tool "
        "check_messages to read them."
    )


def _message_text(item: dict[str, Any]) -> str:
    """One message's text as a tool result shows it, without the block's headline."""
    text = mail_text(mail_block([item]))
    return text.split("\n", 2)[2] if text.count("\n") >= 2 else text


class SessionHooks:
    """Answers one session's hook events (see the module)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._hooks_saved = 0.0
        self._announced: OrderedDict[str, None] = OrderedDict()
        # The edit guard's warnings, said once each, with the next hook context.
        self._warned: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._notes: list[str] = []

    async def __call__(self, request: HookRequest) -> HookReply:
        client = request.client or self._client_name()
        event = canonical_event(client, request.event)
        if event is None:
            return HookReply()
        session = self.session
        if not session.registered.is_set():
            with anyio.move_on_after(_REGISTER_WAIT):
                await session.registered.wait()
        peer = session.peer
        if peer is None or session.backend_error is not None:
            return HookReply()
        self._note_seen(peer)
        data = request.input
        transcript = data.get("transcript_path")
        if client == "claude" and isinstance(transcript, str):
            session.follow_transcript(transcript)
        handout = Handout()
        try:
            outcome, handout = await self._outcome(event, peer, data)
        except PeersError as exc:
            log.debug("hook could not read the store; it prints nothing", error=str(exc))
            return HookReply()
        except BaseException:
            session.release(handout)
            raise
        stdout, stderr, code = render_outcome(client, event, request.event, outcome)
        if not handout:
            return HookReply(stdout, stderr, code)

        async def written() -> None:
            session.commit(handout)

        async def abandoned() -> None:
            session.release(handout)

        return HookReply(stdout, stderr, code, on_written=written, on_abandoned=abandoned)

    def _our_tool(self, data: dict[str, Any]) -> bool:
        """Whether a tool hook is about one of this server's own tools (``mcp__peers__...``)."""
        tool = data.get("tool_name")
        prefix = f"mcp__{self.session.settings.server_name}__"
        return isinstance(tool, str) and tool.startswith(prefix)

    def _client_name(self) -> str | None:
        ctx = self.session.context
        found = clients.by_kind(ctx.client) if ctx is not None else None
        return found.name if found is not None else None

    def _note_seen(self, peer: Peer) -> None:
        """Record that this session's hooks work (``Peer.hooks_at``), at most every so often."""
        now = time.time()
        if now - self._hooks_saved < c.HOOKS_SEEN_SAVE_EVERY:
            return
        self._hooks_saved = now
        self.session.spawn(self.session.note_hooks_seen(now))

    async def _outcome(
        self, event: HookEvent, peer: Peer, data: dict[str, Any]
    ) -> tuple[Outcome, Handout]:
        session = self.session
        if event is HookEvent.POST_TOOL_USE:
            # In the background: a store slow to write must not hold the mail back.
            session.spawn(self._record_edits(data))
        if event is HookEvent.PRE_TOOL_USE:
            return await self._guard(peer, data), Handout()
        if event is HookEvent.STOP and data.get("stop_hook_active") is True:
            return Outcome(), Handout()  # continued once already: let the turn end
        since = session.call_started()
        after_our_result = event is HookEvent.POST_TOOL_USE and self._our_tool(data)
        if after_our_result:
            # Our result's write already counted as this step's boundary, and the model
            # has not read that result yet: a push made during the call is still to come
            # in the channel, after it.
            since -= 1
        # More than fits: the newest of it are shown (see _mail), the rest goes back.
        handout = await session.take_mail(since)
        if not after_our_result:
            # A step boundary: a push from now on may be shown by the channel after this step.
            session.step_done()
        try:
            mail, handout = await self._mail(handout, stop=event is HookEvent.STOP)
            if event is HookEvent.SESSION_START:
                return Outcome(context=await self._brief(peer, mail)), handout
            if event is HookEvent.STOP:
                return Outcome(block_stop=mail), handout
            notes = self._take_notes()
            return Outcome(context="\n\n".join(t for t in (notes, mail) if t)), handout
        except BaseException:
            session.release(handout)
            raise

    async def _mail(self, handout: Handout, stop: bool = False) -> tuple[str, Handout]:
        """The handout's mail as text within the budget, and the part of it shown whole.

        What is not shown goes back, unread. A message too long to show whole is
        announced (its beginning, and "call check_messages") once, not at every
        step: noise the model learns to ignore; the end of a turn announces it again.
        """
        session = self.session
        if not stop:
            again = [m for m in handout.messages if m.id in self._announced]
            if again:
                session.release(Handout(again))
                handout = Handout(
                    [m for m in handout.messages if m.id not in self._announced],
                    handout.also_pushed,
                    handout.more_waiting + len(again),
                )
        if not handout:
            return "", Handout()
        items = await session.mail_items(handout)
        blocks = [_message_text(item) for item in items]
        waiting = handout.more_waiting
        # The headline counts all unread mail; the newest that fit are shown whole.
        text, shown = fit_to_budget(
            headline(len(items) + waiting) + ":", blocks, lambda left: _more(left + waiting)
        )
        cut = len(items) - shown
        kept, left_out = handout.messages[cut:], handout.messages[:cut]
        if left_out:
            session.release(Handout(left_out))
        if not kept:
            self._announced[left_out[-1].id] = None
            while len(self._announced) > _ANNOUNCED_MEMORY:
                self._announced.popitem(last=False)
            return text, Handout()
        return text, Handout(kept, handout.also_pushed & {m.id for m in kept})

    async def _brief(self, me: Peer, mail: str) -> str:
        scope = Scope.REPO if (me.git_common_dir or me.git_remote) else Scope.DIRECTORY
        service = self.session.service
        peers = await service.list_peers(scope, me)
        where = "this repository" if scope is Scope.REPO else "this directory"
        lines = [f"peers: you are {me.label}."]
        if peers:
            claims = await service.claims.by_holder(claimrules.repo_key(me))
            lines.append(f"{len(peers)} other live session(s) in {where}:")
            for p in peers[:10]:
                branch = f" @ {p.branch}" if p.branch else ""
                files = f"; changing {', '.join(p.files[:6])}" if p.files else ""
                held = claims.get(p.id)
                claimed = f"; claims {claims_text(held[:6])}" if held else ""
                lines.append(
                    f"- {p.label} [{p.client}]{branch}: {p.summary or '(no summary)'}{files}"
                    f"{claimed}"
                )
            lines.append(
                "Reach them with the peers tool send_message(to_id=NAME or ID, message=...); "
                "list_peers shows who is live."
            )
        else:
            lines.append(f"No other live session in {where}.")
        text = "\n".join(lines)
        if mail:
            text = f"{text}\n\n{mail}"
        if len(text.encode()) > OUTPUT_BUDGET:
            text = text.encode()[: OUTPUT_BUDGET - 3].decode(errors="ignore") + "..."
        return text

    def _edit_paths(self, data: dict[str, Any]) -> list[str]:
        """The files an edit tool call touches (none for a tool that is not an edit)."""
        tool = data.get("tool_name")
        ctx = self.session.context
        client = clients.by_kind(ctx.client) if ctx is not None else None
        if not isinstance(tool, str) or ctx is None:
            return []
        edit_tools = client.edit_tools if client is not None else ()
        if tool not in edit_tools and not any(tool in other.edit_tools for other in clients.CLIENTS):
            return []
        cwd = data.get("cwd") if isinstance(data.get("cwd"), str) else ctx.cwd
        return edited_paths(data.get("tool_input"), str(cwd), ctx.git.root)

    async def _record_edits(self, data: dict[str, Any]) -> None:
        paths = self._edit_paths(data)
        if paths:
            await self.session.record_edits(paths)

    async def _guard(self, peer: Peer, data: dict[str, Any]) -> Outcome:
        """The edit guard: refuse an edit under another live session's exclusive claim.

        Otherwise the edit's paths become this session's shared "editing" claims (its
        other claims are renewed), and what another live session holds or changes in
        them is said once, with the next hook context (after the edit).
        """
        paths = self._edit_paths(data)
        if not paths:
            return Outcome()
        verdict = await self.session.service.claims.guard(peer, paths)
        if verdict.blocked:
            return Outcome(deny_tool=verdict.refusal())
        lines: list[str] = []
        for held in verdict.shared:
            if self._first_time(("claim", held.claim.holder_id, held.path)):
                lines.append(f"- {held.describe()}")
        for path, other in verdict.changing:
            if self._first_time(("changing", other.id, path)):
                ask = json.dumps(
                    {"to_id": other.name or other.id, "message": f"I am editing {path} too: ..."},
                    ensure_ascii=False,
                )
                lines.append(
                    f"- {other.label} has uncommitted changes in {path} (working on: "
                    f"{other.summary or '(no summary)'}). To coordinate, call the peers tool "
                    f"send_message with {ask}."
                )
        if lines:
            self._notes.append(
                "peers: careful, another agent session works on what you just edited:\n"
                + "\n".join(lines)
            )
        return Outcome()

    def _first_time(self, key: tuple[str, str, str]) -> bool:
        if key in self._warned:
            return False
        self._warned[key] = None
        while len(self._warned) > c.GUARD_WARNED_MEMORY:
            self._warned.popitem(last=False)
        return True

    def _take_notes(self) -> str:
        notes, self._notes = self._notes, []
        return "\n\n".join(notes)
