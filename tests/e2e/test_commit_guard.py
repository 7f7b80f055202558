"""The commit guard in a real repository with two worktrees and two live sessions.

alice's ``peers serve`` runs under a stand-in agent process of its own
(``fake_agent.py``), which also runs her ``git commit``s, as an agent's shell tool
would; bob's runs under the test runner, which runs his. Each commit goes through
the real pre-commit hook ``peers guard install`` wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import peers.mcpclient
from peers.mcpclient import PeerClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PEERS = str(Path(sys.executable).parent / "peers")
FAKE_AGENT = str(Path(__file__).with_name("fake_agent.py"))
GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *GIT_ID, *args], cwd=cwd, capture_output=True, text=True, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture
def worktrees(tmp_path: Path) -> tuple[Path, Path]:
    main, linked = tmp_path / "app", tmp_path / "app-b"
    (main / "src").mkdir(parents=True)
    for name in ("api.py", "b.py", "c.py"):
        (main / "src" / name).write_text(f"{name} = 1\n")
    assert git(main, "init", "-q", "-b", "main").returncode == 0
    git(main, "add", ".")
    assert git(main, "commit", "-qm", "init").returncode == 0
    assert git(main, "worktree", "add", "-q", "-b", "b", str(linked)).returncode == 0
    return main, linked


class Agent:
    """Runs commands as children of alice's stand-in agent process."""

    def __init__(self, control: Path) -> None:
        self.control = control

    async def run(self, cwd: Path, *argv: str, env: dict[str, str]) -> dict[str, Any]:
        tmp = self.control / "run.tmp"
        tmp.write_text(json.dumps({"argv": list(argv), "cwd": str(cwd), "env": env}))
        os.replace(tmp, self.control / "run.json")
        result = self.control / "result.json"
        with anyio.fail_after(30):
            while not result.exists():
                await anyio.sleep(0.02)
        done: dict[str, Any] = json.loads(result.read_text())
        result.unlink()
        return done


