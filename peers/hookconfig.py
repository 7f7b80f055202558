"""peers' hook entries in the clients' settings: building, finding, replacing, trusting.

Each client keeps command hooks in the same shape (Claude Code and Gemini CLI in
JSON, Codex in config.toml)::

    hooks.<EVENT> = [ {matcher?, hooks = [ {type = "command", command, timeout, ...} ]} ]

Ours are recognised by their command, ``<peers> hook <EVENT> --client <CLIENT>``
(``<peers>`` being the ``peers`` script or ``python -m peers``); every other
hook, and every other key of a group, is someone else's and is kept.

Codex runs a hook only when ``[hooks.state."<config path>:<event>:<group>:<handler>"]``
holds its ``trusted_hash``: sha256 of the hook's normalised identity as
canonical JSON (worked out from Codex's source, checked against Codex 0.169.0's
own ``hooks/list`` in the tests). The key holds the hook's position, so when
peers' edit moves other hooks of the file, their state moves with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peers.clients import Client, HookEvent, HookSpec
from peers.configfile import Delete, Insert, Op, Set, get_path
from peers.errors import ConfigError

__all__ = [
    "CODEX_STATE_TABLE",
    "FoundHook",
    "HookChange",
    "codex_hook_hash",
    "codex_key",
    "codex_trust_ops",
    "codex_trust_status",
    "find_ours",
    "hook_command",
    "is_peers_hook",
    "our_groups",
    "plan_hooks",
]

CODEX_STATE_TABLE = ("hooks", "state")
# Codex drops the matcher of events that take none before hashing.
_CODEX_MATCHER_EVENTS = frozenset({"PreToolUse", "PermissionRequest", "PostToolUse", "SessionStart"})
# Codex's default hook time limit, in seconds.
_CODEX_DEFAULT_TIMEOUT = 600

Position = tuple[str, int, int]  # (client event name, group index, handler index)


def hook_command(base: Sequence[str], client: str, event: str) -> str:
    """The shell command of one of our hooks: ``<peers> hook EVENT --client CLIENT``."""
    return shlex.join([*base, "hook", event, "--client", client])


def is_peers_hook(command: object) -> bool:
    """True for a command that runs ``peers hook`` (the script, or ``python -m peers``)."""
    if not isinstance(command, str):
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    if not words:
        return False
    program = os.path.basename(words[0])
    if program in ("peers", "peers.exe"):
        return words[1:2] == ["hook"]
    return program.startswith("python") and words[1:4] == ["-m", "peers", "hook"]


def _is_ours(handler: object) -> bool:
    return isinstance(handler, Mapping) and is_peers_hook(handler.get("command"))


def our_groups(client: Client, base: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The hook group peers wants for each of the client's events."""
    spec = client.hooks
    if spec is None:
        return {}
    groups: dict[str, dict[str, Any]] = {}
    for event in HookEvent:
        name = spec.events[event]
        handler: dict[str, Any] = {
            **spec.handler_extra,
            "type": "command",
            "command": hook_command(base, client.name, name),
            "timeout": spec.timeout,
        }
        group: dict[str, Any] = {}
        matcher = spec.matcher(event)
        if matcher is not None:
            group["matcher"] = matcher
        group["hooks"] = [handler]
        groups[name] = group
    return groups


@dataclass(frozen=True, slots=True)
class FoundHook:
    """One of our hook handlers in a settings file."""

    event: str
    group: int
    handler: int
    matcher: str | None
    command: str
    data: Mapping[str, Any]


def _hooks_table(doc: Mapping[str, Any], spec: HookSpec, path: Path) -> Mapping[str, Any]:
    table = spec.user.table
    hooks = get_path(doc, table)
    if hooks is None:
        return {}
    if not isinstance(hooks, Mapping):
        raise ConfigError(
            f"{path}: '{'.'.join(table)}' is not a table of events; peers left it untouched"
        )
    return hooks


def find_ours(doc: Mapping[str, Any], spec: HookSpec, path: Path) -> list[FoundHook]:
    """Every handler of ours in a parsed settings file, in file order."""
    found: list[FoundHook] = []
    for event, groups in _hooks_table(doc, spec, path).items():
        if not isinstance(groups, list):
            continue
        for gi, group in enumerate(groups):
            handlers = group.get("hooks") if isinstance(group, Mapping) else None
            if not isinstance(handlers, list):
                continue
            for hi, handler in enumerate(handlers):
                if _is_ours(handler):
                    matcher = group.get("matcher")
                    found.append(
                        FoundHook(
                            str(event),
                            gi,
                            hi,
                            matcher if isinstance(matcher, str) else None,
                            str(handler["command"]),
                            handler,
                        )
                    )
    return found


