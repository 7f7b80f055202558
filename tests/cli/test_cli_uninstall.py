"""`peers uninstall`: the entry and peers' hooks go, everything else stays, with the same care."""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Cli
from install_helpers import (
    EVENTS,
    PROJECT_FILES,
    USER_FILES,
    backups,
    codex_hooks_list,
    our_commands,
    read,
)
from typer.testing import Result

CLIENTS = ["claude", "codex", "cursor", "gemini"]
FOREIGN = {"matcher": "Bash", "hooks": [{"type": "command", "command": "/usr/bin/notify"}]}


@pytest.fixture(autouse=True)
def _no_store_settings(cli: Cli) -> None:
    cli.env.pop("PEERS_URL")
    cli.env.pop("PEERS_NAMESPACE")


def servers(path: Path) -> dict[str, Any]:
    doc = read(path)
    found: dict[str, Any] = doc.get("mcp_servers" if path.suffix == ".toml" else "mcpServers", {})
    return found


def files_of(cli: Cli) -> dict[Path, str]:
    return {p: p.read_text() for p in cli.home.rglob("*") if p.is_file() and "backup" not in p.name}


@pytest.mark.parametrize("client", CLIENTS)
def test_uninstall_takes_out_the_entry_and_our_hooks_only(cli: Cli, client: str) -> None:
    entry_file, hooks_file = (cli.home / f if f else None for f in USER_FILES[client])
    assert entry_file is not None
    assert cli("install", client).exit_code == 0
    # Someone else's server and hook, added after peers.
    doc = read(entry_file)
    if client == "codex":
        text = entry_file.read_text()
        text += '\n[mcp_servers.docs]\ncommand = "docs"\n'
        text += '\n[[hooks.PostToolUse]]\nmatcher = "Bash"\n[[hooks.PostToolUse.hooks]]\n'
        text += 'type = "command"\ncommand = "/usr/bin/notify"\n'
        entry_file.write_text(text)
    else:
        doc["mcpServers"]["docs"] = {"command": "docs"}
        entry_file.write_text(json.dumps(doc, indent=2))
        if hooks_file is not None:
            hooks = read(hooks_file)
            post = EVENTS[client][3]
            hooks["hooks"][post].append(FOREIGN)
            hooks_file.write_text(json.dumps(hooks, indent=2))

    result = cli("uninstall", client)
    assert result.exit_code == 0, result.output
    assert list(servers(entry_file)) == ["docs"]
    assert backups(entry_file)
    if hooks_file is not None:
        assert our_commands(hooks_file) == {}
        post = EVENTS[client][3]
        assert read(hooks_file)["hooks"] == {post: [FOREIGN]}
    assert "Restart" in result.stdout

    again = cli("uninstall", client)
    assert again.exit_code == 0
    assert "nothing to change" in again.stdout


@pytest.mark.parametrize("client", ["claude", "gemini"])
def test_uninstall_leaves_no_empty_hooks_behind(cli: Cli, client: str) -> None:
    hooks_file = cli.home / str(USER_FILES[client][1])
    hooks_file.parent.mkdir(parents=True, exist_ok=True)
    hooks_file.write_text('{"theme": "dark"}\n')
    assert cli("install", client).exit_code == 0
    assert cli("uninstall", client).exit_code == 0
    assert (
        read(hooks_file) == {"theme": "dark"}
        if client == "claude"
        else {"theme": "dark", "mcpServers": {}}
    )


