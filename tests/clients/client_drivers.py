"""Drivers for the real agent CLIs: Claude Code, Codex and Gemini CLI in print mode.

Each driver owns a temporary HOME (XDG dirs, CODEX_HOME inside it), writes the
client's settings the way CLIENTS.md says a test must (onboarding done, folder
trusted, telemetry and updates off, the fake model as the API), adds the peers
MCP entry (:mod:`client_config`), and runs one prompt with a timeout,
capturing stdout, stderr and the JSON events the client prints. The
environment is built from scratch: nothing of the developer's (API keys,
PEERS_*) reaches the client or its ``peers serve``.

The CLIs are found in ``${PEERS_CLIENTS_DIR:-~/.cache/peers-clients}``, where
``.ci/install-clients`` puts them, or through ``PEERS_CLAUDE_BIN``,
``PEERS_CODEX_BIN``, ``PEERS_GEMINI_BIN`` (a path or a name on PATH).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from client_config import (
    EntryMode,
    add_server_env,
    default_entry_mode,
    install_with_peers,
    peers_command,
    tier_entry,
    toml_table,
    toml_value,
)
from fake_model import FakeModel

__all__ = [
    "PINNED",
    "ClaudeDriver",
    "ClientBinary",
    "CodexDriver",
    "Driver",
    "GeminiDriver",
    "Run",
    "Store",
    "clients_dir",
    "find_binary",
]

# The versions CLIENTS.md was measured with; `.ci/install-clients` installs these.
PINNED = {"claude": "2.1.328", "codex": "0.169.0", "gemini": "0.61.0"}
_BIN_NAMES = {"claude": "claude", "codex": "codex", "gemini": "gemini"}
_ENV_OVERRIDE = {
    "claude": "PEERS_CLAUDE_BIN",
    "codex": "PEERS_CODEX_BIN",
    "gemini": "PEERS_GEMINI_BIN",
}


def clients_dir() -> Path:
    return Path(os.environ.get("PEERS_CLIENTS_DIR") or Path.home() / ".cache" / "peers-clients")


@dataclass(frozen=True)
class ClientBinary:
    client: str
    path: str
    version: str


_found: dict[str, ClientBinary | str] = {}


def find_binary(client: str) -> ClientBinary | str:
    """The client's CLI, checked to run (``--version``), or the reason it cannot be used."""
    if client in _found:
        return _found[client]
    override = os.environ.get(_ENV_OVERRIDE[client])
    if override:
        path = override if os.sep in override else shutil.which(override)
        where = f"{_ENV_OVERRIDE[client]}={override}"
    else:
        candidate = clients_dir() / "node_modules" / ".bin" / _BIN_NAMES[client]
        path = str(candidate) if candidate.exists() else None
        where = f"{candidate} (run .ci/install-clients, or set {_ENV_OVERRIDE[client]})"
    result: ClientBinary | str
    if not path or not os.access(path, os.X_OK):
        result = f"{client} CLI not found: {where}"
    elif shutil.which("node") is None:
        result = f"{client} CLI needs node, which is not on PATH"
    else:
        try:
            with tempfile.TemporaryDirectory(prefix="peers-version-") as home:
                done = subprocess.run(
                    [path, "--version"], capture_output=True, text=True, timeout=60,
                    env=_base_env(Path(home), path),
                )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            result = f"{client} CLI at {path} does not run: {exc}"
        else:
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip()[-300:]
                result = f"{client} CLI at {path} does not run (exit {done.returncode}): {tail}"
            else:
                words = done.stdout.split() or ["?"]
                # "2.1.328 (Claude Code)", "codex-cli 0.169.0", "0.61.0"
                version = words[0] if client == "claude" else words[-1]
                result = ClientBinary(client, path, version)
    _found[client] = result
    return result


def _base_env(home: Path, binary: str) -> dict[str, str]:
    """A clean environment: the client's own bin dir and node on PATH, a private HOME."""
    node = shutil.which("node")
    path = [os.path.dirname(binary)]
    if node:
        path.append(os.path.dirname(node))
    path += ["/usr/local/bin", "/usr/bin", "/bin"]
    return {
        "PATH": ":".join(dict.fromkeys(path)),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "TZ": "UTC",
    }


