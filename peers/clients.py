"""What peers knows about each agent client, in one table: :data:`CLIENTS`.

Every fact here was measured with the real clients or read from their own
source and documentation (see /work/shared/CLIENTS.md): where each keeps its
MCP servers and hooks per scope, the entry it expects, how its MCP clientInfo
names it, how it loads Claude Code's channel, what its hook events are called,
which tools edit files, which rendering of a tool result its model reads, the
word its process shows (for ``kill_peer``), and how to start it.

``peers install``, ``peers doctor``, the service, the server and ``peers hook``
read it. Plain frozen data and the standard library only: ``peers hook`` runs
on every tool call and imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CHANNEL_FLAGS",
    "CLIENTS",
    "Client",
    "ConfigFile",
    "ConfigScope",
    "HookEvent",
    "HookSpec",
    "ModelReads",
    "Root",
    "by_kind",
    "by_name",
    "canonical_event",
    "client_kind",
    "loads_channel",
    "names",
    "process_marker",
    "session_loads_channel",
]

# Flags with which Claude Code loads a channel server: `--flag server:NAME`.
CHANNEL_FLAGS = ("--dangerously-load-development-channels", "--channels")

Format = Literal["json", "toml"]


class ConfigScope(StrEnum):
    """Where a client reads a file from: for every project, or for one."""

    USER = "user"
    PROJECT = "project"
    # Claude Code's per-directory servers inside ~/.claude.json (read, never written).
    LOCAL = "local"


class Root(StrEnum):
    """The directory a configuration path starts from."""

    HOME = "home"
    # $CODEX_HOME, by default ~/.codex.
    CODEX_HOME = "codex_home"
    # The git work tree of the current directory (or the directory itself).
    PROJECT = "project"


# A table path element replaced by the project directory (Claude Code's local scope).
DIRECTORY = "{dir}"


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """One configuration file and the key path, inside it, of the mapping peers edits."""

    root: Root
    parts: tuple[str, ...]
    fmt: Format
    table: tuple[str, ...]

    def path(self, project: Path, environ: Mapping[str, str] | None = None) -> Path:
        """The file's absolute path, for the project at ``project``."""
        env = os.environ if environ is None else environ
        if self.root is Root.PROJECT:
            base = project
        elif self.root is Root.CODEX_HOME:
            base = Path(env.get("CODEX_HOME") or Path.home() / ".codex")
        else:
            base = Path.home()
        return base.joinpath(*self.parts)

    def table_for(self, directory: Path) -> tuple[str, ...]:
        return tuple(str(directory) if key == DIRECTORY else key for key in self.table)


class HookEvent(StrEnum):
    """peers' hook events; each client names them its own way (:attr:`HookSpec.events`)."""

    SESSION_START = "SessionStart"
    USER_PROMPT_SUBMIT = "UserPromptSubmit"
    PRE_TOOL_USE = "PreToolUse"
    POST_TOOL_USE = "PostToolUse"
    STOP = "Stop"


class ModelReads(StrEnum):
    """Which rendering of a tool result reaches the client's model."""

    # Only the compact JSON of structuredContent (the text is dropped when both exist).
    STRUCTURED = "structuredContent"
    # Only the text content.
    TEXT = "text"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class HookSpec:
    """How a client runs command hooks, and which peers installs."""

    user: ConfigFile
    project: ConfigFile
    # peers' event -> the client's name for it.
    events: Mapping[HookEvent, str]
    # Matches every tool (PostToolUse: mail after each step).
    all_tools: str
    # Matches the client's file-editing tools (PreToolUse: the edit guard).
    edit_matcher: str
    # The hook's time limit in the client's unit; the hook itself gives up within 1 s.
    timeout: int
    timeout_unit: Literal["s", "ms"]
    # Extra keys on each hook handler (Gemini shows a name in /hooks).
    handler_extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # The client skips hooks the user has not trusted, silently (Codex).
    needs_trust: bool = False
    # Other files it reads hooks from (only read by doctor).
    other: tuple[ConfigFile, ...] = ()

    def file(self, scope: ConfigScope) -> ConfigFile:
        return self.project if scope is ConfigScope.PROJECT else self.user

    def matcher(self, event: HookEvent) -> str | None:
        """The matcher peers writes for an event (None: the event takes none)."""
        if event is HookEvent.POST_TOOL_USE:
            return self.all_tools
        if event is HookEvent.PRE_TOOL_USE:
            return self.edit_matcher
        return None


