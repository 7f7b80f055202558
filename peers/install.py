"""``peers install`` and ``peers uninstall``: peers' MCP entry and hooks in a client's settings.

Where each client keeps them is in :mod:`peers.clients` (Claude Code: the
entry in ``~/.claude.json`` or ``.mcp.json``, hooks in ``.claude/settings.json``;
Codex: both in ``config.toml``; Gemini CLI: both in ``settings.json``; Cursor:
the entry only). A plan says what every file would become; applying it writes
each changed file with the care of :mod:`peers.configfile` (idempotent, backup,
atomic, mode kept, 0600 with a password, nothing written to a file that cannot
be parsed), and plans again on the new content when a running client rewrote
a file in between, so that its change survives.

Doctor's view of the same files (:func:`scan_clients`, :func:`scan_hooks`) is
here too.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from peers import clients
from peers import constants as c
from peers.clients import Client, ConfigFile, ConfigScope
from peers.configfile import Delete, Format, Op, Set, make_private, parse, read_text
from peers.configfile import render as render_file
from peers.configfile import tilde as _tilde
from peers.configfile import write as write_file
from peers.errors import ConfigError, InvalidInput
from peers.hookconfig import (
    FoundHook,
    HookChange,
    codex_trust_ops,
    codex_trust_status,
    find_ours,
    our_groups,
    plan_hooks,
)
from peers.redact import redact_text

__all__ = [
    "CLIENTS",
    "ConfigLocation",
    "FileChange",
    "FoundEntry",
    "HookFile",
    "InstallPlan",
    "InstallScope",
    "ScanResult",
    "apply_install",
    "apply_plan",
    "command_resolves",
    "config_location",
    "plan_install",
    "plan_uninstall",
    "scan_clients",
    "scan_hooks",
    "server_command",
    "start_hint",
    "tighten_permissions",
]

CLIENTS: tuple[str, ...] = clients.names()
# Claude Code's rule for server names; the other clients accept at least these.
SERVER_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Settings carried from the installing shell into the entry when set there.
CARRIED_ENV = ("PEERS_URL", "PEERS_NAMESPACE")
# The tool Codex still asks about when it is on (its annotations say destructive).
KILL_TOOL = "kill_peer"


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


def _client(name: str) -> Client:
    found = clients.by_name(name)
    if found is None:
        raise InvalidInput(f"unknown client {name!r}; use one of: {', '.join(CLIENTS)}")
    return found


def _location(client: Client, scope: str, file: ConfigFile, root: Path) -> ConfigLocation:
    return ConfigLocation(client.name, scope, file.path(root), file.fmt, file.table_for(root))


def config_location(client: str, scope: InstallScope, cwd: Path) -> ConfigLocation:
    """Where ``peers install CLIENT --scope SCOPE`` writes the MCP entry."""
    found = _client(client)
    root = Path.home() if scope is InstallScope.USER else project_root(cwd)
    return _location(found, scope.value, found.mcp_file(ConfigScope(scope.value)), root)


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
            if scope is ConfigScope.LOCAL:
                # Claude Code keys its local servers by the directory it was started in.
                for directory in dict.fromkeys([cwd, root]):
                    add(_location(client, scope.value, file, directory))
            else:
                add(_location(client, scope.value, file, root))
    return found


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
    client: str,
    name: str,
    command: str,
    args: list[str],
    environ: Mapping[str, str],
    *,
    trust: bool = True,
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
    if found.trust_key and trust:
        entry[found.trust_key] = True
    return entry


def _merge(client: Client, existing: Any, desired: dict[str, Any], trust: bool) -> dict[str, Any]:
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
        if client.trust_key:
            if trust:
                merged[client.trust_key] = True
            else:
                merged.pop(client.trust_key, None)
    if client.omit_empty_env and not merged.get("env"):
        merged.pop("env", None)
    return merged


def looks_like_peers(entry: Mapping[str, Any]) -> bool:
    """True for an entry that starts ``peers serve`` (by path, ``uvx peers`` or ``-m peers``)."""
    command = entry.get("command")
    args = entry.get("args")
    argv = [command] if isinstance(command, str) else []
    if isinstance(args, list):
        argv += [a for a in args if isinstance(a, str)]
    if "serve" not in argv:
        return False
    return any(os.path.basename(a) == "peers" for a in argv) or "peers.cli" in argv or (
        "-m" in argv and "peers" in argv
    )


def validate_server_name(name: str) -> str:
    if not SERVER_NAME_PATTERN.fullmatch(name):
        raise InvalidInput(f"invalid server name {name!r}: use 1-64 letters, digits, '-' and '_'")
    return name


def _holds_secret(entry: Mapping[str, Any] | None) -> bool:
    """True if an environment value of the entry is a URL with a password."""
    env = entry.get("env") if entry else None
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


# -- plans -----------------------------------------------------------------------------------

Role = Literal["MCP entry", "hooks", "hook trust"]


@dataclass(frozen=True, slots=True)
class FileChange:
    """What one file is, and what it would become."""

    path: Path
    roles: tuple[Role, ...]
    before: str | None
    after: str
    # Holds a password: written 0600.
    private: bool
    # The mode a new file gets.
    new_mode: int

    @property
    def changed(self) -> bool:
        return self.after != (self.before or "")

    def diff(self) -> str:
        label = _tilde(self.path)
        lines = difflib.unified_diff(
            (self.before or "").splitlines(keepends=True),
            self.after.splitlines(keepends=True),
            fromfile=f"{label} (before)" if self.before is not None else "/dev/null",
            tofile=f"{label} (after)",
        )
        text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        return redact_text(text)


@dataclass(frozen=True, slots=True)
class HookReport:
    """What a plan does to the client's hooks."""

    command: str = ""
    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    # Ours in the file once the plan is applied (event names).
    present: tuple[str, ...] = ()
    # How many of ours the plan trusts (Codex --trust-hooks), and how many stay untrusted.
    trusted: int = 0
    untrusted: int = 0
    # Why hooks were left in place on uninstall (another peers entry uses them).
    kept_for: str | None = None


