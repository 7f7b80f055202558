"""peers serve in git repositories: repo scope across worktrees, summaries and files from git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest

from peers.mcpclient import PeerClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "a.py").write_text("a = 1\n")
    git(path, "add", "a.py")
    git(path, "commit", "-q", "-m", "init")
    return path


async def test_repo_scope_spans_worktrees_and_summary_follows_git(
    tmp_path: Path, namespace: str
) -> None:
    main = make_repo(tmp_path / "app")
    linked = tmp_path / "app-feature"
    git(main, "worktree", "add", "-q", "-b", "feature", str(linked))
    other = make_repo(tmp_path / "elsewhere")
    (main / "a.py").write_text("a = 2\n")

    base = {
        "PEERS_URL": f"sqlite:///{tmp_path}/peers.db",
        "PEERS_NAMESPACE": namespace,
        "PEERS_FILES_REFRESH": "0.3",
    }

    def session(name: str, where: Path) -> PeerClient:
        return PeerClient({**base, "PEERS_NAME": name, "CLAUDE_PROJECT_DIR": str(where)},
                          client_name="codex-mcp-client", channel=False)

    async with (
        session("main", main) as m,
        session("feature", linked) as f,
        session("other", other) as o,
    ):
        me = await m.wait_registered()
        await f.wait_registered()
        await o.wait_registered()
        assert me["git_root"] == str(main) and me["branch"] == "main"

        repo = await m.call_ok("list_peers", scope="repo")
        assert [p["name"] for p in repo["peers"]] == ["feature"]
        assert repo["peers"][0]["branch"] == "feature"
        directory = await m.call_ok("list_peers", scope="directory")
        assert directory["peers"] == []
        everyone = await m.call_ok("list_peers", scope="all")
        assert sorted(p["name"] for p in everyone["peers"]) == ["feature", "other"]

        # Until set, the summary is derived from git: repository, branch, changed files.
        seen = next(p for p in (await f.call_ok("list_peers", scope="repo"))["peers"])
        assert seen["name"] == "main"
        assert seen["files"] == ["a.py"]
        assert "main" in seen["summary"] and "a.py" in seen["summary"]

        # The changed files are refreshed without anyone typing them.
        (main / "b.py").write_text("b = 1\n")
        with anyio.fail_after(20):
            while True:
                seen = (await f.call_ok("list_peers", scope="repo"))["peers"][0]
                if "b.py" in seen["files"]:
                    break
                await anyio.sleep(0.2)
        assert "b.py" in seen["summary"]

        # Once the agent sets a summary, git no longer overwrites it.
        await m.call_ok("set_summary", summary="fixing the parser")
        (main / "c.py").write_text("c = 1\n")
        with anyio.fail_after(20):
            while True:
                seen = (await f.call_ok("list_peers", scope="repo"))["peers"][0]
                if "c.py" in seen["files"]:
                    break
                await anyio.sleep(0.2)
        assert seen["summary"] == "fixing the parser"