@dataclass(frozen=True, slots=True)
class Client:
    """Everything peers knows about one agent client."""

    # The name on peers' command line (`peers install claude`) and in hook flags.
    name: str
    # What a peer record says in `client` (from clientInfo, see client_kind).
    kind: str
    title: str
    # Substrings of the MCP clientInfo name that identify it, lower case.
    info_names: tuple[str, ...]
    # A word its agent process shows in its command line (kill_peer checks it).
    process_marker: str
    mcp_user: ConfigFile
    mcp_project: ConfigFile
    # Where else it may read an MCP entry from (only read by doctor).
    mcp_other: tuple[tuple[ConfigScope, ConfigFile], ...] = ()
    # `type` written on the MCP entry (Claude Code wants "stdio").
    entry_type: str | None = None
    # Codex's own `codex mcp add` omits an empty env table.
    omit_empty_env: bool = False
    # The entry key that lets the client run the tools without asking (Gemini's "trust").
    trust_key: str | None = None
    model_reads: ModelReads = ModelReads.UNKNOWN
    # Push: Claude Code's channel, loaded with one of CHANNEL_FLAGS.
    push: bool = False
    hooks: HookSpec | None = None
    # Tool names that edit files, as hooks see them.
    edit_tools: tuple[str, ...] = ()
    # How the user starts it.
    start_command: str = ""

    def mcp_file(self, scope: ConfigScope) -> ConfigFile:
        return self.mcp_project if scope is ConfigScope.PROJECT else self.mcp_user

    def mcp_files(self) -> Iterator[tuple[ConfigScope, ConfigFile]]:
        """Every file it may read peers' entry from: user, others, project."""
        yield ConfigScope.USER, self.mcp_user
        yield from self.mcp_other
        yield ConfigScope.PROJECT, self.mcp_project


def _events(names: Mapping[HookEvent, str]) -> Mapping[HookEvent, str]:
    return MappingProxyType(dict(names))


_SAME_EVENTS = _events({event: event.value for event in HookEvent})

CLAUDE = Client(
    name="claude",
    kind="claude-code",
    title="Claude Code",
    info_names=("claude",),
    process_marker="claude",
    mcp_user=ConfigFile(Root.HOME, (".claude.json",), "json", ("mcpServers",)),
    mcp_project=ConfigFile(Root.PROJECT, (".mcp.json",), "json", ("mcpServers",)),
    mcp_other=(
        (
            ConfigScope.LOCAL,
            ConfigFile(Root.HOME, (".claude.json",), "json", ("projects", DIRECTORY, "mcpServers")),
        ),
    ),
    entry_type="stdio",
    model_reads=ModelReads.STRUCTURED,
    push=True,
    hooks=HookSpec(
        user=ConfigFile(Root.HOME, (".claude", "settings.json"), "json", ("hooks",)),
        project=ConfigFile(Root.PROJECT, (".claude", "settings.json"), "json", ("hooks",)),
        events=_SAME_EVENTS,
        all_tools="*",
        edit_matcher="Edit|Write|MultiEdit|NotebookEdit",
        timeout=5,
        timeout_unit="s",
        other=(ConfigFile(Root.PROJECT, (".claude", "settings.local.json"), "json", ("hooks",)),),
    ),
    edit_tools=("Edit", "Write", "MultiEdit", "NotebookEdit"),
    start_command="claude",
)

CODEX = Client(
    name="codex",
    kind="codex",
    title="Codex",
    info_names=("codex",),
    process_marker="codex",
    mcp_user=ConfigFile(Root.CODEX_HOME, ("config.toml",), "toml", ("mcp_servers",)),
    mcp_project=ConfigFile(Root.PROJECT, (".codex", "config.toml"), "toml", ("mcp_servers",)),
    omit_empty_env=True,
    model_reads=ModelReads.STRUCTURED,
    hooks=HookSpec(
        user=ConfigFile(Root.CODEX_HOME, ("config.toml",), "toml", ("hooks",)),
        project=ConfigFile(Root.PROJECT, (".codex", "config.toml"), "toml", ("hooks",)),
        events=_SAME_EVENTS,
        all_tools="*",
        # apply_patch is Codex's edit tool; Codex also matches it as Edit and Write.
        edit_matcher="apply_patch|Edit|Write",
        timeout=5,
        timeout_unit="s",
        needs_trust=True,
    ),
    edit_tools=("apply_patch", "Edit", "Write"),
    start_command="codex",
)

