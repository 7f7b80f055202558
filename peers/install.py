"""Agent clients' MCP configuration: write a peers entry (`peers install`), find it again (`peers doctor`).

Every format is in /work/shared/CLIENTS.md:

- Claude Code: ``~/.claude.json`` ``mcpServers`` (user scope), ``projects[<dir>].mcpServers``
  in the same file (its default "local" scope, only read here), ``<repo>/.mcp.json``
  (project scope).
- Codex: ``$CODEX_HOME/config.toml`` (default ``~/.codex``), table ``[mcp_servers.NAME]``;
  ``<repo>/.codex/config.toml`` for a trusted project.
- Cursor: ``~/.cursor/mcp.json`` or ``<repo>/.cursor/mcp.json``, ``mcpServers``.
- Gemini CLI: ``~/.gemini/settings.json`` or ``<repo>/.gemini/settings.json``, ``mcpServers``.

Writing is idempotent (an entry already as wanted leaves the file alone), keeps
every unrelated entry and setting, backs the old file up next to it, replaces
it atomically (following a symlink to its target) and never touches a file it
cannot parse. TOML is edited textually: only the ``[mcp_servers.NAME]`` table
is replaced, and the result is parsed back and compared before it is written,
so comments and layout elsewhere survive and a file peers cannot edit safely
is refused rather than damaged.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from peers import clients
from peers import constants as c
from peers.errors import ConfigError, InvalidInput

__all__ = [
    "CLIENTS",
    "ConfigLocation",
    "FoundEntry",
    "InstallPlan",
    "InstallScope",
    "ScanResult",
    "apply_install",
    "command_resolves",
    "config_location",
    "plan_install",
    "scan_clients",
    "server_command",
    "start_hint",
]

CLIENTS: tuple[str, ...] = clients.names()
# Claude Code's rule for server names; the other clients accept at least these.
SERVER_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Settings carried from the installing shell into the entry when set there.
CARRIED_ENV = ("PEERS_URL", "PEERS_NAMESPACE")

Format = Literal["json", "toml"]


class InstallScope(StrEnum):
    USER = "user"
    PROJECT = "project"


@dataclass(frozen=True, slots=True)
class ConfigLocation:
    """One client configuration file and where its MCP servers live inside it."""

    client: str
    # "user", "project", or "local" (Claude Code's per-directory entries in ~/.claude.json).
    scope: str
    path: Path
    fmt: Format
    table: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.client} {self.scope} config {_tilde(self.path)}"


def _tilde(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if home != "/" and text.startswith(home + os.sep) else text


def project_root(cwd: Path) -> Path:
    """The git work tree containing ``cwd``, or ``cwd`` itself."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return cwd
    top = out.stdout.strip()
    return Path(top) if out.returncode == 0 and top else cwd


def _client(name: str) -> clients.Client:
    found = clients.by_name(name)
    if found is None:
        raise InvalidInput(f"unknown client {name!r}; use one of: {', '.join(CLIENTS)}")
    return found


def _location(client: clients.Client, scope: str, file: clients.ConfigFile, root: Path) -> ConfigLocation:
    return ConfigLocation(client.name, scope, file.path(root), file.fmt, file.table_for(root))


def config_location(client: str, scope: InstallScope, cwd: Path) -> ConfigLocation:
    """Where ``peers install CLIENT --scope SCOPE`` writes."""
    found = _client(client)
    cscope = clients.ConfigScope(scope.value)
    root = Path.home() if scope is InstallScope.USER else project_root(cwd)
    return _location(found, scope.value, found.mcp_file(cscope), root)


def _all_locations(cwd: Path) -> list[ConfigLocation]:
    """Every file a client may read peers' entry from, as seen from ``cwd``."""
    found: list[ConfigLocation] = []
    seen: set[tuple[Path, tuple[str, ...]]] = set()

    def add(loc: ConfigLocation) -> None:
        key = (loc.path, loc.table)
        if key not in seen:
            seen.add(key)
            found.append(loc)

    root = project_root(cwd)
    for client in clients.CLIENTS:
        for scope, file in client.mcp_files():
            if scope is clients.ConfigScope.LOCAL:
                # Claude Code keys its local servers by the directory it was started in.
                for directory in dict.fromkeys([cwd, root]):
                    add(_location(client, scope.value, file, directory))
            else:
                add(_location(client, scope.value, file, root))
    return found


# -- reading -------------------------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ConfigError(f"{_tilde(path)} is not UTF-8 text; peers left it untouched") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {_tilde(path)}: {exc.strerror}") from None


