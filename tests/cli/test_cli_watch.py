"""`peers watch --once` and the board behind it: real sessions in a real store, drawn as text.

The sessions are registered and the mail sent through the service on a
separate transport (another process's view of the store), on SQLite and on
the test redis-server; the board is read back with the command itself, or with
:func:`peers.board.load_board` where a test needs a fixed clock or size.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli_helpers import Cli, arun

from peers.board import Board, BoardClaim, BoardFilter, find_conflicts, load_board, paths_overlap
from peers.board_view import KEYS_HELP, Status, frame, plain
from peers.models import Peer, PushState, ReceiveMode, Scope
from peers.service import PeersService, Sender
from peers.watch import Watcher

WEBAPP = {"git_remote": "github.com/acme/webapp", "git_root": "/src/webapp"}
DOCS = {"git_remote": "github.com/acme/docs", "git_root": "/src/docs"}


def register(cli: Cli, **fields: Any) -> Peer:
    """A live session of this test process, stored as `peers serve` stores one."""
    return cli.register(**fields)


def send(cli: Cli, sender: Peer | None, target: str, body: str) -> str:
    async def go(t: Any) -> str:
        service = PeersService(t, cli.settings())
        who = Sender.of(sender) if sender is not None else Sender.cli("tester")
        return (await service.send(who, target, body)).message.id

    return cli.with_transport(go)


def read(cli: Cli, peer: Peer) -> None:
    cli.with_transport(lambda t: PeersService(t, cli.settings()).check_messages(peer.id))


def three_sessions(cli: Cli) -> tuple[Peer, Peer, Peer]:
    """alice and bob change types/auth.ts in one repository; carol too, but in another."""
    alice = register(
        cli,
        name="alice",
        client="claude-code",
        push=PushState.CONFIRMED,
        branch="main",
        summary="rewriting types/auth.ts; hold off",
        files=("types/auth.ts", "src/api.py"),
        **WEBAPP,
    )
    bob = register(
        cli,
        name="bob",
        client="codex",
        receive_mode=ReceiveMode.POLL,
        hooks_at=time.time(),
        branch="feature/validation",
        summary="add validation to users/route.ts",
        files=("users/route.ts", "types/auth.ts"),
        **WEBAPP,
    )
    carol = register(
        cli,
        name="carol",
        client="gemini",
        receive_mode=ReceiveMode.POLL,
        push=PushState.UNCONFIRMED,
        branch="docs",
        files=("types/auth.ts",),
        **DOCS,
    )
    send(cli, alice, "bob", "I'm rewriting types/auth.ts, hold off\nuntil I say so")
    send(cli, bob, "alice", "ok, waiting")
    read(cli, alice)
    send(cli, None, "carol", "please update the README")
    return alice, bob, carol


_CLOCK = re.compile(r"\b\d\d:\d\d:\d\d\b")
_AGE = re.compile(r"(?<= )(now|\d+[smhd])$", re.MULTILINE)


def normalised(text: str) -> str:
    """Clock times and ages vary from run to run; the rest of a frame does not."""
    return _AGE.sub("AGE", _CLOCK.sub("HH:MM:SS", text))


SNAPSHOT_100 = """\
peers watch  namespace NS  URL (cut to fit)                                                  HH:MM:SS

SESSIONS  3 live, 2 unread
# NAME  CLIENT VIA   REPO:BRANCH       SUMMARY                          FILES          UNREAD ACTIVE
1 carol gemini push? docs:docs         -                                types/auth.ts       1    AGE
2 alice claude push  webapp:main       rewriting types/auth.ts; hold o… types/auth.ts…      -    AGE
3 bob   codex  hooks webapp:feature/v… add validation to users/route.ts users/route.t…      1    AGE

MESSAGES  newest first
HH:MM:SS cli:tester -> carol waiting   please update the README
HH:MM:SS bob -> alice        delivered ok, waiting
HH:MM:SS alice -> bob        waiting   I'm rewriting types/auth.ts, hold off

