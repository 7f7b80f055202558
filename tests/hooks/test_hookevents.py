"""The hook events' meaning per client: event names, edited paths, output shapes, the size bound."""

from __future__ import annotations

import json

import pytest

from peers.clients import HookEvent as Event
from peers.hookevents import (
    STOP_REASON,
    Outcome,
    canonical_event,
    edited_paths,
    fit_to_budget,
    render_outcome,
)


@pytest.mark.parametrize(
    "client, name, event",
    [
        ("claude", "SessionStart", Event.SESSION_START),
        ("claude", "UserPromptSubmit", Event.USER_PROMPT_SUBMIT),
        ("claude", "PreToolUse", Event.PRE_TOOL_USE),
        ("codex", "PostToolUse", Event.POST_TOOL_USE),
        ("codex", "Stop", Event.STOP),
        ("gemini", "BeforeAgent", Event.USER_PROMPT_SUBMIT),
        ("gemini", "BeforeTool", Event.PRE_TOOL_USE),
        ("gemini", "AfterTool", Event.POST_TOOL_USE),
        ("gemini", "AfterAgent", Event.STOP),
        ("gemini", "SessionStart", Event.SESSION_START),
        (None, "AfterTool", Event.POST_TOOL_USE),
        (None, "Stop", Event.STOP),
        ("gemini", "PreCompress", None),
        ("gemini", "PostToolUse", None),
        ("claude", "AfterTool", None),
        ("claude", "Notification", None),
    ],
)
def test_event_names(client: str | None, name: str, event: Event | None) -> None:
    assert canonical_event(client, name) is event


def test_claude_and_gemini_edit_paths_relative_to_the_repository() -> None:
    root = "/work/repo"
    assert edited_paths({"file_path": "/work/repo/src/api.py", "old_string": "a"}, root, root) == [
        "src/api.py"
    ]
    assert edited_paths({"notebook_path": "/work/repo/nb/a.ipynb"}, root, root) == ["nb/a.ipynb"]
    # Relative paths are taken from the working directory.
    assert edited_paths({"file_path": "lib/x.ts", "content": "..."}, "/work/repo/web", root) == [
        "web/lib/x.ts"
    ]
    # Outside the repository: absolute.
    assert edited_paths({"file_path": "/etc/hosts"}, root, root) == ["/etc/hosts"]
    assert edited_paths({"file_path": "/tmp/x"}, "/tmp", None) == ["/tmp/x"]


def test_codex_apply_patch_paths() -> None:
    patch = (
        "*** Begin Patch\n"
        "*** Update File: src/api.py\n"
        "@@\n-old\n+new\n"
        "*** Add File: src/new.py\n+x = 1\n"
        "*** Delete File: src/gone.py\n"
        "*** Update File: src/old_name.py\n"
        "*** Move to: src/new_name.py\n"
        "*** End Patch\n"
    )
    expected = ["src/api.py", "src/new.py", "src/gone.py", "src/old_name.py", "src/new_name.py"]
    root = "/work/repo"
    assert edited_paths({"input": patch}, root, root) == expected
    assert edited_paths({"command": ["apply_patch", patch]}, root, root) == expected
    assert edited_paths(patch, root, root) == expected
    # A line merely mentioning a marker in the middle does not count.
    assert edited_paths({"input": "see *** Update File: x"}, root, root) == []


def test_nothing_to_read_is_no_paths() -> None:
    assert edited_paths(None, "/w", "/w") == []
    assert edited_paths({"file_path": "  "}, "/w", "/w") == []
    assert edited_paths({"file_path": 3}, "/w", "/w") == []


def test_context_shapes() -> None:
    out, err, code = render_outcome("claude", Event.POST_TOOL_USE, "PostToolUse", Outcome(context="2 new"))
    assert json.loads(out) == {
        "hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": "2 new"}
    }
    assert (err, code) == ("", 0)
    out, _, _ = render_outcome("gemini", Event.USER_PROMPT_SUBMIT, "BeforeAgent", Outcome(context="hi"))
    assert json.loads(out)["hookSpecificOutput"] == {
        "hookEventName": "BeforeAgent",
        "additionalContext": "hi",
    }
    assert render_outcome("codex", Event.POST_TOOL_USE, "PostToolUse", Outcome()) == ("", "", 0)