def _parse(loc: ConfigLocation, text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    where = _tilde(loc.path)
    if loc.fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{where} is not valid TOML ({exc}); peers left it untouched: fix it first"
            ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "peers left it untouched: fix it first"
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where} holds a JSON {type(doc).__name__}, not an object; peers left it untouched")
    return doc


def _servers(loc: ConfigLocation, doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The servers mapping inside a parsed document (empty when absent)."""
    node: Any = doc
    for i, key in enumerate(loc.table):
        if not isinstance(node, Mapping):
            dotted = ".".join(loc.table[:i])
            raise ConfigError(f"{_tilde(loc.path)}: '{dotted}' is not an object; peers left it untouched")
        node = node.get(key, {})
    if not isinstance(node, Mapping):
        raise ConfigError(
            f"{_tilde(loc.path)}: '{'.'.join(loc.table)}' is not an object; peers left it untouched"
        )
    return node


# -- the entry ---------------------------------------------------------------------------


def server_command() -> tuple[str, list[str]]:
    """An absolute command that starts ``peers serve`` from any directory."""
    bin_dir = Path(sys.executable).parent  # not resolved: a venv's python is a symlink
    candidates = [bin_dir / "peers"]
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "peers":
        candidates.append(Path(os.path.abspath(argv0)))
    which = shutil.which("peers")
    if which:
        candidates.append(Path(os.path.abspath(which)))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate), ["serve"]
    return os.path.abspath(sys.executable), ["-m", "peers", "serve"]


def desired_entry(
    client: str, name: str, command: str, args: list[str], environ: Mapping[str, str]
) -> dict[str, Any]:
    env: dict[str, str] = {}
    if name != c.SERVER_NAME:
        # The server looks for the channel flag `server:<its registered name>`.
        env["PEERS_SERVER_NAME"] = name
    for key in CARRIED_ENV:
        if environ.get(key):
            env[key] = environ[key]
    found = _client(client)
    entry: dict[str, Any] = {"type": found.entry_type} if found.entry_type else {}
    entry.update({"command": command, "args": list(args), "env": env})
    return entry


def _merge(client: str, existing: Any, desired: dict[str, Any]) -> dict[str, Any]:
    """The new entry: ours, keeping settings the user added to an existing one."""
    if not isinstance(existing, Mapping):
        merged = dict(desired)
    else:
        merged = dict(existing)
        for key in ("type", "command", "args"):
            if key in desired:
                merged[key] = desired[key]
        old_env = existing.get("env")
        env = {
            k: v
            for k, v in (old_env.items() if isinstance(old_env, Mapping) else ())
            if k != "PEERS_SERVER_NAME"
        }
        env.update(desired["env"])
        merged["env"] = env
    if _client(client).omit_empty_env and not merged.get("env"):
        merged.pop("env", None)
    return merged


# -- TOML: replace one table textually ------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(value: str) -> str:
    # JSON's escapes are valid TOML basic-string escapes; DEL must be escaped in TOML too.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "nan" if value != value else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v, where)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise ConfigError(f"{where}: cannot rewrite a value of type {type(value).__name__}; edit it by hand")


def _toml_table(name: str, entry: Mapping[str, Any], where: str) -> str:
    lines = [f"[mcp_servers.{_toml_key(name)}]"]
    for key, value in entry.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value, where)}")
    return "\n".join(lines) + "\n"


def _parse_dotted_key(text: str) -> list[str] | None:
    """``a."b c".'d'`` -> ["a", "b c", "d"]; None when it is not a simple dotted key."""
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return None
        if text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                return None
            try:
                parts.append(json.loads(text[i : j + 1]))
            except json.JSONDecodeError:
                return None
            i = j + 1
        elif text[i] == "'":
            j = text.find("'", i + 1)
            if j < 0:
                return None
            parts.append(text[i + 1 : j])
            i = j + 1
        else:
            m = _BARE_KEY.match(text, i)
            if m is None:
                return None
            parts.append(m.group())
            i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return parts
        if text[i] != ".":
            return None
        i += 1


def _header(line: str) -> tuple[bool, list[str] | None] | None:
    """(is_array_table, key parts) if the line is a table header, else None."""
    stripped = line.strip()
    if not stripped.startswith("["):
        return None
    array = stripped.startswith("[[")
    opener, closer = ("[[", "]]") if array else ("[", "]")
    body = stripped[len(opener) :]
    # The closing bracket is the first one outside quotes.
    quote: str | None = None
    for i, ch in enumerate(body):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif body.startswith(closer, i):
            rest = body[i + len(closer) :].strip()
            if rest and not rest.startswith("#"):
                return None
            return array, _parse_dotted_key(body[:i])
        elif ch == "[" or ch == ",":
            return None  # an array value, not a header
    return None


def _replace_toml_table(text: str, name: str, table: str, where: str) -> str:
    lines = text.splitlines(keepends=True)
    blocks: list[tuple[int, int]] = []  # [start, end) of tables to drop
    current: int | None = None
    in_string: str | None = None

    def close(end: int) -> None:
        nonlocal current
        if current is not None:
            # Blank lines and comments at a table's end belong to what follows.
            while end > current + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
                end -= 1
            blocks.append((current, end))
            current = None

    for i, line in enumerate(lines):
        if in_string is None:
            head = _header(line)
            if head is not None:
                close(i)
                _, key = head
                if key is not None and key[:2] == ["mcp_servers", name] and len(key) >= 2:
                    current = i
        for delim in ('"""', "'''"):
            if line.count(delim) % 2 == 1 and in_string in (None, delim):
                in_string = None if in_string == delim else delim
    close(len(lines))

    if not blocks:
        prefix = text if not text or text.endswith("\n") else text + "\n"
        separator = "\n" if prefix.strip() else ""
        return prefix + separator + table
    out: list[str] = []
    position = 0
    for n, (start, end) in enumerate(blocks):
        between = lines[position:start]
        if n > 0 and all(not line.strip() for line in between):
            between = []  # the blank lines that separated two dropped tables
        out.extend(between)
        if n == 0:
            out.append(table)
        position = end
    rest = lines[position:]
    if rest and rest[0].strip():
        out.append("\n")
    out.extend(rest)
    return "".join(out)


def _without(doc: Mapping[str, Any], table: tuple[str, ...], name: str) -> dict[str, Any]:
    """A deep copy of doc with servers[name] removed (and an emptied servers table dropped)."""
    copied: dict[str, Any] = copy.deepcopy(dict(doc))
    parents: list[dict[str, Any]] = [copied]
    node: Any = copied
    for key in table:
        if not isinstance(node, dict) or key not in node:
            return copied
        node = node[key]
        parents.append(node)
    if isinstance(node, dict):
        node.pop(name, None)
    # Drop containers left empty, innermost first.
    for depth in range(len(table), 0, -1):
        parent, child = parents[depth - 1], parents[depth]
        if isinstance(child, dict) and not child:
            parent.pop(table[depth - 1], None)
        else:
            break
    return copied


# -- plan and apply ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstallPlan:
    location: ConfigLocation
    name: str
    entry: dict[str, Any]
    before: str | None
    after: str
    # Things worth telling the user about the entry (settings carried over).
    notes: tuple[str, ...] = field(default_factory=tuple)
    # The entry holds a secret (a URL with a password): the file is written 0600.
    private: bool = False
    # What peers wants in the entry before merging with the file: to plan again
    # on a file that changed under it.
    desired: dict[str, Any] = field(default_factory=dict)
    carried: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return self.after != (self.before or "")

    @property
    def action(self) -> str:
        if not self.changed:
            return "unchanged"
        return "create" if self.before is None else "update"

    def diff(self) -> str:
        label = _tilde(self.location.path)
        lines = difflib.unified_diff(
            (self.before or "").splitlines(keepends=True),
            self.after.splitlines(keepends=True),
            fromfile=f"{label} (before)" if self.before is not None else "/dev/null",
            tofile=f"{label} (after)",
        )
        text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        return _hide_passwords(text)


def _hide_passwords(text: str) -> str:
    return re.sub(r"(rediss?://[^:/@\s\"]*:)[^@\s\"]+@", r"\1***@", text)


def validate_server_name(name: str) -> str:
    if not SERVER_NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid server name {name!r}: use 1-64 letters, digits, '-' and '_'"
        )
    return name