@dataclass(frozen=True, slots=True)
class InstallPlan:
    """Every file ``peers install`` (or ``uninstall``) would change, and what to tell the user."""

    client: Client
    scope: InstallScope
    name: str
    action: Literal["install", "uninstall"]
    location: ConfigLocation
    # The MCP entry as it will be (install), or as it was (uninstall; None: there was none).
    entry: dict[str, Any] | None
    files: tuple[FileChange, ...]
    hooks: HookReport
    notes: tuple[str, ...] = ()
    # Plans again from the files' current texts (apply calls it when a file changed).
    replan: Callable[[Mapping[Path, str | None]], InstallPlan] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def changed(self) -> bool:
        return any(f.changed for f in self.files)

    @property
    def before(self) -> str | None:
        """The MCP entry file's text as read."""
        for f in self.files:
            if f.path == self.location.path:
                return f.before
        return None

    @property
    def private(self) -> bool:
        return any(f.private for f in self.files if f.path == self.location.path)

    def diff(self) -> str:
        return "".join(f.diff() for f in self.files if f.changed)


def _hooks_base(command: tuple[str, list[str]]) -> list[str]:
    """The hook command's program part: the server command without ``serve``."""
    cmd, args = command
    return [cmd, *(a for a in args if a != "serve")]


def _new_mode(scope: InstallScope) -> int:
    return 0o600 if scope is InstallScope.USER else 0o644


def _codex_state_file(client: Client) -> ConfigFile:
    """Codex reads hook trust from the user config only, whatever file holds the hooks."""
    return client.mcp_user


@dataclass
class _Draft:
    """Ops per file while a plan is being put together."""

    texts: Mapping[Path, str | None]
    fmts: dict[Path, Format] = field(default_factory=dict)
    ops: dict[Path, list[Op]] = field(default_factory=dict)
    roles: dict[Path, list[Role]] = field(default_factory=dict)
    private: dict[Path, bool] = field(default_factory=dict)

    def doc(self, path: Path, fmt: Format) -> dict[str, Any]:
        self.fmts[path] = fmt
        return parse(fmt, self.texts.get(path), path)

    def add(self, path: Path, role: Role, ops: Sequence[Op], private: bool = False) -> None:
        self.ops.setdefault(path, []).extend(ops)
        if ops or role == "MCP entry":
            roles = self.roles.setdefault(path, [])
            if role not in roles:
                roles.append(role)
        self.private[path] = self.private.get(path, False) or private

    def files(self, scope: InstallScope, user_paths: set[Path]) -> tuple[FileChange, ...]:
        out = []
        for path, ops in self.ops.items():
            before = self.texts.get(path)
            after = render_file(self.fmts[path], before, ops, path)
            mode = 0o600 if path in user_paths else _new_mode(scope)
            out.append(
                FileChange(
                    path,
                    tuple(self.roles.get(path, ())),
                    before,
                    after,
                    self.private.get(path, False),
                    mode,
                )
            )
        return tuple(out)


