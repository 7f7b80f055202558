"""Drawing the `peers watch` board: one frame as rich Text lines, for a screen or as plain text.

Every row is exactly one line, cut with an ellipsis where it does not fit, so a
frame never has more lines than the height it was given (80x24 included). The
width decides which columns show: the optional ones go first when it is tight
(see ``_DROP_ORDER``), and the flexible ones share what is left.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text

from peers.board import Board, SessionRow, repo_label, via
from peers.models import DeliveryState, MessageRecord, SenderKind

__all__ = ["KEYS_HELP", "Status", "ago_short", "frame", "plain"]

KEYS_HELP = "q quit  p pause  1-9/tab: one session's messages  0 all  r refresh"

_CLIENTS = {"claude-code": "claude", "unknown": "?"}
_STATE = {
    DeliveryState.DELIVERED: ("delivered", "green"),
    DeliveryState.PENDING: ("waiting", "yellow"),
    DeliveryState.EXPIRED: ("expired", "red"),
}


@dataclass(frozen=True, slots=True)
class Status:
    """What the live board says about itself; the default is a plain snapshot."""

    backend: str = ""
    connected: bool = True
    error: str | None = None
    down_since: float | None = None
    paused: bool = False
    # Events that came while paused (shown, not applied).
    missed: int = 0
    keys: bool = False
    filter_text: str = ""


@dataclass(frozen=True, slots=True)
class _Col:
    key: str
    header: str
    # Natural width bounds: at least ``low`` cells, at most ``high`` when there is room.
    low: int
    high: int
    # Share of the room left over, for flexible columns (0: fixed at its natural width).
    weight: int = 0
    right: bool = False


_SESSION_COLS = (
    _Col("n", "#", 1, 2, right=True),
    _Col("name", "NAME", 4, 18),
    _Col("client", "CLIENT", 6, 6),
    _Col("via", "VIA", 4, 11),
    _Col("repo", "REPO:BRANCH", 8, 32, weight=2),
    _Col("summary", "SUMMARY", 10, 200, weight=5),
    _Col("files", "FILES", 6, 32, weight=2),
    _Col("claims", "CLAIMS", 6, 32, weight=2),
    _Col("mail", "UNREAD", 6, 6, right=True),
    _Col("active", "ACTIVE", 6, 6, right=True),
)
# Which columns give way first when the width does not hold them all.
_DROP_ORDER = ("client", "files", "active", "claims", "via", "repo")


def ago_short(ts: float, now: float) -> str:
    delta = now - ts
    if delta < 2:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit}"
    return f"{int(delta)}s"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _more(items: Sequence[str]) -> str:
    if not items:
        return "-"
    return items[0] if len(items) == 1 else f"{items[0]} +{len(items) - 1}"


def _session_cells(row: SessionRow, index: int, now: float) -> dict[str, str]:
    p = row.peer
    repo = repo_label(p)
    claims = [f"{c.path}{'' if c.exclusive else ' (shared)'}" for c in row.claims]
    return {
        "n": str(index) if index <= 9 else "",
        "name": p.name or p.id,
        "client": _CLIENTS.get(p.client, p.client),
        "via": via(p),
        "repo": f"{repo}:{p.branch}" if p.branch else repo,
        "summary": _first_line(p.summary) or "-",
        "files": _more(p.files),
        "claims": _more(claims),
        "mail": str(row.unread) if row.unread else "-",
        "active": ago_short(row.active_at, now),
    }


def _plan(
    cols: Sequence[_Col], cells: Sequence[dict[str, str]], width: int
) -> list[tuple[_Col, int]]:
    """Each shown column with its width; the sum, with one space between columns, fits ``width``."""
    shown = list(cols)

    def natural(col: _Col) -> int:
        longest = max([len(col.header), *(len(c[col.key]) for c in cells)])
        return max(col.low, min(col.high, longest))

    def need(columns: Sequence[_Col]) -> int:
        return sum(natural(c) if not c.weight else c.low for c in columns) + len(columns) - 1

    for key in _DROP_ORDER:
        if need(shown) <= width:
            break
        shown = [c for c in shown if c.key != key]
    widths = {c.key: natural(c) if not c.weight else c.low for c in shown}
    room = width - sum(widths.values()) - (len(shown) - 1)
    flexible = [c for c in shown if c.weight]
    # Flexible columns grow towards their natural width by weight, then the
    # widest-by-nature (the summary) takes whatever is still left.
    while room > 0 and flexible:
        growing = [c for c in flexible if widths[c.key] < natural(c)]
        if not growing:
            break
        total = sum(c.weight for c in growing)
        step_room = room
        for c in growing:
            add = min(natural(c) - widths[c.key], max(1, step_room * c.weight // total), room)
            widths[c.key] += add
            room -= add
            if room <= 0:
                break
    if room > 0 and flexible:
        last = max(flexible, key=lambda c: c.weight)
        widths[last.key] += room
    return [(c, max(1, widths[c.key])) for c in shown]


def _line(parts: Sequence[tuple[str, int, str, bool]]) -> Text:
    """Cells (text, width, style, right-aligned) joined by one space, each cut to its width."""
    line = Text(no_wrap=True, overflow="ellipsis", end="")
    for i, (value, width, style, right) in enumerate(parts):
        if i:
            line.append(" ")
        cell = Text(value.replace("\n", " ").replace("\t", " "), style=style)
        cell.truncate(width, overflow="ellipsis")
        pad = width - cell.cell_len
        if right:
            line.append(" " * pad)
            line.append_text(cell)
        else:
            line.append_text(cell)
            line.append(" " * pad)
    line.rstrip()
    return line


def _title(text: str, extra: str = "") -> Text:
    title = Text(text, style="bold")
    if extra:
        title.append("  " + extra, style="dim")
    return title


def _header(board: Board | None, status: Status, now: float, width: int) -> list[Text]:
    head = Text("peers watch", style="bold")
    namespace = board.namespace if board else ""
    facts = [f"namespace {namespace}" if namespace else "", status.backend]
    head.append("  " + "  ".join(f for f in facts if f), style="dim")
    if not status.connected:
        state = Text("  BACKEND UNAVAILABLE", style="bold red")
    elif status.paused:
        missed = (
            f", {status.missed} change{'s' if status.missed != 1 else ''} waiting"
            if status.missed
            else ""
        )
        state = Text(f"  PAUSED{missed}", style="bold yellow")
    elif status.keys:
        state = Text("  live", style="green")
    else:
        state = Text()
    clock = Text(_clock(now), style="dim")
    left = width - state.cell_len - clock.cell_len - 1
    head.truncate(max(1, left), overflow="ellipsis")
    pad = Text(" " * max(1, width - head.cell_len - state.cell_len - clock.cell_len))
    lines = [head + state + pad + clock]
    if not status.connected:
        since = f" since {_clock(status.down_since)}" if status.down_since else ""
        lines.append(
            Text(
                f"retrying{since}: {status.error or 'the store does not answer'}",
                style="red",
                no_wrap=True,
                overflow="ellipsis",
                end="",
            )
        )
    return lines


def _route(rec: MessageRecord, board: Board) -> str:
    m = rec.message
    sender = m.sender_name or board.name_of(m.sender_id)
    if m.sender_kind is SenderKind.CLI and not sender.startswith("cli"):
        sender = f"cli:{sender}"
    return f"{sender} -> {board.name_of(m.recipient_id)}"


def _message_lines(board: Board, width: int) -> list[Text]:
    routes = [_route(rec, board) for rec in board.messages]
    route_w = min(max([12, *(len(r) for r in routes)]), max(12, width // 3))
    text_w = max(1, width - 8 - 9 - route_w - 3)
    lines = []
    for rec, route in zip(board.messages, routes, strict=True):
        state, style = _STATE[rec.state]
        lines.append(
            _line(
                [
                    (_clock(rec.message.sent_at), 8, "dim", False),
                    (route, route_w, "cyan", False),
                    (state, 9, style, False),
                    (_first_line(rec.message.body), text_w, "", False),
                ]
            )
        )
    return lines


def frame(
    board: Board | None,
    status: Status | None = None,
    *,
    width: int = 80,
    height: int | None = None,
    now: float | None = None,
) -> list[Text]:
    """The board as lines of at most ``width`` cells; at most ``height`` lines when given."""
    status = status or Status()
    now = time.time() if now is None else now
    width = max(20, width)
    lines = _header(board, status, now, width)
    footer = (
        [Text(KEYS_HELP, style="dim", no_wrap=True, overflow="ellipsis", end="")]
        if status.keys
        else []
    )
    if board is None:
        lines.append(Text("connecting...", style="dim"))
        return _fit(lines + footer, height, width)

    sessions = board.sessions
    selected = board.selected
    cols = [c for c in _SESSION_COLS if c.key != "claims" or board.claims_available]
    cells = [_session_cells(row, i + 1, now) for i, row in enumerate(sessions)]
    plan = _plan(cols, cells, width)
    unread = f"{board.unread} unread" if board.unread else "no unread mail"
    filt = f"  filter: {status.filter_text}" if status.filter_text else ""
    session_title = _title("SESSIONS", f"{len(sessions)} live, {unread}{filt}")
    session_head = _line([(c.header, w, "bold dim", c.right) for c, w in plan])
    session_lines = []
    for row, cell in zip(sessions, cells, strict=True):
        style = "reverse" if row.peer.id == selected else ""
        session_lines.append(
            _line([(cell[c.key], w, style or _cell_style(c.key, row), c.right) for c, w in plan])
        )
    if not session_lines:
        session_lines = [
            Text("no live sessions" + (" match the filter" if filt else ""), style="dim")
        ]

    who = f"of {board.name_of(selected)} (0: all)" if selected else "newest first"
    message_title = _title("MESSAGES", who)
    message_lines = _message_lines(board, width)
    if not message_lines:
        message_lines = [Text("none yet", style="dim")]

    conflict_title = _title("CONFLICTS", str(len(board.conflicts)) if board.conflicts else "none")
    conflict_lines = []
    for conflict in board.conflicts:
        holders = ", ".join(f"{h.label} {h.how}" for h in conflict.holders)
        conflict_lines.append(
            _line([(f"{conflict.path} ({conflict.repo}): {holders}", width, "bold red", False)])
        )

    if height is None:
        body = [
            Text(),
            session_title,
            session_head,
            *session_lines,
            Text(),
            message_title,
            *message_lines[:_ONCE_MESSAGES],
            Text(),
            conflict_title,
            *conflict_lines,
        ]
        return _fit(lines + body + footer, None, width)

    # Fixed lines: the header, three titles, the session column header, the footer,
    # and three blank separators that go first when the screen is short.
    fixed = len(lines) + 4 + len(footer)
    room = height - fixed
    gaps = 3 if room >= 3 + 6 else 0
    room -= gaps
    n_conflicts = min(len(conflict_lines), 3 if room >= 12 else 1) if conflict_lines else 0
    room_rest = room - n_conflicts
    n_sessions = min(len(session_lines), max(1, (room_rest * 3) // 5))
    if len(session_lines) > n_sessions and n_sessions > 1:
        hidden = len(session_lines) - n_sessions + 1
        more = Text(f"... {hidden} more (narrow it: --scope, --repo)", style="dim")
        session_lines = [*session_lines[: n_sessions - 1], more]
    n_messages = max(1, room_rest - min(n_sessions, len(session_lines)))
    if len(conflict_lines) > n_conflicts and n_conflicts:
        hidden = len(conflict_lines) - n_conflicts + 1
        more = Text(f"... {hidden} more conflicts", style="bold red")
        conflict_lines = [*conflict_lines[: n_conflicts - 1], more]
    gap = [Text()] if gaps else []
    body = [
        *gap,
        session_title,
        session_head,
        *session_lines[:n_sessions],
        *gap,
        message_title,
        *message_lines[:n_messages],
        *gap,
        conflict_title,
        *conflict_lines[:n_conflicts],
    ]
    page = _fit(lines + body, height - len(footer), width)
    # The key line sits on the last row.
    page += [Text()] * (height - len(footer) - len(page))
    return page + _fit(footer, None, width)


# `--once` shows every session and conflict, and this many of the newest messages.
_ONCE_MESSAGES = 10


def _cell_style(key: str, row: SessionRow) -> str:
    if key == "name":
        return "bold"
    if key == "mail" and row.unread:
        return "bold yellow"
    if key == "via":
        return "green" if row.peer.push.value == "confirmed" else ""
    if key in ("files", "claims", "active", "n"):
        return "dim" if key != "claims" else "magenta"
    return ""


def _fit(lines: list[Text], height: int | None, width: int) -> list[Text]:
    """At most ``height`` lines, each cut to ``width`` cells."""
    if height is not None and len(lines) > height:
        lines = lines[: max(1, height)]
    for line in lines:
        line.truncate(width, overflow="ellipsis")
    return lines


def plain(lines: Sequence[Text]) -> str:
    """A frame as plain text: no colour, no escapes, one row per line."""
    return "\n".join(line.plain.rstrip() for line in lines) + "\n"