GEMINI = Client(
    name="gemini",
    kind="gemini",
    title="Gemini CLI",
    info_names=("gemini",),
    process_marker="gemini",
    mcp_user=ConfigFile(Root.HOME, (".gemini", "settings.json"), "json", ("mcpServers",)),
    mcp_project=ConfigFile(Root.PROJECT, (".gemini", "settings.json"), "json", ("mcpServers",)),
    trust_key="trust",
    model_reads=ModelReads.TEXT,
    hooks=HookSpec(
        user=ConfigFile(Root.HOME, (".gemini", "settings.json"), "json", ("hooks",)),
        project=ConfigFile(Root.PROJECT, (".gemini", "settings.json"), "json", ("hooks",)),
        events=_events(
            {
                HookEvent.SESSION_START: "SessionStart",
                HookEvent.USER_PROMPT_SUBMIT: "BeforeAgent",
                HookEvent.PRE_TOOL_USE: "BeforeTool",
                HookEvent.POST_TOOL_USE: "AfterTool",
                HookEvent.STOP: "AfterAgent",
            }
        ),
        all_tools="*",
        # Gemini's tool matchers are unanchored regular expressions.
        edit_matcher="^(write_file|replace)$",
        timeout=5000,
        timeout_unit="ms",
        # `/hooks disable peers` turns every peers hook off at once.
        handler_extra=MappingProxyType({"name": "peers"}),
    ),
    edit_tools=("write_file", "replace"),
    start_command="gemini",
)

CURSOR = Client(
    name="cursor",
    kind="cursor",
    title="Cursor",
    info_names=("cursor",),
    process_marker="cursor",
    mcp_user=ConfigFile(Root.HOME, (".cursor", "mcp.json"), "json", ("mcpServers",)),
    mcp_project=ConfigFile(Root.PROJECT, (".cursor", "mcp.json"), "json", ("mcpServers",)),
)

CLIENTS: tuple[Client, ...] = (CLAUDE, CODEX, CURSOR, GEMINI)
_BY_NAME = {c.name: c for c in CLIENTS}
_BY_KIND = {c.kind: c for c in CLIENTS}
# clientInfo names that are no agent client: peers' own command-line client.
_OTHER_KINDS = (("peers-cli", "cli"),)


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def by_name(name: str) -> Client | None:
    """The client called ``name`` on peers' command line (claude, codex, cursor, gemini)."""
    return _BY_NAME.get(name)


def by_kind(kind: str) -> Client | None:
    """The client a peer record's ``client`` field names (claude-code, codex, ...)."""
    return _BY_KIND.get(kind)


def client_kind(client_name: str | None) -> str:
    """A short kind (claude-code, codex, cursor, gemini, ...) from an MCP clientInfo name."""
    if not client_name:
        return "unknown"
    lowered = client_name.lower()
    for needle, kind in _OTHER_KINDS:
        if needle in lowered:
            return kind
    for client in CLIENTS:
        if any(needle in lowered for needle in client.info_names):
            return client.kind
    return lowered[:32]


def process_marker(kind: str) -> str | None:
    """The word the agent process of a ``kind`` session shows (None: unknown client)."""
    client = _BY_KIND.get(kind)
    return client.process_marker if client else None


def canonical_event(client: str, event: str) -> HookEvent | None:
    """peers' event for a hook event as ``client`` names it (Gemini's AfterTool: PostToolUse)."""
    found = _BY_NAME.get(client)
    if found is None or found.hooks is None:
        return None
    for ours, theirs in found.hooks.events.items():
        if theirs == event:
            return ours
    return None


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
    from peers.procinfo import ancestors  # psutil: only the server asks this

    return any(loads_channel(info.argv, server_name) for info in ancestors(pid or os.getpid()))
