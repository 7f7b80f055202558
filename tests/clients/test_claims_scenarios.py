"""Issue 11 "Done when" with the real Claude Code and Codex: the edit guard.

Session A (alice, a ``peers serve`` of its own) claims ``src/api.py``. Session B, the
real CLI configured by ``peers install`` (MCP entry and hooks), edits it with its own
edit tool: refused, alice named in the tool result, the file unchanged. B's edit of
another file goes through and shows up as B's claim in alice's ``list_peers``. Once
alice has left, B's edit of ``src/api.py`` goes through.

Written against the behaviour the issue asks for; they fail on the code they were
written on (the report lists which, and why).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from client_drivers import Driver, Store
from clients_common import result_of
from fake_model import Call, FakeModel, ModelRequest, Say
from peer_session import PeerSession

pytestmark = pytest.mark.scenarios

CLAIMED = "src/api.py"
OTHER = "src/other.py"
ORIGINAL = "VERSION = 1\n"


@pytest.fixture
def repo(work_dir: Path) -> Path:
    (work_dir / "src").mkdir()
    (work_dir / CLAIMED).write_text(ORIGINAL)
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "."],
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "init"],
    ):
        subprocess.run(argv, cwd=work_dir, check=True, capture_output=True)
    return work_dir


def _edit_claimed(client: str, repo: Path) -> list[Call]:
    """The client's own calls that change VERSION in the claimed file."""
    if client == "claude":
        path = str(repo / CLAIMED)
        return [
            Call("Read", {"file_path": path}),  # Claude Code edits only files it has read
            Call(
                "Edit",
                {"file_path": path, "old_string": "VERSION = 1", "new_string": "VERSION = 2"},
            ),
        ]
    patch = f"*** Begin Patch\n*** Update File: {CLAIMED}\n@@\n-VERSION = 1\n+VERSION = 2\n*** End Patch\n"
    return [Call("apply_patch", {"input": patch})]


def _write_other(client: str, repo: Path) -> Call:
    if client == "claude":
        return Call("Write", {"file_path": str(repo / OTHER), "content": "OTHER = 1\n"})
    patch = f"*** Begin Patch\n*** Add File: {OTHER}\n+OTHER = 1\n*** End Patch\n"
    return Call("apply_patch", {"input": patch})


def _edit_tool(client: str) -> str:
    return "Edit" if client == "claude" else "apply_patch"


def _driver(
    make_driver: Callable[..., Driver], client: str, repo: Path
) -> tuple[Driver, list[str]]:
    driver = make_driver(client, entry="install", cwd=repo)
    if client == "codex":
        driver.overrides["model"] = "gpt-5.5"  # a model whose tools include apply_patch
        return driver, ["--dangerously-bypass-hook-trust"]
    return driver, ["--permission-mode", "acceptEdits"]


@pytest.mark.parametrize("client", ["claude", "codex"])
def test_an_edit_of_a_file_another_session_claimed_is_refused_until_it_leaves(
    client: str,
    make_driver: Callable[..., Driver],
    fake_model: FakeModel,
    store: Store,
    repo: Path,
    tmp_path: Path,
) -> None:
    driver, args = _driver(make_driver, client, repo)
    seen: dict[str, Any] = {}
    with PeerSession(store.env, name="alice", cwd=repo, errlog=tmp_path / "alice.log") as alice:
        alice.call_ok("claim_files", paths=[CLAIMED], exclusive=True, reason="rewriting the API")

        def after_refusal(request: ModelRequest) -> Call:
            seen["refusal"] = result_of(request, _edit_tool(client))
            return _write_other(client, repo)

        def after_other(request: ModelRequest) -> Say:
            peers = alice.call_ok("list_peers", scope="repo")["peers"]
            seen["alice_sees"] = [p for p in peers if p["id"] != alice.id]
            return Say("done")

        fake_model.play(*_edit_claimed(client, repo), after_refusal, after_other)
        run = driver.run("Bump VERSION in src/api.py, then add src/other.py.", *args)

        refusal = seen["refusal"]
        assert "alice" in refusal.payload, f"the refusal does not name the holder: {refusal.text}"
        assert (repo / CLAIMED).read_text() == ORIGINAL, "the claimed file was changed"
        assert (repo / OTHER).exists(), run.describe()
        (bob,) = seen["alice_sees"]
        assert OTHER in json.dumps(bob.get("claims", [])), (
            f"B's claim missing from alice's view: {bob}"
        )

    # alice has left: her claim ended with her.
    fake_model.play(*_edit_claimed(client, repo), Say("done"))
    run = driver.run("Bump VERSION in src/api.py.", *args)
    assert (repo / CLAIMED).read_text() == "VERSION = 2\n", run.describe()