@dataclass(slots=True)
class HookChange:
    """The edit of one settings file's hooks, and where every surviving handler lands."""

    ops: list[Op] = field(default_factory=list)
    # Old -> new position of every handler that stays as it was (someone else's, or
    # ours unchanged).
    moves: dict[Position, Position] = field(default_factory=dict)
    # Positions of our handlers that go away or change.
    dropped: set[Position] = field(default_factory=set)
    # Our handlers after the edit: position -> (matcher, handler).
    ours: dict[Position, tuple[str | None, dict[str, Any]]] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def plan_hooks(
    doc: Mapping[str, Any],
    spec: HookSpec,
    path: Path,
    wanted: Mapping[str, Mapping[str, Any]],
) -> HookChange:
    """Ops that leave exactly the ``wanted`` groups of ours in the file ({}: none).

    A group of ours already as wanted stays where it is; one that differs is
    replaced in place; a missing one is appended to its event's list. Our
    handlers inside someone else's group are taken out of it.
    """
    table = spec.user.table
    hooks = _hooks_table(doc, spec, path)
    change = HookChange()
    for event in [*hooks, *(e for e in wanted if e not in hooks)]:
        groups = hooks.get(event, [])
        want = wanted.get(event)
        if not isinstance(groups, list):
            if want is None:
                continue  # not ours to judge
            raise ConfigError(
                f"{path}: '{'.'.join((*table, event))}' is not a list of hook groups; "
                "peers left it untouched"
            )
        _plan_event(change, table, event, groups, dict(want) if want is not None else None)
    return change


def _plan_event(
    change: HookChange,
    table: tuple[str, ...],
    event: str,
    groups: list[Any],
    want: dict[str, Any] | None,
) -> None:
    pure: list[int] = []  # groups that hold only handlers of ours
    mixed: dict[int, list[int]] = {}  # group -> our handlers in it
    for gi, group in enumerate(groups):
        handlers = group.get("hooks") if isinstance(group, Mapping) else None
        if not isinstance(handlers, list) or not handlers:
            continue
        mine = [hi for hi, h in enumerate(handlers) if _is_ours(h)]
        if mine and len(mine) == len(handlers):
            pure.append(gi)
        elif mine:
            mixed[gi] = mine

    if want is not None and not mixed and len(pure) == 1 and groups[pure[0]] == want:
        # Already as wanted: nothing moves.
        change.ours[(event, pure[0], 0)] = (want.get("matcher"), want["hooks"][0])
        return

    # The new list, each group with where its handlers came from (None: ours, new).
    replace_at = pure[0] if want is not None and pure else None
    new_groups: list[tuple[int | None, list[int | None]]] = []
    for gi, group in enumerate(groups):
        handlers = group.get("hooks") if isinstance(group, Mapping) else None
        count = len(handlers) if isinstance(handlers, list) else 0
        if gi in pure:
            for hi in range(count):
                change.dropped.add((event, gi, hi))
            if gi == replace_at:
                new_groups.append((None, [None]))
            continue
        kept = [hi for hi in range(count) if hi not in mixed.get(gi, [])]
        for hi in mixed.get(gi, []):
            change.dropped.add((event, gi, hi))
        new_groups.append((gi, list(kept)))
    if want is not None and replace_at is None:
        new_groups.append((None, [None]))

    base = (*table, event)
    ops: list[Op] = []
    for gi in sorted(mixed, reverse=True):
        for hi in sorted(mixed[gi], reverse=True):
            ops.append(Delete((*base, gi, "hooks", hi), keep=len(base) + 2))
    for gi in sorted(pure, reverse=True):
        ops.append(Delete((*base, gi), keep=len(base)))
    for ni, (origin, _) in enumerate(new_groups):
        if origin is None and want is not None:
            ops.append(Insert(base, ni, want))
    if not new_groups and groups:
        ops.append(Delete(base, keep=len(table) - 1))
    change.ops.extend(ops)

    for ni, (origin, handlers) in enumerate(new_groups):
        for nh, old_hi in enumerate(handlers):
            if origin is None or old_hi is None:
                assert want is not None
                change.ours[(event, ni, nh)] = (want.get("matcher"), want["hooks"][0])
            elif (event, origin, old_hi) != (event, ni, nh):
                change.moves[(event, origin, old_hi)] = (event, ni, nh)
    if want is not None:
        (change.replaced if replace_at is not None or mixed else change.added).append(event)
    elif pure or mixed:
        change.removed.append(event)


