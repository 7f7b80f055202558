"""What each hook event means to peers, and how each client wants the answer.

The clients name their events differently (Gemini CLI: BeforeAgent for the
prompt, BeforeTool / AfterTool, AfterAgent for the end of a turn) and read
different output shapes; this module turns a :class:`~peers.hookserver.HookRequest`
into one of five canonical events and a canonical answer back into what the
client reads (see CLIENTS.md, "Hooks"):

- Claude Code and Codex: ``{"hookSpecificOutput": {"hookEventName": E,
  "additionalContext": T}}`` for context; ``{"decision": "block", "reason": R}``
  from Stop keeps the turn going; exit 2 with R on stderr refuses a tool call.
- Gemini CLI: the same ``hookSpecificOutput`` for context;
  ``{"decision": "deny", "reason": R}`` refuses a tool call (BeforeTool) or
  continues the turn (AfterAgent).

It also reads which files an edit tool call touches, from each client's tool
input: Claude's ``file_path`` / ``notebook_path``, Gemini's ``file_path``, and
the paths named in a Codex ``apply_patch`` patch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from peers import clients
from peers.clients import HookEvent

__all__ = [
    "Outcome",
    "canonical_event",
    "edited_paths",
    "fit_to_budget",
    "render_outcome",
]

# Why a turn is continued, where the mail itself travels beside the reason (Claude Code).
STOP_REASON = (
    "peers: unread messages from other agent sessions arrived before you finished; they are "
    "in the hook context. Read them, act on them if needed, then end your turn."
)
# What one hook may print, at most: past that, the newest messages whole, then a
# count and "call check_messages" for the rest, which stay unread.
OUTPUT_BUDGET = 4096


def canonical_event(client: str | None, name: str) -> HookEvent | None:
    """peers' event for a client's event name (None: not one peers handles).

    Without ``--client`` (a hook written by hand) the name alone decides: the
    clients' names for peers' events do not collide.
    """
    if client is not None:
        return clients.canonical_event(client, name)
    for candidate in clients.names():
        found = clients.canonical_event(candidate, name)
        if found is not None:
            return found
    return None


# -- edits -----------------------------------------------------------------------

_PATCH_MARKERS = ("*** Add File: ", "*** Update File: ", "*** Delete File: ", "*** Move to: ")
_PATH_KEYS = ("file_path", "notebook_path", "path", "filePath", "absolute_path")


def _patch_paths(text: str) -> list[str]:
    paths = []
    for line in text.splitlines():
        for marker in _PATCH_MARKERS:
            if line.startswith(marker):
                path = line[len(marker) :].strip()
                if path:
                    paths.append(path)
    return paths


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)


def edited_paths(tool_input: Any, cwd: str, root: str | None) -> list[str]:
    """The files an edit tool call touches, relative to ``root`` (the repository) when inside it.

    Looks for the path fields the clients use and for ``apply_patch`` patch text
    anywhere in the input (Codex passes it as a string argument or in a command
    list). Paths outside the repository are returned absolute.
    """
    found: list[str] = []
    if isinstance(tool_input, Mapping):
        for key in _PATH_KEYS:
            value = tool_input.get(key)
            if isinstance(value, str) and value.strip():
                found.append(value.strip())
    for text in _strings(tool_input):
        if "*** Begin Patch" in text or any(m in text for m in _PATCH_MARKERS):
            found.extend(_patch_paths(text))
    out: list[str] = []
    for path in found:
        absolute = os.path.normpath(path if os.path.isabs(path) else os.path.join(cwd, path))
        if root:
            relative = os.path.relpath(absolute, root)
            if not relative.startswith(".." + os.sep) and relative != "..":
                absolute = relative
        if absolute not in out:
            out.append(absolute)
    return out


# -- output --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What peers wants to say at a hook, before the client's format is applied."""

    # Context for the model (SessionStart, prompt, after a tool); empty: say nothing.
    context: str = ""
    # Stop only: keep the turn going with this as the reason.
    block_stop: str = ""
    # PreToolUse only: refuse the tool call, telling the model why.
    deny_tool: str = ""


def render_outcome(
    client: str | None, event: HookEvent, client_event: str, outcome: Outcome
) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) in the shape the client reads for this event."""
    gemini = client == "gemini"
    if event is HookEvent.PRE_TOOL_USE and outcome.deny_tool:
        if gemini:
            return json.dumps({"decision": "deny", "reason": outcome.deny_tool}), "", 0
        # Claude Code and Codex: exit 2 refuses the call; stderr reaches the model.
        return "", outcome.deny_tool, 2
    if event is HookEvent.STOP and outcome.block_stop:
        decision = "deny" if gemini else "block"
        if client == "claude":
            # Claude Code shows a Stop hook's reason to the model twice (as feedback and as
            # a "blocking error"), its additionalContext once: the mail goes there.
            doc = {
                "decision": decision,
                "reason": STOP_REASON,
                "hookSpecificOutput": {
                    "hookEventName": client_event,
                    "additionalContext": outcome.block_stop,
                },
            }
            return json.dumps(doc, ensure_ascii=False), "", 0
        return json.dumps({"decision": decision, "reason": outcome.block_stop}), "", 0
    if outcome.context and event is not HookEvent.STOP:
        context = {"hookEventName": client_event, "additionalContext": outcome.context}
        doc = {"hookSpecificOutput": context}
        return json.dumps(doc, ensure_ascii=False), "", 0
    return "", "", 0


def fit_to_budget(
    header: str, blocks: list[str], more: Callable[[int], str], budget: int = OUTPUT_BUDGET
) -> tuple[str, int]:
    """``header`` and as many of ``blocks`` (newest last) as fit whole in ``budget`` bytes.

    Keeps the newest blocks whole; when some are left out, ``more(count)`` closes
    the text. Returns the text and how many blocks it holds whole: the last ones
    of the list. When even the newest block alone is too large, its beginning is
    shown cut, and it does not count as shown.
    """

    def size(text: str) -> int:
        return len(text.encode("utf-8"))

    kept: list[str] = []
    used = size(header)
    for block in reversed(blocks):
        left = len(blocks) - len(kept) - 1
        tail = size(more(left)) + 2 if left else 0
        if used + size(block) + 2 + tail > budget:
            break
        kept.append(block)
        used += size(block) + 2
    kept.reverse()
    left = len(blocks) - len(kept)
    parts = [header, *kept]
    if not kept and blocks:
        room = max(0, budget - size(header) - size(more(left)) - 12)  # separators, " [...]"
        parts.append(blocks[-1].encode("utf-8")[:room].decode("utf-8", errors="ignore") + " [...]")
    if left:
        parts.append(more(left))
    return "\n\n".join(p for p in parts if p), len(kept)