def test_uninstall_dry_run_writes_nothing(cli: Cli) -> None:
    assert cli("install", "gemini").exit_code == 0
    before = files_of(cli)
    result = cli("uninstall", "gemini", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run" in result.stdout
    assert '-    "peers": {' in result.stdout and "hook AfterTool --client gemini" in result.stdout
    assert files_of(cli) == before
    assert backups(cli.home / ".gemini" / "settings.json") == []


def test_uninstall_with_nothing_installed_changes_nothing(cli: Cli) -> None:
    for client in CLIENTS:
        result = cli("uninstall", client)
        assert result.exit_code == 0, result.output
        assert "nothing to change" in result.stdout
    assert files_of(cli) == {}


def test_uninstall_leaves_an_entry_that_is_not_peers(cli: Cli) -> None:
    path = cli.home / ".cursor" / "mcp.json"
    path.parent.mkdir()
    original = {"mcpServers": {"peers": {"command": "some-other-peers-tool", "args": []}}}
    path.write_text(json.dumps(original))
    result = cli("uninstall", "cursor")
    assert result.exit_code == 0, result.output
    assert "does not start peers serve: left alone" in result.stdout
    assert json.loads(path.read_text()) == original


def test_hooks_stay_while_another_peers_entry_needs_them(cli: Cli) -> None:
    assert cli("install", "claude").exit_code == 0
    assert cli("install", "claude", "--name", "peers-dev").exit_code == 0
    hooks = cli.home / ".claude" / "settings.json"
    result = cli("uninstall", "claude")
    assert result.exit_code == 0, result.output
    assert list(servers(cli.home / ".claude.json")) == ["peers-dev"]
    assert list(our_commands(hooks)) == EVENTS["claude"]
    assert "'peers-dev' entry still runs peers" in result.stdout
    result = cli("uninstall", "claude", "--name", "peers-dev")
    assert result.exit_code == 0, result.output
    assert our_commands(hooks) == {}


def test_uninstall_project_scope(cli: Cli) -> None:
    subprocess.run(["git", "init", "-q", str(cli.cwd)], check=True)
    root = cli.cwd
    for client in CLIENTS:
        assert cli("install", client, "--scope", "project").exit_code == 0
        result = cli("uninstall", client, "--scope", "project")
        assert result.exit_code == 0, result.output
        entry_file, hooks_file = PROJECT_FILES[client]
        assert "peers" not in servers(root / entry_file)
        if hooks_file is not None:
            assert our_commands(root / hooks_file) == {}


@pytest.mark.parametrize(
    ("client", "filename", "content"),
    [
        ("claude", ".claude/settings.json", '{"hooks": {"Stop": 1}'),
        ("codex", ".codex/config.toml", "[hooks\n"),
        ("gemini", ".gemini/settings.json", "[]"),
    ],
)
def test_uninstall_leaves_a_malformed_file_untouched(
    cli: Cli, client: str, filename: str, content: str, no_traceback: Callable[[Result], None]
) -> None:
    path = cli.home / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    result = cli("uninstall", client)
    no_traceback(result)
    assert result.exit_code == 2
    assert "untouched" in result.stderr
    assert path.read_text() == content


def test_uninstall_codex_moves_the_trust_of_the_hooks_it_shifts(cli: Cli) -> None:
    """Codex keys trust by position: the user's hook after ours keeps its trust."""
    from peers.hookconfig import codex_hook_hash

    assert cli("install", "codex", "--trust-hooks").exit_code == 0
    path = cli.home / ".codex" / "config.toml"
    foreign_hash = codex_hook_hash("PostToolUse", "Bash", FOREIGN["hooks"][0])
    text = path.read_text()
    text += '\n[[hooks.PostToolUse]]\nmatcher = "Bash"\n[[hooks.PostToolUse.hooks]]\n'
    text += 'type = "command"\ncommand = "/usr/bin/notify"\n'
    text += f'\n[hooks.state."{path}:post_tool_use:1:0"]\ntrusted_hash = "{foreign_hash}"\n'
    path.write_text(text)
    [theirs] = [h for h in codex_hooks_list(cli.home, cli.cwd) if h["command"] == "/usr/bin/notify"]
    assert theirs["trustStatus"] == "trusted"

    result = cli("uninstall", "codex")
    assert result.exit_code == 0, result.output
    doc = tomllib.loads(path.read_text())
    assert doc["hooks"]["state"] == {f"{path}:post_tool_use:0:0": {"trusted_hash": foreign_hash}}
    [theirs] = codex_hooks_list(cli.home, cli.cwd)
    assert theirs["command"] == "/usr/bin/notify" and theirs["trustStatus"] == "trusted"
