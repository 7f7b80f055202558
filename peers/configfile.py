"""Client configuration files, edited with care.

An edit is a list of :data:`Op` on the file's parsed data (set a key, delete a
key or list item, insert a list item). :func:`render` applies them and returns
the new text:

- JSON: the edited data, indented like the file was.
- TOML (Codex): the ops are applied to a tomlkit document, so comments, order
  and layout elsewhere survive, dotted keys and inline tables included. The
  result is parsed back and compared with the same ops applied to the parsed
  data; a difference (a form tomlkit cannot edit faithfully) is refused.

:func:`write` replaces a file atomically (following a symlink to its target,
keeping the mode, 0600 for a secret), after a backup next to it, and only if
the file still holds what the edit was planned on. Nothing here decides what
to write: :mod:`peers.install` does.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomlkit
import tomlkit.container
import tomlkit.items
from tomlkit.exceptions import TOMLKitError

from peers.errors import ConfigError

__all__ = [
    "Delete",
    "Format",
    "Insert",
    "Op",
    "Set",
    "apply_plain",
    "get_path",
    "make_private",
    "parse",
    "read_text",
    "render",
    "tilde",
    "write",
]

Format = Literal["json", "toml"]
Key = str | int


@dataclass(frozen=True, slots=True)
class Set:
    """Make ``path`` hold ``value`` (a mapping key; missing parents become tables)."""

    path: tuple[Key, ...]
    value: Any


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``path`` (a key or a list index), then every container left empty
    above it, down to (not including) depth ``keep``."""

    path: tuple[Key, ...]
    keep: int = 0


@dataclass(frozen=True, slots=True)
class Insert:
    """Insert ``value`` at ``index`` of the list at ``path`` (created when missing)."""

    path: tuple[Key, ...]
    index: int
    value: Any


Op = Set | Delete | Insert


