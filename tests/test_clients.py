"""The clients table: kinds from real clientInfo names, hook events, markers, imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from peers import clients
from peers.clients import HookEvent, ModelReads, canonical_event, client_kind, loads_channel


@pytest.mark.parametrize(
    ("info_name", "kind"),
    [
        # As each real client sends it in initialize (CLIENTS.md).
        ("claude-code", "claude-code"),
        ("codex-mcp-client", "codex"),
        ("gemini-cli-mcp-client", "gemini"),
        ("Cursor", "cursor"),
        ("peers-cli", "cli"),
        ("", "unknown"),
        (None, "unknown"),
        ("Some Other Client", "some other client"),
    ],
)
def test_client_kind_from_client_info(info_name: str | None, kind: str) -> None:
    assert client_kind(info_name) == kind


def test_every_kind_maps_back_to_its_client() -> None:
    for client in clients.CLIENTS:
        assert clients.by_kind(client.kind) is client
        assert clients.by_name(client.name) is client
        assert clients.process_marker(client.kind) == client.process_marker
    assert clients.process_marker("cli") is None
    assert clients.names() == ("claude", "codex", "cursor", "gemini")


def test_gemini_names_its_events_its_own_way() -> None:
    assert canonical_event("gemini", "AfterTool") is HookEvent.POST_TOOL_USE
    assert canonical_event("gemini", "BeforeAgent") is HookEvent.USER_PROMPT_SUBMIT
    assert canonical_event("gemini", "AfterAgent") is HookEvent.STOP
    assert canonical_event("gemini", "BeforeTool") is HookEvent.PRE_TOOL_USE
    assert canonical_event("gemini", "PostToolUse") is None
    for name in ("claude", "codex"):
        for event in HookEvent:
            assert canonical_event(name, event.value) is event
    assert canonical_event("cursor", "PostToolUse") is None
    assert canonical_event("vim", "PostToolUse") is None


def test_matchers_cover_the_edit_tools_and_only_them() -> None:
    import re

    for client in clients.CLIENTS:
        spec = client.hooks
        if spec is None:
            continue
        assert spec.matcher(HookEvent.SESSION_START) is None
        assert spec.matcher(HookEvent.STOP) is None
        assert spec.matcher(HookEvent.POST_TOOL_USE) == "*"
        pattern = re.compile(spec.edit_matcher)
        for tool in client.edit_tools:
            assert pattern.search(tool), (client.name, tool)
        assert not pattern.search("mcp_peers_whoami")
        assert not pattern.search("run_shell_command")


def test_model_reads_what_was_measured() -> None:
    assert clients.by_name("claude").model_reads is ModelReads.STRUCTURED  # type: ignore[union-attr]
    assert clients.by_name("codex").model_reads is ModelReads.STRUCTURED  # type: ignore[union-attr]
    assert clients.by_name("gemini").model_reads is ModelReads.TEXT  # type: ignore[union-attr]


def test_config_paths_follow_home_codex_home_and_the_project(tmp_path: Path) -> None:
    claude = clients.by_name("claude")
    codex = clients.by_name("codex")
    assert claude is not None and codex is not None
    assert claude.mcp_project.path(tmp_path) == tmp_path / ".mcp.json"
    assert codex.mcp_user.path(tmp_path, {"CODEX_HOME": "/x/codex"}) == Path("/x/codex/config.toml")
    assert codex.mcp_user.path(tmp_path, {}) == Path.home() / ".codex" / "config.toml"
    [(scope, local)] = claude.mcp_other
    assert scope is clients.ConfigScope.LOCAL
    assert local.table_for(tmp_path) == ("projects", str(tmp_path), "mcpServers")


def test_channel_flag_forms() -> None:
    flag = "--dangerously-load-development-channels"
    assert loads_channel(["claude", flag, "server:peers"], "peers")
    assert loads_channel(["claude", f"{flag}=server:x,server:peers"], "peers")
    assert loads_channel(["claude", "--channels", "server:a", "server:peers", "-p"], "peers")
    assert not loads_channel(["claude", flag, "server:peers-dev"], "peers")
    assert not loads_channel(["claude", flag, "-p", "server:peers"], "peers")


def test_importing_the_table_loads_nothing_heavy() -> None:
    """peers hook imports this module on every tool call: standard library only."""
    code = (
        "import json, sys; import peers.clients; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('psutil', 'pydantic', 'mcp', 'typer', 'rich', 'structlog', 'redis', 'tomlkit'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