def _indent_of(text: str | None) -> int | str:
    if text:
        m = re.search(r"\n([ \t]+)\S", text)
        if m:
            unit = m.group(1)
            return "\t" if unit.startswith("\t") else len(unit)
    return 2


def _holds_secret(entry: Mapping[str, Any]) -> bool:
    """True if an environment value of the entry is a URL with a password."""
    env = entry.get("env")
    if not isinstance(env, Mapping):
        return False
    for value in env.values():
        if isinstance(value, str) and "://" in value:
            try:
                parts = urlsplit(value)
            except ValueError:
                continue
            if parts.password or "password=" in parts.query:
                return True
    return False


def plan_install(
    client: str,
    scope: InstallScope,
    name: str = c.SERVER_NAME,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
    command: tuple[str, list[str]] | None = None,
) -> InstallPlan:
    """What `peers install` would write, without writing anything."""
    name = validate_server_name(name)
    environ = os.environ if environ is None else environ
    loc = config_location(client, scope, cwd or Path.cwd())
    url = environ.get("PEERS_URL", "")
    if scope is InstallScope.PROJECT and url and urlsplit(url).password:
        raise InvalidInput(
            "PEERS_URL holds a password, and a project file is usually committed: "
            "use --scope user, or unset PEERS_URL here and give the client the URL another way"
        )
    cmd, args = command or server_command()
    desired = desired_entry(client, name, cmd, args, environ)
    carried = tuple(
        f"{key} copied from this shell into the entry" for key in CARRIED_ENV if environ.get(key)
    )
    return _plan(loc, name, desired, _read_text(loc.path), carried)