def tilde(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if home != "/" and text.startswith(home + os.sep) else text


# -- reading -----------------------------------------------------------------------


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ConfigError(f"{tilde(path)} is not UTF-8 text; peers left it untouched") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {tilde(path)}: {exc.strerror}") from None


def parse(fmt: Format, text: str | None, path: Path) -> dict[str, Any]:
    """The file's data ({} for a missing or empty file); ConfigError if it cannot be parsed."""
    if text is None or not text.strip():
        return {}
    where = tilde(path)
    if fmt == "toml":
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
        raise ConfigError(
            f"{where} holds a JSON {type(doc).__name__}, not an object; peers left it untouched"
        )
    return doc


def get_path(doc: Any, path: Sequence[Key]) -> Any:
    """The value at ``path`` in parsed data, or None where any step is missing."""
    node = doc
    for key in path:
        if isinstance(key, int):
            if not isinstance(node, list) or not 0 <= key < len(node):
                return None
        elif not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


# -- ops on parsed data ----------------------------------------------------------------


def apply_plain(doc: Mapping[str, Any], ops: Sequence[Op]) -> dict[str, Any]:
    """A copy of ``doc`` with the ops applied."""
    out: dict[str, Any] = copy.deepcopy(dict(doc))
    for op in ops:
        if isinstance(op, Set):
            parent = _plain_parent(out, op.path[:-1])
            parent[op.path[-1]] = copy.deepcopy(op.value)
        elif isinstance(op, Insert):
            parent = _plain_parent(out, op.path[:-1])
            items = parent.setdefault(op.path[-1], [])
            items.insert(op.index, copy.deepcopy(op.value))
        else:
            _prune(out, op, _plain_parent)
    return out


def _plain_parent(doc: Any, path: Sequence[Key]) -> Any:
    node = doc
    for key in path:
        if isinstance(key, str) and key not in node:
            node[key] = {}
        node = node[key]
    return node


def _prune(doc: Any, op: Delete, parent_of: Any) -> None:
    path = op.path
    parent = parent_of(doc, path[:-1])
    del parent[path[-1]]
    depth = len(path) - 1
    while depth > op.keep:
        container = parent_of(doc, path[:depth])
        if len(container):
            break
        parent = parent_of(doc, path[: depth - 1])
        del parent[path[depth - 1]]
        depth -= 1


# -- rendering --------------------------------------------------------------------------


def _indent_of(text: str | None) -> int | str:
    if text:
        m = re.search(r"\n([ \t]+)\S", text)
        if m:
            unit = m.group(1)
            return "\t" if unit.startswith("\t") else len(unit)
    return 2


def render(fmt: Format, before: str | None, ops: Sequence[Op], path: Path) -> str:
    """The file's new text: ``before`` with the ops applied (``before`` itself when none)."""
    if not ops:
        return before or ""
    doc = parse(fmt, before, path)
    want = apply_plain(doc, ops)
    if fmt == "json":
        return json.dumps(want, indent=_indent_of(before), ensure_ascii=False) + "\n"
    # New tables go at the end of the file, every byte before them kept; where that
    # is not valid TOML (a parent written inline), everything is edited in place; where
    # tomlkit cannot edit in place (an array of tables spread over the file), the
    # top-level tables the ops touch are written anew at the end.
    attempts: list[Callable[[], str]] = [
        lambda: _toml_render(before or "", ops, append_new=True),
        lambda: _toml_render(before or "", ops, append_new=False),
        lambda: _toml_rebuild(before or "", ops, want),
    ]
    for attempt in attempts:
        try:
            text = attempt()
            if tomllib.loads(text) == want:
                return text
        except (TOMLKitError, tomllib.TOMLDecodeError, KeyError, IndexError, TypeError, ValueError):
            continue
    raise ConfigError(
        f"{tilde(path)} is written in a form peers cannot edit safely (the change could not "
        "be made exactly); peers left the file untouched: make the change by hand, or move "
        "the peers entries into plain [table] form and run this again"
    )


# -- TOML ops through tomlkit -----------------------------------------------------------


def _toml_render(before: str, ops: Sequence[Op], append_new: bool) -> str:
    doc = tomlkit.parse(before)
    blocks: list[str] = []
    appended: list[tuple[Key, ...]] = []
    for op in ops:
        if any(op.path[: len(p)] == p for p in appended):
            raise ValueError("an op inside an appended table")
        if append_new and isinstance(op, Set) and _is_rewrite(doc, op):
            # Written as dotted keys or spread over the file: drop it, write it anew.
            del _toml_node(doc, op.path[:-1])[op.path[-1]]
        if append_new and _is_new_table(doc, op):
            value = op.value if isinstance(op, (Set, Insert)) else None
            blocks.append(_block(op.path, value, aot=isinstance(op, Insert)))
            appended.append(op.path)
            continue
        _toml_apply(doc, op)
    text = tomlkit.dumps(doc)
    if blocks:
        text = text.rstrip("\n")
        text = (text + "\n\n" if text.strip() else "") + "".join(blocks)
    return text.rstrip("\n") + "\n" if text.strip() else ""


def _toml_rebuild(before: str, ops: Sequence[Op], want: Mapping[str, Any]) -> str:
    doc = tomlkit.parse(before)
    tops = list(dict.fromkeys(str(op.path[0]) for op in ops))
    for key in tops:
        if key in doc:
            del doc[key]
    text = tomlkit.dumps(doc).rstrip("\n")
    for key in tops:
        if key in want:
            fresh = tomlkit.document()
            fresh[key] = tomlkit.item(want[key])
            lines = [line for line in tomlkit.dumps(fresh).splitlines() if line.strip()]
            text = (text + "\n\n" if text.strip() else "") + "\n".join(lines)
    return text.rstrip("\n") + "\n" if text.strip() else ""


def _is_rewrite(doc: Any, op: Set) -> bool:
    """A mapping set over an existing table that is not a plain [table] nor inline."""
    if not isinstance(op.value, Mapping) or not _exists(doc, op.path):
        return False
    parent = _toml_node(doc, op.path[:-1])
    current = parent[op.path[-1]]
    return not isinstance(current, tomlkit.items.InlineTable) and not _is_standard_table(
        parent, op.path[-1], current
    )


def _is_standard_table(parent: Any, key: Key, item: Any) -> bool:
    """A ``[table]`` with its own header, written in one place (not dotted keys)."""
    if type(item) is not tomlkit.items.Table or item.is_super_table():
        return False
    body = parent.value.body if isinstance(parent, tomlkit.items.Table) else getattr(parent, "body", None)
    if body is None:
        return False
    keys = [k for k, _ in body if k is not None and k.key == key]
    return len(keys) == 1 and not keys[0].is_dotted()


def _exists(doc: Any, path: Sequence[Key]) -> bool:
    try:
        _toml_node(doc, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def _is_new_table(doc: Any, op: Op) -> bool:
    """An op that adds a whole table (or a list of them) where there was nothing."""
    if isinstance(op, Set):
        return isinstance(op.value, Mapping) and not _exists(doc, op.path)
    if isinstance(op, Insert):
        return isinstance(op.value, Mapping) and op.index == 0 and not _exists(doc, op.path)
    return False


def _block(path: Sequence[Key], value: Any, *, aot: bool) -> str:
    """``value`` as standard tables under ``path`` (an array of one table with ``aot``)."""
    doc = tomlkit.document()
    node: Any = doc
    for key in path[:-1]:
        node[key] = tomlkit.table(is_super_table=True)
        node = node[key]
    if aot:
        array = tomlkit.aot()
        array.append(_table(value))
        node[path[-1]] = array
    else:
        node[path[-1]] = _table(value)
    # One table after another, no blank line inside (tomlkit adds some).
    lines = [line for line in tomlkit.dumps(doc).splitlines() if line.strip()]
    return "\n".join(lines) + "\n\n"


def _pretty(value: Mapping[str, Any], *, aot: bool = False) -> Any:
    """A table in the layout of :func:`_block`, ready to go into a document."""
    doc = tomlkit.parse(_block(("x",), value, aot=aot))
    return doc["x"][0] if aot else doc["x"]


def _unwrap(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item


def _inline(value: Any) -> Any:
    """A TOML value written inline (nested tables as inline tables)."""
    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        for key, inner in value.items():
            table[key] = _inline(inner)
        return table
    if isinstance(value, list):
        array = tomlkit.array()
        array.extend(_inline(v) for v in value)
        return array
    return value


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _table(value: Mapping[str, Any]) -> tomlkit.items.Table:
    """A standard table: nested mappings inline (Codex's `env`), lists of tables as [[...]]."""
    table = tomlkit.table()
    for key, inner in value.items():
        if _is_tables(inner):
            aot = tomlkit.aot()
            for item in inner:
                aot.append(_table(item))
            table[key] = aot
        else:
            table[key] = _inline(inner)
    return table


def _new_item(container: Any, value: Any, *, top: bool) -> Any:
    """``value`` in the form that fits where it goes (tables only for what an op adds)."""
    if isinstance(container, tomlkit.items.AoT):
        return _pretty(value, aot=True)
    if top and isinstance(value, Mapping) and not isinstance(
        container, (tomlkit.items.InlineTable, tomlkit.items.Array)
    ):
        return _pretty(value)
    return _inline(value)


def _toml_child(node: Any, key: Key, create: bool) -> Any:
    if isinstance(key, int):
        return node[key]
    if key not in node:
        if not create:
            raise KeyError(key)
        node[key] = (
            tomlkit.inline_table()
            if isinstance(node, tomlkit.items.InlineTable)
            else tomlkit.table(is_super_table=True)
        )
    return node[key]


def _toml_node(doc: Any, path: Sequence[Key], create: bool = False) -> Any:
    node = doc
    for key in path:
        node = _toml_child(node, key, create)
    return node


def _toml_set(parent: Any, key: Key, value: Any, *, top: bool = True) -> None:
    current = parent.get(key) if isinstance(key, str) else parent[key]
    if current is not None and _unwrap(current) == value:
        return
    if isinstance(value, Mapping) and current is not None and _is_standard_table(parent, key, current):
        # A plain table: key by key, so that comments and order inside survive.
        for old in [k for k in current if k not in value]:
            del current[old]
        for inner_key, inner in value.items():
            _toml_set(current, inner_key, inner, top=False)
        return
    if isinstance(current, tomlkit.items.InlineTable):
        parent[key] = _inline(value)  # inline it was, inline it stays
        return
    if isinstance(current, (tomlkit.items.Table, tomlkit.container.OutOfOrderTableProxy)):
        del parent[key]  # written as dotted keys, or spread over the file: written anew
    parent[key] = _new_item(parent, value, top=top)


def _toml_apply(doc: tomlkit.TOMLDocument, op: Op) -> None:
    if isinstance(op, Set):
        _toml_set(_toml_node(doc, op.path[:-1], create=True), op.path[-1], op.value)
    elif isinstance(op, Insert):
        parent = _toml_node(doc, op.path[:-1], create=True)
        key = op.path[-1]
        if isinstance(key, str) and key not in parent:
            parent[key] = tomlkit.aot() if isinstance(op.value, Mapping) else tomlkit.array()
        items = parent[key]
        if not isinstance(items, MutableSequence):
            raise TypeError(f"{key} is not a list")
        items.insert(op.index, _new_item(items, op.value, top=True))
    else:
        _prune(doc, op, lambda d, p: _toml_node(d, p))


# -- writing ----------------------------------------------------------------------------


def write(
    path: Path, before: str | None, after: str, *, mode: int, private: bool
) -> tuple[bool, Path | None]:
    """Replace ``path`` with ``after`` unless it no longer holds ``before``.

    ``mode`` is for a new file; an existing one keeps its own, and ``private``
    (the content holds a password) makes both the file and its backup 0600.
    Returns (written, backup path).
    """
    target = path.resolve() if path.is_symlink() else path  # keep a dotfile manager's link
    parent = target.parent
    if not parent.is_dir():
        os.makedirs(parent, mode=0o700 if mode == 0o600 else 0o755, exist_ok=True)
    if before is not None and target.exists():
        mode = target.stat().st_mode & 0o7777
    if private:
        mode = 0o600
    backup: Path | None = None
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(after)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if before is not None and target.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            backup = target.with_name(f"{target.name}.peers-backup-{stamp}")
            n = 1
            while backup.exists():
                n += 1
                backup = target.with_name(f"{target.name}.peers-backup-{stamp}-{n}")
            shutil.copy2(target, backup)
            if private:
                os.chmod(backup, 0o600)
        # Last look before the swap: a change since the plan means planning again.
        if read_text(path) != before:
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


def make_private(path: Path) -> bool:
    """chmod 0600 an existing file open to others; True if it was open."""
    target = path.resolve()
    if not target.exists() or target.stat().st_mode & 0o077 == 0:
        return False
    try:
        os.chmod(target, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot make {tilde(target)} private: {exc.strerror or exc}") from None
    return True
