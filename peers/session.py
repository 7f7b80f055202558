"""One agent session's life in peers: registration, heartbeat, files, and mail.

This is what ``peers serve`` runs beside the MCP protocol: it registers the
session with its context, keeps it alive, re-registers after a backend outage,
derives a default summary from git, and hands out mail exactly once (by push
through a callback, or to the poll path).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from peers import constants as c
from peers.config import Settings
from peers.errors import BackendError, NameTaken, PeerNotFound, PeersError
from peers.gitinfo import GitContext, changed_files, git_context
from peers.log import get_logger
from peers.models import Message, Peer, ReceiveMode
from peers.procinfo import ancestors, process_start_time
from peers.service import PeersService

__all__ = ["Session", "SessionContext", "default_summary", "detect_tty"]

log = get_logger("peers.session")

_HANDED_OUT_MEMORY = 10_000

PushCallback = Callable[[Message, Peer | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SessionContext:
    cwd: str
    git: GitContext
    tty: str | None
    client: str
    receive_mode: ReceiveMode
    name: str | None


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
    """A registered peer kept alive, with its mail handed out exactly once."""

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
        # One fetch-and-ack at a time: push, check_messages and tool results share it.
        self._mail_lock = anyio.Lock()
        # The agent's set_summary and the git refresh must not overwrite each other.
        self._summary_lock = anyio.Lock()
        self._stopping = False
        self._senders: dict[str, tuple[float, Peer | None]] = {}
        # Ids already handed to the agent: if an ack is lost (backend outage right
        # after delivery), the redelivered copy is acked again but not shown twice.
        self._handed_out: OrderedDict[str, None] = OrderedDict()

    # -- registration ----------------------------------------------------------

    async def build_context(
        self, client: str, receive_mode: ReceiveMode, cwd: str | None = None
    ) -> SessionContext:
        cwd = cwd or os.environ.get("CLAUDE_PROJECT_DIR") or os.getcwd()
        git = await git_context(cwd)
        self.context = SessionContext(
            cwd=cwd,
            git=git,
            tty=detect_tty(),
            client=client,
            receive_mode=receive_mode,
            name=self.settings.name,
        )
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
            receive_mode=ctx.receive_mode,
            summary=default_summary(ctx.git, ctx.cwd, self.settings.max_summary_bytes),
            files=ctx.git.changed_files,
        )
        if peer_id is not None:
            # Re-registration after an outage keeps the id, so replies still reach us.
            peer = peer.model_copy(update={"id": peer_id})
        return peer

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
        self.backend_error = None
        self.registered.set()
        log.info(
            "registered",
            peer_id=self.peer.id,
            name=self.peer.name,
            receive_mode=self.peer.receive_mode.value,
        )
        return self.peer

    async def unregister(self) -> None:
        self._stopping = True
        if self.peer is None:
            return
        # Let a delivery in progress finish its ack before the record goes offline.
        with anyio.move_on_after(2):
            await self._mail_lock.acquire()
            self._mail_lock.release()
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
        """The sending peer (cached briefly) for summary and cwd in push meta."""
        cached = self._senders.get(message.sender_id)
        if cached is not None and time.monotonic() - cached[0] < 30:
            return cached[1]
        try:
            peer = await self.service.transport.get_peer(message.sender_id)
        except PeersError:
            peer = None
        self._senders[message.sender_id] = (time.monotonic(), peer)
        return peer

    def _first_time(self, messages: list[Message]) -> list[Message]:
        fresh = [m for m in messages if m.id not in self._handed_out]
        for m in fresh:
            self._handed_out[m.id] = None
        while len(self._handed_out) > _HANDED_OUT_MEMORY:
            self._handed_out.popitem(last=False)
        return fresh

    @asynccontextmanager
    async def mail_for_result(self) -> AsyncIterator[list[Message]]:
        """Unread mail for a tool result (the poll path), acked once the result is built.

        If the body fails or the call is cancelled first, nothing is acked and the
        mail comes with the next call instead.
        """
        peer = self.peer
        if peer is None:
            yield []
            return
        async with self._mail_lock:
            messages = await self.service.pending(peer.id)
            fresh = [m for m in messages if m.id not in self._handed_out]
            yield fresh
            with anyio.CancelScope(shield=True):
                self._first_time(fresh)
                try:
                    await self.service.ack(peer.id, [m.id for m in messages])
                except PeersError as exc:
                    # Marked as handed out: acked at the next chance, never shown twice.
                    log.warning("ack failed; will retry", error=str(exc))

    async def push_loop(self, deliver: PushCallback) -> None:
        """Push each message as it arrives; ack once its notification is written."""
        await self.registered.wait()
        while not self._stopping:
            peer = self.peer
            if peer is None or self.backend_error is not None:
                await anyio.sleep(0.5)
                continue
            try:
                async with self._mail_lock:
                    messages = await self.service.pending(peer.id, c.FETCH_LIMIT)
                    for message in messages:
                        if self._stopping:
                            return
                        if message.id not in self._handed_out:
                            await deliver(message, await self.sender_of(message))
                            # Marked only once written: a failed push is tried again.
                            self._first_time([message])
                        # Ack one by one: a crash mid-batch re-sends only the unacked rest.
                        await self.service.ack(peer.id, [message.id])
                if len(messages) >= c.FETCH_LIMIT:
                    continue
                await self.service.wait_for_mail(peer.id, self.settings.safety_recheck)
            except PeersError as exc:
                log.warning("mail delivery paused", error=str(exc))
                await anyio.sleep(1.0)
