"""`peers install` on every client's format: idempotent, backed up, unrelated entries kept."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Cli
from install_helpers import (
    EVENTS,
    USER_FILES,
    backups,
    client_bin,
    codex_hooks_list,
    hooks_of,
    our_commands,
    read,
    run_client,
)
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
    hooks_file = USER_FILES[client][1]
    if hooks_file is not None:
        hooks = cli.home / hooks_file
        assert list(our_commands(hooks)) == EVENTS[client]
        assert stat.S_IMODE(hooks.stat().st_mode) == 0o600
    texts = {p: p.read_text() for p in cli.home.rglob("*") if p.is_file()}

    second = cli("install", client)
    assert second.exit_code == 0, second.output
    assert "nothing to change" in second.stdout
    assert {p: p.read_text() for p in cli.home.rglob("*") if p.is_file()} == texts


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
    assert "hook PostToolUse --client claude" in result.stdout
    assert not (cli.home / ".claude").exists()
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
    assert list(our_commands(root / ".claude" / "settings.json")) == EVENTS["claude"]
    assert list(our_commands(root / ".gemini" / "settings.json")) == EVENTS["gemini"]
    # Project files are for the team: readable by others, like the repository.
    assert stat.S_IMODE((root / ".claude" / "settings.json").stat().st_mode) == 0o644
    result = cli("install", "codex", "--scope", "project")
    assert result.exit_code == 0, result.output
    assert "peers" in tomllib.loads((root / ".codex" / "config.toml").read_text())["mcp_servers"]
    assert "trusted" in result.stdout
    assert list(our_commands(root / ".codex" / "config.toml")) == EVENTS["codex"]
    assert not (cli.home / ".claude.json").exists()
    assert not (cli.home / ".claude").exists()


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
    # Replaced where it was, its env table edited in place: before the docs table,
    # whose comment survives.
    assert text.index("[mcp_servers.peers]") < text.index("[mcp_servers.peers.env]")
    assert text.index("[mcp_servers.peers.env]") < text.index("# The docs server.")
    assert "stale" not in text


@pytest.mark.parametrize(
    "content",
    [
        '[mcp_servers]\npeers.command = "/old/peers"\npeers.args = ["serve"]\nother.command = "o"\n',
        'model = "o3"\nmcp_servers.peers = { command = "/old/peers", args = ["serve"] }\n',
        '[mcp_servers]\npeers = { command = "/old/peers", env = { PEERS_NAME = "b" } }\n',
        'mcp_servers = { peers = { command = "/old/peers" }, other = { command = "o" } }\n',
    ],
    ids=["dotted", "inline-dotted", "inline", "all-inline"],
)
def test_install_codex_edits_dotted_keys_and_inline_tables(cli: Cli, content: str) -> None:
    path = codex_file(cli)
    path.parent.mkdir()
    path.write_text(content)
    result = cli("install", "codex")
    assert result.exit_code == 0, result.output
    doc = tomllib.loads(path.read_text())
    entry = doc["mcp_servers"]["peers"]
    assert_runs_peers(entry)
    old = tomllib.loads(content)
    assert entry.get("env", {}) == old["mcp_servers"]["peers"].get("env", {})
    if "other" in old["mcp_servers"]:
        assert doc["mcp_servers"]["other"] == old["mcp_servers"]["other"]
    assert doc.get("model") == old.get("model")
    assert list(our_commands(path)) == EVENTS["codex"]
    again = cli("install", "codex")
    assert "nothing to change" in again.stdout


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


# -- hooks in every shape -----------------------------------------------------------------------

HOOK_CLIENTS = ["claude", "codex", "gemini"]
FOREIGN_COMMAND = "/usr/local/bin/notify-me --quiet"


def hooks_file(cli: Cli, client: str) -> Path:
    relative = USER_FILES[client][1]
    assert relative is not None
    return cli.home / relative


def write_settings(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".toml":
        import tomlkit

        path.write_text(tomlkit.dumps(data))
    else:
        path.write_text(json.dumps(data, indent=2))


def foreign_group(client: str) -> dict[str, Any]:
    handler: dict[str, Any] = {"type": "command", "command": FOREIGN_COMMAND}
    return {"matcher": "Bash" if client != "gemini" else "run_shell_command", "hooks": [handler]}


def post_tool_event(client: str) -> str:
    return EVENTS[client][3]


@pytest.mark.parametrize("client", HOOK_CLIENTS)
def test_hooks_have_each_clients_events_matchers_and_timeout_unit(cli: Cli, client: str) -> None:
    result = cli("install", client)
    assert result.exit_code == 0, result.output
    hooks = hooks_of(hooks_file(cli, client))
    assert list(hooks) == EVENTS[client]
    session, prompt, pre, post, stop = (hooks[e] for e in EVENTS[client])
    for event, groups in zip(EVENTS[client], (session, prompt, pre, post, stop), strict=True):
        [group] = groups
        [handler] = group["hooks"]
        assert handler["type"] == "command"
        # <absolute peers script> hook <the client's event name> --client <client>
        program, *rest = shlex.split(handler["command"])
        assert os.path.isabs(program) and os.access(program, os.X_OK)
        assert rest == ["hook", event, "--client", client]
        assert handler["timeout"] == (5000 if client == "gemini" else 5)
    assert "matcher" not in session[0] and "matcher" not in stop[0]
    assert post[0]["matcher"] == "*"
    edit_tools = {
        "claude": ["Edit", "Write", "MultiEdit", "NotebookEdit"],
        "codex": ["apply_patch"],
        "gemini": ["write_file", "replace"],
    }[client]
    for tool in edit_tools:
        assert re.search(pre[0]["matcher"], tool), tool
    assert not re.search(pre[0]["matcher"], "mcp_peers_whoami")
    assert f"hook EVENT --client {client}" in result.stdout


@pytest.mark.parametrize("client", HOOK_CLIENTS)
def test_foreign_hooks_and_settings_are_kept(cli: Cli, client: str) -> None:
    path = hooks_file(cli, client)
    post = post_tool_event(client)
    original: dict[str, Any] = {
        "someSetting": "kept",
        "hooks": {
            post: [foreign_group(client)],
            "Notification": [{"hooks": [{"type": "command", "command": "say hi"}]}],
        },
    }
    write_settings(path, original)
    result = cli("install", client)
    assert result.exit_code == 0, result.output
    doc = read(path)
    assert doc["someSetting"] == "kept"
    assert doc["hooks"]["Notification"] == original["hooks"]["Notification"]
    groups = doc["hooks"][post]
    assert groups[0] == foreign_group(client)  # theirs first, where it was
    assert len(groups) == 2 and "hook " + post in groups[1]["hooks"][0]["command"]
    assert len(backups(path)) == 1


@pytest.mark.parametrize("client", HOOK_CLIENTS)
def test_our_old_hooks_are_replaced_in_place_never_doubled(cli: Cli, client: str) -> None:
    path = hooks_file(cli, client)
    post = post_tool_event(client)
    stop = EVENTS[client][4]
    old = {
        "type": "command",
        "command": f"/old/bin/peers hook {post} --client {client}",
        "timeout": 1,
    }
    write_settings(
        path,
        {
            "hooks": {
                post: [
                    {"matcher": "Edit", "hooks": [old]},  # ours, from an older peers
                    foreign_group(client),
                ],
                # Ours inside someone else's group: taken out, their handler stays.
                stop: [{"hooks": [{"type": "command", "command": "echo bye"}, dict(old)]}],
            }
        },
    )
    result = cli("install", client)
    assert result.exit_code == 0, result.output
    groups = hooks_of(path)[post]
    assert len(groups) == 2
    assert groups[0]["matcher"] == "*" and "/old/bin" not in groups[0]["hooks"][0]["command"]
    assert groups[1] == foreign_group(client)
    stops = hooks_of(path)[stop]
    assert stops[0] == {"hooks": [{"type": "command", "command": "echo bye"}]}
    assert len(stops) == 2 and f"hook {stop}" in stops[1]["hooks"][0]["command"]
    assert all(len(cmds) == 1 for cmds in our_commands(path).values())


@pytest.mark.parametrize(
    ("client", "content"),
    [
        ("claude", '{"hooks": ["not", "a", "table"]}'),
        ("claude", '{"hooks": {"PostToolUse": {"matcher": "*"}}}'),
        ("gemini", '{"hooks": {"AfterTool": "nope"}}'),
        ("codex", 'hooks = "nope"\n'),
        ("codex", "[hooks]\nPostToolUse = 3\n"),
    ],
)
def test_malformed_hooks_leave_every_file_untouched(
    cli: Cli, client: str, content: str, no_traceback: Callable[[Result], None]
) -> None:
    path = hooks_file(cli, client)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    result = cli("install", client)
    no_traceback(result)
    assert result.exit_code == 2, result.output
    assert "untouched" in result.stderr
    assert path.read_text() == content
    assert backups(path) == []
    # Nothing else was written either (Claude's entry lives in another file).
    assert not (cli.home / ".claude.json").exists()


def test_a_symlinked_settings_file_is_followed(cli: Cli, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "settings.json"
    real.parent.mkdir()
    real.write_text('{"theme": "dark"}')
    link = cli.home / ".claude" / "settings.json"
    link.parent.mkdir()
    link.symlink_to(real)
    result = cli("install", "claude")
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    assert read(real)["theme"] == "dark" and list(our_commands(real)) == EVENTS["claude"]


def test_codex_hooks_written_inline_stay_inline(cli: Cli) -> None:
    path = codex_file(cli)
    path.parent.mkdir()
    path.write_text(
        '[hooks]\nPostToolUse = [{ matcher = "Bash", hooks = [{ type = "command", command = "n" }] }]\n'
    )
    result = cli("install", "codex")
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "[[hooks.PostToolUse]]" not in text
    groups = tomllib.loads(text)["hooks"]["PostToolUse"]
    assert groups[0]["matcher"] == "Bash" and groups[1]["matcher"] == "*"
    assert sorted(our_commands(path)) == sorted(EVENTS["codex"])


@pytest.mark.parametrize("client", HOOK_CLIENTS)
def test_no_hooks_writes_none_and_takes_ours_out(cli: Cli, client: str) -> None:
    result = cli("install", client, "--no-hooks")
    assert result.exit_code == 0, result.output
    path = hooks_file(cli, client)
    assert not path.exists() or our_commands(path) == {}
    assert cli("install", client).exit_code == 0
    assert list(our_commands(path)) == EVENTS[client]
    result = cli("install", client, "--no-hooks")
    assert result.exit_code == 0, result.output
    assert our_commands(path) == {}
    assert "hooks taken out" in result.stdout
    # The entry stays.
    assert (
        "peers"
        in read(cli.home / USER_FILES[client][0])[
            "mcpServers" if client != "codex" else "mcp_servers"
        ]
    )


def test_cursor_gets_no_hooks(cli: Cli) -> None:
    result = cli("install", "cursor")
    assert result.exit_code == 0, result.output
    assert "Hooks: none" in result.stdout
    assert sorted(p.name for p in (cli.home / ".cursor").iterdir()) == ["mcp.json"]


# -- Gemini: trust ------------------------------------------------------------------------------


def test_gemini_entry_is_trusted_unless_told_not_to(cli: Cli) -> None:
    path = cli.home / ".gemini" / "settings.json"
    result = cli("install", "gemini")
    assert result.exit_code == 0, result.output
    assert read(path)["mcpServers"]["peers"]["trust"] is True
    assert "without asking" in result.stdout and "gemini -p" in result.stdout
    result = cli("install", "gemini", "--no-trust")
    assert result.exit_code == 0, result.output
    assert "trust" not in read(path)["mcpServers"]["peers"]
    assert "hides the peers tools" in result.stdout


# -- Codex: approvals and hook trust --------------------------------------------------------


def test_codex_output_says_what_codex_asks_and_how_to_trust_the_hooks(cli: Cli) -> None:
    result = cli("install", "codex")
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "kill_peer" in out and 'approval_mode = "approve"' in out
    assert "[mcp_servers.peers.tools.kill_peer]" in out
    assert "skips hooks you have not trusted" in out and "/hooks" in out
    assert "--trust-hooks" in out
    state = tomllib.loads(codex_file(cli).read_text())["hooks"]
    assert "state" not in state


def test_trust_hooks_is_for_codex_only(cli: Cli) -> None:
    for args in (
        ["install", "claude", "--trust-hooks"],
        ["install", "codex", "--no-hooks", "--trust-hooks"],
    ):
        result = cli(*args)
        assert result.exit_code == 2, args
        assert result.stderr.startswith("peers: ")


def test_trust_hooks_records_codexs_hashes_which_codex_accepts(cli: Cli) -> None:
    path = codex_file(cli)
    path.parent.mkdir()
    path.write_text(
        "[[hooks.PostToolUse]]\n"
        'matcher = "Bash"\n'
        "[[hooks.PostToolUse.hooks]]\n"
        'type = "command"\n'
        f'command = "{FOREIGN_COMMAND}"\n'
    )
    result = cli("install", "codex", "--trust-hooks")
    assert result.exit_code == 0, result.output
    assert "trusted 5 peers hooks" in result.stdout
    states = tomllib.loads(path.read_text())["hooks"]["state"]
    assert len(states) == 5 and all(
        v["trusted_hash"].startswith("sha256:") for v in states.values()
    )
    # Idempotent: the hashes are already there.
    assert "nothing to change" in cli("install", "codex", "--trust-hooks").stdout
    # The real Codex agrees: ours trusted, the user's own still untrusted.
    listed = codex_hooks_list(cli.home, cli.cwd)
    status = {(h["command"] or ""): h["trustStatus"] for h in listed}
    assert status.pop(FOREIGN_COMMAND) == "untrusted"
    assert len(status) == 5 and set(status.values()) == {"trusted"}, status


def test_trust_follows_the_hooks_an_edit_moves(cli: Cli) -> None:
    """Codex keys trust by position: when peers' edit moves someone's hook, its trust moves too."""
    from peers.hookconfig import codex_hook_hash

    assert cli("install", "codex", "--trust-hooks").exit_code == 0
    path = codex_file(cli)
    config = str(path)
    ours = next(
        g for g in tomllib.loads(path.read_text())["hooks"]["PostToolUse"] if g["matcher"] == "*"
    )
    foreign = foreign_group("codex")
    foreign_hash = codex_hook_hash("PostToolUse", "Bash", foreign["hooks"][0])
    # A copy of our group, then the user's own hook, trusted by the user at position 2.
    import tomlkit

    doc = tomlkit.parse(path.read_text())
    doc["hooks"]["PostToolUse"].append(ours)
    doc["hooks"]["PostToolUse"].append(foreign)
    doc["hooks"]["state"][f"{config}:post_tool_use:2:0"] = {"trusted_hash": foreign_hash}
    path.write_text(tomlkit.dumps(doc))
    before = {h["command"]: h["trustStatus"] for h in codex_hooks_list(cli.home, cli.cwd)}
    assert before[FOREIGN_COMMAND] == "trusted"  # our hash of their hook is Codex's too

    result = cli("install", "codex")  # no --trust-hooks: nothing newly trusted
    assert result.exit_code == 0, result.output
    groups = tomllib.loads(path.read_text())["hooks"]["PostToolUse"]
    assert [g["matcher"] for g in groups] == ["*", "Bash"]  # the copy is gone
    listed = codex_hooks_list(cli.home, cli.cwd)
    assert len(listed) == 6
    assert {h["trustStatus"] for h in listed} == {"trusted"}, listed
    assert f"{config}:post_tool_use:2:0" not in tomllib.loads(path.read_text())["hooks"]["state"]


def test_project_hooks_are_trusted_from_the_user_config(cli: Cli) -> None:
    subprocess.run(["git", "init", "-q", str(cli.cwd)], check=True)
    root = cli.cwd.resolve()
    user = codex_file(cli)
    user.parent.mkdir()
    # Codex reads a project's .codex/config.toml only in a project marked trusted.
    user.write_text(f'[projects."{root}"]\ntrust_level = "trusted"\n')
    result = cli("install", "codex", "--scope", "project", "--trust-hooks")
    assert result.exit_code == 0, result.output
    project = root / ".codex" / "config.toml"
    assert "state" not in tomllib.loads(project.read_text()).get("hooks", {})
    states = tomllib.loads(user.read_text())["hooks"]["state"]
    assert all(key.startswith(f"{project}:") for key in states)
    listed = codex_hooks_list(cli.home, root)
    ours = [h for h in listed if " hook " in (h["command"] or "")]
    assert len(ours) == 5 and {h["trustStatus"] for h in ours} == {"trusted"}, ours


# -- what the real clients make of it ---------------------------------------------------------


def test_claude_code_connects_to_the_installed_entry(cli: Cli, sqlite_url: str) -> None:
    claude = client_bin("claude")
    assert cli("install", "claude", PEERS_URL=sqlite_url).exit_code == 0
    out = run_client([str(claude), "mcp", "list"], cli.home, cli.cwd)
    assert re.search(r"peers: .*peers serve.*Connected", out), out


def test_codex_lists_the_installed_entry(cli: Cli, sqlite_url: str) -> None:
    codex = client_bin("codex")
    assert cli("install", "codex", PEERS_URL=sqlite_url).exit_code == 0
    out = run_client([str(codex), "mcp", "list"], cli.home, cli.cwd)
    assert re.search(r"^peers\s+\S*peers\s+serve\s+.*enabled", out, re.M), out


def test_gemini_connects_to_the_installed_entry(cli: Cli, sqlite_url: str) -> None:
    gemini = client_bin("gemini")
    assert cli("install", "gemini", PEERS_URL=sqlite_url).exit_code == 0
    # Gemini suppresses every server in a folder the user has not trusted.
    (cli.home / ".gemini" / "trustedFolders.json").write_text(
        json.dumps({str(cli.cwd): "TRUST_FOLDER"})
    )
    out = run_client([str(gemini), "mcp", "list"], cli.home, cli.cwd)
    assert re.search(r"peers: .*peers serve.*Connected", out), out