def _plan(
    loc: ConfigLocation,
    name: str,
    desired: dict[str, Any],
    before: str | None,
    carried: tuple[str, ...],
) -> InstallPlan:
    """The plan for one file's content as read (``before``; None when there is no file)."""
    doc = _parse(loc, before)
    servers = _servers(loc, doc)
    existing = servers.get(name)
    entry = _merge(loc.client, existing, desired)
    where = _tilde(loc.path)

    if existing == entry:
        after = before or ""
    elif loc.fmt == "json":
        new_doc = copy.deepcopy(doc)
        node = new_doc
        for key in loc.table:
            node = node.setdefault(key, {})
        node[name] = entry
        indent = _indent_of(before)
        after = json.dumps(new_doc, indent=indent, ensure_ascii=False) + "\n"
    else:
        after = _replace_toml_table(before or "", name, _toml_table(name, entry, where), where)
        try:
            new_doc = tomllib.loads(after)
            same_rest = _without(new_doc, loc.table, name) == _without(doc, loc.table, name)
            written = _servers(loc, new_doc).get(name)
        except (tomllib.TOMLDecodeError, ConfigError):
            same_rest, written = False, None
        if not same_rest or written != entry:
            raise ConfigError(
                f"{where}: the [mcp_servers.{name}] entry is written in a form peers cannot "
                "replace safely; peers left the file untouched: remove that entry by hand and "
                "run this again"
            )
    private = _holds_secret(entry)
    notes = carried
    if private and after != (before or ""):
        notes += (
            f"the entry holds a password: {where} gets mode 0600 (readable by you only)",
        )
    return InstallPlan(loc, name, entry, before, after, notes, private, desired, carried)


# How often apply_install plans again when the file keeps changing under it.
_APPLY_ATTEMPTS = 5


def apply_install(plan: InstallPlan) -> Path | None:
    """Write the plan (atomically, after a backup); return the backup's path, if any.

    The file is read again right before it is replaced: when someone changed it
    since the plan was made (a running Claude Code rewrites ``~/.claude.json``),
    the entry is planned again on the new content, so their change survives.
    """
    where = _tilde(plan.location.path)
    for _ in range(_APPLY_ATTEMPTS):
        current = _read_text(plan.location.path)
        if current != plan.before:
            plan = _plan(plan.location, plan.name, plan.desired, current, plan.carried)
        if not plan.changed:
            return None
        try:
            written, backup = _write(plan)
        except OSError as exc:
            raise ConfigError(f"cannot write {where}: {exc.strerror or exc}") from None
        if written:
            return backup
    raise ConfigError(
        f"{where} kept changing while peers was writing it (a client rewriting it?); "
        "peers left it as it was: run this again"
    )