CONFLICTS  1
types/auth.ts (webapp): alice changing, bob changing
"""


def test_once_prints_sessions_messages_and_conflicts(any_cli: Cli, namespace: str) -> None:
    three_sessions(any_cli)
    result = any_cli("watch", "--once", COLUMNS="100")
    assert result.exit_code == 0, result.output
    text = normalised(result.output)
    url = any_cli.env["PEERS_URL"]
    header, rest = text.split("\n", 1)
    # The store's URL is cut to what fits beside the clock.
    assert header.startswith(f"peers watch  namespace {namespace}  {url[:30]}")
    assert header.endswith("HH:MM:SS") and len(header) <= 100
    assert rest == SNAPSHOT_100.split("\n", 1)[1]
    assert "\x1b" not in result.output  # plain text: no colours, no cursor movement


def test_once_fits_the_width_it_is_given(cli: Cli) -> None:
    three_sessions(cli)
    narrow = cli("watch", "--once", COLUMNS="60")
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.output.splitlines()
    assert max(len(line) for line in lines) <= 60
    # The optional columns give way first; the name, summary and unread count stay.
    head = next(line for line in lines if line.startswith("# NAME"))
    assert "CLIENT" not in head and "SUMMARY" in head and "UNREAD" in head
    assert any(line.startswith("types/auth.ts (webapp): alice changing") for line in lines)

    wide = cli("watch", "--once", COLUMNS="200")
    assert "rewriting types/auth.ts; hold off" in wide.output
    assert "types/auth.ts +1" in wide.output and "webapp:feature/validation" in wide.output
    assert max(len(line) for line in wide.output.splitlines()) <= 200


def test_once_filters_by_repository(cli: Cli) -> None:
    three_sessions(cli)
    result = cli("watch", "--once", "--repo", "webapp", COLUMNS="100")
    assert result.exit_code == 0, result.output
    assert "filter: repo webapp" in result.output
    rows = _session_names(result.output)
    assert rows == ["alice", "bob"]
    # Only the mail that touches a session on the board.
    assert "please update the README" not in result.output
    assert "alice -> bob" in result.output

    by_remote = cli("watch", "--once", "--repo", "github.com/acme/docs", COLUMNS="100")
    assert _session_names(by_remote.output) == ["carol"]
    nothing = cli("watch", "--once", "--repo", "elsewhere", COLUMNS="100")
    assert "no live sessions match the filter" in nothing.output


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_once_scope_repo_is_judged_from_this_directory(cli: Cli) -> None:
    three_sessions(cli)
    git(cli.cwd, "init", "-q", "-b", "main")
    git(cli.cwd, "remote", "add", "origin", "git@github.com:Acme/webapp.git")
    result = cli("watch", "--once", "--scope", "repo", COLUMNS="100")
    assert result.exit_code == 0, result.output
    assert _session_names(result.output) == ["alice", "bob"]
    assert "filter: scope repo" in result.output


def test_scope_errors_come_before_the_screen_changes(cli: Cli) -> None:
    outside = cli("watch", "--once", "--scope", "repo")
    assert outside.exit_code == 2
    assert "needs a git repository" in outside.output
    unknown = cli("watch", "--once", "--scope", "galaxy")
    assert unknown.exit_code == 2 and "unknown scope 'galaxy'" in unknown.output


def test_live_board_needs_a_terminal(cli: Cli) -> None:
    result = cli("watch")
    assert result.exit_code == 2
    assert "needs a terminal" in result.output and "--once" in result.output


def _session_names(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# NAME")) + 1
    names = []
    for line in lines[start:]:
        if not line.strip():
            break
        names.append(line.split()[1])
    return names


# -- the frame at a fixed size ------------------------------------------------------------


def board_of(cli: Cli, flt: BoardFilter | None = None, **kwargs: Any) -> Board:
    """The board as `peers watch` reads it, from another transport on the store."""
    return cli.with_transport(
        lambda t: load_board(PeersService(t, cli.settings()), flt or BoardFilter(), **kwargs)
    )


def test_a_full_store_fits_80x24_with_the_keys_on_the_last_line(cli: Cli) -> None:
    peers = [
        register(
            cli,
            name=f"s{i:02d}",
            summary=f"task {i} " * 8,
            files=(f"f{i}.py", "shared.py"),
            **WEBAPP,
        )
        for i in range(14)
    ]
    for i in range(30):
        send(cli, peers[i % 14], peers[(i + 1) % 14].name or "", f"message {i} " * 10)
    board = board_of(cli)
    assert len(board.sessions) == 14 and len(board.messages) == 30
    status = Status(backend="sqlite", keys=True)
    lines = frame(board, status, width=80, height=24)
    assert len(lines) == 24
    assert all(line.cell_len <= 80 for line in lines)
    text = [line.plain for line in lines]
    assert text[-1] == KEYS_HELP
    assert any(t.startswith("... ") and "more" in t for t in text)  # the sessions that do not fit
    assert any(t.startswith("shared.py (webapp): s00 changing") for t in text)
    # A taller, wider terminal shows more of everything.
    big = [line.plain for line in frame(board, status, width=160, height=60)]
    assert len(big) == 60 and sum(t.startswith(("s0", " s", "1 s")) for t in big) >= 1
    assert sum("message" in t for t in big) > sum("message" in t for t in text)
    # Very small screens still get a header, and never more lines or cells than they have.
    small = frame(board, status, width=40, height=10)
    assert len(small) == 10 and all(line.cell_len <= 40 for line in small)
    down = Status(backend="redis://x", keys=True, connected=False, error="refused " * 30)
    lines = frame(board, down, width=80, height=24)
    assert len(lines) == 24 and all(line.cell_len <= 80 for line in lines)
    assert lines[0].plain.split()[-2:-1] == ["UNAVAILABLE"]
    assert lines[1].plain.startswith("retrying: refused refused")


def test_claims_slot_in_as_a_column_and_as_conflicts(cli: Cli) -> None:
    alice = register(cli, name="alice", files=("src/app.py",), **WEBAPP)
    bob = register(cli, name="bob", **WEBAPP)

    class Claims:
        async def claims(self, service: PeersService) -> Sequence[BoardClaim]:
            return [
                BoardClaim(bob.id, "src/*.py", exclusive=True, reason="refactor"),
                BoardClaim(alice.id, "docs/", exclusive=False),
            ]

    without = board_of(cli)
    assert not without.claims_available and without.conflicts == ()
    assert "CLAIMS" not in plain(frame(without, width=120))
    board = board_of(cli, claims=Claims())
    assert board.claims_available
    text = plain(frame(board, width=120))
    assert "CLAIMS" in text and "src/*.py" in text and "docs/ (shared)" in text
    assert "src/app.py (webapp): bob claims exclusively, alice changing" in text


def test_conflict_rules() -> None:
    assert paths_overlap("src/a.py", "src/a.py")
    assert paths_overlap("src", "src/a.py") and paths_overlap("src/", "src/deep/a.py")
    assert paths_overlap("src/*.py", "src/a.py") and paths_overlap("*.md", "README.md")
    assert not paths_overlap("src/a.py", "src/b.py") and not paths_overlap("src", "srcx/a.py")


def test_worktrees_of_one_repository_conflict_and_other_repositories_do_not(cli: Cli) -> None:
    local = {"git_root": "/src/app", "git_common_dir": "/src/app/.git"}
    register(cli, name="main", files=("a.py",), **local)
    register(
        cli,
        name="feature",
        files=("a.py",),
        git_root="/src/app-feature",
        git_common_dir="/src/app/.git",
    )
    register(
        cli, name="other", files=("a.py",), git_root="/src/other", git_common_dir="/src/other/.git"
    )
    board = board_of(cli)
    assert [(c.path, sorted(h.label for h in c.holders)) for c in board.conflicts] == [
        ("a.py", ["feature", "main"])
    ]
    assert find_conflicts(board.sessions[:1]) == ()


# -- keys, on a board read from the store ---------------------------------------------------


def test_keys_pick_one_session_pause_and_quit(cli: Cli) -> None:
    _, bob, carol = three_sessions(cli)

    async def go() -> None:
        from peers.transports import create_transport

        watcher = Watcher(cli.settings(), BoardFilter())
        async with create_transport(cli.settings()) as t:
            service = PeersService(t, cli.settings())
            await watcher._reload(service)
            order = [r.peer.name for r in watcher.board.sessions]  # type: ignore[union-attr]
            assert order == ["carol", "alice", "bob"]
            watcher.on_keys(b"3")
            assert watcher.selected == bob.id
            await watcher._reload(service)
            board = watcher.board
            assert board is not None and board.selected == bob.id
            assert {m.message.body.split()[0] for m in board.messages} == {"I'm", "ok,"}
            assert "MESSAGES  of bob (0: all)" in plain(frame(board, width=100))
            watcher.on_keys(b"\t")  # the next one, wrapping around
            assert watcher.selected == carol.id
            watcher.on_keys(b"\x1b[Z")  # shift-tab: back
            assert watcher.selected == bob.id
            watcher.on_keys(b"3")  # the same number again: everyone
            assert watcher.selected is None
            watcher.on_keys(b"2")
            watcher.on_keys(b"0")
            assert watcher.selected is None
            watcher.on_keys(b"p")
            assert watcher.paused and "PAUSED" in plain(frame(watcher.board, watcher.status()))
            watcher.on_keys(b" ")
            assert not watcher.paused
            watcher.on_keys(b"q")
            assert watcher._stop.is_set()

    arun(go())


def test_a_session_that_leaves_loses_its_selection(cli: Cli) -> None:
    _, bob, _ = three_sessions(cli)

    async def go() -> None:
        from peers.transports import create_transport

        watcher = Watcher(cli.settings(), BoardFilter(scope=Scope.ALL))
        async with create_transport(cli.settings()) as t:
            service = PeersService(t, cli.settings())
            await watcher._reload(service)
            watcher.on_keys(b"3")
            assert watcher.selected == bob.id
            await t.unregister(bob.id)
            await watcher._reload(service)
            assert watcher.selected is None
            assert [r.peer.name for r in watcher.board.sessions] == ["carol", "alice"]  # type: ignore[union-attr]

    arun(go())