def _paths(client: Client, scope: InstallScope, root: Path) -> list[Path]:
    cscope = ConfigScope(scope.value)
    paths = [client.mcp_file(cscope).path(root)]
    if client.hooks is not None:
        paths.append(client.hooks.file(cscope).path(root))
        if client.hooks.needs_trust:
            paths.append(_codex_state_file(client).path(root))
    return list(dict.fromkeys(paths))


def _read_all(paths: Sequence[Path]) -> dict[Path, str | None]:
    return {p: read_text(p) for p in paths}


def _hook_ops(
    draft: _Draft,
    client: Client,
    scope: InstallScope,
    root: Path,
    wanted: Mapping[str, Mapping[str, Any]],
    trust_hooks: bool,
) -> tuple[HookChange, int]:
    """The hooks file's ops, and Codex's trust state that follows them."""
    spec = client.hooks
    assert spec is not None
    file = spec.file(ConfigScope(scope.value))
    path = file.path(root)
    change = plan_hooks(draft.doc(path, file.fmt), spec, path, wanted)
    draft.add(path, "hooks", change.ops)
    trusted = 0
    if spec.needs_trust:
        state_file = _codex_state_file(client)
        state_path = state_file.path(root)
        ops, trusted = codex_trust_ops(
            draft.doc(state_path, state_file.fmt), path, change, trust_hooks
        )
        draft.add(state_path, "hook trust", ops)
    return change, trusted


def plan_install(
    client: str,
    scope: InstallScope,
    name: str = c.SERVER_NAME,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
    command: tuple[str, list[str]] | None = None,
    hooks: bool = True,
    trust: bool = True,
    trust_hooks: bool = False,
) -> InstallPlan:
    """What ``peers install`` would write, without writing anything.

    ``hooks``: peers' hooks with the entry (False takes out ours from an earlier
    install); ``trust``: Gemini's ``"trust": true`` on the entry; ``trust_hooks``:
    record Codex's trust of our hooks, as approving them in its /hooks view does.
    """
    name = validate_server_name(name)
    found = _client(client)
    environ = os.environ if environ is None else environ
    url = environ.get("PEERS_URL", "")
    if scope is InstallScope.PROJECT and url and urlsplit(url).password:
        raise InvalidInput(
            "PEERS_URL holds a password, and a project file is usually committed: "
            "use --scope user, or unset PEERS_URL here and give the client the URL another way"
        )
    if trust_hooks and (found.hooks is None or not found.hooks.needs_trust):
        raise InvalidInput(f"--trust-hooks is for Codex only; {found.title} runs hooks as written")
    if trust_hooks and not hooks:
        raise InvalidInput("--trust-hooks trusts peers' hooks: it cannot go with --no-hooks")
    cmd, args = command or server_command()
    desired = desired_entry(client, name, cmd, args, environ, trust=trust)
    carried = tuple(
        f"{key} copied from this shell into the entry" for key in CARRIED_ENV if environ.get(key)
    )
    root = Path.home() if scope is InstallScope.USER else project_root(cwd or Path.cwd())
    loc = _location(found, scope.value, found.mcp_file(ConfigScope(scope.value)), root)
    base = _hooks_base((cmd, args))
    wanted = our_groups(found, base) if hooks else {}
    user_paths = {f.path(root) for f in (found.mcp_user, *(h.user for h in [found.hooks] if h))}

    def build(texts: Mapping[Path, str | None]) -> InstallPlan:
        draft = _Draft(texts)
        doc = draft.doc(loc.path, loc.fmt)
        existing = _servers(loc, doc).get(name)
        entry = _merge(found, existing, desired, trust)
        ops: list[Op] = [] if existing == entry else [Set((*loc.table, name), entry)]
        draft.add(loc.path, "MCP entry", ops, _holds_secret(entry))
        report = HookReport()
        if found.hooks is not None:
            change, trusted = _hook_ops(draft, found, scope, root, wanted, trust_hooks)
            present = tuple(wanted)
            untrusted = 0
            if found.hooks.needs_trust and wanted:
                untrusted = _untrusted_after(draft, found, scope, root)
            report = HookReport(
                command=base[0],
                added=tuple(change.added),
                replaced=tuple(change.replaced),
                removed=tuple(change.removed),
                present=present,
                trusted=trusted,
                untrusted=untrusted,
            )
        files = draft.files(scope, user_paths)
        notes = _install_notes(found, name, entry, files, carried, report, trust)
        return InstallPlan(
            found, scope, name, "install", loc, entry, files, report, notes, replan=build
        )

    return build(_read_all(_paths(found, scope, root)))


