"""File claims end to end: the tools and the edit guard of real ``peers serve`` sessions in a
real git repository, with real ``peers hook`` processes, on SQLite and Redis."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_serve_hooks import context_of, hook, poll_session, silent, until

from peers.mcpclient import PeerClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(autouse=True)
def repo(tmp_path: Path) -> Path:
    """The sessions' directory (tmp_path) as a git repository with one commit."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "api.py").write_text("VERSION = 1\n")
    (tmp_path / "README.md").write_text("app\n")
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "src", "README.md"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "init"],
    ):
        subprocess.run(argv, cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def edit(path: Path) -> dict[str, Any]:
    return {"tool_name": "Edit", "tool_input": {"file_path": str(path), "old_string": "1",
            "new_string": "2"}}  # fmt: skip


async def test_claim_files_grants_refuses_with_the_holder_and_releases(
    session: Callable[..., PeerClient],
) -> None:
    async with poll_session(session, "alice") as alice, poll_session(session, "bob") as bob:
        await alice.wait_registered()
        await bob.wait_registered()
        await alice.call_ok("set_summary", summary="rewriting the API layer")
        got = await alice.call_ok(
            "claim_files", paths=["src/api.py", "docs/"], reason="rewriting the API", ttl=900
        )
        assert [g["path"] for g in got["granted"]] == ["src/api.py", "docs"]
        assert "src/api.py" in got["note"]

        refused = await bob.call_ok("claim_files", paths=["src/*.py", "lib/x.py"])
        assert [g["path"] for g in refused["granted"]] == ["lib/x.py"]
        (conflict,) = refused["refused"]
        assert conflict["path"] == "src/*.py" and conflict["holder_name"] == "alice"
        assert conflict["holder_summary"] == "rewriting the API layer"
        assert conflict["reason"] == "rewriting the API"
        assert conflict["ask_with"]["to_id"] == "alice"
        assert "send_message" in conflict["note"] and "alice" in refused["note"]

        peers = (await bob.call_ok("list_peers", scope="repo"))["peers"]
        (seen,) = [p for p in peers if p["name"] == "alice"]
        assert sorted(c["path"] for c in seen["claims"]) == ["docs", "src/api.py"]
        me = await alice.call_ok("whoami")
        assert sorted(c["path"] for c in me["claims"]) == ["docs", "src/api.py"]

        released = await alice.call_ok("release_files", paths=["docs"])
        assert released["released"] == ["docs"]
        assert [c["path"] for c in released["claims"]] == ["src/api.py"]
        assert (await alice.call_ok("release_files"))["released"] == ["src/api.py"]
        assert (await bob.call_ok("claim_files", paths=["src/api.py"]))["granted"]


async def test_bad_claims_are_explained(session: Callable[..., PeerClient]) -> None:
    async with poll_session(session, "carol") as carol:
        await carol.wait_registered()
        for args, words in (
            ({"paths": ["../outside.py"]}, "climbs out"),
            ({"paths": ["/etc/passwd"]}, "outside the repository"),
            ({"paths": ["a.py"], "ttl": 1}, "ttl"),
            ({"paths": ["a.py"], "exclusive": "maybe"}, "true or false"),
            ({"paths": []}, "empty"),
            ({"path": "a.py"}, "did you mean 'paths'"),
        ):
            result = await carol.call("claim_files", **args)
            assert result.is_error, args
            assert words in json.dumps(result.structured_content), (args, result.structured_content)


async def test_the_edit_guard_refuses_a_claimed_path_and_claims_what_it_lets_through(
    session: Callable[..., PeerClient], repo: Path
) -> None:
    async with poll_session(session, "alice") as alice, poll_session(session, "bob") as bob:
        await alice.wait_registered()
        b = await bob.wait_registered()
        await alice.call_ok("claim_files", paths=["src/api.py"], reason="rewriting the API")
        _, out, _, _ = await hook(bob, "SessionStart", {"source": "startup"})
        assert "claims src/api.py (exclusively" in context_of(out)

        code, out, err, seconds = await hook(bob, "PreToolUse", edit(repo / "src" / "api.py"))
        assert (code, out) == (2, "") and seconds < 1.0
        assert "alice" in err and "rewriting the API" in err and "send_message" in err
        assert '"to_id": "alice"' in err

        # Gemini's shape: a deny decision with the same words.
        code, out, _, _ = await hook(
            bob, "BeforeTool",
            {"tool_name": "replace", "tool_input": {"file_path": str(repo / "src" / "api.py")}},
            flavour="gemini",
        )  # fmt: skip
        assert code == 0 and json.loads(out)["decision"] == "deny"
        assert "alice" in json.loads(out)["reason"]

        # An unclaimed file: allowed, and bob's shared "editing" claim shows at once.
        assert silent(await hook(bob, "PreToolUse", edit(repo / "src" / "other.py")))
        peers = (await alice.call_ok("list_peers", scope="repo"))["peers"]
        (bob_seen,) = [p for p in peers if p["id"] == b["id"]]
        assert [(c["path"], c["exclusive"], c["auto"], c["reason"]) for c in bob_seen["claims"]] == [
            ("src/other.py", False, True, "editing")
        ]

        # alice touches bob's file: let through, warned once, with the next hook's context.
        assert silent(await hook(alice, "PreToolUse", edit(repo / "src" / "other.py")))
        _, out, _, _ = await hook(alice, "PostToolUse", edit(repo / "src" / "other.py"))
        warning = context_of(out)
        assert "bob" in warning and "src/other.py" in warning and "send_message" in warning
        assert silent(await hook(alice, "PreToolUse", edit(repo / "src" / "other.py")))
        assert silent(await hook(alice, "PostToolUse", edit(repo / "src" / "other.py")))

        # A Codex patch naming the claimed file is refused too.
        patch = "*** Begin Patch\n*** Update File: src/api.py\n@@\n-VERSION = 1\n+VERSION = 2\n*** End Patch\n"
        code, _, err, _ = await hook(
            bob, "PreToolUse", {"tool_name": "apply_patch", "tool_input": {"input": patch}},
            flavour="codex",
        )  # fmt: skip
        assert code == 2 and "alice" in err

    # alice has left: her claim ended with her (bob is a new session here).
    async with poll_session(session, "bob") as bob2:
        await bob2.wait_registered()
        assert silent(await hook(bob2, "PreToolUse", edit(repo / "src" / "api.py")))


async def test_uncommitted_changes_of_another_session_are_said_once(
    session: Callable[..., PeerClient], repo: Path
) -> None:
    (repo / "README.md").write_text("changed by dave\n")  # dave's uncommitted work
    async with poll_session(session, "dave") as dave, poll_session(session, "erin") as erin:
        d = await dave.wait_registered()
        assert "README.md" in d["files"]
        await erin.wait_registered()
        await dave.call_ok("set_summary", summary="docs overhaul")
        assert silent(await hook(erin, "PreToolUse", edit(repo / "README.md")))
        _, out, _, _ = await hook(erin, "PostToolUse", edit(repo / "README.md"))
        context = context_of(out)
        assert "dave" in context and "uncommitted changes in README.md" in context
        assert "docs overhaul" in context
        assert silent(await hook(erin, "PreToolUse", edit(repo / "README.md")))
        assert silent(await hook(erin, "PostToolUse", edit(repo / "README.md")))


@pytest.mark.parametrize("store_env", ["sqlite"], indirect=True)
async def test_the_guard_fails_open_within_a_second_when_the_store_is_locked(
    session: Callable[..., PeerClient], store_env: dict[str, str], repo: Path
) -> None:
    async with poll_session(session, "frank") as frank:
        await frank.wait_registered()
        db = sqlite3.connect(store_env["PEERS_URL"].removeprefix("sqlite:///"), isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            assert silent(await hook(frank, "PreToolUse", edit(repo / "src" / "api.py")))
        finally:
            db.execute("ROLLBACK")
            db.close()


@pytest.mark.redis_real
async def test_the_guard_fails_open_within_a_second_when_redis_is_down(
    tmp_path: Path, namespace: str, runtime_dir: str, repo: Path
) -> None:
    from support import RedisProcess, free_port

    server = RedisProcess(free_port(), tmp_path, ["--save", "", "--appendonly", "no"])
    server.start()
    env = {
        "PEERS_URL": server.url,
        "PEERS_NAMESPACE": namespace,
        "PEERS_RUNTIME_DIR": runtime_dir,
        "CLAUDE_PROJECT_DIR": str(tmp_path),
        "CLAUDE_CODE_SESSION_ID": str(uuid.uuid4()),
    }
    try:
        with open(tmp_path / "server.log", "a") as errlog:
            async with PeerClient(env, channel=False, cwd=str(tmp_path), errlog=errlog) as client:
                await client.wait_registered()
                server.pause()
                try:
                    assert silent(await hook(client, "PreToolUse", edit(repo / "src" / "api.py")))
                finally:
                    server.resume()
                server.stop()
                assert silent(await hook(client, "PreToolUse", edit(repo / "src" / "api.py")))
    finally:
        server.stop()


async def test_a_successor_session_with_the_name_keeps_the_claims(
    session: Callable[..., PeerClient], repo: Path, store: Any
) -> None:
    async with poll_session(session, "gina") as gina:
        await gina.wait_registered()
        await gina.call_ok("claim_files", paths=["src/api.py"], reason="migration")
    async with poll_session(session, "gina") as again, poll_session(session, "hal") as hal:
        await again.wait_registered()
        await hal.wait_registered()
        mine = (await again.call_ok("whoami"))["claims"]
        assert [(c["path"], c["reason"]) for c in mine] == [("src/api.py", "migration")]
        code, _, err, _ = await hook(hal, "PreToolUse", edit(repo / "src" / "api.py"))
        assert code == 2 and "gina" in err
    await until(lambda: _no_claims(store))


async def _no_claims(store: Any) -> bool:
    return not await store.list_claims()
