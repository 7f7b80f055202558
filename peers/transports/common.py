"""What both backends do the same way, written once: guards, error texts, event payloads,
the delivery-state rule and the listing step.

A backend keeps only what is its own (SQL or Lua, connections, wake-ups); every
rule the contract states about inputs, errors and results that does not depend on
the store lives here, so SQLite and Redis cannot drift apart on it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from peers import constants as c
from peers.errors import InvalidInput, NameTaken, PeerNotFound
from peers.models import (
    DeliveryState,
    Message,
    MessageRecord,
    Peer,
    PeerFilter,
)

__all__ = [
    "check_fetch_limit",
    "check_lease",
    "check_message",
    "check_name",
    "check_peer",
    "delivery_state",
    "expired_data",
    "join_data",
    "leave_data",
    "listing",
    "message_conflict",
    "message_data",
    "name_taken",
    "no_such_peer",
    "not_registered",
    "partition",
    "record",
    "rename_data",
    "same_message",
    "summary_data",
    "unique_ids",
]


# -- guards -----------------------------------------------------------------------------


def _check_namespace(what: str, ident: str, theirs: str, ours: str) -> None:
    if theirs != ours:
        raise InvalidInput(f"{what} {ident} is in namespace '{theirs}', this transport serves '{ours}'")


def check_name(name: str | None) -> None:
    """A peer name follows ``constants.NAME_PATTERN`` (None: no name)."""
    if name is not None and not c.NAME_PATTERN.fullmatch(name):
        raise InvalidInput(f"peer name {name!r} is invalid: {c.NAME_RULE}")


def check_peer(peer: Peer, namespace: str) -> None:
    """A peer may be registered here: its namespace is ours and its name is valid."""
    _check_namespace("peer", peer.id, peer.namespace, namespace)
    check_name(peer.name)


def check_message(message: Message, namespace: str) -> None:
    """A message may be sent here: its namespace is ours, its ids hold no NUL or line break."""
    _check_namespace("message", message.id, message.namespace, namespace)
    fields = f"{message.recipient_id}{message.id}{message.sender_id}{message.sender_name or ''}"
    if "\0" in fields or "\n" in fields or "\r" in fields:
        # Redis carries them NUL-separated and answers one recipient per line; SQLite
        # refuses them too, so a name is valid on one backend exactly when on the other.
        raise InvalidInput(f"message {message.id!r}: ids and names cannot hold NUL or line breaks")


def check_fetch_limit(limit: int) -> None:
    if limit < 1:
        raise InvalidInput(f"fetch limit must be at least 1, not {limit}")


def unique_ids(message_ids: Iterable[str]) -> list[str]:
    """Message ids without repeats, in the order given (a repeated id counts once)."""
    return list(dict.fromkeys(message_ids))


def same_message(a: Message, b: Message) -> bool:
    """Whether a retried send carries the message already stored under its id.

    The recipient is left out: the stored one may be a successor of the one asked for.
    """
    keep = set(Message.model_fields) - {"recipient_id"}
    return a.model_dump(include=keep) == b.model_dump(include=keep)


# -- error texts ------------------------------------------------------------------------


def not_registered(peer_id: str) -> PeerNotFound:
    return PeerNotFound(f"peer {peer_id} is not registered (or was reaped); register again")


def no_such_peer(peer_id: str, namespace: str) -> PeerNotFound:
    return PeerNotFound(f"no peer with id {peer_id} in namespace '{namespace}'")


def name_taken(name: str, holder: Peer | None, holder_id: str) -> NameTaken:
    if holder is None:
        return NameTaken(f"the name '{name}' is held by live peer {holder_id}")
    return NameTaken(
        f"the name '{name}' is held by live peer {holder.id} on {holder.host} "
        f"(pid {holder.pid}); choose another name or stop that session"
    )


def message_conflict(message_id: str) -> InvalidInput:
    return InvalidInput(
        f"a different message with id {message_id} already exists; a retried send must "
        "carry the same content, a new message needs a new id"
    )


# -- event payloads ---------------------------------------------------------------------


def join_data(peer: Peer) -> dict[str, Any]:
    return {"host": peer.host, "pid": peer.pid, "cwd": peer.cwd, "client": peer.client}


def leave_data(reason: str) -> dict[str, Any]:
    return {"reason": reason}


def summary_data(summary: str, files: Iterable[str]) -> dict[str, Any]:
    return {"summary": summary, "files": list(files)}


def rename_data(old: str | None, new: str | None) -> dict[str, Any]:
    return {"old": old, "new": new}


def message_data(message: Message, recipient_id: str) -> dict[str, Any]:
    return {
        "id": message.id,
        "sender_id": message.sender_id,
        "sender_name": message.sender_name,
        "recipient_id": recipient_id,
        "broadcast": message.broadcast,
    }


def expired_data(message_ids: Sequence[str], recipient_id: str, reason: str) -> dict[str, Any]:
    return {"ids": list(message_ids), "recipient_id": recipient_id, "reason": reason}


# -- reading back -----------------------------------------------------------------------


def delivery_state(
    *, acked_at: float | None, expired: bool, sent_at: float, cutoff: float
) -> DeliveryState | None:
    """What became of a stored message, or None when history no longer shows it.

    Delivered mail is shown while it is within retention; unread mail past retention
    (not yet collected) and mail dropped by the mailbox cap show as expired.
    """
    if expired:
        return DeliveryState.EXPIRED
    if acked_at is not None:
        return DeliveryState.DELIVERED if sent_at >= cutoff else None
    return DeliveryState.PENDING if sent_at >= cutoff else DeliveryState.EXPIRED


def record(
    message: Message, *, acked_at: float | None, expired: bool, cutoff: float
) -> MessageRecord | None:
    """A history record by the delivery-state rule (None: not shown)."""
    state = delivery_state(acked_at=acked_at, expired=expired, sent_at=message.sent_at, cutoff=cutoff)
    if state is None:
        return None
    shown_ack = acked_at if state is DeliveryState.DELIVERED else None
    return MessageRecord(message=message, state=state, acked_at=shown_ack)


# -- the listing step -------------------------------------------------------------------


def partition(candidates: Iterable[tuple[Peer, bool]], host: str) -> tuple[list[Peer], list[Peer]]:
    """Online peers split by the liveness rule into (live, dead); ``fresh`` comes with each.

    Freshness is the backend's to judge (SQLite: last_seen within the TTL; Redis:
    the alive key exists); the rest of the rule is :meth:`peers.models.Peer.is_live`.
    """
    live: list[Peer] = []
    dead: list[Peer] = []
    for peer, fresh in candidates:
        if not peer.online:
            continue
        (live if peer.is_live(host, fresh=fresh) else dead).append(peer)
    return live, dead


def listing(peers: Iterable[Peer], flt: PeerFilter | None = None) -> list[Peer]:
    """The filter applied and the contract's order: by ``registered_at``, then ``id``."""
    chosen = [p for p in peers if flt is None or flt.matches(p)]
    return sorted(chosen, key=lambda p: (p.registered_at, p.id))


def check_lease(name: str, holder: str, ttl: float) -> None:
    """A lease names itself and its holder (non-empty, no NUL) and lasts a positive time."""
    for what, value in (("lease name", name), ("lease holder", holder)):
        if not value or "\0" in value or len(value) > 256:
            raise InvalidInput(f"{what} {value!r} is invalid: 1-256 characters, no NUL")
    if not ttl > 0:
        raise InvalidInput(f"a lease lasts a positive number of seconds, not {ttl}")
