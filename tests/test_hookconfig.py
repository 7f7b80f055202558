"""Recognising peers' hook commands, and the Codex trust identity of a hook."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from peers import clients
from peers.hookconfig import (
    codex_hook_hash,
    codex_key,
    hook_command,
    is_peers_hook,
    our_groups,
    plan_hooks,
)


@pytest.mark.parametrize(
    ("command", "ours"),
    [
        ("/home/me/.local/bin/peers hook PostToolUse --client claude", True),
        ("'/Users/me/My Tools/peers' hook AfterTool --client gemini", True),
        ("/usr/bin/python3 -m peers hook Stop --client codex", True),
        ("peers hook SessionStart", True),
        ("/home/me/.local/bin/peers serve", False),
        ("/usr/local/bin/notify-me --quiet", False),
        ("echo peers hook", False),
        ("my-peers-hook", False),
        ("'unterminated", False),
        (None, False),
        (3, False),
    ],
)
def test_our_hooks_are_told_by_their_command(command: object, ours: bool) -> None:
    assert is_peers_hook(command) is ours


def test_a_script_path_with_spaces_is_quoted_and_still_ours() -> None:
    command = hook_command(["/Users/me/My Tools/peers"], "claude", "PostToolUse")
    assert shlex.split(command) == [
        "/Users/me/My Tools/peers",
        "hook",
        "PostToolUse",
        "--client",
        "claude",
    ]
    assert is_peers_hook(command)


def test_the_codex_hash_ignores_matchers_codex_ignores() -> None:
    handler = {"type": "command", "command": "p", "timeout": 5}
    # Codex drops the matcher of UserPromptSubmit and Stop before hashing.
    assert codex_hook_hash("Stop", "x", handler) == codex_hook_hash("Stop", None, handler)
    assert codex_hook_hash("PostToolUse", "*", handler) != codex_hook_hash(
        "PostToolUse", None, handler
    )
    # Its default time limit, 600 s, is part of the identity.
    assert codex_hook_hash("Stop", None, {"type": "command", "command": "p"}) == codex_hook_hash(
        "Stop", None, {**handler, "timeout": 600}
    )


def test_codex_keys_canonicalise_the_directory_not_the_file(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    key = codex_key(link / "config.toml", ("PostToolUse", 1, 0))
    assert key == f"{real.resolve()}/config.toml:post_tool_use:1:0"


def test_planning_twice_changes_nothing_the_second_time() -> None:
    from peers.configfile import apply_plain

    codex = clients.by_name("codex")
    assert codex is not None and codex.hooks is not None
    wanted = our_groups(codex, ["/bin/peers"])
    first = plan_hooks({}, codex.hooks, Path("/c.toml"), wanted)
    doc = apply_plain({}, first.ops)
    second = plan_hooks(doc, codex.hooks, Path("/c.toml"), wanted)
    assert second.ops == [] and second.moves == {} and second.dropped == set()
    assert len(second.ours) == 5
