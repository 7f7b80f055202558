"""Helpers for the install and uninstall tests: file reads, hook lookups, the real clients."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

# Where .ci/run installs the real clients (CLIENTS.md); read before a test moves HOME.
CLIENTS_DIR = Path(os.environ.get("PEERS_CLIENTS_DIR") or Path.home() / ".cache" / "peers-clients")
EVENTS = {
    "claude": ["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop"],
    "codex": ["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop"],
    "gemini": ["SessionStart", "BeforeAgent", "BeforeTool", "AfterTool", "AfterAgent"],
}
# client: (MCP entry file, hooks file), relative to HOME (user scope) or the repo (project).
USER_FILES = {
    "claude": (".claude.json", ".claude/settings.json"),
    "codex": (".codex/config.toml", ".codex/config.toml"),
    "gemini": (".gemini/settings.json", ".gemini/settings.json"),
    "cursor": (".cursor/mcp.json", None),
}
PROJECT_FILES = {
    "claude": (".mcp.json", ".claude/settings.json"),
    "codex": (".codex/config.toml", ".codex/config.toml"),
    "gemini": (".gemini/settings.json", ".gemini/settings.json"),
    "cursor": (".cursor/mcp.json", None),
}


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.peers-backup-*"))


def read(path: Path) -> Any:
    text = path.read_text()
    return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)


def hooks_of(path: Path) -> dict[str, Any]:
    hooks: dict[str, Any] = read(path).get("hooks", {})
    return hooks


def our_commands(path: Path) -> dict[str, list[str]]:
    """Event -> commands of peers' hooks in a settings file."""
    found: dict[str, list[str]] = {}
    for event, groups in hooks_of(path).items():
        if not isinstance(groups, list):
            continue
        for group in groups:
            for handler in group.get("hooks", []):
                if " hook " in handler.get("command", "") and "peers" in handler["command"]:
                    found.setdefault(event, []).append(handler["command"])
    return found


def client_bin(name: str) -> Path:
    """A real client's command, or skip the test saying why."""
    path = CLIENTS_DIR / "node_modules" / ".bin" / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"the real {name} CLI is not installed (looked in {path.parent} and PATH)")
        path = Path(found)
    return path


def client_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CODEX_HOME": str(home / ".codex"),
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "NO_COLOR": "1",
    }
    env.update(extra)
    return env


def run_client(argv: list[str], home: Path, cwd: Path, **extra: str) -> str:
    out = subprocess.run(
        argv,
        cwd=cwd,
        env=client_env(home, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return out.stdout + out.stderr


def codex_hooks_list(home: Path, cwd: Path) -> list[dict[str, Any]]:
    """What the real Codex makes of the hooks: its app-server's hooks/list."""
    codex = client_bin("codex")
    proc = subprocess.Popen(
        [str(codex), "app-server"],
        cwd=cwd,
        env=client_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    # A bound on the wait: a stuck app-server is killed, which ends the read below.
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        requests = [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"clientInfo": {"name": "peers-tests", "version": "0"}}},
            {"jsonrpc": "2.0", "method": "initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "hooks/list", "params": {"cwds": [str(cwd)]}},
        ]  # fmt: skip
        for request in requests:
            proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        for line in proc.stdout:
            message = json.loads(line)
            if message.get("id") == 2:
                assert "result" in message, message
                hooks: list[dict[str, Any]] = []
                for entry in message["result"]["data"]:
                    hooks.extend(entry["hooks"])
                return hooks
        raise AssertionError("codex app-server closed without answering hooks/list")
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(timeout=10)