# -- the store the sessions share ------------------------------------------------------


@dataclass
class Store:
    """The test's own peers store, and the ``peers`` CLI on it (another session's view)."""

    url: str
    namespace: str
    home: Path  # HOME for the CLI commands (their state directory)

    @property
    def env(self) -> dict[str, str]:
        return {"PEERS_URL": self.url, "PEERS_NAMESPACE": self.namespace}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command, serve_args = peers_command()
        argv = [command, *serve_args[:-1], *args]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "PEERS_LOG_LEVEL": os.environ.get("PEERS_TIER_LOG_LEVEL", "warning"),
            **self.env,
        }
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(
                f"peers {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def peers(self) -> list[dict[str, Any]]:
        """Every live peer in the namespace (``peers list --json``)."""
        peers: list[dict[str, Any]] = self.json("list")["peers"]
        return peers

    def wait_peers(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The live peers once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            peers = self.peers()
            if len(peers) >= count or time.monotonic() > deadline:
                return peers
            time.sleep(0.1)

    def only_peer(self, timeout: float = 30.0) -> dict[str, Any]:
        peers = self.wait_peers(1, timeout)
        assert len(peers) == 1, f"expected one live session, found {peers}"
        return peers[0]

    def send(self, target: str, body: str) -> dict[str, Any]:
        """Send from the command line, as another session (``peers send --json``)."""
        result: dict[str, Any] = self.json("send", target, body)
        return result

    def log(self) -> list[dict[str, Any]]:
        """Message history with delivery state (``peers log --json``)."""
        messages: list[dict[str, Any]] = self.json("log")["messages"]
        return messages

    def state_of(self, message_id: str) -> str | None:
        for record in self.log():
            if record.get("id") == message_id:
                return str(record.get("state"))
        return None


# -- runs -----------------------------------------------------------------------------


@dataclass
class Run:
    client: str
    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    fake: FakeModel
    timed_out: bool = False

    def events(self) -> list[dict[str, Any]]:
        """The JSON lines the client printed (stream-json, or Codex's --json)."""
        found = []
        for line in self.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return found

    def describe(self) -> str:
        return (
            f"{self.client} exited {self.returncode} after {self.seconds:.1f}s"
            f"{' (timed out)' if self.timed_out else ''}\n"
            f"--- model requests:\n{self.fake.describe()}\n"
            f"--- stdout (tail):\n{self.stdout[-3000:]}\n--- stderr (tail):\n{self.stderr[-3000:]}"
        )

    def check(self) -> Run:
        assert not self.fake.errors, self.describe()
        assert not self.timed_out and self.returncode == 0, self.describe()
        return self


class Running:
    """A client started in the background (``Driver.start``)."""

    def __init__(self, driver: Driver, argv: list[str], proc: subprocess.Popen[str]) -> None:
        self.driver = driver
        self.argv = argv
        self.proc = proc
        self.started = time.monotonic()

    def wait(self, timeout: float | None = None) -> Run:
        limit = timeout if timeout is not None else self.driver.timeout
        timed_out = False
        try:
            out, err = self.proc.communicate(
                timeout=max(0.0, limit - (time.monotonic() - self.started))
            )
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(self.proc)
            out, err = self.proc.communicate()
        return Run(
            self.driver.client, self.argv, self.proc.returncode, out, err,
            time.monotonic() - self.started, self.driver.fake, timed_out,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            _kill_group(self.proc)
            self.proc.communicate()


def _kill_group(proc: subprocess.Popen[str]) -> None:
    # The client and its peers serve share a process group of their own.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue


# -- drivers ---------------------------------------------------------------------------------


@dataclass
class Driver:
    """One client in its own HOME, talking to ``fake`` and to the peers store ``store``."""

    binary: ClientBinary
    fake: FakeModel
    store: Store
    home: Path
    cwd: Path
    # "tier": today's entry built by the tier; "install": the real `peers install`.
    entry: EntryMode = field(default_factory=default_entry_mode)
    # Extra environment for this session's peers serve (PEERS_NAME, timings).
    server_env: dict[str, str] = field(default_factory=dict)
    # TIER_EXTRAS on the tier's entry (off: exactly today's install output).
    extras: bool = True
    timeout: float = 90.0
    running: list[Running] = field(default_factory=list)

    client: ClassVar[str] = ""
    configured: bool = False

    # -- configuration ----------------------------------------------------------------

    def configure(self) -> None:
        """Write the client's settings and the peers entry into HOME (once)."""
        if self.configured:
            return
        self.home.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._write_settings()
        env = {**self.store.env, **self.server_env}
        if self.entry == "install":
            install_with_peers(self.client, self.home, self.cwd, self.store.env)
            extra = {k: v for k, v in self.server_env.items() if k not in self.store.env}
            if extra:
                self._add_installed_env(extra)
        else:
            self._write_entry(tier_entry(self.client, env, extras=self.extras))
        self.configured = True

    def _write_settings(self) -> None:
        raise NotImplementedError

    def _write_entry(self, entry: dict[str, Any]) -> None:
        raise NotImplementedError

    def _add_installed_env(self, env: dict[str, str]) -> None:
        add_server_env(self.client, self.home, env)

    def env(self) -> dict[str, str]:
        return _base_env(self.home, self.binary.path)

    def argv(self, prompt: str, args: Sequence[str]) -> list[str]:
        raise NotImplementedError

    # -- running ----------------------------------------------------------------------

    def start(self, prompt: str, *args: str, env: Mapping[str, str] | None = None) -> Running:
        self.configure()
        argv = self.argv(prompt, args)
        proc = subprocess.Popen(
            argv, cwd=self.cwd, env={**self.env(), **(env or {})}, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        running = Running(self, argv, proc)
        self.running.append(running)
        return running

    def run(self, prompt: str, *args: str, timeout: float | None = None, check: bool = True) -> Run:
        """Run one prompt to the end; with ``check``, fail on a timeout or a non-zero exit."""
        result = self.start(prompt, *args).wait(timeout)
        return result.check() if check else result

    def stop(self) -> None:
        for running in self.running:
            running.stop()


@dataclass
class ClaudeDriver(Driver):
    """``claude -p PROMPT --output-format stream-json --verbose`` against the fake Anthropic API."""

    client = "claude"
    # Pre-approved tools (print mode denies what it would ask about).
    allowed_tools: ClassVar[str] = "mcp__peers__*"

    @property
    def config_path(self) -> Path:
        return self.home / ".claude.json"

    def _write_settings(self) -> None:
        doc = {
            "hasCompletedOnboarding": True,
            "projects": {str(self.cwd): {"hasTrustDialogAccepted": True}},
            # The interactive UI asks once about a custom API key; this answers it.
            "customApiKeyResponses": {"approved": [self.api_key[-20:]], "rejected": []},
        }
        self.config_path.write_text(json.dumps(doc, indent=2) + "\n")

    api_key: ClassVar[str] = "sk-ant-api03-peers-tier-test-key-0000000000"

    def _write_entry(self, entry: dict[str, Any]) -> None:
        doc = json.loads(self.config_path.read_text())
        doc.setdefault("mcpServers", {})["peers"] = entry
        self.config_path.write_text(json.dumps(doc, indent=2) + "\n")

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "ANTHROPIC_BASE_URL": self.fake.url,
            "ANTHROPIC_API_KEY": self.api_key,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
        }

    def argv(self, prompt: str, args: Sequence[str]) -> list[str]:
        return [
            self.binary.path, "-p", prompt, "--output-format", "stream-json", "--verbose",
            "--allowedTools", self.allowed_tools, *args,
        ]  # fmt: skip

    def transcript(self, session_id: str) -> list[dict[str, Any]]:
        """The session's transcript (``~/.claude/projects/<cwd as a slug>/<id>.jsonl``)."""
        found = sorted((self.home / ".claude" / "projects").glob(f"*/{session_id}.jsonl"))
        if not found:
            return []
        return [json.loads(line) for line in found[0].read_text().splitlines() if line.strip()]

    def mcp_log(self) -> list[dict[str, Any]]:
        """Claude Code's log of the peers server, every run in this HOME, oldest first.

        ``~/.cache/claude-cli-nodejs/<cwd slug>/mcp-logs-peers/*.jsonl``: connection
        time, tool calls and errors, the server's stderr, and how it ended.
        """
        entries: list[dict[str, Any]] = []
        logs = self.home / ".cache" / "claude-cli-nodejs"
        for path in sorted(logs.glob("*/mcp-logs-peers/*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    entries.append(json.loads(line))
        return entries


@dataclass
class CodexDriver(Driver):
    """``codex exec --skip-git-repo-check --json PROMPT`` against the fake Responses API."""

    client = "codex"
    # Approval and sandbox as a user starts it; the baseline lifts the sandbox,
    # whose approval gate on MCP tools is what issue 9 §3 fixes.
    approval: str = "never"
    sandbox: str = "danger-full-access"
    # More `-c key=value` overrides for every run.
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def codex_home(self) -> Path:
        return self.home / ".codex"

    @property
    def config_path(self) -> Path:
        return self.codex_home / "config.toml"

    def _write_settings(self) -> None:
        self.codex_home.mkdir(parents=True, exist_ok=True)
        top = {
            "model": "fake-model",
            "model_provider": "fake",
            "check_for_update_on_startup": False,
        }
        text = "".join(f"{k} = {toml_value(v)}\n" for k, v in top.items()) + "\n"
        text += toml_table(
            "model_providers.fake",
            {
                "name": "fake",
                "base_url": f"{self.fake.url}/v1",
                "wire_api": "responses",
                "env_key": "PEERS_FAKE_MODEL_KEY",
            },
        )
        text += "\n" + toml_table(f'projects."{self.cwd}"', {"trust_level": "trusted"})
        self.config_path.write_text(text)

    def _write_entry(self, entry: dict[str, Any]) -> None:
        with self.config_path.open("a") as fh:
            fh.write("\n" + toml_table("mcp_servers.peers", entry))

    def _add_installed_env(self, env: dict[str, str]) -> None:
        for key, value in env.items():
            self.overrides[f"mcp_servers.peers.env.{key}"] = value

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "CODEX_HOME": str(self.codex_home),
            "PEERS_FAKE_MODEL_KEY": "sk-fake",
        }

    def argv(self, prompt: str, args: Sequence[str]) -> list[str]:
        argv = [self.binary.path, "exec", "--skip-git-repo-check", "--json"]
        argv += ["-c", f"approval_policy={toml_value(self.approval)}", "-s", self.sandbox]
        for key, value in self.overrides.items():
            argv += ["-c", f"{key}={toml_value(value)}"]
        return [*argv, *args, prompt]


@dataclass
class GeminiDriver(Driver):
    """``gemini -p PROMPT -o stream-json`` against the fake Gemini API."""

    client = "gemini"

    @property
    def settings_path(self) -> Path:
        return self.home / ".gemini" / "settings.json"

    def _write_settings(self) -> None:
        folder = self.home / ".gemini"
        folder.mkdir(parents=True, exist_ok=True)
        doc = {
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "telemetry": {"enabled": False},
            "privacy": {"usageStatisticsEnabled": False},
            "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
        }
        self.settings_path.write_text(json.dumps(doc, indent=2) + "\n")
        trusted = {str(self.cwd): "TRUST_FOLDER"}
        (folder / "trustedFolders.json").write_text(json.dumps(trusted, indent=2) + "\n")

    def _write_entry(self, entry: dict[str, Any]) -> None:
        doc = json.loads(self.settings_path.read_text())
        doc.setdefault("mcpServers", {})["peers"] = entry
        self.settings_path.write_text(json.dumps(doc, indent=2) + "\n")

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "GOOGLE_GEMINI_BASE_URL": self.fake.url,
            "GEMINI_API_KEY": "fake-gemini-key",
        }

    def argv(self, prompt: str, args: Sequence[str]) -> list[str]:
        return [self.binary.path, "-p", prompt, "-o", "stream-json", *args]


DRIVERS: dict[str, type[Driver]] = {
    "claude": ClaudeDriver,
    "codex": CodexDriver,
    "gemini": GeminiDriver,
}
