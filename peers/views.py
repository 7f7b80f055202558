"""JSON views of peers' data, shared by the MCP tools and the CLI (no rich here).

Keys are stable: only ever added, never renamed or removed (the README lists
them). Timestamps are ISO 8601 in UTC with milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from peers.models import Check, Event, Message, MessageRecord, Peer, SenderKind

__all__ = ["check_json", "event_json", "iso", "message_json", "peer_json", "record_json"]


def iso(ts: float | None) -> str | None:
    """A Unix timestamp as ISO 8601 UTC with milliseconds, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def peer_json(peer: Peer, unread: int | None = None) -> dict[str, Any]:
    return {
        "id": peer.id,
        "name": peer.name,
        "namespace": peer.namespace,
        "host": peer.host,
        "pid": peer.pid,
        "client": peer.client,
        "receive_mode": peer.receive_mode.value,
        "push": peer.push.value,
        "hooks_at": iso(peer.hooks_at),
        "cwd": peer.cwd,
        "repo": peer.repo,
        "git_root": peer.git_root,
        "branch": peer.branch,
        "tty": peer.tty,
        "summary": peer.summary,
        "files": list(peer.files),
        "registered_at": iso(peer.registered_at),
        "last_seen": iso(peer.last_seen),
        "online": peer.online,
        "successor": peer.successor,
        "unread": unread if unread is not None else 0,
    }


def message_json(message: Message, names: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    names = names or {}
    return {
        "id": message.id,
        "sent_at": iso(message.sent_at),
        "from_id": message.sender_id,
        "from_name": message.sender_name,
        "sender_kind": message.sender_kind.value,
        "verified": message.sender_kind is SenderKind.PEER,
        "to_id": message.recipient_id,
        "to_name": names.get(message.recipient_id),
        "body": message.body,
        "reply_to": message.reply_to,
        "broadcast": message.broadcast,
    }


def record_json(
    record: MessageRecord, names: Mapping[str, str | None] | None = None
) -> dict[str, Any]:
    return {
        **message_json(record.message, names),
        "state": record.state.value,
        "acked_at": iso(record.acked_at),
    }


def event_json(event: Event, message: Message | None = None) -> dict[str, Any]:
    return {
        "kind": event.kind.value,
        "at": iso(event.at),
        "peer_id": event.peer_id,
        "peer_name": event.peer_name,
        "data": event.data,
        "message": message_json(message) if message is not None else None,
    }


def check_json(check: Check) -> dict[str, Any]:
    return {
        "name": check.name,
        "status": check.status.value,
        "detail": check.detail,
        "fix": check.fix,
    }