def _untrusted_after(draft: _Draft, client: Client, scope: InstallScope, root: Path) -> int:
    """How many of our Codex hooks will still be untrusted once the drafted ops are applied."""
    from peers.configfile import apply_plain

    spec = client.hooks
    assert spec is not None
    hooks_path = spec.file(ConfigScope(scope.value)).path(root)
    state_path = _codex_state_file(client).path(root)
    hooks_doc = apply_plain(draft.doc(hooks_path, "toml"), draft.ops.get(hooks_path, []))
    state_doc = apply_plain(draft.doc(state_path, "toml"), draft.ops.get(state_path, []))
    return sum(
        1
        for hook in find_ours(hooks_doc, spec, hooks_path)
        if codex_trust_status(state_doc, hooks_path, hook) != "trusted"
    )


def _install_notes(
    client: Client,
    loc_name: str,
    entry: Mapping[str, Any],
    files: Sequence[FileChange],
    carried: tuple[str, ...],
    hooks: HookReport,
    trust: bool,
) -> tuple[str, ...]:
    notes = list(carried)
    for f in files:
        if f.private and f.changed:
            notes.append(f"the entry holds a password: {_tilde(f.path)} gets mode 0600 (readable by you only)")
    if client.trust_key:
        if trust:
            notes.append(
                f'"{client.trust_key}": true lets {client.title} run the peers tools without asking '
                "(without it `gemini -p` hides them and the UI asks before every call); "
                "--no-trust leaves it out"
            )
        else:
            notes.append(
                f"without \"{client.trust_key}\": true, `gemini -p` hides the peers tools from the "
                "model and the UI asks before every call"
            )
    if client.name == "codex":
        notes.append(_codex_approvals(loc_name, entry))
    if hooks.removed and not hooks.present:
        notes.append(f"peers' hooks taken out ({', '.join(hooks.removed)})")
    if client.hooks is not None and client.hooks.needs_trust and hooks.present:
        if hooks.untrusted:
            notes.append(
                f"Codex skips hooks you have not trusted, silently: {hooks.untrusted} of peers' "
                "hooks are untrusted. Trust them in Codex (type /hooks, then approve the peers "
                "hooks), or run this again with --trust-hooks"
            )
        elif hooks.trusted:
            notes.append(f"trusted {hooks.trusted} peers hooks for Codex (as /hooks would)")
    return tuple(notes)


def _codex_approvals(name: str, entry: Mapping[str, Any]) -> str:
    env = entry.get("env")
    kill_on = isinstance(env, Mapping) and str(env.get("PEERS_ALLOW_KILL", "")).lower() in (
        "1",
        "true",
        "yes",
        "on",
    )
    allow = (
        f"[mcp_servers.{_toml_key(name)}.tools.{KILL_TOOL}] approval_mode = \"approve\" "
        "in config.toml lets it run without asking"
    )
    if kill_on:
        return (
            "Codex runs the peers tools without asking (they are marked read-only or "
            f"non-destructive), except {KILL_TOOL}, which this entry turns on: Codex asks "
            f"before each call; {allow}"
        )
    return (
        "Codex runs the peers tools without asking (they are marked read-only or "
        f"non-destructive); {KILL_TOOL} stays off unless the entry's env has "
        f"PEERS_ALLOW_KILL=true, and then Codex asks before each call ({allow})"
    )


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else '"' + key.replace('"', '\\"') + '"'


