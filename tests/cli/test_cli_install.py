"""`peers install` on every client's format: idempotent, backed up, unrelated entries kept."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Cli
from typer.testing import Result

JSON_CLIENTS = {
    # client: (user file relative to HOME, project file relative to the repo root)
    "claude": (".claude.json", ".mcp.json"),
    "cursor": (".cursor/mcp.json", ".cursor/mcp.json"),
    "gemini": (".gemini/settings.json", ".gemini/settings.json"),
}


@pytest.fixture(autouse=True)
def _no_store_settings(cli: Cli) -> None:
    """No PEERS_URL or PEERS_NAMESPACE in the shell: nothing to carry into the entries."""
    cli.env.pop("PEERS_URL")
    cli.env.pop("PEERS_NAMESPACE")


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.peers-backup-*"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def assert_runs_peers(entry: dict[str, Any]) -> None:
    command = entry["command"]
    assert os.path.isabs(command)
    assert os.access(command, os.X_OK)
    assert entry["args"][-1] == "serve"
    # The command works outside this directory: it answers --help from /.
    args = [a for a in entry["args"] if a != "serve"]
    out = subprocess.run(
        [command, *args, "--help"], cwd="/", capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "serve" in out.stdout


@pytest.mark.parametrize("client", sorted(JSON_CLIENTS))
def test_install_json_client_creates_then_is_idempotent(
    cli: Cli, client: str, no_traceback: Callable[[Result], None]
) -> None:
    path = cli.home / JSON_CLIENTS[client][0]
    first = cli("install", client)
    no_traceback(first)
    assert first.exit_code == 0, first.output
    entry = read_json(path)["mcpServers"]["peers"]
    assert_runs_peers(entry)
    assert entry.get("env", {}) == {}
    if client == "claude":
        assert entry["type"] == "stdio"
        assert "--dangerously-load-development-channels server:peers" in first.stdout
    # A new user-level file is private.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()

    second = cli("install", client)
    assert second.exit_code == 0, second.output
    assert "nothing to change" in second.stdout
    assert path.read_text() == text
    assert backups(path) == []


@pytest.mark.parametrize("client", sorted(JSON_CLIENTS))
def test_install_json_client_keeps_unrelated_entries_and_backs_up(cli: Cli, client: str) -> None:
    path = cli.home / JSON_CLIENTS[client][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    original: dict[str, Any] = {
        "theme": "dark",
        "mcpServers": {"other": {"command": "other-server", "args": ["--x"]}},
        "projects": {"/somewhere": {"allowedTools": []}},
    }
    path.write_text(json.dumps(original, indent=4))
    path.chmod(0o640)

    result = cli("install", client, "--name", "peers-dev")
    assert result.exit_code == 0, result.output
    doc = read_json(path)
    assert doc["theme"] == "dark"
    assert doc["projects"] == original["projects"]
    assert doc["mcpServers"]["other"] == original["mcpServers"]["other"]
    entry = doc["mcpServers"]["peers-dev"]
    assert entry["env"] == {"PEERS_SERVER_NAME": "peers-dev"}
    assert_runs_peers(entry)
    # The file's mode and indentation are kept; the old file is in the backup.
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert '\n    "theme"' in path.read_text()
    [backup] = backups(path)
    assert json.loads(backup.read_text()) == original
    assert str(backup) in result.stdout

    again = cli("install", client, "--name", "peers-dev")
    assert again.exit_code == 0
    assert len(backups(path)) == 1


def test_install_updates_a_stale_entry_and_keeps_user_settings(cli: Cli) -> None:
    path = cli.home / ".gemini" / "settings.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "peers": {
                        "command": "/old/peers",
                        "args": ["serve"],
                        "env": {"PEERS_NAME": "frontend", "PEERS_SERVER_NAME": "zzz"},
                        "trust": True,
                        "timeout": 30000,
                    }
                }
            }
        )
    )
    result = cli("install", "gemini")
    assert result.exit_code == 0, result.output
    entry = read_json(path)["mcpServers"]["peers"]
    assert entry["command"] != "/old/peers"
    assert entry["trust"] is True and entry["timeout"] == 30000
    # The user's own variable stays; the stale server name goes (the name is peers now).
    assert entry["env"] == {"PEERS_NAME": "frontend"}


def test_install_dry_run_writes_nothing(cli: Cli) -> None:
    path = cli.home / ".claude.json"
    path.write_text('{"numStartups": 4}\n')
    result = cli("install", "claude", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run" in result.stdout
    assert '+    "peers": {' in result.stdout
    assert path.read_text() == '{"numStartups": 4}\n'
    assert backups(path) == []
    missing = cli("install", "cursor", "--dry-run")
    assert missing.exit_code == 0
    assert not (cli.home / ".cursor").exists()


@pytest.mark.parametrize(
    ("client", "filename", "content"),
    [
        ("claude", ".claude.json", '{"mcpServers": {"a": 1,}'),
        ("cursor", ".cursor/mcp.json", "[1, 2]"),
        ("gemini", ".gemini/settings.json", '{"mcpServers": ["not", "an", "object"]}'),
        ("codex", ".codex/config.toml", "[mcp_servers\ncommand = 1\n"),
    ],
)
def test_install_leaves_a_malformed_config_untouched(
    cli: Cli, client: str, filename: str, content: str, no_traceback: Callable[[Result], None]
) -> None:
    path = cli.home / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    result = cli("install", client)
    no_traceback(result)
    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("peers: ") and "untouched" in line
    assert path.read_text() == content
    assert backups(path) == []


def test_install_bad_arguments_are_usage_errors(cli: Cli) -> None:
    for args in (["install", "vim"], ["install", "claude", "--scope", "global"],
                 ["install", "claude", "--name", "bad name!"]):  # fmt: skip
        result = cli(*args)
        assert result.exit_code == 2, args
        assert len(result.stderr.splitlines()) == 1
        assert result.stderr.startswith("peers: ")


def test_install_project_scope_writes_at_the_repo_root(cli: Cli) -> None:
    subprocess.run(["git", "init", "-q", str(cli.cwd)], check=True)
    sub = cli.cwd / "src" / "pkg"
    sub.mkdir(parents=True)
    cli.cwd, root = sub, cli.cwd
    for client, (_, project_file) in JSON_CLIENTS.items():
        result = cli("install", client, "--scope", "project")
        assert result.exit_code == 0, result.output
        assert "peers" in read_json(root / project_file)["mcpServers"]
    result = cli("install", "codex", "--scope", "project")
    assert result.exit_code == 0, result.output
    assert "peers" in tomllib.loads((root / ".codex" / "config.toml").read_text())["mcp_servers"]
    assert "trusted" in result.stdout
    assert not (cli.home / ".claude.json").exists()


def test_install_carries_the_store_settings_but_no_password_into_a_project(cli: Cli) -> None:
    result = cli(
        "install", "cursor", PEERS_URL="redis://u:secret@db.example:6379/0", PEERS_NAMESPACE="team"
    )
    assert result.exit_code == 0, result.output
    env = read_json(cli.home / ".cursor" / "mcp.json")["mcpServers"]["peers"]["env"]
    assert env == {"PEERS_URL": "redis://u:secret@db.example:6379/0", "PEERS_NAMESPACE": "team"}
    assert "PEERS_URL copied from this shell" in result.stdout
    dry = cli("install", "gemini", "--dry-run", PEERS_URL="redis://u:secret@db.example:6379/0")
    assert "secret" not in dry.stdout
    project = cli(
        "install", "cursor", "--scope", "project", PEERS_URL="redis://u:secret@db.example:6379/0"
    )
    assert project.exit_code == 2
    assert "password" in project.stderr
    assert not (cli.cwd / ".cursor").exists()


def test_install_follows_a_symlinked_config(cli: Cli, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "claude.json"
    real.write_text("{}")
    (cli.home / ".claude.json").symlink_to(real)
    result = cli("install", "claude")
    assert result.exit_code == 0, result.output
    assert (cli.home / ".claude.json").is_symlink()
    assert "peers" in read_json(real)["mcpServers"]


# -- Codex: TOML ---------------------------------------------------------------------------

CODEX_ORIGINAL = """\
# My Codex settings: keep this comment.
model = "o3"  # trailing comment
approval_policy = "on-request"