def tighten_permissions(plan: InstallPlan) -> bool:
    """Make an existing file that holds a password private (0600); True if it was not."""
    target = plan.location.path.resolve()
    if not plan.private or not target.exists():
        return False
    if target.stat().st_mode & 0o077 == 0:
        return False
    try:
        os.chmod(target, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot make {_tilde(target)} private: {exc.strerror or exc}") from None
    return True


def _write(plan: InstallPlan) -> tuple[bool, Path | None]:
    """Replace the file with ``plan.after`` unless it no longer holds ``plan.before``.

    Returns (written, backup path).
    """
    target = plan.location.path
    if target.is_symlink():
        target = target.resolve()  # keep a dotfile manager's symlink intact
    parent = target.parent
    if not parent.is_dir():
        user_dir = plan.location.scope == InstallScope.USER.value
        os.makedirs(parent, mode=0o700 if user_dir else 0o755, exist_ok=True)
    mode = 0o600 if plan.location.scope == InstallScope.USER.value else 0o644
    if plan.before is not None and target.exists():
        mode = target.stat().st_mode & 0o7777
    if plan.private:
        mode = 0o600  # PEERS_URL's password must not be readable by other users
    backup: Path | None = None
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(plan.after)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if plan.before is not None and target.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            backup = target.with_name(f"{target.name}.peers-backup-{stamp}")
            n = 1
            while backup.exists():
                n += 1
                backup = target.with_name(f"{target.name}.peers-backup-{stamp}-{n}")
            shutil.copy2(target, backup)
            if plan.private:
                os.chmod(backup, 0o600)
        # Last look before the swap: a change since the plan means planning again.
        if _read_text(plan.location.path) != plan.before:
            if backup is not None:
                backup.unlink(missing_ok=True)
            os.unlink(tmp)
            return False, None
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True, backup


def start_hint(plan: InstallPlan) -> list[str]:
    """How to start the client so that it loads the entry just written."""
    name = plan.location.client
    server = plan.name
    project = plan.location.scope == InstallScope.PROJECT.value
    root = str(plan.location.path.parent)
    if name == "claude":
        lines = [
            "Start Claude Code (restart sessions already running) with push enabled:",
            f"  claude --dangerously-load-development-channels server:{server}",
            "Without that flag it still works, but messages arrive only when it calls a peers tool.",
        ]
        if project:
            lines.append(
                f"Run it from {root}; Claude Code asks once to approve the servers in .mcp.json."
            )
        return lines
    if name == "codex":
        lines = [
            "Start Codex as usual (restart sessions already running): codex",
            "Codex has no push: messages arrive with peers tool results (ask it to check_messages).",
        ]
        if project:
            lines.append("Codex reads .codex/config.toml only in a project you marked as trusted.")
        return lines
    if name == "cursor":
        return [
            f"Restart Cursor, or turn '{server}' on in Settings > MCP.",
            "Cursor has no push: messages arrive with peers tool results.",
        ]
    return [
        f"Start Gemini CLI (restart sessions already running): gemini, then /mcp lists '{server}'",
        "Gemini CLI has no push: messages arrive with peers tool results.",
    ]


# -- scanning (doctor) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FoundEntry:
    location: ConfigLocation
    name: str
    entry: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ScanResult:
    entries: list[FoundEntry]
    # Files that exist but could not be read or parsed, with the reason.
    errors: list[tuple[ConfigLocation, str]]
    # Files that exist and were read.
    files: list[ConfigLocation]


def looks_like_peers(entry: Mapping[str, Any]) -> bool:
    """True for an entry that starts ``peers serve`` (by path, ``uvx peers`` or ``-m peers``)."""
    command = entry.get("command")
    args = entry.get("args")
    argv = [command] if isinstance(command, str) else []
    if isinstance(args, list):
        argv += [a for a in args if isinstance(a, str)]
    if "serve" not in argv:
        return False
    return any(os.path.basename(a) == "peers" for a in argv) or "peers.cli" in argv


def scan_clients(cwd: Path, server_name: str = c.SERVER_NAME) -> ScanResult:
    """Every peers entry in every client configuration visible from ``cwd``."""
    entries: list[FoundEntry] = []
    errors: list[tuple[ConfigLocation, str]] = []
    files: list[ConfigLocation] = []
    parsed: dict[Path, dict[str, Any]] = {}
    for loc in _all_locations(cwd):
        try:
            if loc.path not in parsed:
                text = _read_text(loc.path)
                if text is None:
                    continue
                parsed[loc.path] = _parse(loc, text)
            servers = _servers(loc, parsed[loc.path])
        except ConfigError as exc:
            if not any(e[0].path == loc.path for e in errors):
                errors.append((loc, str(exc)))
            continue
        if loc.table[0] == "projects" and not servers:
            continue
        files.append(loc)
        for name, entry in servers.items():
            if not isinstance(entry, Mapping):
                continue
            if name == server_name or looks_like_peers(entry):
                entries.append(FoundEntry(loc, str(name), entry))
    return ScanResult(entries, errors, files)


def command_resolves(entry: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether an entry's command can be started, and what it resolved to (or why not)."""
    command = entry.get("command")
    if not isinstance(command, str) or not command:
        return False, "the entry has no command"
    if os.path.isabs(command):
        if os.path.isfile(command) and os.access(command, os.X_OK):
            return True, command
        return False, f"{command} does not exist or is not executable"
    found = shutil.which(command)
    if found:
        return True, found
    return False, f"'{command}' is not on PATH"
