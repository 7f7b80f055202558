"""The service layer: every rule of peers, above any transport.

The MCP server and the CLI are thin faces over :class:`PeersService`; neither
talks to a store directly. Validation, limits, scopes, name resolution,
broadcast, reply checks, rate limits and the kill rules all live here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import struct
import time
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio

from peers import constants as c
from peers.clients import process_marker
from peers.config import Settings
from peers.errors import (
    AmbiguousTarget,
    BackendError,
    BackendUnavailable,
    InvalidInput,
    MessageNotFound,
    NotPermitted,
    PeerNotFound,
    PeersError,
    RateLimited,
)
from peers.ids import new_message_id, new_peer_id
from peers.models import (
    Message,
    Peer,
    PeerFilter,
    PeerUpdate,
    PushState,
    ReceiveMode,
    Scope,
    SenderKind,
)
from peers.procinfo import find_agent_process, process_alive, process_info, process_start_time
from peers.text import clean_text
from peers.transports.base import Transport

__all__ = [
    "BroadcastResult",
    "Delivery",
    "KillResult",
    "PeersService",
    "SendResult",
    "Sender",
    "clean_text",
    "signal_process",
]

Delivery = Literal["push", "poll", "queued"]

CLI_ID_PREFIX = c.RESERVED_NAME_PREFIX
_SCOPES = [s.value for s in Scope]
_REPEATS_KEPT = 1_000


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends: a registered peer, or an ephemeral command-line sender."""

    id: str
    name: str | None
    kind: SenderKind
    peer: Peer | None = None

    @classmethod
    def of(cls, peer: Peer) -> Sender:
        return cls(peer.id, peer.name, SenderKind.PEER, peer)

    @classmethod
    def cli(cls, label: str | None = None) -> Sender:
        # A fresh id each time: nobody can reply to it by accident.
        user = label or os.environ.get("USER") or "cli"
        return cls(CLI_ID_PREFIX + new_peer_id(), f"cli:{user}"[:64], SenderKind.CLI)


@dataclass(frozen=True, slots=True)
class SendResult:
    message: Message
    recipient: Peer
    delivery: Delivery
    # True when this is the result of an identical send moments earlier (a retry):
    # nothing was sent a second time.
    repeat: bool = False

    @property
    def how(self) -> str:
        """How the recipient will get it, in words."""
        if self.delivery == "queued":
            return "the peer is offline; the message waits for its next session"
        if self.delivery == "poll":
            return "it will see it with its next peers tool call"
        if self.recipient.push is PushState.CONFIRMED:
            return "it will arrive by push"
        return (
            "pushed, and kept unread until its model is shown it (by the channel, or with "
            "its next peers tool call)"
        )

    @property
    def summary(self) -> str:
        if self.repeat:
            return (
                f"already sent as {self.message.id} to {self.recipient.label} moments ago; "
                "not sent again (change the text to send another message)"
            )
        return f"sent {self.message.id} to {self.recipient.label}: {self.how}"


# A repeat is recognised by a digest of who sent what to whom, not by the text: a
# thousand 32 KB bodies would be 32 MB kept for nothing. Each send is kept as two small
# objects, that digest and its time and message id packed in bytes (what a repeat answers
# with is read back from the store): kept as objects of their own (a tuple, its floats,
# the recipient's record) a burst's last thousand sends pinned allocator pages for good.
_SENT_AT = struct.Struct("d")


