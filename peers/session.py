"""One agent session's life in peers: registration, heartbeat, files, and mail.

This is what ``peers serve`` runs beside the MCP protocol: it registers the
session with its context, keeps it alive, re-registers after a backend outage,
derives a default summary from git, and hands out mail so that the model is
shown each message once and no message is acknowledged before it was shown.

What "shown" means, path by path:

- a tool result (the poll path): mail is attached to a result and acknowledged
  when the write of that JSON-RPC response to stdout completed (the server calls
  :meth:`Session.commit`); a result never written gives its mail back
  (:meth:`Session.release`);
- a channel push: the notification is written and the message stays pending
  until the session's Claude Code transcript shows it reached the model
  (:mod:`peers.transcript`); then it is acknowledged, and push is *confirmed*.
  A transcript written to well after a push without any record of it proves the
  channel drops messages (its gate is off): push is turned *off* for the
  session, and its mail goes the poll path;
- a pushed message not yet shown goes out with a tool result only once a
  working channel would have shown it: after a tool result written after the
  push (Claude Code shows a message that arrived mid-call after that call's
  result, so attaching it to that very result would show it twice), and after a
  short wait for the transcript to catch up. Without any transcript to read, it
  goes out marked as possibly seen already.
- a ``wait_for_messages`` result (:mod:`peers.waiting`): a tool result like the
  others; while a wait runs, the push loop leaves the messages it waits for to
  it, so that they come whole in its result rather than by channel.

Everything that waits for mail here (the push loop, each wait) sleeps on the
session's one doorbell listener (:mod:`peers.mailbell`), never on the transport
itself: a transport's ring is consumed by the one waiter that wakes on it.

Everything the session loops do survives unexpected errors: each loop is
restarted after a logged failure; only the shutdown path ends them.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from peers import constants as c
from peers.config import Settings
from peers.errors import BackendError, NameTaken, PeerNotFound, PeersError
from peers.gitinfo import GitContext, changed_files, git_context
from peers.log import get_logger
from peers.mailbell import MailBell
from peers.mailview import mail_item
from peers.models import Message, Peer, PeerUpdate, PushState, ReceiveMode
from peers.procinfo import ancestors, process_start_time
from peers.service import PeersService
from peers.transcript import Transcript
from peers.views import iso

__all__ = [
    "Handout",
    "PushCallback",
    "Session",
    "SessionContext",
    "default_summary",
    "detect_tty",
]

log = get_logger("peers.session")

# Message ids shown to the model are remembered, so that none is shown twice: every one
# whose ack has not gone through (a copy read again is acknowledged again instead), and
# this many acknowledged ones (a read that began before an ack may still return it).
_SHOWN_MEMORY = 1_000
# At most this many in all (a store that refuses every ack for hours).
_SHOWN_LIMIT = 10_000
# The transcript reader may hold this many ids no push waits on before they are dropped.
_TRANSCRIPT_SLACK = 256
_ACK_BATCH = 500

PushCallback = Callable[[Message, Peer | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SessionContext:
    cwd: str
    git: GitContext
    tty: str | None
    client: str
    push: PushState
    name: str | None

    @property
    def receive_mode(self) -> ReceiveMode:
        return ReceiveMode.POLL if self.push is PushState.OFF else ReceiveMode.PUSH


@dataclass(frozen=True, slots=True)
class _Pushed:
    """A channel notification written for a message the transcript does not show yet."""

    at: float  # wall clock, comparable with the transcript's modification time
    epoch: int  # tool results written before it
    message: Message


@dataclass(frozen=True, slots=True)
class Handout:
    """Mail given to one path (a tool result, a hook): committed once shown, else released."""

    messages: list[Message] = field(default_factory=list)
    # Pushed, and not proven dropped: the model may have seen these in a <channel> already.
    also_pushed: frozenset[str] = frozenset()
    # Unread mail not in this handout that waits for check_messages.
    more_waiting: int = 0
    # Given a match (wait_for_messages): the unread mail it left for check_messages, not
    # reserved, and matching messages pushed during this call (they show in the channel
    # after its result), neither reserved nor in ``messages``.
    unmatched: tuple[Message, ...] = ()
    on_channel: tuple[Message, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.messages)


def _within(messages: list[Message], budget: int) -> list[Message]:
    """The first messages whose bodies fit in ``budget`` bytes (the first one always)."""
    kept: list[Message] = []
    used = 0
    for message in messages:
        size = len(message.body.encode())
        if kept and used + size > budget:
            break
        kept.append(message)
        used += size
    return kept


def hook_socket_paths() -> list[str]:
    """Where this server listens for its own hooks: by Claude Code session id, and by agent process."""
    from peers import runtime
    from peers.procinfo import find_agent_process

    paths: list[str] = []
    session_id = os.environ.get("CLAUDE_CODE_SESSION_ID")
    if session_id:
        paths.append(runtime.session_socket(session_id))
    agent = find_agent_process(os.getpid())
    identity = runtime.process_identity(agent.pid) if agent is not None else None
    if identity is not None:
        paths.append(runtime.agent_socket(identity))
    return paths


def detect_tty(pid: int | None = None) -> str | None:
    """The terminal of the nearest ancestor that has one (an MCP server's own stdin is a pipe)."""
    for info in ancestors(pid or os.getpid(), limit=16):
        try:
            target = os.readlink(f"/proc/{info.pid}/fd/0")
        except OSError:
            continue
        if target.startswith(("/dev/pts/", "/dev/tty")):
            return target
    return None


def default_summary(git: GitContext, cwd: str, limit: int = c.MAX_SUMMARY_BYTES) -> str:
    """What a session is doing, as far as git can tell, in at most ``limit`` bytes."""
    where = git.repo_name or os.path.basename(cwd) or cwd
    if git.branch:
        where += f" @ {git.branch}"
    if not git.root:
        text = f"working in {where}"
    elif not git.changed_files:
        text = f"{where}: no uncommitted changes"
    else:
        files = git.changed_files
        # Fewer names rather than a summary the service would refuse.
        for shown in range(min(5, len(files)), 0, -1):
            more = f" (+{len(files) - shown} more)" if len(files) > shown else ""
            text = f"{where}: changing {', '.join(files[:shown])}{more}"
            if len(text.encode()) <= limit:
                break
    encoded = text.encode()
    if len(encoded) > limit:
        text = encoded[: max(0, limit - 3)].decode(errors="ignore") + "..."
    return text


class Session:
    """A registered peer kept alive, with its mail shown to the model exactly once."""

    def __init__(self, service: PeersService, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.peer: Peer | None = None
        self.context: SessionContext | None = None
        self.registered = anyio.Event()
        self.backend_error: str | None = None
        self.summary_is_default = True
        # The name this session should hold: PEERS_NAME or set_name. If another live
        # session holds it, we run unnamed and keep trying to claim it.
        self.wanted_name = settings.name
        self.push_state = PushState.OFF
        # Where channel messages are proven shown (Claude Code sessions only).
        self.transcript: Transcript | None = None
        # Tool results whose write to the client completed: a push made at epoch e is
        # one a working channel has shown once a result of a later epoch went out.
        self.results_written = 0
        # One fetch-and-decide at a time: push, tool results and hooks share it. Taken
        # without a turn of the loop when free (fast_acquire): a busy session takes it
        # several times per message.
        self._mail_lock = anyio.Lock(fast_acquire=True)
        # The agent's set_summary and the git refresh must not overwrite each other.
        self._summary_lock = anyio.Lock()
        self._stopping = False
        self._senders: dict[str, tuple[float, Peer | None]] = {}
        self._pushed: dict[str, _Pushed] = {}
        self._pushing: set[str] = set()  # handed to the writer, not in _pushed yet
        self._new_push = anyio.Event()
        # When the push loop last read the mailbox without skipping (monotonic).
        self._full_read_at = 0.0
        # In a handout whose result is not written yet: shown to no other path meanwhile.
        self._reserved: set[str] = set()
        # Shown to the model (acked, or its ack on its way): never shown again.
        self._shown: OrderedDict[str, None] = OrderedDict()
        self._acking: set[str] = set()
        # Shown, and the store refused their ack: kept in _shown until acknowledged.
        self._unacked: set[str] = set()
        self._ack_send, self._ack_recv = anyio.create_memory_object_stream[str](math.inf)
        self._push_saved: PushState | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        # Everything here that waits for mail waits on this, never on the transport itself.
        self.bell = MailBell(self._listen_for_mail, settings.safety_recheck)
        # What each running wait_for_messages waits for: the push loop leaves such
        # messages to it, so that they come whole in its result, not by channel.
        self._waits: dict[int, Callable[[Message], bool]] = {}
        self._next_wait = 0

    # -- registration ----------------------------------------------------------

    async def build_context(
        self, client: str, push: PushState, cwd: str | None = None
    ) -> SessionContext:
        cwd = cwd or os.environ.get("CLAUDE_PROJECT_DIR") or os.getcwd()
        git = await git_context(cwd)
        self.push_state = push
        self.context = SessionContext(
            cwd=cwd,
            git=git,
            tty=detect_tty(),
            client=client,
            push=push,
            name=self.settings.name,
        )
        if push is not PushState.OFF and self.transcript is None:
            self.transcript = Transcript.of_session(self.settings.server_name, cwd)
        return self.context

    def _new_peer(self, ctx: SessionContext, peer_id: str | None, name: str | None) -> Peer:
        pid = os.getpid()
        peer = self.service.new_peer(
            cwd=ctx.cwd,
            pid=pid,
            pid_start=process_start_time(pid),
            name=name,
            git_root=ctx.git.root,
            git_common_dir=ctx.git.common_dir,
            git_remote=ctx.git.remote,
            branch=ctx.git.branch,
            tty=ctx.tty,
            client=ctx.client,
            receive_mode=self.receive_mode,
            summary=default_summary(ctx.git, ctx.cwd, self.settings.max_summary_bytes),
            files=ctx.git.changed_files,
        ).model_copy(update={"push": self.push_state})
        if peer_id is not None:
            # Re-registration after an outage keeps the id, so replies still reach us.
            peer = peer.model_copy(update={"id": peer_id})
        return peer

    @property
    def receive_mode(self) -> ReceiveMode:
        return ReceiveMode.POLL if self.push_state is PushState.OFF else ReceiveMode.PUSH

    async def register(self) -> Peer:
        """Register (or re-register after an outage) with the current context."""
        assert_ctx = self.context
        if assert_ctx is None:
            raise RuntimeError("build_context() first")
        previous = self.peer
        peer = self._new_peer(assert_ctx, previous.id if previous else None, self.wanted_name)
        if previous is not None:
            peer = peer.model_copy(
                update={
                    "summary": previous.summary,
                    "files": previous.files,
                    "registered_at": previous.registered_at,
                }
            )
        try:
            self.peer = await self.service.register(peer)
        except NameTaken as exc:
            # Another live session has our name: run unnamed rather than not at all.
            log.warning("name taken, registering without a name", error=str(exc))
            self.peer = await self.service.register(peer.model_copy(update={"name": None}))
        self._push_saved = self.peer.push
        self.backend_error = None
        self.registered.set()
        log.info(
            "registered",
            peer_id=self.peer.id,
            name=self.peer.name,
            receive_mode=self.peer.receive_mode.value,
            push=self.peer.push.value,
        )
        return self.peer

    async def unregister(self) -> None:
        self._stopping = True
        self.bell.close()  # waits return now, taking nothing
        if self.peer is None:
            return
        # Acknowledge what the model was shown before the record goes offline.
        with anyio.move_on_after(2):
            async with self._mail_lock:
                await self._flush_acks()
        try:
            await self.service.unregister(self.peer.id)
            log.info("unregistered", peer_id=self.peer.id)
        except PeersError as exc:
            log.warning("could not unregister", error=str(exc))

    def require_peer(self) -> Peer:
        if self.peer is None:
            detail = f": {self.backend_error}" if self.backend_error else ""
            raise BackendError(f"this session is not registered yet{detail}; it retries by itself")
        return self.peer

    def remember(self, peer: Peer) -> Peer:
        """Keep the latest copy of our own record after an update."""
        self.peer = peer
        return peer

    # -- background loops ------------------------------------------------------

    def start(self, tg: anyio.abc.TaskGroup, deliver: PushCallback | None = None) -> None:
        """Start the session's loops, each restarted if it fails: only shutdown ends them."""
        self._tg = tg
        self.bell.start(tg)
        tg.start_soon(self.supervise, "heartbeat", self.keep_alive)
        tg.start_soon(self.supervise, "files", self.refresh_files)
        tg.start_soon(self.supervise, "acks", self.ack_loop)
        tg.start_soon(self.supervise, "upkeep", self._upkeep)
        if deliver is not None and self.push_state is not PushState.OFF:
            tg.start_soon(self.supervise, "push", lambda: self.push_loop(deliver))
            tg.start_soon(self.supervise, "transcript", self.watch_transcript)

    def listen_for_hooks(self, tg: anyio.abc.TaskGroup) -> None:
        """Answer this session's hooks on its private sockets (see :mod:`peers.runtime`).

        Called as early as possible: a client may run its first hook (SessionStart,
        the first prompt) while this server is still starting.
        """
        from peers.hookhandler import SessionHooks
        from peers.hookserver import HookListener

        paths = hook_socket_paths()
        if paths:
            listener = HookListener(paths, SessionHooks(self))
            tg.start_soon(self.supervise, "hooks", listener.serve)

    def spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` in the background of the session (errors are logged, not raised)."""

        async def run() -> None:
            try:
                await work
            except PeersError as exc:
                log.debug("background work failed", error=str(exc))
            except Exception:
                log.exception("background work failed")

        if self._tg is None:
            return
        self._tg.start_soon(run)

    async def _upkeep(self) -> None:
        from peers.upkeep import run_upkeep

        await run_upkeep(self.service, lambda: self.peer.id if self.peer is not None else None)

    async def supervise(
        self,
        name: str,
        loop: Callable[[], Awaitable[None]],
        *,
        delay: float = c.LOOP_RESTART_DELAY,
    ) -> None:
        """Run ``loop`` until it returns or shutdown, restarting it after a failure."""
        while not self._stopping:
            try:
                await loop()
                return
            except Exception:
                # A bug or an error nobody foresaw must not end heartbeats or delivery.
                log.exception("background loop failed; restarting it", loop=name, delay=delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, c.LOOP_RESTART_CAP)

    async def keep_alive(self) -> None:
        """Register, then heartbeat; on outage keep retrying and re-register on return."""
        delay = 0.5
        while not self._stopping:
            try:
                if self.peer is None or self.backend_error is not None:
                    await self.service.transport.connect()
                    await self.register()
                else:
                    await self.service.heartbeat(self.peer.id)
                    await self._claim_wanted_name()
                    await self._save_push_state()
                delay = 0.5
                await anyio.sleep(self.settings.heartbeat_interval)
            except PeerNotFound:
                # Reaped while we were away (or the store lost its data): come back.
                log.warning("peer record gone; re-registering")
                self.backend_error = "re-registering"
            except PeersError as exc:
                if self.backend_error is None:
                    log.warning("backend unavailable; retrying", error=str(exc))
                self.backend_error = str(exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _claim_wanted_name(self) -> None:
        peer = self.peer
        if peer is None or self.wanted_name is None or peer.name == self.wanted_name:
            return
        try:
            self.peer = await self.service.set_name(peer.id, self.wanted_name)
            log.info("claimed name", name=self.wanted_name)
        except NameTaken:
            pass  # still held by a live session; try again at the next heartbeat

    async def set_name(self, name: object) -> Peer:
        peer = self.remember(await self.service.set_name(self.require_peer().id, name))
        self.wanted_name = peer.name
        return peer

    async def set_summary(self, summary: object) -> Peer:
        async with self._summary_lock:
            peer = self.remember(await self.service.set_summary(self.require_peer().id, summary))
            self.summary_is_default = not peer.summary
            return peer

    async def refresh_files(self) -> None:
        """Keep the changed-files list (and the default summary) current from git."""
        while not self._stopping:
            await anyio.sleep(self.settings.files_refresh)
            peer, ctx = self.peer, self.context
            if peer is None or ctx is None or not ctx.git.root or self.backend_error:
                continue
            files = await changed_files(ctx.git.root)
            if files == peer.files:
                continue
            git = GitContext(
                ctx.git.root, ctx.git.common_dir, ctx.git.branch, ctx.git.remote, files
            )
            try:
                async with self._summary_lock:
                    summary = (
                        default_summary(git, ctx.cwd, self.settings.max_summary_bytes)
                        if self.summary_is_default
                        else None
                    )
                    self.peer = await self.service.set_activity(peer.id, files, summary)
            except PeersError as exc:
                log.debug("files refresh failed", error=str(exc))

    async def sender_of(self, message: Message) -> Peer | None:
        """The sending peer (cached briefly), for its summary and cwd beside the message."""
        cached = self._senders.get(message.sender_id)
        if cached is not None and time.monotonic() - cached[0] < 30:
            return cached[1]
        try:
            peer = await self.service.transport.get_peer(message.sender_id)
        except PeersError:
            peer = None
        self._senders[message.sender_id] = (time.monotonic(), peer)
        return peer

    async def mail_items(self, handout: Handout) -> list[dict[str, Any]]:
        """The messages of a handout as the model sees them (:func:`peers.mailview.mail_item`)."""
        items = []
        for message in handout.messages:
            sender = await self.sender_of(message)
            items.append(
                mail_item(
                    message_id=message.id,
                    from_id=message.sender_id,
                    from_name=message.sender_name,
                    sender_kind=message.sender_kind.value,
                    sent_at=iso(message.sent_at),
                    body=message.body,
                    reply_to=message.reply_to,
                    broadcast=message.broadcast,
                    from_summary=sender.summary if sender else None,
                    from_cwd=sender.cwd if sender else None,
                    also_pushed=message.id in handout.also_pushed,
                )
            )
        return items

    # -- what the model was shown ----------------------------------------------

    def _mark_shown(self, ids: list[str]) -> None:
        for message_id in ids:
            self._reserved.discard(message_id)
            self._pushed.pop(message_id, None)
            self._shown[message_id] = None
            self._shown.move_to_end(message_id)
            if message_id not in self._acking:
                self._acking.add(message_id)
                self._ack_send.send_nowait(message_id)
        while len(self._shown) > _SHOWN_MEMORY:
            oldest = next(iter(self._shown))
            if len(self._shown) <= _SHOWN_LIMIT and (
                oldest in self._acking or oldest in self._unacked
            ):
                break  # its ack has not gone through: kept, and the younger ones with it
            self._shown.popitem(last=False)

    def _ack_again(self, pending: list[Message], window: int, complete: bool = True) -> None:
        """Shown messages still pending (their ack failed): acknowledge them again.

        ``complete``: ``pending`` is the mailbox's first ``window`` messages, none skipped.
        """
        self._mark_shown([m.id for m in pending if m.id in self._shown])
        if complete and len(pending) < window:
            # That was all the unread mail: a push no longer in it (expired, or moved
            # to the session that took this name) waits for no proof any more, and a
            # refused ack no longer in it needs no second try.
            unread = {m.id for m in pending}
            self._unacked &= unread
            for message_id in [i for i in self._pushed if i not in unread]:
                del self._pushed[message_id]

    async def ack_loop(self) -> None:
        """Acknowledge, in batches, what the model was shown."""
        while True:
            batch = [await self._ack_recv.receive()]
            while len(batch) < _ACK_BATCH:
                try:
                    batch.append(self._ack_recv.receive_nowait())
                except anyio.WouldBlock:
                    break
            await self._ack(batch)

    async def _ack(self, ids: list[str]) -> None:
        peer = self.peer
        try:
            if peer is not None:
                await self.service.ack(peer.id, ids)
        except PeersError as exc:
            # Still marked shown: acknowledged with the next fetch, never shown twice.
            self._unacked.update(ids)
            log.warning("ack failed; will retry", error=str(exc), count=len(ids))
        else:
            self._unacked.difference_update(ids)
        finally:
            self._acking.difference_update(ids)

    async def _flush_acks(self) -> None:
        batch = []
        while True:
            try:
                batch.append(self._ack_recv.receive_nowait())
            except anyio.WouldBlock:
                break
        if batch:
            await self._ack(batch)

    def step_done(self) -> None:
        """An agent step (a hook's moment) passed: pushes before it are due at the next one."""
        self.results_written += 1

    async def note_hooks_seen(self, at: float) -> None:
        """Store that a hook of this session reached it (``Peer.hooks_at``)."""
        peer = self.peer
        if peer is not None:
            self.peer = await self.service.transport.update_peer(peer.id, PeerUpdate(hooks_at=at))

    async def record_edits(self, paths: list[str]) -> None:
        """Files the agent just edited (from its hooks), added to what other sessions see at once.

        Only paths inside the repository count (they are relative); the next git
        refresh replaces the list with what git says, which includes them while
        they hold uncommitted changes.
        """
        inside = [p for p in paths if not os.path.isabs(p)]
        if not inside:
            return
        async with self._summary_lock:
            # Read under the lock: a git refresh or another edit may have just set them.
            peer = self.peer
            if peer is None:
                return
            files = tuple(dict.fromkeys([*inside, *peer.files]))[: c.MAX_FILES]
            if files != peer.files:
                self.peer = await self.service.set_activity(peer.id, files)

    def call_started(self) -> int:
        """The epoch of a tool call that starts now (see :meth:`take_mail`)."""
        return self.results_written

    def result_written(self, handout: Handout | None = None) -> None:
        """A tool result went out to the client; ``handout`` is the mail it carried."""
        self.results_written += 1
        if handout:
            self.commit(handout)

    def commit(self, handout: Handout) -> None:
        """The model was shown ``handout``: acknowledge it (in the background)."""
        self._mark_shown([m.id for m in handout.messages])

    def release(self, handout: Handout) -> None:
        """``handout`` was never shown (its result was not written): hand it out again."""
        for message in handout.messages:
            self._reserved.discard(message.id)
        if handout:
            self.bell.ring()  # free again: the push loop and any wait look at it now

    def _push_off(self) -> bool:
        # A method, not an inline test: the state changes across awaits.
        return self.push_state is PushState.OFF

    def _due(
        self, message_id: str, pushed: _Pushed, since: int, asked_at: float | None = None
    ) -> tuple[bool, bool]:
        """Whether a pushed message goes with a result of a call of epoch ``since`` (made
        at ``asked_at``), and whether the model may have seen it in the channel already."""
        if self._push_off() or self._dropped(message_id, pushed, asked_at):
            return True, False  # the channel was proven to drop messages
        transcript = self.transcript
        if transcript is not None and message_id in transcript.received:
            # Claude Code holds it queued: it shows it after the current tool result.
            return False, True
        return since > pushed.epoch, True

    def _dropped(self, message_id: str, pushed: _Pushed, asked_at: float | None = None) -> bool:
        """Proof that the channel dropped a push: the transcript went on without any record of it.

        Claude Code records a channel message the moment it receives it, so with no record
        of the message, any of these means it never came: a record created a moment after
        the push (PUSH_RECORD_MARGIN); the file still written to well after it
        (PUSH_DROP_MARGIN); or a tool call (made at ``asked_at``) that Claude Code sent a
        moment after the push, and a transcript that still holds no record of it once
        Claude Code had time to write it (TRANSCRIPT_FLUSH after the call).
        """
        transcript = self.transcript
        if (
            transcript is None
            or message_id in transcript.shown
            or message_id in transcript.received
        ):
            return False
        if transcript.recorded_since(pushed.at + c.PUSH_RECORD_MARGIN):
            return True
        if transcript.written_since(pushed.at + c.PUSH_DROP_MARGIN):
            return True
        return (
            asked_at is not None
            and transcript.caught_up
            and pushed.at <= asked_at - c.PUSH_RECORD_MARGIN
            and time.time() >= asked_at + c.TRANSCRIPT_FLUSH
        )

    def _unproven(self, message_id: str, pushed: _Pushed, asked_at: float) -> bool:
        """A push the transcript says nothing about yet: neither received, shown nor dropped."""
        transcript = self.transcript
        return (
            transcript is not None
            and message_id not in transcript.shown
            and message_id not in transcript.received
            and not self._dropped(message_id, pushed, asked_at)
        )

    async def _settle_pushes(self, since: int, asked_at: float, due_only: bool = False) -> None:
        """Give the transcript a moment to show pushes a result of this call would carry.

        ``due_only``: only those made before the call's epoch (a push of this epoch may
        still be proven dropped by waiting, which a confirmed channel leaves to later).
        """
        transcript = self.transcript
        if transcript is None or self._push_off():
            return
        deadline = time.monotonic() + c.TRANSCRIPT_GRACE
        while True:
            await self._read_transcript()
            # Claude Code creates the file a moment after the session's first records: a
            # file not there yet is waited for like one not written to yet.
            # Every push the transcript is silent on: a moment more may show it received
            # (the channel works) or the session going on without it (dropped).
            waiting = [
                message_id
                for message_id, pushed in self._pushed.items()
                if (not due_only or pushed.epoch < since)
                and self._unproven(message_id, pushed, asked_at)
            ]
            if not waiting or self._push_off():
                break
            if time.monotonic() >= deadline:
                log.info("pushed messages not in the transcript; attaching them", count=len(waiting))
                break
            await anyio.sleep(c.TRANSCRIPT_SETTLE_POLL)
        await self._note_drops(asked_at)

    async def _note_drops(self, asked_at: float | None = None) -> None:
        """Turn push off once the transcript proves the channel dropped a message."""
        for message_id, pushed in list(self._pushed.items()):
            if not self._push_off() and self._dropped(message_id, pushed, asked_at):
                log.warning(
                    "the channel dropped a message (the transcript went on without it); "
                    "push is off for this session, its mail comes with tool results",
                    message_id=message_id,
                )
                await self._set_push(PushState.OFF)

    def _window(self, cap: int | None = c.MAX_FETCH_WINDOW) -> int:
        """How many pending messages to fetch: past those pushed, reserved, being
        acknowledged or whose ack was refused, to new ones (at most ``cap``, if given)."""
        wanted = (
            c.FETCH_LIMIT
            + len(self._pushed)
            + len(self._reserved)
            + len(self._acking)
            + len(self._unacked)
        )
        return wanted if cap is None else min(wanted, cap)

    async def take_mail(
        self,
        since: int,
        budget: int = c.MAX_RESULT_MAIL_BYTES,
        *,
        match: Callable[[Message], bool] | None = None,
        asked_at: float | None = None,
        channel_first: bool = False,
    ) -> Handout:
        """Unread mail for a result of a call of epoch ``since`` (:meth:`call_started`),
        made at ``asked_at`` (now if not given).

        The mail is reserved for that result: :meth:`commit` it once the result was
        written, :meth:`release` it if it never will be. Never-pushed mail and mail
        the channel dropped go out at once; a push is held back as :meth:`_due` says.
        With ``match``, only the messages it accepts are taken; the others stay
        unread and are listed in :attr:`Handout.unmatched`, and matching ones held
        back for the channel in :attr:`Handout.on_channel`.

        With ``channel_first`` (a tool result that is not check_messages), a session
        whose channel is proven to work leaves new mail to the push loop and takes
        only pushes that are due (see :meth:`_take_pushed`).
        """
        peer = self.peer
        if peer is None:
            return Handout()
        if asked_at is None:
            asked_at = time.time()
        if channel_first and match is None and self.push_state is PushState.CONFIRMED:
            if self._pushed:
                await self._settle_pushes(since, asked_at, due_only=True)
            if self.push_state is PushState.CONFIRMED:
                return self._take_pushed(since, budget, asked_at)
        if self._pushed:
            await self._settle_pushes(since, asked_at)
        async with self._mail_lock:
            window = self._window()
            pending = await self.service.pending(peer.id, window)
            self._ack_again(pending, window)
            chosen: list[Message] = []
            unmatched: list[Message] = []
            on_channel: list[Message] = []
            unsure: set[str] = set()
            for message in pending:
                if message.id in self._shown or message.id in self._reserved:
                    continue
                wanted = match is None or match(message)
                pushed = self._pushed.get(message.id)
                if pushed is not None:
                    due, maybe_seen = self._due(message.id, pushed, since, asked_at)
                    if not due:
                        if wanted and match is not None:
                            on_channel.append(message)
                        continue
                    if maybe_seen:
                        unsure.add(message.id)
                if not wanted:
                    unmatched.append(message)
                    continue
                chosen.append(message)
            kept = _within(chosen, budget)
            more = len(chosen) - len(kept) + len(unmatched)
            if len(pending) >= window:
                more = max(more, 1)  # a full batch: more are behind it
            self._reserved.update(m.id for m in kept)
        return Handout(
            kept,
            frozenset(unsure & {m.id for m in kept}),
            more,
            unmatched=tuple(unmatched),
            on_channel=tuple(on_channel),
        )

    def _take_pushed(self, since: int, budget: int, asked_at: float) -> Handout:
        """:meth:`take_mail` where the channel is confirmed: the pushes due to this result.

        The channel delivers new mail within milliseconds, so reading the mailbox for
        every tool result would be work for nothing (a third of a busy session's
        send rate); what a result may still owe the model is a push the transcript
        has not shown, and those are all known here.

        No await from here on, so no mail lock: the push loop, which holds it while
        it writes, never leaves ``_pushed`` half changed across an await, and pushes
        nothing reserved. Waiting for it made nearly every result of a busy session
        wait for a push's write.
        """
        chosen: list[Message] = []
        unsure: set[str] = set()
        for message_id, pushed in self._pushed.items():
            if message_id in self._shown or message_id in self._reserved:
                continue
            due, maybe_seen = self._due(message_id, pushed, since, asked_at)
            if not due:
                continue
            chosen.append(pushed.message)
            if maybe_seen:
                unsure.add(message_id)
        kept = _within(chosen, budget)
        self._reserved.update(m.id for m in kept)
        return Handout(kept, frozenset(unsure & {m.id for m in kept}), len(chosen) - len(kept))

    # -- waiting for mail ------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def _listen_for_mail(self, timeout: float) -> bool:
        """The bell's one wait on the transport (see :mod:`peers.mailbell`)."""
        peer = self.peer
        if peer is None:
            await anyio.sleep(min(timeout, 0.5))
            return True  # registered meanwhile, perhaps: the waiters look again
        return await self.service.wait_for_mail(peer.id, timeout)

    @contextlib.contextmanager
    def waiting_for(self, match: Callable[[Message], bool]) -> Iterator[None]:
        """While a wait_for_messages runs: the push loop leaves messages it matches to it."""
        key = self._next_wait
        self._next_wait += 1
        self._waits[key] = match
        try:
            yield
        finally:
            del self._waits[key]
            # A message held for the wait and not taken by it goes by push after all.
            self.bell.ring()

    def _taken(self, message_id: str) -> bool:
        """Shown, reserved for a result, or pushed already: not the push loop's to push."""
        return message_id in self._shown or message_id in self._reserved or message_id in self._pushed

    def _held_for_a_wait(self, message: Message) -> bool:
        return any(match(message) for match in self._waits.values())

    # -- push ------------------------------------------------------------------

    async def push_loop(self, deliver: PushCallback) -> None:
        """Push each message as it arrives; it stays pending until shown (see the module)."""
        await self.registered.wait()
        while not self._stopping and not self._push_off():
            peer = self.peer
            if peer is None or self.backend_error is not None:
                await anyio.sleep(0.5)
                continue
            try:
                pushed_now = 0
                # Before the read: a send after it rings past this mark.
                mark = self.bell.mark()
                async with self._mail_lock:
                    now = time.monotonic()
                    if now - self._full_read_at >= c.PUSH_FULL_READ_EVERY:
                        # Past every push waiting for proof: no cap, or a fetch full of
                        # them (an idle session makes no tool call to hand them out) would
                        # keep newer mail from ever being pushed. The mailbox cap
                        # (max_unread) bounds it.
                        self._full_read_at = now
                        window = self._window(cap=None)
                        messages = await self.service.pending(peer.id, window)
                        self._ack_again(messages, window)
                    else:
                        # What is known here already stays in the store: in a burst,
                        # reading every waiting push again cost ten rows per message.
                        window = c.FETCH_LIMIT
                        skip = self._pushed.keys() | self._reserved | self._acking
                        messages = await self.service.pending(peer.id, window, skip)
                        self._ack_again(messages, window, complete=False)
                    read = len(messages)
                    # Sorted out before the first await: a message shown meanwhile may be
                    # acknowledged and forgotten by _shown before the loop reaches it.
                    messages = [m for m in messages if not self._taken(m.id)]
                    for message in messages:
                        if self._stopping or self._push_off():
                            return
                        if self._taken(message.id) or self._held_for_a_wait(message):
                            continue
                        sender = await self.sender_of(message)
                        self._pushing.add(message.id)
                        try:
                            await deliver(message, sender)
                        finally:
                            self._pushing.discard(message.id)
                        # Recorded only once written: a failed push is tried again.
                        self._pushed[message.id] = _Pushed(time.time(), self.results_written, message)
                        self._new_push.set()
                        pushed_now += 1
                if read >= window and pushed_now:
                    continue
                await self.bell.wait(mark, self.settings.safety_recheck)
            except PeersError as exc:
                log.warning("mail delivery paused", error=str(exc))
                await anyio.sleep(1.0)

    async def watch_transcript(self) -> None:
        """While pushes wait for proof, read the transcript: acknowledge what it shows."""
        if self.transcript is None:
            return
        while not self._stopping and not self._push_off():
            if not self._pushed:
                await self._new_push.wait()
                self._new_push = anyio.Event()
                continue
            await self._read_transcript()
            await anyio.sleep(c.TRANSCRIPT_POLL)

    async def _read_transcript(self) -> None:
        transcript = self.transcript
        if transcript is None or not self._pushed or not transcript.read():
            return
        shown = [message_id for message_id in self._pushed if message_id in transcript.shown]
        if shown:
            self._mark_shown(shown)
        # Only pushes still waiting for proof (or being written) are asked about: of what
        # the transcript showed, the rest is done with. Forgotten in bulk, now and then:
        # each read costs nothing extra with thousands of pushes waiting.
        if transcript.held > 2 * len(self._pushed) + _TRANSCRIPT_SLACK:
            transcript.keep_only(self._pushed.keys() | self._pushing)
        if shown and self.push_state is not PushState.CONFIRMED:
            log.info("push confirmed: the transcript shows channel messages")
            await self._set_push(PushState.CONFIRMED)
        await self._note_drops()

    def follow_transcript(self, path: str) -> None:
        """The session's transcript is now ``path`` (from a hook's input): ``/clear`` and
        resuming start a new one while this server runs on.

        A push the old transcript never showed did not reach the new conversation:
        it counts as never pushed (the next hook or result carries it).
        """
        transcript = self.transcript
        if transcript is None or not path.endswith(".jsonl") or not os.path.isabs(path):
            return
        new = Path(path)
        if new in (transcript.expected, transcript.path):
            return
        log.info("the session's transcript changed (/clear or resume); following it", path=path)
        self.transcript = Transcript(new, transcript.server)
        if self._pushed:
            self._pushed.clear()
            self.bell.ring()

    async def _set_push(self, state: PushState) -> None:
        self.push_state = state
        await self._save_push_state()

    async def _save_push_state(self) -> None:
        """Store the push state (again at the next heartbeat if the store is away)."""
        peer = self.peer
        if peer is None or self._push_saved is self.push_state:
            return
        try:
            self.peer = await self.service.transport.update_peer(
                peer.id, PeerUpdate(push=self.push_state, receive_mode=self.receive_mode)
            )
            self._push_saved = self.push_state
        except PeersError as exc:
            log.debug("could not store the push state yet", error=str(exc))
