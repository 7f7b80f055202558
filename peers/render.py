"""How the CLI shows things: rich tables on a terminal, plain text otherwise, JSON on request.

The JSON views here are the CLI's stable output (documented in the README; they live in peers.views):
keys are only ever added, never renamed or removed. Timestamps are ISO 8601
in UTC with milliseconds (``2026-11-21T00:11:47.123Z``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from peers.constants import HOOKS_RECENT
from peers.models import (
    CheckStatus,
    DeliveryState,
    Event,
    EventKind,
    Message,
    Peer,
    PushState,
    ReceiveMode,
    SenderKind,
)
from peers.views import (
    check_json,
    event_json,
    iso,
    message_json,
    peer_json,
    record_json,
)

__all__ = [
    "HOOKS",
    "PEER_COLUMNS",
    "POLL_ONLY",
    "PUSH",
    "PUSH_UNCONFIRMED",
    "Column",
    "Output",
    "ago",
    "check_json",
    "clock",
    "delivery_paths",
    "event_json",
    "event_text",
    "iso",
    "message_json",
    "peer_json",
    "peer_rows",
    "record_json",
    "sender_label",
    "state_style",
    "status_style",
]


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    # Wraps instead of being cut when the terminal is narrow (rich only).
    wide: bool = False
    style: str | None = None


def ago(ts: float, now: float | None = None) -> str:
    """How long ago, briefly: ``4s ago``, ``12m ago``, ``3h ago``, ``2d ago``."""
    delta = (time.time() if now is None else now) - ts
    if delta < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def clock(ts: float, now: float | None = None) -> str:
    """Local wall-clock time: ``14:03:22`` today, ``2026-11-19 14:03`` before."""
    moment = datetime.fromtimestamp(ts)
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M")


def sender_label(message: Message) -> str:
    """Who sent a message, marking command-line senders as unverified."""
    who = message.sender_name or message.sender_id
    if message.sender_kind is SenderKind.CLI:
        return f"{who} (command line, unverified)"
    if message.sender_name:
        return f"{message.sender_name} ({message.sender_id})"
    return who


# -- JSON views ------------------------------------------------------------------


# -- text views --------------------------------------------------------------------


def _who(peer_id: str, name: str | None) -> str:
    return f"{name} ({peer_id})" if name else peer_id


def event_text(event: Event, message: Message | None = None) -> str:
    """One line per event for ``peers tail``."""
    who = _who(event.peer_id, event.peer_name)
    data = event.data
    if event.kind is EventKind.JOIN:
        where = data.get("cwd") or ""
        return f"join     {who}{f' in {where}' if where else ''}"
    if event.kind is EventKind.LEAVE:
        return f"leave    {who}"
    if event.kind is EventKind.SUMMARY:
        return f"summary  {who}: {data.get('summary', '')}"
    if event.kind is EventKind.RENAME:
        return f"rename   {who}: {data.get('old') or '-'} -> {data.get('new') or '-'}"
    if event.kind is EventKind.EXPIRED:
        count = len(data.get("ids") or [])
        return f"expired  {who}: {count} unread message(s) dropped ({data.get('reason', '?')})"
    if message is not None:
        to = data.get("recipient_id") or message.recipient_id
        flags = " [broadcast]" if message.broadcast else ""
        body = message.body.replace("\n", " / ")
        return f"message  {sender_label(message)} -> {to}{flags}: {body}"
    sender = _who(str(data.get("sender_id", event.peer_id)), data.get("sender_name"))
    return f"message  {sender} -> {data.get('recipient_id', '?')} ({data.get('id', '?')})"


# How mail reaches a session's model (see delivery_paths).
PUSH = "push"
PUSH_UNCONFIRMED = "push unconfirmed"
HOOKS = "hooks"
POLL_ONLY = "poll only"


def delivery_paths(peer: Peer, now: float | None = None) -> list[str]:
    """How mail reaches a session's model: ``push`` (the channel, proven), ``push
    unconfirmed`` (loaded, nothing proven yet), ``hooks`` (a hook reached its server;
    with how long ago when that is not recent), else ``poll only`` (its next peers
    tool call)."""
    paths: list[str] = []
    if peer.push is PushState.CONFIRMED:
        paths.append(PUSH)
    elif peer.push is PushState.UNCONFIRMED or peer.receive_mode is ReceiveMode.PUSH:
        # A server older than push states says only "push": nothing proves it.
        paths.append(PUSH_UNCONFIRMED)
    if peer.hooks_at is not None:
        now = time.time() if now is None else now
        recent = now - peer.hooks_at <= HOOKS_RECENT
        paths.append(HOOKS if recent else f"{HOOKS} (last {ago(peer.hooks_at, now)})")
    return paths or [POLL_ONLY]


def peer_rows(
    peers: Sequence[Peer], unread: Mapping[str, int], now: float | None = None
) -> list[list[str]]:
    rows = []
    for p in peers:
        rows.append(
            [
                p.name or "-",
                p.id,
                p.client,
                ", ".join(delivery_paths(p, now)),
                p.repo or p.cwd,
                p.branch or "-",
                str(unread.get(p.id, 0)),
                p.summary or "-",
                ago(p.last_seen, now),
            ]
        )
    return rows


PEER_COLUMNS = (
    Column("NAME", style="bold"),
    Column("ID", style="cyan"),
    Column("CLIENT"),
    Column("DELIVERY"),
    Column("REPO / CWD", wide=True),
    Column("BRANCH"),
    Column("UNREAD"),
    Column("SUMMARY", wide=True),
    Column("LAST SEEN"),
)

_STATUS_STYLE = {
    CheckStatus.OK: "green",
    CheckStatus.WARN: "yellow",
    CheckStatus.FAIL: "bold red",
}
_STATE_STYLE = {
    DeliveryState.PENDING: "yellow",
    DeliveryState.DELIVERED: "green",
    DeliveryState.EXPIRED: "red",
}


def status_style(status: CheckStatus) -> str:
    return _STATUS_STYLE[status]


def state_style(state: DeliveryState) -> str:
    return _STATE_STYLE[state]


class Output:
    """stdout for one command: rich on a terminal, plain text in pipes, or JSON."""

    def __init__(self, *, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.console = Console(highlight=False)
        self.rich = self.console.is_terminal and not json_mode

    # -- JSON ------------------------------------------------------------------

    def json(self, document: Any) -> None:
        """One JSON document, indented."""
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        sys.stdout.flush()

    def json_line(self, document: Any) -> None:
        """One JSON object on one line, flushed at once (streams)."""
        sys.stdout.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    # -- text ------------------------------------------------------------------

    def line(self, text: str = "", style: str | None = None) -> None:
        if self.rich:
            self.console.print(Text(text, style=style or ""), soft_wrap=True)
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def table(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
        row_styles: Sequence[str | None] | None = None,
    ) -> None:
        if self.rich:
            table = Table(title=title, title_justify="left", header_style="bold", box=None)
            for col in columns:
                table.add_column(
                    col.header,
                    style=col.style,
                    overflow="fold" if col.wide else "ellipsis",
                    ratio=1 if col.wide else None,
                    no_wrap=not col.wide,
                )
            for i, row in enumerate(rows):
                style = row_styles[i] if row_styles else None
                table.add_row(*row, style=style)
            self.console.print(table)
            return
        if title:
            sys.stdout.write(title + "\n")
        self._plain_table([c.header for c in columns], rows)

    @staticmethod
    def _plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        cells = [list(headers)] + [[_one_line(v) for v in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        for row in cells:
            padded = [v.ljust(widths[i]) for i, v in enumerate(row[:-1])] + [row[-1]]
            sys.stdout.write("  ".join(padded).rstrip() + "\n")
        sys.stdout.flush()


def _one_line(value: str) -> str:
    return (value or "-").replace("\r", " ").replace("\n", " ").replace("\t", " ")
