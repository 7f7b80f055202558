"""What peers knows about its agent clients: kinds and the channel flag."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from peers.procinfo import ancestors

__all__ = ["CHANNEL_FLAGS", "client_kind", "loads_channel", "session_loads_channel"]

# Flags with which Claude Code loads a channel server: `--flag server:NAME`.
CHANNEL_FLAGS = ("--dangerously-load-development-channels", "--channels")

_KINDS = (
    ("claude", "claude-code"),
    ("codex", "codex"),
    ("cursor", "cursor"),
    ("gemini", "gemini"),
    ("peers-cli", "cli"),
)


def client_kind(client_name: str | None) -> str:
    """A short kind (claude-code, codex, cursor, gemini, ...) from an MCP clientInfo name."""
    if not client_name:
        return "unknown"
    lowered = client_name.lower()
    for needle, kind in _KINDS:
        if needle in lowered:
            return kind
    return lowered[:32]


def _flag_values(argv: Sequence[str]) -> Iterable[str]:
    for i, arg in enumerate(argv):
        for flag in CHANNEL_FLAGS:
            if arg == flag:
                for value in argv[i + 1 :]:
                    if value.startswith("-"):
                        break
                    yield from value.split(",")
            elif arg.startswith(flag + "="):
                yield from arg.split("=", 1)[1].split(",")


def loads_channel(argv: Sequence[str], server_name: str) -> bool:
    """True if a command line loads the channel of the MCP server registered as ``server_name``."""
    wanted = f"server:{server_name}"
    return any(value.strip() == wanted for value in _flag_values(argv))


def session_loads_channel(server_name: str, pid: int | None = None) -> bool:
    """True if an ancestor of this process (the agent) was started with the channel flag for us."""
    return any(loads_channel(info.argv, server_name) for info in ancestors(pid or os.getpid()))