def commit(cwd: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return git(cwd, "commit", "-qm", "change", *extra, env=env)


def change(where: Path, name: str) -> None:
    (where / "src" / name).write_text(f"{name} changed {os.urandom(4).hex()}\n")
    git(where, "add", "-A")


async def test_a_commit_touching_another_sessions_claim_is_refused_in_either_worktree(
    store_env: dict[str, str],
    worktrees: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main, linked = worktrees
    env = {k: v for k, v in store_env.items() if k != "CLAUDE_PROJECT_DIR"}
    control = tmp_path / "agent"
    control.mkdir()
    errlog = open(tmp_path / "servers.log", "a")  # noqa: SIM115
    real = peers.mcpclient.serve_command

    def under_agent() -> tuple[str, list[str]]:
        command, args = real()
        return sys.executable, [FAKE_AGENT, str(control), "--", command, *args]

    installed = subprocess.run([PEERS, "guard", "install"], cwd=linked, capture_output=True, text=True)
    assert installed.returncode == 0 and "installed" in installed.stdout, installed.stderr
    # The hook lives in the common hooks directory: both worktrees run it.
    assert (main / ".git" / "hooks" / "pre-commit").exists()

    monkeypatch.setattr(peers.mcpclient, "serve_command", under_agent)
    alice = PeerClient({**env, "PEERS_NAME": "alice", "CLAUDE_PROJECT_DIR": str(main)},
                       channel=False, cwd=str(main), errlog=errlog)  # fmt: skip
    async with alice:
        monkeypatch.setattr(peers.mcpclient, "serve_command", real)
        bob = PeerClient({**env, "PEERS_NAME": "bob", "CLAUDE_PROJECT_DIR": str(linked)},
                         channel=False, cwd=str(linked), errlog=errlog)  # fmt: skip
        async with bob:
            await alice.wait_registered()
            await bob.wait_registered()
            await alice.call_ok("claim_files", paths=["src/api.py"], reason="rewriting the API")
            await bob.call_ok("claim_files", paths=["src/b.py"])
            agent = Agent(control)

            # bob (linked worktree) touches alice's file: refused, alice named, the way out said.
            change(linked, "api.py")
            refused = commit(linked, env)
            assert refused.returncode != 0
            assert "alice" in refused.stderr and "src/api.py" in refused.stderr
            assert "rewriting the API" in refused.stderr and "--no-verify" in refused.stderr
            git(linked, "reset", "-q", "--hard")

            # His own claim never blocks him; an unclaimed file neither.
            change(linked, "b.py")
            change(linked, "c.py")
            assert commit(linked, env).returncode == 0

            # A rename away from a claimed path counts as touching it.
            assert git(linked, "mv", "src/api.py", "src/api2.py").returncode == 0
            renamed = commit(linked, env)
            assert renamed.returncode != 0 and "src/api.py" in renamed.stderr
            # --no-verify is the way out.
            assert commit(linked, env, "--no-verify").returncode == 0

            # alice (main worktree, her own agent): her claim lets her through, bob's stops her.
            change(main, "api.py")
            assert (await agent.run(main, "git", *GIT_ID, "commit", "-qm", "a", env=env))["code"] == 0
            change(main, "b.py")
            done = await agent.run(main, "git", *GIT_ID, "commit", "-qm", "b", env=env)
            assert done["code"] != 0 and "bob" in done["stderr"], done

    # Both gone: nothing blocks any more.
    assert commit(main, env).returncode == 0
    errlog.close()


def test_install_chains_an_existing_hook_respects_hooks_path_and_uninstall_restores(
    worktrees: tuple[Path, Path], tmp_path: Path
) -> None:
    main, linked = worktrees
    env = {"PEERS_URL": f"sqlite:///{tmp_path}/peers.db"}
    hooks = main / ".git" / "hooks"
    mine = hooks / "pre-commit"
    mine.write_text(f"#!/bin/sh\necho ran >> {tmp_path}/theirs.log\nexit 0\n")
    mine.chmod(0o755)
    original = mine.read_text()

    def peers_cli(*args: str, cwd: Path = main) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PEERS, *args], cwd=cwd, capture_output=True, text=True,
                              env={**os.environ, **env})  # fmt: skip

    assert "runs after it" in peers_cli("guard", "install").stdout
    assert (hooks / "pre-commit.before-peers").read_text() == original
    assert "already" in peers_cli("guard", "install", cwd=linked).stdout
    change(main, "c.py")
    assert commit(main, env).returncode == 0
    assert (tmp_path / "theirs.log").read_text() == "ran\n"
    # A failing chained hook still fails the commit.
    mine_before = hooks / "pre-commit.before-peers"
    mine_before.write_text("#!/bin/sh\necho 'their hook says no' >&2\nexit 1\n")
    change(main, "c.py")
    failed = commit(main, env)
    assert failed.returncode != 0 and "their hook says no" in failed.stderr
    mine_before.write_text(original)
    assert "back in place" in peers_cli("guard", "uninstall").stdout
    assert mine.read_text() == original and not mine_before.exists()
    assert "nothing changed" in peers_cli("guard", "uninstall").stdout

    # core.hooksPath: the hook goes where git looks.
    custom = tmp_path / "hooks"
    assert git(main, "config", "core.hooksPath", str(custom)).returncode == 0
    assert str(custom) in peers_cli("guard", "install").stdout
    assert (custom / "pre-commit").exists() and mine.read_text() == original


def test_the_guard_lets_a_commit_through_when_the_store_is_unreachable(
    worktrees: tuple[Path, Path], tmp_path: Path
) -> None:
    main, _ = worktrees
    subprocess.run([PEERS, "guard", "install"], cwd=main, check=True, capture_output=True)
    from support import free_port

    env = {"PEERS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    change(main, "c.py")
    done = commit(main, env)
    assert done.returncode == 0, done.stderr
    assert "commit allowed" in done.stderr
