"""Editing client settings files: every TOML form Codex users write, comments kept, refusals."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from peers.configfile import Delete, Insert, Set, apply_plain, parse, render, write
from peers.errors import ConfigError

ENTRY = {"command": "/new/peers", "args": ["serve"], "env": {"PEERS_NAME": "x"}}
GROUP = {"matcher": "*", "hooks": [{"type": "command", "command": "/p hook X", "timeout": 5}]}
PATH = Path("/nonexistent/config.toml")


def toml_after(before: str, *ops: Any) -> tuple[str, dict[str, Any]]:
    text = render("toml", before, ops, PATH)
    return text, tomllib.loads(text)


@pytest.mark.parametrize(
    "before",
    [
        # A table and a sub-table for env.
        '[mcp_servers.peers]\ncommand = "/old"\nargs = ["serve"]\n\n[mcp_servers.peers.env]\nA = "1"\n',
        # Dotted keys under [mcp_servers].
        '[mcp_servers]\npeers.command = "/old"\npeers.args = ["serve"]\n',
        # Dotted keys at the top.
        'model = "o3"\nmcp_servers.peers.command = "/old"\nmcp_servers.peers.args = ["serve"]\n',
        # An inline table, nested inline env.
        '[mcp_servers]\npeers = { command = "/old", args = ["serve"], env = { A = "1" } }\n',
        # An inline table written with a dotted key at the top.
        'mcp_servers.peers = { command = "/old", args = ["serve"] }\n',
        # The whole servers table inline.
        'mcp_servers = { peers = { command = "/old" }, docs = { command = "docs" } }\n',
    ],
)
def test_every_form_of_an_existing_entry_is_replaced(before: str) -> None:
    _, doc = toml_after(before, Set(("mcp_servers", "peers"), ENTRY))
    assert doc["mcp_servers"]["peers"] == ENTRY
    expected = apply_plain(tomllib.loads(before), [Set(("mcp_servers", "peers"), ENTRY)])
    assert doc == expected


def test_comments_and_layout_elsewhere_survive() -> None:
    before = (
        "# My settings: keep this.\n"
        'model = "o3"  # trailing comment\n\n'
        "[mcp_servers.peers]\n"
        "# about the command\n"
        'command = "/old"  # old one\n'
        'args = ["serve"]\n'
        "startup_timeout_sec = 20\n\n"
        "# The docs server.\n"
        "[mcp_servers.docs]\n"
        'command = "docs"\n'
    )
    entry = {"command": "/new", "args": ["serve"], "startup_timeout_sec": 20}
    text, doc = toml_after(before, Set(("mcp_servers", "peers"), entry))
    assert doc["mcp_servers"]["peers"] == entry
    for kept in ("# My settings: keep this.", "# trailing comment", "# about the command", "# old one",
                 "# The docs server.", "startup_timeout_sec = 20"):  # fmt: skip
        assert kept in text
    assert text.index("[mcp_servers.peers]") < text.index("[mcp_servers.docs]")


def test_a_new_table_is_appended_after_every_byte_of_the_file() -> None:
    before = '# c\nmodel = "o3"\n\n[profiles.fast]\nmodel = "o4-mini"\n# last line'
    text, doc = toml_after(before, Set(("mcp_servers", "peers"), ENTRY))
    assert text.startswith(before)
    assert doc["mcp_servers"]["peers"] == ENTRY
    assert '\nenv = {PEERS_NAME = "x"}\n' in text  # Codex's own style for env


def test_hook_groups_are_inserted_into_existing_arrays_and_appended_as_new_ones() -> None:
    before = (
        "[[hooks.PostToolUse]]\n"
        'matcher = "Bash"\n'
        "[[hooks.PostToolUse.hooks]]\n"
        'type = "command"\n'
        'command = "/usr/bin/notify"\n\n'
        '[hooks.state."/x/config.toml:post_tool_use:0:0"]\n'
        'trusted_hash = "sha256:abc"\n'
    )
    text, doc = toml_after(
        before,
        Insert(("hooks", "PostToolUse"), 1, GROUP),
        Insert(("hooks", "Stop"), 0, {"hooks": GROUP["hooks"]}),
        Set(("hooks", "state", "/x/config.toml:stop:0:0"), {"trusted_hash": "sha256:def"}),
    )
    assert [g["matcher"] for g in doc["hooks"]["PostToolUse"]] == ["Bash", "*"]
    assert doc["hooks"]["Stop"] == [{"hooks": GROUP["hooks"]}]
    assert doc["hooks"]["state"]["/x/config.toml:post_tool_use:0:0"] == {
        "trusted_hash": "sha256:abc"
    }
    assert "[[hooks.Stop]]\n[[hooks.Stop.hooks]]\n" in text


def test_inline_hook_arrays_get_inline_groups() -> None:
    before = '[hooks]\nPostToolUse = [{ matcher = "Bash", hooks = [{ type = "command", command = "n" }] }]\n'
    text, doc = toml_after(before, Insert(("hooks", "PostToolUse"), 1, GROUP))
    assert doc["hooks"]["PostToolUse"][1] == GROUP
    assert "[[hooks" not in text


def test_deletes_prune_what_they_empty() -> None:
    before = (
        'model = "o3"\n\n[[hooks.Stop]]\n[[hooks.Stop.hooks]]\ntype = "command"\ncommand = "p"\n\n'
        '[mcp_servers.peers]\ncommand = "p"\n'
    )
    text, doc = toml_after(
        before, Delete(("hooks", "Stop", 0), keep=2), Delete(("hooks", "Stop"), keep=0),
        Delete(("mcp_servers", "peers"), keep=0),
    )  # fmt: skip
    assert doc == {"model": "o3"}
    assert text == 'model = "o3"\n'


def test_no_ops_leave_the_text_alone() -> None:
    odd = '  model="o3"   # spaces\n'
    assert render("toml", odd, [], PATH) == odd
    assert render("json", '{"a":1}', [], PATH) == '{"a":1}'


def test_json_keeps_order_and_indentation() -> None:
    before = json.dumps({"theme": "dark", "mcpServers": {"a": {}}, "z": 1}, indent=4)
    text = render("json", before, [Set(("mcpServers", "peers"), ENTRY)], PATH)
    assert list(json.loads(text)) == ["theme", "mcpServers", "z"]
    assert '\n    "theme"' in text


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("toml", "[mcp_servers\ncommand = 1\n"),
        ("json", '{"a": 1,}'),
        ("json", "[1, 2]"),
    ],
)
def test_unparseable_files_are_refused(fmt: Any, text: str) -> None:
    with pytest.raises(ConfigError, match="untouched"):
        parse(fmt, text, PATH)
    with pytest.raises(ConfigError, match="untouched"):
        render(fmt, text, [Set(("x",), 1)], PATH)


def test_an_array_of_tables_spread_over_the_file_is_rewritten_whole() -> None:
    # tomlkit cannot edit such an array in place: the hooks table is written anew,
    # the rest of the file stays as it was.
    before = (
        '# top\n[[hooks.Stop]]\n[[hooks.Stop.hooks]]\ncommand = "a"\n\n'
        "[x]  # kept\ny = 1\n\n"
        '[[hooks.Stop]]\n[[hooks.Stop.hooks]]\ncommand = "b"\n'
    )
    text, doc = toml_after(
        before, Delete(("hooks", "Stop", 0)), Insert(("hooks", "Stop"), 1, GROUP)
    )
    assert doc["hooks"]["Stop"] == [{"hooks": [{"command": "b"}]}, GROUP]
    assert text.startswith("# top\n") and "[x]  # kept\ny = 1\n" in text


def test_an_edit_that_cannot_be_checked_is_refused() -> None:
    # Every result is parsed back and compared with what was asked; nan equals nothing,
    # so a file holding one cannot be checked, and is left alone.
    before = "[mcp_servers.peers]\nstartup_timeout_sec = nan\n"
    with pytest.raises(ConfigError, match=r"cannot edit safely.*untouched"):
        render("toml", before, [Set(("model",), "o3")], PATH)


def test_inline_tables_take_new_keys_inline() -> None:
    text, doc = toml_after("a = { b = 1 }\n", Set(("a", "c"), {"d": 1}))
    assert doc == {"a": {"b": 1, "c": {"d": 1}}}
    assert text.count("\n") == 1


def test_write_follows_a_symlink_keeps_the_mode_and_backs_up(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "config.toml"
    real.parent.mkdir()
    real.write_text("a = 1\n")
    real.chmod(0o640)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    written, backup = write(link, "a = 1\n", "a = 2\n", mode=0o600, private=False)
    assert written and backup is not None
    assert link.is_symlink() and real.read_text() == "a = 2\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert backup.read_text() == "a = 1\n" and backup.parent == real.parent
    # A file that changed since the plan is not replaced.
    written, backup = write(link, "a = 1\n", "a = 3\n", mode=0o600, private=False)
    assert not written and backup is None and real.read_text() == "a = 2\n"
    assert sorted(os.listdir(real.parent)) == sorted(["config.toml", backup_name(real)])


def backup_name(path: Path) -> str:
    [name] = [n for n in os.listdir(path.parent) if n.startswith(path.name + ".peers-backup-")]
    return name


def test_write_makes_a_secret_private(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{}")
    path.chmod(0o644)
    written, backup = write(path, "{}", '{"url": "redis://u:p@h"}', mode=0o644, private=True)
    assert written and backup is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