[mcp_servers.docs]
command = "npx"
args = ["-y", "@upstash/context7-mcp"]

[mcp_servers.docs.env]
TOKEN = "abc"

# Profiles follow.
[profiles.fast]
model = "o4-mini"
"""


def codex_file(cli: Cli) -> Path:
    return cli.home / ".codex" / "config.toml"


def test_install_codex_adds_a_table_and_preserves_the_rest_textually(cli: Cli) -> None:
    path = codex_file(cli)
    path.parent.mkdir()
    path.write_text(CODEX_ORIGINAL)
    result = cli("install", "codex", "--name", "peers-x")
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert text.startswith(CODEX_ORIGINAL)  # every byte of the old file, then our table
    doc = tomllib.loads(text)
    entry = doc["mcp_servers"]["peers-x"]
    assert entry["env"] == {"PEERS_SERVER_NAME": "peers-x"}
    assert_runs_peers(entry)
    assert doc["mcp_servers"]["docs"]["env"] == {"TOKEN": "abc"}
    assert len(backups(path)) == 1

    again = cli("install", "codex", "--name", "peers-x")
    assert again.exit_code == 0
    assert "nothing to change" in again.stdout
    assert path.read_text() == text
    assert len(backups(path)) == 1


def test_install_codex_replaces_an_old_entry_in_place(cli: Cli) -> None:
    path = codex_file(cli)
    path.parent.mkdir()
    path.write_text(
        'model = "o3"\n\n'
        "[mcp_servers.peers]\n"
        'command = "/old/bin/peers"\n'
        'args = ["serve"]\n'
        "startup_timeout_sec = 20\n\n"
        "[mcp_servers.peers.env]\n"
        'PEERS_NAME = "backend"\n'
        'PEERS_SERVER_NAME = "stale"\n\n'
        "# The docs server.\n"
        "[mcp_servers.docs]\n"
        'command = "docs"\n'
    )
    result = cli("install", "codex")
    assert result.exit_code == 0, result.output
    text = path.read_text()
    doc = tomllib.loads(text)
    entry = doc["mcp_servers"]["peers"]
    assert entry["startup_timeout_sec"] == 20
    assert entry["env"] == {"PEERS_NAME": "backend"}
    assert entry["command"] != "/old/bin/peers"
    assert doc["mcp_servers"]["docs"] == {"command": "docs"}
    # Replaced where it was: before the docs table, whose comment survives.
    assert text.index("[mcp_servers.peers]") < text.index("# The docs server.")
    assert "stale" not in text and "[mcp_servers.peers.env]" not in text


def test_install_codex_refuses_a_form_it_cannot_edit(cli: Cli) -> None:
    path = codex_file(cli)
    path.parent.mkdir()
    content = '[mcp_servers]\npeers.command = "/old/peers"\npeers.args = ["serve"]\n'
    path.write_text(content)
    result = cli("install", "codex")
    assert result.exit_code == 2
    assert "untouched" in result.stderr
    assert path.read_text() == content


def test_install_codex_respects_codex_home(cli: Cli, tmp_path: Path) -> None:
    codex_home = tmp_path / "elsewhere"
    result = cli("install", "codex", CODEX_HOME=str(codex_home))
    assert result.exit_code == 0, result.output
    assert "peers" in tomllib.loads((codex_home / "config.toml").read_text())["mcp_servers"]


# -- secrets and concurrent writers ------------------------------------------------------------

SECRET_URL = "redis://u:secret@db.example:6379/0"


@pytest.mark.parametrize(("client", "mode"), [("claude", 0o644), ("cursor", 0o640)])
def test_install_with_a_password_makes_an_existing_file_owner_only(
    cli: Cli, client: str, mode: int
) -> None:
    path = cli.home / JSON_CLIENTS[client][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"theme": "dark"}\n')
    path.chmod(mode)
    result = cli("install", client, PEERS_URL=SECRET_URL)
    assert result.exit_code == 0, result.output
    assert read_json(path)["mcpServers"]["peers"]["env"]["PEERS_URL"] == SECRET_URL
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "mode 0600" in result.stdout
    [backup] = backups(path)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert "secret" not in result.stdout


def test_reinstalling_a_password_entry_makes_an_open_file_private(cli: Cli) -> None:
    path = cli.home / ".claude.json"
    assert cli("install", "claude", PEERS_URL=SECRET_URL).exit_code == 0
    path.chmod(0o644)  # loosened later, e.g. by an editor or a dotfile manager
    result = cli("install", "claude", PEERS_URL=SECRET_URL)
    assert result.exit_code == 0, result.output
    assert "nothing to change" in result.stdout and "private (0600)" in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_install_without_a_password_keeps_the_mode(cli: Cli) -> None:
    path = cli.home / ".claude.json"
    path.write_text("{}\n")
    path.chmod(0o644)
    result = cli("install", "claude", PEERS_URL="redis://db.example:6379/0")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert "0600" not in result.stdout


def test_install_keeps_a_change_made_to_the_file_after_planning(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peers.install import InstallScope, apply_install, plan_install

    monkeypatch.setenv("HOME", str(cli.home))
    path = cli.home / ".claude.json"
    path.write_text(json.dumps({"numStartups": 4, "projects": {}}, indent=2))
    plan = plan_install(
        "claude", InstallScope.USER, cwd=cli.cwd, environ={}, command=("/opt/peers", ["serve"])
    )
    # A running Claude Code rewrites its file between our read and our write.
    path.write_text(json.dumps({"numStartups": 5, "projects": {"/x": {"allowedTools": []}}}))
    backup = apply_install(plan)
    doc = read_json(path)
    assert doc["numStartups"] == 5
    assert doc["projects"] == {"/x": {"allowedTools": []}}
    assert doc["mcpServers"]["peers"]["command"] == "/opt/peers"
    # The backup is of the file that was replaced, their version.
    assert backup is not None and read_json(backup)["numStartups"] == 5


def test_install_does_nothing_when_the_entry_appeared_meanwhile(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peers.install import InstallScope, apply_install, plan_install

    monkeypatch.setenv("HOME", str(cli.home))
    path = cli.home / ".cursor" / "mcp.json"
    kwargs: dict[str, Any] = {"cwd": cli.cwd, "environ": {}, "command": ("/opt/peers", ["serve"])}
    plan = plan_install("cursor", InstallScope.USER, **kwargs)
    assert plan.before is None and plan.changed
    path.parent.mkdir()
    path.write_text(json.dumps({"mcpServers": {"peers": plan.entry}}))
    text = path.read_text()
    assert apply_install(plan) is None
    assert path.read_text() == text
    assert backups(path) == []