def test_stop_and_deny_shapes() -> None:
    out, _, code = render_outcome("claude", Event.STOP, "Stop", Outcome(block_stop="read mail"))
    # Claude Code shows a reason twice, a hook's context once: the mail goes in the context.
    assert json.loads(out) == {
        "decision": "block",
        "reason": STOP_REASON,
        "hookSpecificOutput": {"hookEventName": "Stop", "additionalContext": "read mail"},
    }
    assert code == 0
    out, _, _ = render_outcome("codex", Event.STOP, "Stop", Outcome(block_stop="read mail"))
    assert json.loads(out) == {"decision": "block", "reason": "read mail"}
    out, _, _ = render_outcome("gemini", Event.STOP, "AfterAgent", Outcome(block_stop="read mail"))
    assert json.loads(out) == {"decision": "deny", "reason": "read mail"}
    assert render_outcome("claude", Event.PRE_TOOL_USE, "PreToolUse", Outcome(deny_tool="held")) == (
        "",
        "held",
        2,
    )
    assert render_outcome("codex", Event.PRE_TOOL_USE, "PreToolUse", Outcome(deny_tool="held"))[2] == 2
    out, _, code = render_outcome("gemini", Event.PRE_TOOL_USE, "BeforeTool", Outcome(deny_tool="held"))
    assert json.loads(out) == {"decision": "deny", "reason": "held"} and code == 0


def test_budget_keeps_the_newest_whole() -> None:
    blocks = [f"message {i}: " + "x" * 900 for i in range(10)]
    text, shown = fit_to_budget(
        "10 new messages:", blocks, lambda n: f"{n} older: call check_messages", 4096
    )
    assert len(text.encode()) <= 4096
    assert shown == 4
    assert all(block in text for block in blocks[-4:])
    assert blocks[5] not in text
    assert text.endswith("6 older: call check_messages")


def test_budget_everything_fits() -> None:
    text, shown = fit_to_budget("2 new messages:", ["a", "b"], lambda n: f"{n} more")
    assert (text, shown) == ("2 new messages:\n\na\n\nb", 2)


def test_budget_one_huge_message_is_cut_and_not_shown() -> None:
    huge = "y" * 20_000
    text, shown = fit_to_budget(
        "1 new message:", [huge], lambda n: f"{n} not shown whole: call check_messages"
    )
    assert shown == 0
    assert len(text.encode()) <= 4096
    assert text.endswith("1 not shown whole: call check_messages")
    assert "[...]" in text


# -- what the relay keeps of a big tool input ------------------------------------------

BIG = "x = 1\n" * 200_000  # 1.2 MB of file content
LONG_PATCH = (
    "*** Begin Patch\n*** Update File: src/api.py\n@@\n" + "+line\n" * 100_000
    + "*** Add File: src/new.py\n+x\n*** Move to: src/moved.py\n*** End Patch\n"
)  # fmt: skip


@pytest.mark.parametrize(
    "tool_input",
    [
        {"file_path": "/work/repo/a.py", "content": BIG},  # Claude Write
        {"file_path": "a.py", "old_string": BIG, "new_string": BIG},  # Edit
        {"file_path": "a.py", "edits": [{"old_string": BIG, "new_string": "y"}]},  # MultiEdit
        {"notebook_path": "nb.ipynb", "new_source": BIG},
        {"input": LONG_PATCH},  # Codex apply_patch
        {"command": ["apply_patch", LONG_PATCH]},
        LONG_PATCH,
        {"input": "see *** Update File: x\n" + BIG},  # a marker mid-line counts for nothing
        {"file_path": "/work/repo/" + "d/" * 3000 + "f.py"},  # a long path stays whole
        {"content": "*** Update File: written.py\n" + BIG},  # marker lines in content count
        {"file_path": "a.py", "content": "short"},
    ],
)
def test_the_relay_keeps_of_a_tool_input_all_the_server_reads(tool_input: object) -> None:
    from peers import hook

    shrunk = hook._shrink(tool_input)
    root = "/work/repo"
    assert edited_paths(shrunk, root, root) == edited_paths(tool_input, root, root)
    assert len(json.dumps(shrunk)) < 30_000


def test_the_relay_reads_patches_as_the_server_does() -> None:
    # peers.hook keeps its own copies (it cannot import this module on its fast path).
    from peers import hook, hookevents

    assert hook._PATCH_MARKERS == hookevents._PATCH_MARKERS
    assert hook._PATH_KEYS == hookevents._PATH_KEYS
