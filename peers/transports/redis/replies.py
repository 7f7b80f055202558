"""Redis replies as plain Python: text, field maps, stream entries, stream ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["entries", "entry_ms", "stream_id", "text", "text_map"]


def text(value: Any) -> str:
    """A reply as text: clients may or may not decode responses."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def text_map(raw: Mapping[Any, Any] | None) -> dict[str, str]:
    return {text(k): text(v) for k, v in (raw or {}).items()}


def entries(reply: Any) -> list[tuple[str, dict[str, str] | None]]:
    """Stream entries of an XREAD/XREADGROUP reply (RESP2 list or RESP3 map) or an XRANGE."""
    if not reply:
        return []
    if isinstance(reply, Mapping):
        streams: list[Any] = [[k, v] for k, v in reply.items()]
    elif isinstance(reply[0], list | tuple) and len(reply[0]) == 2 and isinstance(reply[0][1], list):
        streams = list(reply)
    else:
        streams = [[None, reply]]
    out: list[tuple[str, dict[str, str] | None]] = []
    for _, items in streams:
        for entry_id, fields in items or []:
            out.append((text(entry_id), text_map(fields) if fields else None))
    return out


def stream_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair (milliseconds, sequence)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])