def plan_uninstall(
    client: str,
    scope: InstallScope,
    name: str = c.SERVER_NAME,
    *,
    cwd: Path | None = None,
) -> InstallPlan:
    """What ``peers uninstall`` would change: the entry and peers' hooks go."""
    name = validate_server_name(name)
    found = _client(client)
    root = Path.home() if scope is InstallScope.USER else project_root(cwd or Path.cwd())
    loc = _location(found, scope.value, found.mcp_file(ConfigScope(scope.value)), root)
    user_paths = {f.path(root) for f in (found.mcp_user, *(h.user for h in [found.hooks] if h))}

    def build(texts: Mapping[Path, str | None]) -> InstallPlan:
        draft = _Draft(texts)
        servers = _servers(loc, draft.doc(loc.path, loc.fmt))
        existing = servers.get(name)
        notes: list[str] = []
        ops: list[Op] = []
        entry: dict[str, Any] | None = None
        if isinstance(existing, Mapping):
            if looks_like_peers(existing):
                entry = dict(existing)
                ops.append(Delete((*loc.table, name), keep=len(loc.table) - 1))
            else:
                notes.append(
                    f"the '{name}' entry in {_tilde(loc.path)} does not start peers serve: left alone"
                )
        others = sorted(
            str(n)
            for n, e in servers.items()
            if n != name and isinstance(e, Mapping) and looks_like_peers(e)
        )
        draft.add(loc.path, "MCP entry", ops)
        report = HookReport()
        if found.hooks is not None:
            if others:
                report = HookReport(kept_for=others[0])
                notes.append(
                    f"peers' hooks stay: the '{others[0]}' entry still runs peers "
                    f"(peers uninstall {client} --name {others[0]} takes them out)"
                )
            else:
                change, _ = _hook_ops(draft, found, scope, root, {}, False)
                report = HookReport(removed=tuple(change.removed))
        files = draft.files(scope, user_paths)
        return InstallPlan(
            found, scope, name, "uninstall", loc, entry, files, report, tuple(notes), replan=build
        )

    return build(_read_all(_paths(found, scope, root)))


# How often apply_plan plans again when files keep changing under it.
_APPLY_ATTEMPTS = 5


def apply_plan(plan: InstallPlan) -> list[Path]:
    """Write every changed file of the plan (atomically, after a backup); return the backups.

    Each file is read again right before it is replaced: when someone changed one
    since the plan was made (a running Claude Code rewrites ``~/.claude.json``),
    the whole plan is made again on the new contents, so their change survives.
    """
    backups: list[Path] = []
    done: set[Path] = set()
    for _ in range(_APPLY_ATTEMPTS):
        current = _read_all([f.path for f in plan.files])
        if any(current[f.path] != f.before for f in plan.files) and plan.replan is not None:
            plan = plan.replan({**{f.path: f.before for f in plan.files}, **current})
        pending = [f for f in plan.files if f.changed and f.path not in done]
        if not pending:
            return backups
        retry = False
        for f in pending:
            try:
                written, backup = write_file(
                    f.path, f.before, f.after, mode=f.new_mode, private=f.private
                )
            except OSError as exc:
                raise ConfigError(f"cannot write {_tilde(f.path)}: {exc.strerror or exc}") from None
            if not written:
                retry = True
                break
            done.add(f.path)
            if backup is not None:
                backups.append(backup)
        if not retry:
            return backups
    where = ", ".join(_tilde(f.path) for f in plan.files if f.changed and f.path not in done)
    raise ConfigError(
        f"{where} kept changing while peers was writing it (a client rewriting it?); "
        "peers left it as it was: run this again"
    )


def apply_install(plan: InstallPlan) -> Path | None:
    """:func:`apply_plan`, returning the MCP entry file's backup (None: it had none)."""
    backups = apply_plan(plan)
    target = plan.location.path
    target = target.resolve() if target.is_symlink() else target
    for backup in backups:
        if backup.name.startswith(target.name + ".peers-backup-"):
            return backup
    return None


def tighten_permissions(plan: InstallPlan) -> bool:
    """Make an existing file that holds a password private (0600); True if it was not."""
    if not plan.private:
        return False
    return make_private(plan.location.path)