# -- Codex trust ------------------------------------------------------------------------


def _snake(event: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", event).lower()


def codex_key(config_path: Path, position: Position) -> str:
    """The ``hooks.state`` key Codex records a hook's trust under."""
    event, group, handler = position
    # Codex canonicalises the directory (CODEX_HOME, the project) but not the file.
    directory = os.path.realpath(config_path.parent)
    return f"{os.path.join(directory, config_path.name)}:{_snake(event)}:{group}:{handler}"


def codex_hook_hash(event: str, matcher: str | None, handler: Mapping[str, Any]) -> str:
    """Codex's ``trusted_hash`` for a command hook: sha256 of its normalised identity."""
    timeout = handler.get("timeout")
    normalized: dict[str, Any] = {
        "type": "command",
        "command": handler.get("command"),
        "timeout": max(int(timeout), 1) if isinstance(timeout, int) else _CODEX_DEFAULT_TIMEOUT,
        "async": bool(handler.get("async", False)),
    }
    identity: dict[str, Any] = {"event_name": _snake(event), "hooks": [normalized]}
    if matcher is not None and event in _CODEX_MATCHER_EVENTS:
        identity["matcher"] = matcher
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _parse_key(key: str, prefix: str) -> Position | None:
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix) :].split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


def codex_trust_ops(
    state_doc: Mapping[str, Any], hooks_path: Path, change: HookChange, trust: bool
) -> tuple[list[Op], int]:
    """Ops on the state file (Codex's user config.toml) that follow ``change``.

    The state of every handler that moved goes with it; that of our handlers
    removed or changed goes away; with ``trust``, our handlers get the hash that
    makes Codex run them. Returns (ops, how many of ours were trusted now).
    """
    states = get_path(state_doc, CODEX_STATE_TABLE)
    if states is not None and not isinstance(states, Mapping):
        raise ConfigError("'hooks.state' in the Codex config is not a table; peers left it untouched")
    states = states or {}
    prefix = codex_key(hooks_path, ("", 0, 0)).rsplit(":", 3)[0] + ":"
    snake_to_event = {_snake(p[0]): p[0] for p in (*change.moves, *change.dropped, *change.ours)}
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    # Trust the user gave to a hook of ours that comes back unchanged elsewhere.
    carried: dict[Any, Any] = {}
    for key, value in states.items():
        pos = _parse_key(key, prefix)
        if pos is None:
            continue
        old[key] = value
        event = snake_to_event.get(pos[0], pos[0])
        full: Position = (event, pos[1], pos[2])
        if full in change.moves:
            new[codex_key(hooks_path, change.moves[full])] = value
        elif full in change.dropped:
            if isinstance(value, Mapping) and value.get("trusted_hash"):
                carried[value["trusted_hash"]] = value
        else:
            new.setdefault(key, value)
    trusted = 0
    for pos, (matcher, handler) in change.ours.items():
        key = codex_key(hooks_path, pos)
        current = new.get(key)
        wanted_hash = codex_hook_hash(pos[0], matcher, handler)
        if isinstance(current, Mapping) and current.get("trusted_hash") == wanted_hash:
            continue
        if wanted_hash in carried:
            new[key] = carried[wanted_hash]
        elif trust:
            base = dict(current) if isinstance(current, Mapping) else {}
            base["trusted_hash"] = wanted_hash
            new[key] = base
            trusted += 1
    ops: list[Op] = [
        Set((*CODEX_STATE_TABLE, key), value) for key, value in new.items() if old.get(key) != value
    ]
    ops += [Delete((*CODEX_STATE_TABLE, key)) for key in old if key not in new]
    return ops, trusted


def codex_trust_status(state_doc: Mapping[str, Any], hooks_path: Path, hook: FoundHook) -> str:
    """trusted, untrusted, modified (trusted once, changed since) or disabled."""
    states = get_path(state_doc, CODEX_STATE_TABLE)
    key = codex_key(hooks_path, (hook.event, hook.group, hook.handler))
    state = states.get(key) if isinstance(states, Mapping) else None
    if not isinstance(state, Mapping):
        return "untrusted"
    if state.get("enabled") is False:
        return "disabled"
    recorded = state.get("trusted_hash")
    if recorded is None:
        return "untrusted"
    current = codex_hook_hash(hook.event, hook.matcher, hook.data)
    return "trusted" if recorded == current else "modified"
