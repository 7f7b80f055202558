"""How the tier configures each client's peers MCP entry: the one place for it.

Two ways, chosen per driver:

- ``"tier"`` (the default): the entry ``peers install CLIENT`` writes today
  (mirrors ``peers/install.py``: ``desired_entry`` and the user-scope files),
  built here without running the product's installer, plus :data:`TIER_EXTRAS`,
  the few settings the baseline tests need on today's code;
- ``"install"``: run the real ``peers install CLIENT`` in the temporary HOME,
  exactly as a user would, and add nothing. Scenario tests that check what
  ``peers install`` writes (Gemini's trust) use it. Setting
  ``PEERS_CLIENTS_ENTRY=install`` makes it the default for every test, which
  is how the tier switches over once the installer writes hooks and trust.

Extra server environment (``PEERS_NAME`` for a stable name, timings) goes into
the entry's ``env`` either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "TIER_EXTRAS",
    "EntryMode",
    "add_server_env",
    "default_entry_mode",
    "install_with_peers",
    "peers_command",
    "tier_entry",
    "toml_table",
    "toml_value",
]

EntryMode = Literal["tier", "install"]

SERVER_NAME = "peers"
# What `peers install` copies from the installing shell into the entry.
CARRIED_ENV = ("PEERS_URL", "PEERS_NAMESPACE")

# Settings the tier adds to today's entry so that the baseline tests measure
# the peers tools and not a client's gate. Each one is what a scenario test
# (written against the issues) checks the product no longer needs.
TIER_EXTRAS: dict[str, dict[str, Any]] = {
    # codex exec does not wait for MCP servers: a server slower than ~1.3 s to answer
    # initialize is missing from the whole first turn. It does wait for a required one.
    # (issue 9 §4; tests/clients/test_codex_scenarios.py checks the entry without it.)
    "codex": {"required": True},
    # gemini -p silently drops the tools of an untrusted server (issue 9 §3;
    # test_gemini_scenarios.py checks what `peers install gemini` writes).
    "gemini": {"trust": True},
}


def default_entry_mode() -> EntryMode:
    return "install" if os.environ.get("PEERS_CLIENTS_ENTRY") == "install" else "tier"


def peers_command() -> tuple[str, list[str]]:
    """This checkout's ``peers serve``, without uv: the venv's script, else ``python -m peers``."""
    script = Path(sys.executable).parent / "peers"
    if script.is_file() and os.access(script, os.X_OK):
        return str(script), ["serve"]
    return sys.executable, ["-m", "peers", "serve"]


def tier_entry(
    client: str, server_env: Mapping[str, str], *, extras: bool = True
) -> dict[str, Any]:
    """The peers entry as ``peers install CLIENT`` writes it today, plus the tier's extras."""
    command, args = peers_command()
    entry: dict[str, Any] = {"type": "stdio"} if client == "claude" else {}
    entry.update({"command": command, "args": args, "env": dict(server_env)})
    if client == "codex" and not entry["env"]:
        del entry["env"]  # `peers install` omits an empty env for Codex
    if extras:
        entry.update(TIER_EXTRAS.get(client, {}))
    return entry


def install_with_peers(
    client: str, home: Path, cwd: Path, server_env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run this checkout's ``peers install CLIENT`` for the user scope of ``home``."""
    command, args = peers_command()
    argv = [command, *args[:-1], "install", client]  # args end with "serve"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(home / ".codex"),
        "LANG": "C.UTF-8",
        **{k: v for k, v in server_env.items() if k in CARRIED_ENV},
    }
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(
            f"peers install {client} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done


def add_server_env(client: str, home: Path, env: Mapping[str, str]) -> None:
    """Add environment variables to an installed JSON entry (Claude Code, Gemini CLI)."""
    path = home / (".claude.json" if client == "claude" else ".gemini/settings.json")
    doc = json.loads(path.read_text())
    entry = doc["mcpServers"][SERVER_NAME]
    entry["env"] = {**entry.get("env", {}), **env}
    path.write_text(json.dumps(doc, indent=2) + "\n")


# -- a little TOML, for Codex's config.toml --------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"no TOML for {type(value).__name__}")


def toml_table(header: str, values: Mapping[str, Any]) -> str:
    lines = [f"[{header}]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """A value as TOML, for Codex's ``-c key=value`` overrides."""
    return _toml_value(value)