def start_hint(plan: InstallPlan) -> list[str]:
    """How to start the client so that it loads what was just written."""
    client = plan.client
    server = plan.name
    project = plan.scope is InstallScope.PROJECT
    root = str(plan.location.path.parent)
    hooks = bool(plan.hooks.present)
    later = "at the next prompt or tool step" if hooks else "when it calls a peers tool"
    if client.push:
        lines = [
            f"Start {client.title} (restart sessions already running) with push enabled:",
            f"  {client.start_command} --dangerously-load-development-channels server:{server}",
            f"Without that flag it still works: messages arrive {later}.",
        ]
        if project:
            lines.append(
                f"Run it from {root}; {client.title} asks once to approve the servers in .mcp.json."
            )
        return lines
    if client.name == "cursor":
        return [
            f"Restart Cursor, or turn '{server}' on in Settings > MCP.",
            "Cursor has no push: messages arrive with peers tool results.",
        ]
    lines = [
        f"Start {client.title} as usual (restart sessions already running): {client.start_command}",
        f"{client.title} has no push: messages arrive {later}.",
    ]
    if client.name == "gemini":
        lines[0] += f", then /mcp lists '{server}'"
    if client.name == "codex" and project:
        lines.append("Codex reads .codex/config.toml only in a project you marked as trusted.")
    return lines


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


def scan_clients(cwd: Path, server_name: str = c.SERVER_NAME) -> ScanResult:
    """Every peers entry in every client configuration visible from ``cwd``."""
    entries: list[FoundEntry] = []
    errors: list[tuple[ConfigLocation, str]] = []
    files: list[ConfigLocation] = []
    parsed: dict[Path, dict[str, Any]] = {}
    for loc in _all_locations(cwd):
        try:
            if loc.path not in parsed:
                text = read_text(loc.path)
                if text is None:
                    continue
                parsed[loc.path] = parse(loc.fmt, text, loc.path)
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


@dataclass(frozen=True, slots=True)
class HookFile:
    """A client's hook settings file as doctor sees it."""

    client: Client
    scope: ConfigScope
    path: Path
    ours: tuple[FoundHook, ...]
    # Codex: trust status per hook of ours (trusted, untrusted, modified, disabled).
    trust: tuple[str, ...] = ()
    # Why the client would run no hook from this file at all, if so.
    disabled: str | None = None
    error: str | None = None


def _hooks_disabled(client: Client, doc: Mapping[str, Any]) -> str | None:
    if client.name == "claude" and doc.get("disableAllHooks") is True:
        return '"disableAllHooks": true turns every hook off'
    if client.name == "gemini":
        config = doc.get("hooksConfig")
        if isinstance(config, Mapping):
            if config.get("enabled") is False:
                return '"hooksConfig.enabled": false turns every hook off'
            disabled = config.get("disabled")
            if isinstance(disabled, list) and "peers" in disabled:
                return '"hooksConfig.disabled" lists peers (`/hooks enable peers` turns them on)'
    return None


def scan_hooks(cwd: Path) -> list[HookFile]:
    """peers' hooks in every client's user and project settings, as seen from ``cwd``."""
    root = project_root(cwd)
    out: list[HookFile] = []
    for client in clients.CLIENTS:
        spec = client.hooks
        if spec is None:
            continue
        files = [(ConfigScope.USER, spec.user), (ConfigScope.PROJECT, spec.project)]
        files += [(ConfigScope.LOCAL, other) for other in spec.other]
        for scope, file in files:
            path = file.path(root)
            if scope is not ConfigScope.USER and path == spec.user.path(root):
                continue
            try:
                text = read_text(path)
                if text is None:
                    continue
                doc = parse(file.fmt, text, path)
                ours = tuple(find_ours(doc, spec, path))
                trust: tuple[str, ...] = ()
                if spec.needs_trust and ours:
                    state_path = _codex_state_file(client).path(root)
                    state_doc = doc if state_path == path else _parse_quiet(state_path)
                    trust = tuple(codex_trust_status(state_doc, path, h) for h in ours)
            except ConfigError as exc:
                out.append(HookFile(client, scope, path, (), error=str(exc)))
                continue
            out.append(HookFile(client, scope, path, ours, trust, _hooks_disabled(client, doc)))
    return out


def _parse_quiet(path: Path) -> dict[str, Any]:
    try:
        return parse("toml", read_text(path), path)
    except ConfigError:
        return {}


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