def _repeat_key(sender_id: str, recipient_id: str, text: str, reply: str | None) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{sender_id}\0{recipient_id}\0{reply or ''}\0".encode())
    digest.update(text.encode("utf-8", errors="surrogatepass"))
    return digest.digest()


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    scope: Scope
    results: tuple[SendResult, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class KillResult:
    peer: Peer
    pid: int
    command: str
    signal: str


# Sends within this long of the first in an entry share it, timed by the latest:
# a window of at most 60 entries however fast one sends (a float per send, kept a
# minute, pinned memory after every burst), and never more lenient than exact.
_RATE_BUCKET = 1.0


class _Window:
    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque[list[float]] = deque()  # [first, latest, count]
        self.total = 0


class _RateLimiter:
    """A sliding one-minute window per sender id."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._sent: dict[str, _Window] = {}

    def check(self, sender_id: str, cost: int = 1) -> None:
        now = time.monotonic()
        window = self._sent.get(sender_id)
        if window is None:
            window = self._sent[sender_id] = _Window()
        entries = window.entries
        while entries and entries[0][1] <= now - 60.0:
            window.total -= int(entries.popleft()[2])
        if window.total + cost > self.per_minute:
            wait = 60.0 - (now - entries[0][1]) if entries else 60.0
            raise RateLimited(
                f"rate limit reached: at most {self.per_minute} messages a minute "
                f"(PEERS_RATE_LIMIT); try again in {wait:.0f} s. If two agents keep "
                "answering each other, stop replying to messages that need no answer.",
                hint=f"wait {wait:.0f} s before sending again; do not answer messages that "
                "need no answer",
            )
        window.total += cost
        if entries and now - entries[-1][0] < _RATE_BUCKET:
            entries[-1][1] = now
            entries[-1][2] += cost
        else:
            entries.append([now, now, cost])


class PeersService:
    """The rules of peers over one transport (one namespace)."""

    def __init__(self, transport: Transport, settings: Settings) -> None:
        from peers.claiming import Claims

        self.transport = transport
        self.settings = settings
        # File claims: the rules above the store, and the edit guard's verdicts.
        self.claims = Claims(self)
        self._rate = _RateLimiter(settings.rate_limit)
        # Recent sends by what they sent, to answer a retry with the first result.
        self._recent: dict[bytes, bytes] = {}
        self._recipients: dict[str, tuple[float, Peer]] = {}

    # -- validation ----------------------------------------------------------

    def validate_name(self, name: object) -> str:
        if isinstance(name, str):
            name = clean_text(name).strip()
        if not isinstance(name, str) or not c.NAME_PATTERN.fullmatch(name):
            raise InvalidInput(
                f"invalid name {name!r}: a name is {c.NAME_RULE}", hint=f"a name is {c.NAME_RULE}"
            )
        if name.startswith(c.RESERVED_NAME_PREFIX):
            # Refused rather than resolved first: a from_id or name starting with cli- then
            # always means a command-line sender, which nobody can answer.
            raise InvalidInput(
                f"invalid name {name!r}: {c.RESERVED_NAME_RULE}",
                hint=f"pick a name that does not start with '{c.RESERVED_NAME_PREFIX}'",
            )
        return name

    def validate_body(self, body: object) -> str:
        if not isinstance(body, str):
            raise InvalidInput(f"message must be text, not {type(body).__name__}")
        cleaned = clean_text(body)
        if not cleaned.strip():
            raise InvalidInput(
                "message is empty; write some text to send", hint="write some text to send"
            )
        size = _utf8_len(cleaned)
        limit = self.settings.max_message_bytes
        if size > limit:
            raise InvalidInput(
                f"message is {size:,} bytes; the limit is {limit:,} bytes "
                "(PEERS_MAX_MESSAGE_BYTES): shorten it or point to a file instead",
                hint="shorten it, or write the details to a file and send its path",
            )
        return cleaned

    def validate_summary(self, summary: object) -> str:
        if not isinstance(summary, str):
            raise InvalidInput(f"summary must be text, not {type(summary).__name__}")
        cleaned = clean_text(summary).strip()
        size = _utf8_len(cleaned)
        limit = self.settings.max_summary_bytes
        if size > limit:
            raise InvalidInput(
                f"summary is {size:,} bytes; the limit is {limit:,} bytes (PEERS_MAX_SUMMARY_BYTES)",
                hint="say it in a sentence or two",
            )
        return cleaned

    def validate_files(self, files: Sequence[str]) -> tuple[str, ...]:
        cleaned = tuple(clean_text(f).strip() for f in files if isinstance(f, str))
        return tuple(f for f in cleaned if f)[: c.MAX_FILES]

    @staticmethod
    def parse_scope(scope: object) -> Scope:
        if isinstance(scope, Scope):
            return scope
        allowed = ", ".join(_SCOPES)
        if not isinstance(scope, str):
            raise InvalidInput(f"scope must be one of: {allowed}", allowed=_SCOPES)
        try:
            return Scope(scope.strip().lower())
        except ValueError:
            raise InvalidInput(
                f"unknown scope {scope!r}; use one of: {allowed}", allowed=_SCOPES
            ) from None

    # -- peers ---------------------------------------------------------------

    def new_peer(
        self,
        *,
        cwd: str,
        pid: int,
        pid_start: float | None,
        name: str | None = None,
        git_root: str | None = None,
        git_common_dir: str | None = None,
        git_remote: str | None = None,
        branch: str | None = None,
        tty: str | None = None,
        client: str = "unknown",
        receive_mode: ReceiveMode = ReceiveMode.POLL,
        summary: str = "",
        files: Sequence[str] = (),
    ) -> Peer:
        """A peer record for this host and namespace with a fresh id (validated, not stored)."""
        return Peer(
            id=new_peer_id(),
            namespace=self.transport.namespace,
            name=self.validate_name(name) if name is not None else None,
            host=self.settings.host,
            pid=pid,
            pid_start=pid_start,
            cwd=cwd,
            git_root=git_root,
            git_common_dir=git_common_dir,
            git_remote=git_remote,
            branch=clean_text(branch) if branch is not None else None,
            tty=tty,
            client=client,
            receive_mode=receive_mode,
            summary=self.validate_summary(summary),
            files=self.validate_files(files),
        )

    async def register(self, peer: Peer) -> Peer:
        """Store a peer as live (claims its name; inherits the name's unread mail)."""
        return await self.transport.register(peer)

    async def unregister(self, peer_id: str) -> None:
        await self.transport.unregister(peer_id)

    async def heartbeat(self, peer_id: str) -> None:
        await self.transport.heartbeat(peer_id)

    async def set_summary(self, peer_id: str, summary: object) -> Peer:
        return await self.transport.update_peer(
            peer_id, PeerUpdate(summary=self.validate_summary(summary))
        )

    async def set_activity(
        self, peer_id: str, files: Sequence[str], summary: object | None = None
    ) -> Peer:
        """The files being changed and, optionally, a new (derived) summary."""
        return await self.transport.update_peer(
            peer_id,
            PeerUpdate(
                files=self.validate_files(files),
                summary=None if summary is None else self.validate_summary(summary),
            ),
        )

    async def set_name(self, peer_id: str, name: object) -> Peer:
        return await self.transport.update_peer(peer_id, PeerUpdate(name=self.validate_name(name)))

    def scope_filter(self, scope: Scope, me: Peer | None, exclude_self: bool = True) -> PeerFilter:
        """The filter for a scope as seen from ``me`` (or from this host, without a peer)."""
        exclude = me.id if me is not None and exclude_self else None
        if scope is Scope.ALL:
            return PeerFilter(exclude_id=exclude)
        if scope is Scope.MACHINE:
            return PeerFilter(host=me.host if me else self.settings.host, exclude_id=exclude)
        if me is None:
            raise InvalidInput(
                f"scope '{scope.value}' needs a session; use 'machine' or 'all'",
                allowed=["machine", "all"],
            )
        if scope is Scope.DIRECTORY:
            return PeerFilter(host=me.host, cwd=me.cwd, exclude_id=exclude)
        if me.git_common_dir is None and me.git_remote is None:
            raise InvalidInput(
                f"scope 'repo' needs a git repository, and {me.cwd} is not in one; "
                "use 'directory', 'machine' or 'all'",
                allowed=["directory", "machine", "all"],
            )
        # A common dir is only comparable on one host; the remote works anywhere.
        return PeerFilter(
            git_common_dir=me.git_common_dir, git_remote=me.git_remote, exclude_id=exclude
        )

    async def list_peers(self, scope: object = Scope.MACHINE, me: Peer | None = None) -> list[Peer]:
        """Live peers in a scope, other than ``me``."""
        flt = self.scope_filter(self.parse_scope(scope), me)
        peers = await self.transport.list_peers(flt)
        self._refresh_recipients(peers)
        if flt.git_common_dir is not None and me is not None:
            # Same common dir counts only on the same host (paths mean nothing elsewhere).
            peers = [
                p
                for p in peers
                if (p.git_remote and p.git_remote == me.git_remote)
                or (p.host == me.host and p.git_common_dir == me.git_common_dir)
            ]
        return peers

    async def _follow_successors(self, peer: Peer | None) -> Peer | None:
        """The session that took over this peer's name (and mail), if any."""
        for _ in range(c.MAX_SUCCESSOR_HOPS):
            if peer is None or peer.successor is None:
                return peer
            peer = await self.transport.get_peer(peer.successor) or peer.model_copy(
                update={"successor": None}
            )
        return peer

    async def resolve(self, target: object) -> Peer:
        """A peer from an id, a name, or an unambiguous prefix of either."""
        if not isinstance(target, str) or not target.strip():
            raise InvalidInput(
                "target must be a peer id or name (see list_peers)",
                hint="call list_peers for the ids and names of the live sessions",
            )
        target = target.strip()
        if target.startswith(CLI_ID_PREFIX):
            raise PeerNotFound(
                f"{target} was a command-line sender; there is no session to reply to",
                hint="messages typed on the command line cannot be answered",
            )
        peer = await self._follow_successors(await self.transport.get_peer(target))
        if peer is not None and peer.online:
            return peer
        by_name = await self.transport.get_peer_by_name(target.lower())
        if by_name is not None:
            return by_name
        if peer is not None:
            if peer.name or peer.successor:
                return peer  # the transport forwards to whoever took the name
            raise PeerNotFound(
                f"peer {peer.id} went offline and had no name, so no later session will "
                "read mail sent to it",
                hint="call list_peers for the sessions that are live now",
            )
        live = await self.transport.list_peers(PeerFilter())
        matches = {
            p.id: p
            for p in live
            if p.id.startswith(target) or (p.name is not None and p.name.startswith(target.lower()))
        }
        if len(matches) == 1:
            return next(iter(matches.values()))
        if len(matches) > 1:
            raise AmbiguousTarget(target, sorted(p.label for p in matches.values()))
        raise PeerNotFound(
            f"no peer '{target}' in namespace '{self.transport.namespace}'; "
            "list the peers to see who is there",
            hint="send to one of the live sessions (list_peers shows them with what they do)",
        )

    async def whois(self, peer_id: str) -> Peer:
        peer = await self.transport.get_peer(peer_id)
        if peer is None:
            raise PeerNotFound(f"no peer with id '{peer_id}'")
        return peer

    # -- messages ------------------------------------------------------------

    def is_live(self, peer: Peer) -> bool:
        """The contract's liveness rule, for a record already in hand."""
        fresh = peer.last_seen >= time.time() - self.settings.peer_ttl
        return peer.is_live(self.settings.host, fresh=fresh)

    def _delivery(self, peer: Peer) -> Delivery:
        if not self.is_live(peer):
            return "queued"
        return "push" if peer.receive_mode is ReceiveMode.PUSH else "poll"

    async def _check_reply_to(self, sender: Sender, reply_to: object) -> str | None:
        if reply_to is None or reply_to == "":
            return None
        if not isinstance(reply_to, str):
            raise InvalidInput("reply_to must be a message id (text)")
        hint = (
            "set reply_to to the message_id of the message you answer (as shown with it), "
            "or leave it out"
        )
        original = await self.transport.get_message(reply_to.strip())
        if original is None:
            raise MessageNotFound(
                f"reply_to '{reply_to}' is not a message id known in the last "
                f"{self.settings.retention / 86400:g} days",
                hint=hint,
            )
        if sender.id not in (original.sender_id, original.recipient_id):
            raise InvalidInput(
                f"reply_to '{reply_to}' is not a message you sent or received", hint=hint
            )
        return original.id

    def _message(
        self, sender: Sender, recipient: Peer, body: str, reply_to: str | None, broadcast: bool
    ) -> Message:
        return Message(
            id=new_message_id(),
            namespace=self.transport.namespace,
            sender_id=sender.id,
            sender_name=sender.name,
            sender_kind=sender.kind,
            recipient_id=recipient.id,
            body=body,
            reply_to=reply_to,
            broadcast=broadcast,
        )

    def _refresh_recipients(self, peers: Sequence[Peer]) -> None:
        """Fresher records (a listing) replace what send reuses: what it says stays current."""
        if not self._recipients:
            return
        fresh = {p.id: p for p in peers}
        for key, (at, peer) in list(self._recipients.items()):
            if peer.id in fresh:
                self._recipients[key] = (at, fresh[peer.id])

    async def _recipient(self, target: object) -> Peer:
        """:meth:`resolve`, reused for c.RECIPIENT_CACHE_SECONDS when it named a live record."""
        key = target.strip() if isinstance(target, str) else None
        now = time.monotonic()
        if key is not None:
            hit = self._recipients.get(key)
            if hit is not None and now - hit[0] < c.RECIPIENT_CACHE_SECONDS:
                return hit[1]
        peer = await self.resolve(target)
        if key is not None and peer.online:
            if len(self._recipients) >= 1024:
                self._recipients.clear()
            self._recipients[key] = (now, peer)
        return peer

    async def send(
        self, sender: Sender, target: object, body: object, reply_to: object = None
    ) -> SendResult:
        """Send one message to a peer by id or name (queued if the named peer is offline)."""
        text = self.validate_body(body)
        recipient = await self._recipient(target)
        if recipient.id == sender.id:
            raise InvalidInput(
                "that is your own id; pick another peer (list_peers)",
                hint="call list_peers for the other sessions",
            )
        reply = await self._check_reply_to(sender, reply_to)
        key = _repeat_key(sender.id, recipient.id, text, reply)
        earlier = self._repeat_of(key)
        if earlier is not None and (repeat := await self._repeat(earlier)) is not None:
            return repeat
        self._rate.check(sender.id)
        message = self._message(sender, recipient, text, reply, False)
        # Once the write starts it finishes: a cancelled call (the agent gave up
        # waiting) leaves the message stored once, and a retry finds it below.
        with anyio.CancelScope(shield=True):
            try:
                stored = await self.transport.send(message)
            except PeerNotFound:
                if isinstance(target, str):
                    self._recipients.pop(target.strip(), None)  # gone: look again next time
                raise
            if stored.recipient_id != recipient.id:
                recipient = await self.whois(stored.recipient_id)
            result = SendResult(stored, recipient, self._delivery(recipient))
            self._remember(key, result)
        return result

    def _repeat_of(self, key: bytes) -> str | None:
        """The id of the message a send of ``key`` made within SEND_REPEAT_WINDOW, if any."""
        now = time.monotonic()
        while self._recent:
            oldest_key = next(iter(self._recent))
            (at,) = _SENT_AT.unpack_from(self._recent[oldest_key])
            if now - at <= c.SEND_REPEAT_WINDOW and len(self._recent) <= _REPEATS_KEPT:
                break
            del self._recent[oldest_key]
        kept = self._recent.get(key)
        return kept[_SENT_AT.size :].decode() if kept is not None else None

    async def _repeat(self, message_id: str) -> SendResult | None:
        """The result a repeat answers with: the first send's, as stored (None if gone)."""
        stored = await self.transport.get_message(message_id)
        if stored is None:
            return None
        try:
            recipient = await self.whois(stored.recipient_id)
        except PeerNotFound:
            return None  # sent again, and refused the way a new send is
        return SendResult(stored, recipient, self._delivery(recipient), repeat=True)

    def _remember(self, key: bytes, result: SendResult) -> None:
        self._recent.pop(key, None)  # a newer send of it goes last
        self._recent[key] = _SENT_AT.pack(time.monotonic()) + result.message.id.encode()

    async def broadcast(
        self, sender: Sender, body: object, scope: object = Scope.MACHINE
    ) -> BroadcastResult:
        """One message to every live peer in the scope, never to the sender."""
        text = self.validate_body(body)
        scope_ = self.parse_scope(scope)
        recipients = await self.list_peers(scope_, sender.peer)
        recipients = [p for p in recipients if p.id != sender.id]
        self._rate.check(sender.id, cost=max(1, len(recipients)))
        # All at once: a transport stores sends that arrive together in one write
        # (SQLite's group commit, one Redis script call). Shielded like send().
        with anyio.CancelScope(shield=True):
            outcomes = await asyncio.gather(
                *(
                    self.transport.send(self._message(sender, p, text, None, True))
                    for p in recipients
                ),
                return_exceptions=True,
            )
        results = []
        failed: list[BaseException] = []
        for peer, outcome in zip(recipients, outcomes, strict=True):
            if isinstance(outcome, PeerNotFound):
                continue  # left (and was removed) since it was listed: nobody to reach
            if isinstance(outcome, BaseException):
                failed.append(outcome)
                continue
            results.append(SendResult(outcome, peer, self._delivery(peer)))
        if failed:
            if not results or not isinstance(failed[0], PeersError):
                raise failed[0]
            # Say who has it: a blind retry would send them a second copy.
            reached = ", ".join(r.recipient.label for r in results)
            kind = BackendUnavailable if isinstance(failed[0], BackendUnavailable) else BackendError
            raise kind(
                f"the broadcast reached {len(results)} of {len(results) + len(failed)} peers "
                f"({reached}) and failed for the rest: {failed[0]}"
            ) from failed[0]
        return BroadcastResult(scope_, tuple(results))

    async def pending(
        self, peer_id: str, limit: int = c.FETCH_LIMIT, skip: Collection[str] = ()
    ) -> list[Message]:
        """Unread mail without consuming it (leaving out the ids in ``skip``)."""
        return await self.transport.fetch(peer_id, limit, skip)

    async def ack(self, peer_id: str, message_ids: Sequence[str]) -> int:
        return await self.transport.ack(peer_id, message_ids) if message_ids else 0

    async def check_messages(self, peer_id: str, limit: int = c.FETCH_LIMIT) -> list[Message]:
        """Return the unread mail and acknowledge it (the poll path)."""
        messages = await self.transport.fetch(peer_id, limit)
        await self.ack(peer_id, [m.id for m in messages])
        return messages

    async def wait_for_mail(self, peer_id: str, timeout: float) -> bool:
        return await self.transport.wait_for_mail(peer_id, timeout)

    # -- kill ----------------------------------------------------------------

    async def kill_peer(
        self,
        target: object,
        requester: Peer | None = None,
        sig: signal.Signals = signal.SIGTERM,
        *,
        dry_run: bool = False,
        expect_pid: int | None = None,
    ) -> KillResult:
        """End the agent session behind a peer on this host owned by this user.

        The process signalled is the agent above the peer's MCP server, past the
        launchers whose command lines lead to peers (uv, env, ``sh -c``...). When
        that process is clearly no agent (a shell, tmux, sshd, a terminal, init) or
        not the client the peer registered as, nothing is signalled: a wrong guess
        would end someone's terminal. ``dry_run`` checks everything and names the
        process without signalling it; ``expect_pid`` refuses if the agent is no
        longer the process named earlier (a confirmation prompt came in between).
        """
        from peers.procinfo import ancestors  # only kill needs this process's own ancestry

        peer = await self.resolve(target)
        if requester is not None and peer.id == requester.id:
            raise NotPermitted("refusing to end your own session")
        if peer.host != self.settings.host:
            raise NotPermitted(
                f"{peer.label} runs on host '{peer.host}', not this host ('{self.settings.host}'); "
                "a session can only be ended from its own host"
            )
        if not self.is_live(peer):
            raise PeerNotFound(
                f"{peer.label} is not running: it left, went unseen for over "
                f"{self.settings.peer_ttl:g} s, or its MCP server (pid {peer.pid}) is gone"
            )
        server = process_info(peer.pid)
        if server is None:
            raise PeerNotFound(f"{peer.label} is not running (its MCP server pid {peer.pid} is gone)")
        if peer.pid_start is None or server.start is None:
            raise NotPermitted(
                f"cannot tell whether pid {peer.pid} is still {peer.label}'s MCP server "
                "(no process start time known); end that session from its own terminal"
            )
        if server.start != peer.pid_start or not process_alive(peer.pid, peer.pid_start):
            raise PeerNotFound(
                f"{peer.label} is not running: its MCP server pid {peer.pid} now belongs to "
                "another process"
            )
        if server.uid is not None and server.uid != os.getuid():
            raise NotPermitted(f"{peer.label} (pid {peer.pid}) belongs to another user")
        if not server.is_peers_server:
            raise NotPermitted(
                f"pid {peer.pid} is not a peers MCP server (it runs `{server.command_line[:120]}`); "
                f"nothing was signalled for {peer.label}"
            )
        agent = find_agent_process(peer.pid)
        if agent is None or agent.pid <= 1:
            raise NotPermitted(
                f"could not find the agent process above {peer.label}'s MCP server (pid {peer.pid})"
            )
        what = f"pid {agent.pid}: `{agent.command_line[:120]}`"
        if agent.role is not None:
            raise NotPermitted(
                f"refusing to end {peer.label}: what started its MCP server is {agent.role} "
                f"({what}), not an agent session; nothing was signalled"
            )
        if agent.uid is not None and agent.uid != os.getuid():
            raise NotPermitted(f"the agent process of {peer.label} ({what}) belongs to another user")
        if any(p.pid == agent.pid for p in ancestors(os.getpid())):
            raise NotPermitted(
                f"refusing to end {peer.label}: its agent ({what}) is also running this command"
            )
        # The client kind a peer registered with must show in its agent's command line.
        wanted = process_marker(peer.client)
        if wanted is not None and not any(
            wanted in text.lower() for text in (agent.command_line, agent.comm)
        ):
            raise NotPermitted(
                f"refusing to end {peer.label}: it registered as a {peer.client} session, but "
                f"what started its MCP server does not look like {wanted} ({what})"
            )
        if expect_pid is not None and agent.pid != expect_pid:
            raise NotPermitted(
                f"the agent of {peer.label} is now pid {agent.pid}, not the pid {expect_pid} "
                "that was confirmed; nothing was signalled"
            )
        result = KillResult(peer, agent.pid, agent.command_line[:200], sig.name)
        if dry_run:
            return result
        signal_process(agent.pid, agent.start, sig)
        return result


def signal_process(
    pid: int, start: float | None, sig: signal.Signals, *, use_pidfd: bool = True
) -> None:
    """Send ``sig`` to ``pid`` only if it is still the process that started at ``start``.

    Between the checks and the signal the process may exit and its pid go to another
    one. Where the platform has pidfds (Linux 5.3+), the pid is pinned first and its
    start time checked after pinning, so the signal reaches the checked process or
    none. Elsewhere the start time is checked right before ``os.kill``: a window of
    microseconds instead of the whole check.
    """
    if start is None:
        raise NotPermitted(f"cannot tell whether pid {pid} is still the process checked")
    gone = f"the agent process {pid} exited; nothing was signalled"
    reused = f"pid {pid} now belongs to another process; nothing was signalled"
    pidfd = None
    if use_pidfd and hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal"):
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise PeerNotFound(gone) from None
        except OSError:
            pidfd = None  # pidfds unavailable here (old kernel, seccomp): fall back
    try:
        # With a pidfd held, this is the start time of the very process it pins.
        if process_start_time(pid) != start:
            raise PeerNotFound(reused)
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        raise PeerNotFound(gone) from None
    except PermissionError:
        raise NotPermitted(f"not allowed to signal process {pid}") from None
    finally:
        if pidfd is not None:
            os.close(pidfd)
