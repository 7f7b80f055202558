"""``wait_for_messages``: wait, at no cost, until the message a session asked for arrives.

An orchestrating agent ("add validation to users/route.ts; reply DONE when
complete") would otherwise call ``check_messages`` in a loop, paying tokens
every call. A wait instead sleeps on the session's doorbell
(:mod:`peers.mailbell`, the transport's wake-up underneath) and returns as
soon as a message it matches is unread: at once when one already waits.

The rules, where the issue left them open:

- ``from`` names the sender as ``send_message`` names a recipient: an id, a
  name, or an unambiguous prefix of either, and it matches that session's id
  and the name it holds (so a worker restarted under the same ``PEERS_NAME``
  counts). A name nobody holds yet is accepted (a worker still starting), and
  the result says so; ``cli-`` matches command-line senders. ``reply_to`` must
  be a message this session sent or received (a typo would otherwise wait out
  its timeout). Both given: both must match.
- ``timeout_s`` defaults to 60 s. Longer than 600 s is cut to 600 s and the
  result says so (the model learns it from the first answer instead of a
  failed call); below zero, not a number, or not finite is an error.
- Mail that does not match stays unread: the result counts it and names its
  senders, and ``check_messages`` reads it.
- A matching message is taken like ``check_messages`` takes mail: reserved for
  this result, acknowledged once its response was written, given back when
  the call is cancelled or the session stops first. While a wait runs, the push
  loop does not push what it matches, so it comes whole in the result. A
  matching message already pushed during this call (before the wait began)
  is one Claude Code shows after the result: the result names it without its
  text rather than showing it twice.
- A client that sent a ``progressToken`` gets a progress notification when the
  wait starts and every few seconds, so that a tool timeout that progress
  resets never ends it.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from peers import constants as c
from peers.errors import BackendError, InvalidInput, MessageNotFound, PeerNotFound
from peers.mailview import mail_block, mail_text
from peers.models import Message, Peer
from peers.service import CLI_ID_PREFIX, PeersService
from peers.session import Handout, Session

__all__ = [
    "MailFilter",
    "WaitOutcome",
    "mail_filter",
    "wait_block",
    "wait_for_mail",
    "wait_text",
    "wait_timeout",
]

Progress = Callable[[float, float, str], Awaitable[None]]
# What a wait without a filter waits for, in words.
ANY = "a message"


@dataclass(frozen=True, slots=True)
class MailFilter:
    """Which unread messages a wait is for (everything, when built with nothing)."""

    sender_ids: frozenset[str] = frozenset()
    sender_names: frozenset[str] = frozenset()
    # Command-line senders whose id starts with this (their ids are fresh each time).
    sender_prefix: str | None = None
    reply_to: str | None = None
    # How the filter reads, for the model: {"from": ..., "reply_to": ...}.
    described: Mapping[str, str] = field(default_factory=dict)
    # Something the model should know about how ``from`` was read.
    note: str | None = None

    @property
    def by_sender(self) -> bool:
        return bool(self.sender_ids or self.sender_names or self.sender_prefix)

    def __call__(self, message: Message) -> bool:
        if self.reply_to is not None and message.reply_to != self.reply_to:
            return False
        if not self.by_sender:
            return True
        return (
            message.sender_id in self.sender_ids
            or (message.sender_name is not None and message.sender_name in self.sender_names)
            or (self.sender_prefix is not None and message.sender_id.startswith(self.sender_prefix))
        )

    def words(self) -> str:
        """Reads like "a message from bob answering m-1", or "a message" (:data:`ANY`)."""
        parts = []
        if "from" in self.described:
            parts.append(f"from {self.described['from']}")
        if "reply_to" in self.described:
            parts.append(f"answering {self.described['reply_to']}")
        return f"{ANY} {' '.join(parts)}" if parts else ANY


async def _sender_filter(service: PeersService, me: Peer, wanted: str) -> dict[str, Any]:
    if wanted.startswith(CLI_ID_PREFIX):
        return {
            "sender_prefix": wanted,
            "described": f"the command line ({wanted}...)",
        }
    try:
        peer = await service.resolve(wanted)
    except PeerNotFound as exc:
        name = wanted.lower()
        if not c.NAME_PATTERN.fullmatch(name):
            raise PeerNotFound(
                str(exc),
                hint="set 'from' to the id or name of the session you expect a message from "
                "(list_peers shows them), or leave it out to wait for any message",
            ) from exc
        # A worker that has not started yet: its first message will carry the name.
        return {
            "sender_names": frozenset({name}),
            "described": name,
            "note": f"no session holds the name '{name}' now; a message from the session "
            "that takes it counts",
        }
    if peer.id == me.id:
        raise InvalidInput(
            f"'{wanted}' is you; wait for a message from another peer",
            hint="set 'from' to the id or name of the session you expect an answer from "
            "(list_peers shows them), or leave it out",
        )
    return {
        "sender_ids": frozenset({peer.id}),
        "sender_names": frozenset({peer.name}) if peer.name else frozenset(),
        "described": peer.label,
    }


async def _reply_filter(service: PeersService, me: Peer, reply_to: str) -> str:
    hint = (
        "set reply_to to the message_id of a message you sent (send_message returns it), "
        "or leave it out"
    )
    original = await service.transport.get_message(reply_to)
    if original is None:
        raise MessageNotFound(
            f"reply_to '{reply_to}' is not a message id known in the last "
            f"{service.settings.retention / 86400:g} days",
            hint=hint,
        )
    mine = {original.sender_id, original.recipient_id}
    if me.id not in mine and not (me.name and original.sender_name == me.name):
        raise InvalidInput(
            f"reply_to '{reply_to}' is not a message you sent or received", hint=hint
        )
    return original.id


async def mail_filter(
    service: PeersService, me: Peer, sender: str | None, reply_to: str | None
) -> MailFilter:
    """The filter for ``from`` and ``reply_to`` as the model gave them (checked strings)."""
    fields: dict[str, Any] = {}
    described: dict[str, str] = {}
    if sender is not None:
        wanted = sender.strip()
        if not wanted:
            raise InvalidInput(
                "'from' is empty",
                hint="give the id or name of the session you expect a message from, or leave it out",
            )
        fields = await _sender_filter(service, me, wanted)
        described["from"] = fields.pop("described")
    if reply_to is not None:
        wanted = reply_to.strip()
        if not wanted:
            raise InvalidInput("'reply_to' is empty", hint="give a message_id, or leave it out")
        fields["reply_to"] = await _reply_filter(service, me, wanted)
        described["reply_to"] = fields["reply_to"]
    return MailFilter(**fields, described=described)


def wait_timeout(value: float | None) -> tuple[float, float | None]:
    """The timeout to wait, and the one asked for when it was cut to the maximum."""
    if value is None:
        return c.WAIT_DEFAULT_TIMEOUT, None
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(
            f"timeout_s must be a number of seconds from 0 to {c.WAIT_MAX_TIMEOUT:g}, not {value}",
            hint=f"leave it out to wait {c.WAIT_DEFAULT_TIMEOUT:g} s",
        )
    if value > c.WAIT_MAX_TIMEOUT:
        return c.WAIT_MAX_TIMEOUT, value
    return value, None


@dataclass(frozen=True, slots=True)
class WaitOutcome:
    """How a wait ended: the mail it took (reserved until written), and how long it took."""

    handout: Handout
    waited: float
    timed_out: bool
    stopped: bool = False
    # The store could not be read at the last attempt (the wait went on meanwhile).
    store_error: str | None = None


async def wait_for_mail(
    session: Session,
    match: MailFilter,
    since: int,
    timeout: float,
    progress: Progress | None = None,
) -> WaitOutcome:
    """Wait until a message ``match`` accepts is unread (or the timeout, or the session stops).

    Sleeps on the session's bell between reads; reads again at the safety
    re-check in case a wake-up was missed. Nothing is reserved while it sleeps,
    so a cancelled wait holds back nothing.
    """
    started = time.monotonic()
    asked_at = time.time()
    deadline = started + timeout
    recheck = session.settings.safety_recheck
    next_progress = started
    handout = Handout()
    failed: str | None = None
    first = True
    with session.waiting_for(match):
        while True:
            mark = session.bell.mark()
            try:
                handout = await session.take_mail(since, match=match, asked_at=asked_at)
                failed = None
            except BackendError as exc:
                if first:
                    raise  # the store is away from the start: say so at once
                # A blip in a long wait: keep waiting, and read again at the next ring.
                failed = str(exc)
            first = False
            now = time.monotonic()
            if handout or handout.on_channel:
                return WaitOutcome(handout, now - started, timed_out=False)
            if session.stopping:
                return WaitOutcome(handout, now - started, timed_out=False, stopped=True)
            if now >= deadline:
                return WaitOutcome(handout, now - started, timed_out=True, store_error=failed)
            if progress is not None and now >= next_progress:
                waited = now - started
                await progress(
                    waited, timeout, f"waiting for {match.words()} ({waited:.0f} of {timeout:g} s)"
                )
                next_progress = now + session.settings.wait_progress_every
            wake = min(deadline, now + recheck)
            if progress is not None:
                wake = min(wake, next_progress)
            await session.bell.wait(mark, max(0.0, wake - time.monotonic()))


def _senders(messages: Sequence[Message]) -> list[dict[str, Any]]:
    counts = Counter((m.sender_id, m.sender_name) for m in messages)
    return [
        {"from_id": sender_id, "from_name": name, "count": count}
        for (sender_id, name), count in counts.most_common(c.WAIT_OTHER_SENDERS_SHOWN)
    ]


def _who(sender: Mapping[str, Any]) -> str:
    name = sender.get("from_name")
    return f"{name} ({sender['from_id']})" if name else str(sender["from_id"])


def wait_block(
    outcome: WaitOutcome,
    match: MailFilter,
    items: Sequence[Mapping[str, Any]],
    timeout: float,
    asked: float | None,
) -> dict[str, Any]:
    """The structured result: ``check_messages``' shape, and how the wait went."""
    handout = outcome.handout
    block = mail_block(items, handout.more_waiting)
    unmatched = list(handout.unmatched)
    block.update(
        {
            "waited_s": round(outcome.waited, 3),
            "timeout_s": timeout,
            "timed_out": outcome.timed_out,
            "waiting_for": match.words(),
            "other_waiting": len(unmatched),
        }
    )
    if unmatched:
        block["other_from"] = _senders(unmatched)
    if handout.on_channel:
        block["on_channel"] = [
            {"message_id": m.id, "from_id": m.sender_id, "from_name": m.sender_name}
            for m in handout.on_channel
        ]
    notes: list[str] = []
    if outcome.stopped:
        notes.append("peers serve is shutting down; nothing was taken")
    elif handout.on_channel:
        notes.append(
            f"{len(handout.on_channel)} matching message(s) came as <channel> notifications, "
            "shown to you with or right after this result; not repeated here (if none shows, "
            "check_messages returns it)"
        )
    elif outcome.timed_out:
        notes.append(f"waited {timeout:g} s for {match.words()}: none came")
    if outcome.store_error:
        notes.append(f"the store could not be read at the end of the wait ({outcome.store_error})")
    if asked is not None:
        notes.append(
            f"timeout_s {asked:g} is more than the maximum; waited at most {timeout:g} s "
            "(call again to wait longer)"
        )
    if match.note:
        notes.append(match.note)
    if unmatched:
        who = ", ".join(f"{_who(s)}: {s['count']}" for s in block["other_from"])
        more = len(unmatched) - sum(s["count"] for s in block["other_from"])
        if more:
            who += f", others: {more}"
        one = len(unmatched) == 1
        notes.append(
            f"{len(unmatched)} other unread message{'' if one else 's'} did not match and "
            f"stay{'s' if one else ''} unread ({who}): check_messages reads "
            f"{'it' if one else 'them'}"
        )
    if notes:
        block["note"] = "; ".join(notes)
    return block


def wait_text(block: Mapping[str, Any]) -> str:
    """The text of a :func:`wait_block` (all that Gemini CLI's model reads)."""
    wanted = str(block["waiting_for"])
    waited = f"{block['waited_s']:.1f} s"
    if block["count"]:
        n = block["count"]
        how = f"returned after {waited} with {n} message{'s' if n != 1 else ''}"
    elif block["timed_out"]:
        how = f"{'no message' if wanted == ANY else 'nothing matching'} after {waited}"
    else:
        how = f"returned after {waited}"
    lines = [f"wait_for_messages (waiting for {wanted}): {how}."]
    if block.get("note"):
        lines.append(f"Note: {block['note']}.")
    for sent in block.get("on_channel", []):
        lines.append(f"- {sent['message_id']} from {_who(sent)} (by <channel>)")
    lines.append("")
    lines.append(mail_text(block))
    return "\n".join(lines)
