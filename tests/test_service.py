"""The service layer's rules, on every transport: validation, scopes, names, broadcast, limits."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from peers.config import load_settings
from peers.errors import (
    AmbiguousTarget,
    InvalidInput,
    MessageNotFound,
    NotPermitted,
    PeerNotFound,
    RateLimited,
)
from peers.gitinfo import GitContext
from peers.models import Peer, PeerFilter, Scope, SenderKind
from peers.procinfo import process_start_time
from peers.service import PeersService, Sender, clean_text
from peers.session import default_summary
from peers.transports.base import Transport

pytestmark = pytest.mark.anyio


@pytest.fixture
def service(transport: Transport) -> PeersService:
    settings = load_settings(
        url="sqlite:///unused.db", namespace=transport.namespace, host=socket.gethostname(),
        rate_limit=20,
    )
    return PeersService(transport, settings)


@pytest.fixture
def new(service: PeersService) -> Callable[..., Any]:
    async def make(name: str | None = None, **fields: Any) -> Peer:
        defaults: dict[str, Any] = {"cwd": "/work/app", "pid": os.getpid(),
                                    "pid_start": process_start_time(os.getpid())}
        host = fields.pop("host", None)
        defaults.update(fields)
        peer = service.new_peer(name=name, **defaults)
        if host is not None:
            peer = peer.model_copy(update={"host": host})
        return await service.register(peer)

    return make


def test_clean_text_keeps_newlines_and_tabs_only() -> None:
    assert clean_text("a\tb\nc\x00d\x1b[31me\x7f\r\u202efg") == "a\tb\ncd[31mefg"


INVISIBLE_RANGES = [
    pytest.param(range(0x200B, 0x2010), id="zero-width-and-marks-200B-200F"),
    pytest.param(range(0x2060, 0x2065), id="word-joiner-and-invisible-operators-2060-2064"),
    pytest.param([0xFEFF], id="zero-width-no-break-space-FEFF"),
    pytest.param(range(0x2066, 0x206A), id="bidi-isolates-2066-2069"),
    pytest.param(range(0x202A, 0x202F), id="bidi-embeddings-and-overrides-202A-202E"),
    pytest.param(range(0xE0000, 0xE0080), id="tag-characters-E0000-E007F"),
    pytest.param(range(0x80, 0xA0), id="c1-controls-80-9F"),
]


@pytest.mark.parametrize("codes", INVISIBLE_RANGES)
def test_clean_text_strips_every_invisible_character(codes: range | list[int]) -> None:
    hidden = "".join(chr(code) for code in codes)
    assert clean_text(f"a{hidden}b") == "ab"


def test_clean_text_keeps_visible_neighbours_of_the_ranges() -> None:
    # The characters just outside each range are ordinary text.
    kept = "\u200a\u2010\u2065\u206a\u202f\U000e0080\u00a0é😀"
    assert clean_text(kept) == kept


@pytest.mark.parametrize("codes", INVISIBLE_RANGES)
async def test_invisible_characters_are_stripped_everywhere_text_is_stored(
    service: PeersService, new: Callable[..., Any], codes: range | list[int]
) -> None:
    hidden = "".join(chr(code) for code in codes)
    a, b = await new("a"), await new("b")
    await service.send(Sender.of(a), b.id, f"he{hidden}llo")
    assert [m.body for m in await service.pending(b.id)] == ["hello"]
    assert (await service.set_summary(a.id, f"pars{hidden}ing")).summary == "parsing"
    assert (await service.set_name(a.id, f"ne{hidden}w")).name == "new"
    assert (await service.set_activity(a.id, [f"src/{hidden}x.py"])).files == ("src/x.py",)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", "empty"),
        ("  \n\t ", "empty"),
        ("\x00\x01", "empty"),
        (42, "must be text"),
        ("x" * (32 * 1024 + 1), "limit is 32,768 bytes"),
        ("é" * (16 * 1024 + 1), "limit is 32,768 bytes"),  # bytes, not characters
    ],
)
async def test_bad_bodies_are_refused(
    service: PeersService, new: Callable[..., Any], body: object, expected: str
) -> None:
    a, b = await new("a"), await new("b")
    with pytest.raises(InvalidInput, match=expected):
        await service.send(Sender.of(a), b.id, body)
    assert await service.pending(b.id) == []


@pytest.mark.parametrize("name", ["", "A", "-x", "x y", "a" * 65, "ünï", "a/b", 7])
async def test_bad_names_are_refused(service: PeersService, new: Callable[..., Any],
                                     name: object) -> None:
    a = await new()
    with pytest.raises(InvalidInput, match="a name is 1-64 characters"):
        await service.set_name(a.id, name)


@pytest.mark.parametrize("name", ["cli-abc123", "cli-"])
async def test_names_of_command_line_senders_are_reserved(
    service: PeersService, new: Callable[..., Any], name: str
) -> None:
    a = await new()
    with pytest.raises(InvalidInput, match="reserved for command-line senders") as err:
        await service.set_name(a.id, name)
    assert err.value.hint and "cli-" in err.value.hint


def test_peers_name_of_a_command_line_sender_is_refused() -> None:
    from peers.errors import ConfigError

    with pytest.raises(ConfigError, match="reserved for command-line senders"):
        load_settings(name="cli-abc123")
    assert load_settings(name="client-a").name == "client-a"  # only the cli- prefix


async def test_errors_say_what_is_allowed_and_what_to_do(
    service: PeersService, new: Callable[..., Any]
) -> None:
    a = await new("a")
    with pytest.raises(InvalidInput) as scope:
        await service.list_peers("galaxy", a)
    assert scope.value.allowed == ["machine", "directory", "repo", "all"]
    with pytest.raises(PeerNotFound) as unknown:
        await service.send(Sender.of(a), "nobody", "hi")
    assert unknown.value.hint and "list_peers" in unknown.value.hint
    await new("backend")
    await new("backup")
    with pytest.raises(AmbiguousTarget) as ambiguous:
        await service.send(Sender.of(a), "back", "hi")
    assert ambiguous.value.allowed is not None and len(ambiguous.value.allowed) == 2
    with pytest.raises(MessageNotFound) as reply:
        await service.send(Sender.of(a), "backend", "hi", reply_to="01nosuch")
    assert reply.value.hint and "message_id" in reply.value.hint


async def test_an_identical_send_moments_later_is_a_repeat_not_a_second_copy(
    service: PeersService, new: Callable[..., Any]
) -> None:
    a, b = Sender.of(await new("a")), await new("b")
    first = await service.send(a, b.id, "the build is red")
    again = await service.send(a, "b", "the build is red")
    assert again.repeat and not first.repeat
    assert again.message.id == first.message.id
    assert again.message.sent_at == first.message.sent_at
    assert again.message.body == "the build is red" and again.recipient.id == b.id
    assert again.delivery == first.delivery
    assert "not sent again" in again.summary
    # The same text as a reply, or to another peer, is another message.
    c = await new("c")
    assert not (await service.send(a, c.id, "the build is red")).repeat
    reply = await service.send(a, b.id, "the build is red", reply_to=first.message.id)
    assert not reply.repeat
    assert (await service.send(a, b.id, "the build is red", reply_to=first.message.id)).repeat
    await service.ack(b.id, [reply.message.id])  # delivered since: still a repeat
    assert (await service.send(a, b.id, "the build is red", reply_to=first.message.id)).repeat
    different = await service.send(a, b.id, "the build is green")
    assert not different.repeat
    assert [m.body for m in await service.pending(b.id)] == [
        "the build is red",
        "the build is green",
    ]


async def test_only_the_latest_sends_are_kept_for_repeats(
    service: PeersService, new: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from peers import service as service_module

    monkeypatch.setattr(service_module, "_REPEATS_KEPT", 3)
    a, b = Sender.of(await new("a")), await new("b")
    for i in range(5):
        await service.send(a, b.id, f"n{i}")
    assert not (await service.send(a, b.id, "n0")).repeat  # forgotten: sent again
    assert (await service.send(a, b.id, "n4")).repeat
    assert len([m for m in await service.pending(b.id) if m.body == "n0"]) == 2


async def test_a_cancelled_send_lands_once_and_its_retry_is_a_repeat(
    tmp_path: Any, namespace: str
) -> None:
    import sqlite3

    import anyio
    import anyio.lowlevel

    from peers.transports import create_transport

    settings = load_settings(url=f"sqlite:///{tmp_path}/c.db", namespace=namespace,
                             host=socket.gethostname())  # fmt: skip
    async with create_transport(settings) as transport:
        service = PeersService(transport, settings)
        make = {"cwd": "/w", "pid": os.getpid(), "pid_start": process_start_time(os.getpid())}
        a = Sender.of(await service.register(service.new_peer(name="a", **make)))
        b = await service.register(service.new_peer(name="b", **make))
        # Another process holds the write lock: the send waits in its store write.
        blocker = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        scope = anyio.CancelScope()

        async def agent() -> None:
            with scope:
                await service.send(a, b.id, "once")

        async def give_up_then_unlock() -> None:
            scope.cancel()  # the agent gives up waiting (its call is cancelled)
            await anyio.lowlevel.checkpoint()
            blocker.execute("ROLLBACK")

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(agent)
                # Most likely in its store write by then; earlier, it must not land at all.
                await anyio.sleep(0.2)
                tg.start_soon(give_up_then_unlock)
        finally:
            blocker.close()
        assert scope.cancel_called
        landed = [m.body for m in await service.pending(b.id)]
        assert landed in ([], ["once"])
        # The agent retries: never a second copy.
        retry = await service.send(a, b.id, "once")
        assert retry.repeat is (landed == ["once"])
        assert [m.body for m in await service.pending(b.id)] == ["once"]


async def test_summary_limit_and_cleaning(service: PeersService, new: Callable[..., Any]) -> None:
    a = await new()
    with pytest.raises(InvalidInput, match="limit is 1,024 bytes"):
        await service.set_summary(a.id, "y" * 1025)
    peer = await service.set_summary(a.id, "  fixing\x07 the parser  ")
    assert peer.summary == "fixing the parser"


async def test_unknown_scope_lists_the_allowed_ones(service: PeersService,
                                                    new: Callable[..., Any]) -> None:
    a = await new()
    with pytest.raises(InvalidInput, match="machine, directory, repo, all"):
        await service.list_peers("galaxy", a)


async def test_scopes(service: PeersService, new: Callable[..., Any]) -> None:
    me = await new("me", cwd="/r/app", git_common_dir="/r/app/.git", git_root="/r/app")
    worktree = await new("wt", cwd="/r/app-wt", git_common_dir="/r/app/.git", git_root="/r/app-wt")
    same_dir = await new("dir", cwd="/r/app", git_common_dir="/r/app/.git", git_root="/r/app")
    remote = await new("remote", cwd="/x", git_remote="github.com/o/app", host="other-host")
    other = await new("other", cwd="/else", host="other-host")
    me = me.model_copy(update={"git_remote": "github.com/o/app"})

    def names(peers: list[Peer]) -> list[str]:
        return sorted(p.name or "" for p in peers)

    assert names(await service.list_peers("directory", me)) == ["dir"]
    assert names(await service.list_peers("repo", me)) == ["dir", "remote", "wt"]
    assert names(await service.list_peers("machine", me)) == ["dir", "wt"]
    assert names(await service.list_peers("all", me)) == ["dir", "other", "remote", "wt"]
    assert {worktree.id, same_dir.id, remote.id, other.id}  # all registered
    outside = await new("plain", cwd="/tmp/x")
    with pytest.raises(InvalidInput, match="needs a git repository"):
        await service.list_peers("repo", outside)


async def test_resolution_by_id_name_and_prefix(service: PeersService,
                                                new: Callable[..., Any]) -> None:
    a = await new("frontend")
    b = await new("backend")
    c = await new("backup")
    me = Sender.of(await new("me"))
    assert (await service.send(me, a.id, "x")).recipient.id == a.id
    assert (await service.send(me, "frontend", "x")).recipient.id == a.id
    assert (await service.send(me, "FRONT", "x")).recipient.id == a.id  # names are lowercase
    assert (await service.send(me, "backe", "x")).recipient.id == b.id
    with pytest.raises(AmbiguousTarget) as err:
        await service.send(me, "back", "x")
    assert "backend" in str(err.value) and "backup" in str(err.value)
    assert c.id
    with pytest.raises(PeerNotFound, match="no peer 'zzz'"):
        await service.send(me, "zzz", "x")
    with pytest.raises(PeerNotFound, match="command-line sender"):
        await service.send(me, "cli-abc", "x")
    with pytest.raises(InvalidInput, match="your own id"):
        await service.send(me, "me", "x")


async def test_offline_named_peer_queues_and_unnamed_is_refused(
    service: PeersService, new: Callable[..., Any]
) -> None:
    me = Sender.of(await new("me"))
    named = await new("named")
    anon = await new()
    await service.unregister(named.id)
    await service.unregister(anon.id)
    result = await service.send(me, "named", "wait for me")
    assert result.delivery == "queued"
    with pytest.raises(PeerNotFound):
        await service.send(me, anon.id, "nobody will read this")


async def test_successor_takes_mail_sent_to_the_old_id_and_cannot_mail_itself(
    service: PeersService, new: Callable[..., Any]
) -> None:
    me = Sender.of(await new("me"))
    old = await new("worker")
    await service.unregister(old.id)
    successor = await new("worker")
    result = await service.send(me, old.id, "to the old id")
    assert result.recipient.id == successor.id
    assert [m.body for m in await service.pending(successor.id)] == ["to the old id"]
    with pytest.raises(InvalidInput, match="your own id"):
        await service.send(Sender.of(successor), old.id, "to myself")


async def test_reply_to_must_be_a_message_of_the_sender(service: PeersService,
                                                        new: Callable[..., Any]) -> None:
    a, b, c = Sender.of(await new("a")), Sender.of(await new("b")), Sender.of(await new("c"))
    first = await service.send(a, "b", "question")
    reply = await service.send(b, "a", "answer", reply_to=first.message.id)
    assert reply.message.reply_to == first.message.id
    with pytest.raises(MessageNotFound, match="not a message id"):
        await service.send(b, "a", "answer", reply_to="01nosuchmessageid000000000")
    with pytest.raises(InvalidInput, match="not a message you sent or received"):
        await service.send(c, "a", "butting in", reply_to=first.message.id)


async def test_broadcast_reaches_every_live_peer_but_the_sender(
    service: PeersService, new: Callable[..., Any]
) -> None:
    a = await new("a")
    b = await new("b")
    c = await new("c")
    gone = await new("gone")
    await service.unregister(gone.id)
    result = await service.broadcast(Sender.of(a), "freeze", "all")
    assert sorted(r.recipient.name or "" for r in result.results) == ["b", "c"]
    assert all(r.message.broadcast for r in result.results)
    assert [m.body for m in await service.pending(b.id)] == ["freeze"]
    assert [m.body for m in await service.pending(c.id)] == ["freeze"]
    assert await service.pending(a.id) == []


async def test_broadcast_skips_a_peer_that_left_after_being_listed(
    service: PeersService, new: Callable[..., Any], transport: Transport
) -> None:
    a = await new("a")
    leaver = await new()  # anonymous and without mail: removed when it leaves
    c = await new("c")
    real_list = transport.list_peers

    async def list_then_leave(flt: PeerFilter | None = None) -> list[Peer]:
        peers = await real_list(flt)
        await transport.unregister(leaver.id)
        return peers

    transport.list_peers = list_then_leave  # type: ignore[method-assign]
    result = await service.broadcast(Sender.of(a), "still reaches c", "all")
    assert [r.recipient.id for r in result.results] == [c.id]
    assert [m.body for m in await service.pending(c.id)] == ["still reaches c"]


async def test_rate_limit_stops_a_loop_with_a_clear_error(service: PeersService,
                                                          new: Callable[..., Any]) -> None:
    a, b = Sender.of(await new("a")), await new("b")
    for i in range(20):
        await service.send(a, b.id, f"m{i}")
    with pytest.raises(RateLimited, match="at most 20 messages a minute"):
        await service.send(a, b.id, "one too many")
    assert len(await service.pending(b.id)) == 20
    # A broadcast counts one message per recipient.
    c = Sender.of(await new("c"))
    for _ in range(3):
        await new()
    await service.broadcast(c, "x", "all")
    with pytest.raises(RateLimited):
        for _ in range(5):
            await service.broadcast(c, "x", "all")


async def test_cli_sender_is_marked_and_not_replyable(service: PeersService,
                                                      new: Callable[..., Any]) -> None:
    b = await new("b")
    sent = await service.send(Sender.cli(), "b", "from the terminal")
    assert sent.message.sender_kind is SenderKind.CLI
    with pytest.raises(PeerNotFound, match="command-line sender"):
        await service.send(Sender.of(b), sent.message.sender_id, "reply")


async def test_kill_refuses_other_hosts_and_oneself(service: PeersService,
                                                    new: Callable[..., Any]) -> None:
    me = await new("me")
    remote = await new("remote", host="other-host")
    with pytest.raises(NotPermitted, match="other-host"):
        await service.kill_peer("remote", requester=me)
    with pytest.raises(NotPermitted, match="your own session"):
        await service.kill_peer("me", requester=me)
    assert remote.id


def test_default_summary_always_fits_the_limit() -> None:
    long = tuple("d" * 240 + f"/file{i}.py" for i in range(8))
    git = GitContext(root="/r/app", common_dir="/r/app/.git", branch="main", changed_files=long)
    text = default_summary(git, "/r/app", limit=1024)
    assert len(text.encode()) <= 1024 and "changing" in text
    tiny = default_summary(git, "/r/app", limit=40)
    assert len(tiny.encode()) <= 40
    short = GitContext(root="/r/app", branch="main", changed_files=("a.py",))
    assert default_summary(short, "/r/app") == "app @ main: changing a.py"


async def test_default_summary_is_accepted_by_the_service(service: PeersService) -> None:
    git = GitContext(root="/r/app", branch="main",
                     changed_files=tuple("x" * 400 + str(i) for i in range(5)))
    summary = default_summary(git, "/r/app", service.settings.max_summary_bytes)
    peer = service.new_peer(cwd="/r/app", pid=os.getpid(), pid_start=None, summary=summary)
    assert peer.summary == summary


def test_scope_enum_values() -> None:
    assert [s.value for s in Scope] == ["machine", "directory", "repo", "all"]


def test_the_rate_window_counts_exactly_and_keeps_an_entry_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from peers import service as service_module

    clock = [1000.0]
    monkeypatch.setattr(service_module.time, "monotonic", lambda: clock[0])
    limiter = service_module._RateLimiter(5)

    def send_at(t: float) -> None:
        clock[0] = 1000.0 + t
        limiter.check("a")

    for t in (0.0, 0.5, 1.5, 30.0, 59.0):
        send_at(t)
    with pytest.raises(RateLimited):
        send_at(59.9)
    # The sends at 0 and 0.5 share an entry timed 0.5: both leave the window at 60.5.
    with pytest.raises(RateLimited):
        send_at(60.4)
    send_at(60.6)
    send_at(60.7)
    with pytest.raises(RateLimited):
        send_at(60.8)
    # However fast one sends, the window keeps an entry a second, not a float a send.
    fast = service_module._RateLimiter(10**9)
    for i in range(10_000):
        clock[0] = 2000.0 + i * 0.005
        fast.check("b")
    assert fast._sent["b"].total == 10_000
    assert len(fast._sent["b"].entries) <= 51
