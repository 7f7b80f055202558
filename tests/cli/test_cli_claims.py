"""`peers claims`, `peers release` and the watch board's claims, on real stores."""

from __future__ import annotations

import json
from typing import Any

from cli_helpers import Cli

from peers import claimrules
from peers.claiming import Claims
from peers.models import ClaimRequest, Peer

WEBAPP = {"git_remote": "github.com/acme/webapp", "git_root": "/src/webapp"}
DOCS = {"git_remote": "github.com/acme/docs", "git_root": "/src/docs"}


def claim(cli: Cli, peer: Peer, *paths: str, exclusive: bool = True, reason: str = "") -> None:
    repo = claimrules.repo_key(peer)
    assert repo is not None
    request = ClaimRequest(
        holder_id=peer.id, repo=repo, paths=paths, exclusive=exclusive, reason=reason
    )

    async def go(t: Any) -> None:
        assert (await t.claim(request)).granted

    cli.with_transport(go)


def test_claims_lists_every_live_claim_and_filters_by_repo(any_cli: Cli) -> None:
    alice = any_cli.register(name="alice", **WEBAPP)
    bob = any_cli.register(name="bob", **DOCS)
    claim(any_cli, alice, "src/api.py", reason="rewriting the API")
    claim(any_cli, bob, "guide/**", exclusive=False)
    table = any_cli("claims", COLUMNS="160")
    assert table.exit_code == 0, table.output
    assert "src/api.py" in table.output and "alice" in table.output
    assert "rewriting the API" in table.output and "exclusive" in table.output
    assert "guide/**" in table.output and "shared" in table.output
    only = json.loads(any_cli("claims", "--repo", "webapp", "--json").output)
    assert [(c["path"], c["holder_name"], c["exclusive"]) for c in only["claims"]] == [
        ("src/api.py", "alice", True)
    ]
    assert "No file claims in nowhere" in any_cli("claims", "--repo", "nowhere").output


def test_release_ends_a_sessions_claims_by_name_even_after_it_left(any_cli: Cli) -> None:
    alice = any_cli.register(name="alice", **WEBAPP)
    claim(any_cli, alice, "src/api.py", "src/db.py", "docs")
    done = any_cli("release", "alice", "src/api.py")
    assert done.exit_code == 0 and "released alice" in done.output and "src/api.py" in done.output
    remaining = json.loads(any_cli("claims", "--json").output)["claims"]
    assert sorted(c["path"] for c in remaining) == ["docs", "src/db.py"]
    any_cli.with_transport(lambda t: t.unregister(alice.id))
    # Offline, named: its claims wait for a successor; the human can still end them.
    gone = json.loads(any_cli("release", "alice", "--json").output)
    assert sorted(c["path"] for c in gone["released"]) == ["docs", "src/db.py"]
    assert "holds no claims" in any_cli("release", "alice").output
    unknown = any_cli("release", "nobody")
    assert unknown.exit_code != 0 and "nobody" in unknown.output


def test_the_watch_board_shows_the_stores_claims_and_their_conflicts(any_cli: Cli) -> None:
    alice = any_cli.register(name="alice", files=("src/app.py",), **WEBAPP)
    bob = any_cli.register(name="bob", **WEBAPP)
    empty = any_cli("watch", "--once", COLUMNS="140")
    assert "CLAIMS" not in empty.output
    claim(any_cli, bob, "src/*.py", reason="refactor")
    shown = any_cli("watch", "--once", COLUMNS="140")
    assert shown.exit_code == 0, shown.output
    assert "CLAIMS" in shown.output and "src/*.py" in shown.output
    assert "src/app.py (webapp): bob claims exclusively, alice changing" in shown.output
    assert alice.id


def test_service_paths_are_relative_to_the_repository_root() -> None:
    me = Peer(id="p", namespace="n", host="h", pid=1, cwd="/r/sub", git_root="/r",
              git_common_dir="/r/.git")  # fmt: skip
    assert Claims.paths(me, ["/r/src/a.py", "src/b.py", "./docs/", "src/b.py"]) == (
        "src/a.py", "src/b.py", "docs",
    )  # fmt: skip
