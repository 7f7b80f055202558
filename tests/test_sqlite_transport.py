"""What only the SQLite transport promises: file modes, WAL, schema versions,
error conversion, wake-up socket placement, busy retries and many processes.

The behaviour every backend shares is in tests/contract.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from peers import constants as c
from peers import procinfo
from peers.config import load_settings
from peers.errors import BackendUnavailable, ConfigError, InvalidInput, StoreCorrupt
from peers.ids import new_message_id, new_peer_id
from peers.keys import SQLiteTables
from peers.models import DeliveryState, EventKind, HistoryQuery, Message, Peer, PeerUpdate
from peers.transports import create_transport
from peers.transports.sqlite import SQLiteTransport, parse_sqlite_url
from peers.transports.sqlite import schema as sqlite_mod
from peers.transports.sqlite.wakeup import SOCKET_PATH_MAX, wake_dir_for

pytestmark = pytest.mark.anyio

NS = "sqlite-only"


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def transport_at(path: Path, **overrides: Any) -> SQLiteTransport:
    query = overrides.pop("query", "")
    settings = load_settings(url=f"sqlite:///{path}{query}", namespace=NS, **overrides)
    transport = create_transport(settings)
    assert isinstance(transport, SQLiteTransport)
    return transport


def peer(**overrides: Any) -> Peer:
    pid = os.getpid()
    fields: dict[str, Any] = {
        "id": new_peer_id(),
        "namespace": NS,
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": procinfo.process_start_time(pid),
        "cwd": "/work",
    }
    fields.update(overrides)
    return Peer(**fields)


def message(sender: Peer, recipient: Peer, body: str = "hi") -> Message:
    return Message(
        id=new_message_id(),
        namespace=NS,
        sender_id=sender.id,
        recipient_id=recipient.id,
        body=body,
    )


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, so wake-up sockets sit next to the database."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="pq-") as tmp:
        yield Path(tmp)


@pytest.fixture
async def opened() -> AsyncIterator[Callable[..., Any]]:
    """Opens transports and closes them all at teardown."""
    transports: list[SQLiteTransport] = []

    async def open_(path: Path, **overrides: Any) -> SQLiteTransport:
        transport = transport_at(path, **overrides)
        transports.append(transport)
        await transport.connect()
        return transport

    try:
        yield open_
    finally:
        for transport in reversed(transports):
            await transport.close()


# -- files and modes ---------------------------------------------------------------


async def test_directory_file_and_sockets_are_private(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    db = short_dir / "state" / "peers" / "peers.db"
    # With no umask at all, anything not chmod-ed on purpose would be world-readable.
    old_umask = os.umask(0)
    try:
        t = await opened(db)
        a = await t.register(peer())
        await t.send(message(a, a))
    finally:
        os.umask(old_umask)
    assert mode(db.parent) == 0o700
    for suffix in ("", "-wal", "-shm"):
        assert mode(f"{db}{suffix}") == 0o600, suffix
    wake = db.parent / "wake"
    assert t._wake.path == wake
    assert mode(wake) == 0o700
    sockets = list(wake.glob("*.sock"))
    assert sockets and all(mode(s) == 0o600 for s in sockets)


async def test_existing_loose_file_is_tightened(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    db = short_dir / "peers.db"
    db.touch()
    db.chmod(0o644)
    await opened(db)
    assert mode(db) == 0o600


async def test_wal_mode_and_info(short_dir: Path, opened: Callable[..., Any]) -> None:
    db = short_dir / "peers.db"
    t = await opened(db)
    info = await t.info()
    assert info["backend"] == "sqlite"
    assert info["journal_mode"] == "wal"
    assert info["schema_version"] == str(c.SQLITE_SCHEMA_VERSION)
    assert info["path"] == str(db)
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- schema versions -------------------------------------------------------------------


def stored_version(db: Path) -> int:
    with sqlite3.connect(db) as raw:
        row = raw.execute(
            f"SELECT value FROM {SQLiteTables.META} WHERE key = 'schema_version'"
        ).fetchone()
    return int(row[0])


async def test_older_schema_is_migrated_forward(
    short_dir: Path, opened: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = short_dir / "peers.db"
    t = await opened(db)
    kept = await t.register(peer(name="kept"))
    await t.close()
    current = len(sqlite_mod.MIGRATIONS)
    assert stored_version(db) == current

    step = (
        f"ALTER TABLE {SQLiteTables.PEERS} ADD COLUMN note TEXT",
        "CREATE TABLE added_by_v2 (x INTEGER)",
    )
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", [*sqlite_mod.MIGRATIONS, step])
    t2 = await opened(db)
    assert (await t2.info())["schema_version"] == str(current + 1)
    assert stored_version(db) == current + 1
    with sqlite3.connect(db) as raw:
        columns = [r[1] for r in raw.execute(f"PRAGMA table_info({SQLiteTables.PEERS})")]
        assert "note" in columns
        assert raw.execute("SELECT count(*) FROM added_by_v2").fetchone()[0] == 0
    got = await t2.get_peer(kept.id)
    assert got is not None and got.name == "kept"


async def test_failed_migration_changes_nothing(
    short_dir: Path, opened: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = short_dir / "peers.db"
    await (await opened(db)).close()
    migrations_before = list(sqlite_mod.MIGRATIONS)
    broken = ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL")
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", [*sqlite_mod.MIGRATIONS, broken])
    with pytest.raises(StoreCorrupt):
        await opened(db)
    assert stored_version(db) == len(migrations_before)
    with sqlite3.connect(db) as raw:
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in names


async def test_newer_schema_is_refused(short_dir: Path, opened: Callable[..., Any]) -> None:
    db = short_dir / "peers.db"
    await (await opened(db)).close()
    with sqlite3.connect(db) as raw:
        raw.execute(f"UPDATE {SQLiteTables.META} SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreCorrupt) as info:
        await opened(db)
    text = str(info.value)
    assert "99" in text and "newer" in text and str(db) in text


async def test_foreign_database_is_store_corrupt(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    db = short_dir / "peers.db"
    with sqlite3.connect(db) as raw:
        raw.execute(f"CREATE TABLE {SQLiteTables.PEERS} (something_else TEXT)")
    with pytest.raises(StoreCorrupt):
        await opened(db)


# -- errors at the edge ---------------------------------------------------------------


async def test_garbage_file_names_path_and_doctor(short_dir: Path) -> None:
    db = short_dir / "peers.db"
    db.write_bytes(b"definitely not sqlite\n" * 300)
    t = transport_at(db)
    try:
        with pytest.raises(StoreCorrupt) as info:
            await t.connect()
    finally:
        await t.close()
    assert str(db) in str(info.value) and "peers doctor" in str(info.value)
    assert not isinstance(info.value.__cause__, type(None))  # chained, for debugging


async def test_unopenable_path_is_backend_unavailable_naming_it(short_dir: Path) -> None:
    blocker = short_dir / "a-file"
    blocker.write_text("not a directory")
    db = blocker / "peers.db"
    t = transport_at(db)
    try:
        with pytest.raises(BackendUnavailable) as info:
            await t.connect()
    finally:
        await t.close()
    assert str(db) in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
async def test_read_only_directory_is_backend_unavailable(short_dir: Path) -> None:
    locked = short_dir / "locked"
    locked.mkdir(mode=0o500)
    t = transport_at(locked / "peers.db")
    try:
        with pytest.raises(BackendUnavailable):
            await t.connect()
    finally:
        await t.close()
        locked.chmod(0o700)


async def test_write_lock_held_briefly_is_waited_out(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    db = short_dir / "peers.db"
    # SQLite waits only 10 ms itself: the retry loop has to carry the rest.
    t = await opened(db, query="?busy_timeout_ms=10")
    a = await t.register(peer())
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.3, holder.execute, args=("COMMIT",))
    released.start()
    try:
        started = time.monotonic()
        sent = await t.send(message(a, a))
        assert time.monotonic() - started >= 0.2  # it really waited for the lock
    finally:
        released.join()
        holder.close()
    assert [m.id for m in await t.fetch(a.id)] == [sent.id]


async def test_write_lock_held_for_good_is_backend_unavailable(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    db = short_dir / "peers.db"
    t = await opened(db, query="?busy_timeout_ms=10")  # patience: max(2 x 10 ms, 1 s)
    a = await t.register(peer())
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with anyio.fail_after(10), pytest.raises(BackendUnavailable) as info:
            await t.heartbeat(a.id)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked" in str(info.value)
    await t.heartbeat(a.id)  # and it recovers once the lock is gone


async def test_unstorable_values_are_invalid_input(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    t = await opened(short_dir / "peers.db")
    a = await t.register(peer())
    with pytest.raises(InvalidInput):
        await t.register(peer(pid=10**30))  # beyond SQLite's 64-bit integers
    with pytest.raises(InvalidInput):
        await t.send(message(a, a, "lone surrogate \udc80"))
    with pytest.raises(InvalidInput):
        await t.send(message(a, a).model_copy(update={"sent_at": float("nan")}))
    assert await t.fetch(a.id) == []
    assert [p.id for p in await t.list_peers()] == [a.id]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite://relative.db", "absolute"),
        ("sqlite:///", "absolute"),
        ("sqlite:///tmp/x.db?colour=blue", "unknown option"),
        ("sqlite:///tmp/x.db?busy_timeout_ms=soon", "whole number"),
        ("sqlite:///tmp/x.db?synchronous=maybe", "normal or full"),
    ],
)
def test_bad_urls_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sqlite_url(url)
    assert problem in str(info.value)


def test_three_and_four_slashes_name_the_same_file() -> None:
    assert parse_sqlite_url("sqlite:///tmp/x.db")[0] == Path("/tmp/x.db")
    assert str(parse_sqlite_url("sqlite:////tmp/x.db")[0]) == "/tmp/x.db"


def test_url_options_and_home() -> None:
    path, options = parse_sqlite_url("sqlite:///~/peers.db?busy_timeout_ms=500&synchronous=full")
    assert path == Path.home() / "peers.db"
    assert options == {"busy_timeout_ms": "500", "synchronous": "full"}


# -- wake-up sockets ---------------------------------------------------------------------


def test_wake_dir_is_next_to_a_short_database(short_dir: Path) -> None:
    assert wake_dir_for(short_dir / "peers.db") == short_dir / "wake"


def test_wake_dir_falls_back_to_tmp_for_a_long_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    chosen = wake_dir_for(deep / "peers.db")
    assert chosen.parent == Path("/tmp") / f"peers-{os.getuid()}"
    # The same database always maps to the same place; another one elsewhere.
    assert wake_dir_for(deep / "peers.db") == chosen
    assert wake_dir_for(deep / "other.db") != chosen
    assert len(os.fsencode(chosen / "p-0123456789abcdef.sock")) <= SOCKET_PATH_MAX


async def test_push_works_with_a_long_database_path(
    tmp_path: Path, opened: Callable[..., Any]
) -> None:
    db = tmp_path / ("d" * 60) / ("e" * 60) / "peers.db"
    receiver_side = await opened(db)
    sender_side = await opened(db)
    wake = receiver_side._wake.path
    assert wake == sender_side._wake.path and str(wake).startswith("/tmp/peers-")
    assert mode(wake) == 0o700 and mode(wake.parent) == 0o700
    b = await receiver_side.register(peer())
    a = await sender_side.register(peer())

    async with anyio.create_task_group() as tg:
        woke: list[bool] = []

        async def wait() -> None:
            woke.append(await receiver_side.wait_for_mail(b.id, timeout=30))

        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(3):
            await sender_side.send(message(a, b))
    assert woke == [True]
    await receiver_side.unregister(b.id)
    assert not receiver_side._wake.peer_path(NS, b.id).exists()


async def test_concurrent_waiters_on_one_peer_all_wake(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    t = await opened(short_dir / "peers.db")
    other = await opened(short_dir / "peers.db")
    b = await t.register(peer())
    a = await other.register(peer())
    woke: list[bool] = []

    async def wait() -> None:
        woke.append(await t.wait_for_mail(b.id, timeout=30))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            await other.send(message(a, b))
    assert woke == [True, True]


async def test_pokes_queue_while_nobody_waits(short_dir: Path, opened: Callable[..., Any]) -> None:
    t = await opened(short_dir / "peers.db")
    other = await opened(short_dir / "peers.db")
    b = await t.register(peer())
    a = await other.register(peer())
    for i in range(30):  # more than the kernel's datagram queue holds
        await other.send(message(a, b, str(i)))
    assert await t.wait_for_mail(b.id, timeout=0) is True
    # One wake-up drained them all: the next wait really sleeps.
    assert await t.wait_for_mail(b.id, timeout=0.05) is False


async def test_without_a_wake_directory_mail_still_arrives(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    db = short_dir / "peers.db"
    (short_dir / "wake").write_text("a file where the wake-up directory belongs")
    t = await opened(db)
    other = await opened(db)
    b = await t.register(peer())  # no doorbell, but no failure either
    a = await other.register(peer())
    # Nothing pending yet: the re-read fallback sleeps out the timeout (does not spin).
    started = time.monotonic()
    assert await t.wait_for_mail(b.id, timeout=0.2) is False
    assert time.monotonic() - started >= 0.15
    # A send is noticed by the next re-read, well before the 5 s safety re-check.
    sent = await other.send(message(a, b))
    started = time.monotonic()
    assert await t.wait_for_mail(b.id, timeout=5.0) is True
    assert time.monotonic() - started < 2.0
    assert [m.id for m in await t.fetch(b.id)] == [sent.id]


async def test_gc_removes_only_dead_socket_files(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    t = await opened(short_dir / "peers.db")
    live = await t.register(peer())
    dead_path = t._wake.path / "p-deadbeefdeadbeef.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(dead_path))
    dead.close()  # a crashed process: the file stays, nobody is bound
    report = await t.gc()
    assert report.wakeups_removed == 1
    assert not dead_path.exists()
    assert t._wake.peer_path(NS, live.id).exists()


async def test_closing_the_event_stream_removes_its_socket(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    t = await opened(short_dir / "peers.db")
    before = set(t._wake.path.glob("t-*.sock"))
    stream = t.events()
    [tail] = set(t._wake.path.glob("t-*.sock")) - before
    await t.register(peer())
    with anyio.fail_after(5):
        await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert not tail.exists()


async def test_message_events_are_written_only_while_someone_tails(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    db = short_dir / "peers.db"
    t = await opened(db)
    a = await t.register(peer())
    await t.send(message(a, a, "unwatched"))

    def message_events() -> int:
        with sqlite3.connect(db) as raw:
            row = raw.execute(
                f"SELECT count(*) FROM {SQLiteTables.EVENTS} WHERE kind = 'message'"
            ).fetchone()
        return int(row[0])

    assert message_events() == 0
    stream = t.events()
    try:
        sent = await t.send(message(a, a, "watched"))
        with anyio.fail_after(5):
            event = await anext(stream)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert event.data["id"] == sent.id
    assert message_events() == 1


# -- group commit ----------------------------------------------------------------------


async def test_concurrent_writes_share_transactions_but_fail_alone(short_dir: Path) -> None:
    t = transport_at(short_dir / "peers.db")
    batch_sizes: list[int] = []
    write_batch = t._write_batch

    def recording(ops: list[Any]) -> list[Any]:
        batch_sizes.append(len(ops))
        return write_batch(ops)

    t._write_batch = recording  # type: ignore[method-assign]
    async with t:
        a = await t.register(peer())
        holder = await t.register(peer(name="held"))
        jobs: list[Any] = []
        for i in range(40):
            if i % 10 == 3:
                jobs.append(t.send(message(a, peer(), f"lost {i}")))  # unknown recipient
            elif i % 10 == 7:
                jobs.append(t.register(peer(name="held")))  # NameTaken
            else:
                jobs.append(t.send(message(a, holder, f"kept {i}")))
        results = await asyncio.gather(*jobs, return_exceptions=True)

        assert max(batch_sizes) > 1  # they really were committed together
        errors = [type(r).__name__ for r in results if isinstance(r, BaseException)]
        assert errors == ["PeerNotFound", "NameTaken"] * 4
        kept = [r.body for r in results if isinstance(r, Message)]
        assert len(kept) == 32
        # Stored in the order the calls were made, nothing from the failed ones.
        assert [m.body for m in await t.fetch(holder.id)] == kept
        current = await t.get_peer_by_name("held")
        assert current is not None and current.id == holder.id
        assert len(await t.list_peers()) == 2


# -- many processes --------------------------------------------------------------------

_CHURN = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from peers import procinfo
    from peers.config import load_settings
    from peers.ids import new_message_id, new_peer_id
    from peers.models import Message, Peer, PeerUpdate
    from peers.transports import create_transport

    url, namespace, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])

    async def main() -> None:
        transport = create_transport(load_settings(url=url, namespace=namespace))
        async with transport:
            pid = os.getpid()
            me = await transport.register(Peer(
                id=new_peer_id(), namespace=namespace, name=f"churn-{pid}", host=transport.host,
                pid=pid, pid_start=procinfo.process_start_time(pid), cwd="/"))
            sent, acked = [], 0
            for i in range(rounds):
                msg = await transport.send(Message(
                    id=new_message_id(), namespace=namespace, sender_id=me.id,
                    recipient_id=me.id, body=f"{pid} {i}"))
                sent.append(msg.id)
                await transport.heartbeat(me.id)
                await transport.update_peer(me.id, PeerUpdate(summary=f"round {i}"))
                await transport.list_peers()
                batch = await transport.fetch(me.id)
                acked += await transport.ack(me.id, [m.id for m in batch])
            await transport.unregister(me.id)
            print(json.dumps({"sent": sent, "acked": acked}))

    asyncio.run(main())
    """
)


async def test_many_processes_on_a_fresh_file_never_see_locked(short_dir: Path) -> None:
    # All processes race to create the file, switch it to WAL and migrate it, then
    # write in tight loops; any sqlite3 error that escaped would fail its process.
    db = short_dir / "fresh" / "peers.db"
    url = f"sqlite:///{db}"
    count, rounds = 12, 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHURN, url, NS, str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    results = []
    try:
        with anyio.fail_after(120):
            for proc in procs:
                out, err = await anyio.to_thread.run_sync(proc.communicate)
                assert proc.returncode == 0, err
                results.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert all(r["acked"] == rounds for r in results)
    t = transport_at(db)
    async with t:
        history = await t.history(HistoryQuery(limit=10_000))
    sent = {i for r in results for i in r["sent"]}
    assert len(sent) == count * rounds
    assert {r.message.id for r in history} == sent
    assert all(r.state == DeliveryState.DELIVERED for r in history)


# -- wake-ups by re-reading (PEERS_WAKEUP=poll, or sockets refused) ------------------------


async def test_forced_polling_delivers_within_a_fraction_of_a_second(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    db = short_dir / "peers.db"
    t = await opened(db, wakeup="poll")
    assert (await t.info())["wakeup"].startswith("re-reads")
    other = await opened(db)
    b = await t.register(peer())
    a = await other.register(peer())
    assert not t._wake.peer_path(NS, b.id).exists()  # no socket bound for b
    stream = t.events()
    assert await t.wait_for_mail(b.id, timeout=0.3) is False  # nothing yet: sleeps it out
    sent = await other.send(message(a, b))
    started = time.monotonic()
    assert await t.wait_for_mail(b.id, timeout=10) is True
    assert time.monotonic() - started < 2.0  # a re-read, not the 5 s safety re-check
    assert [m.id for m in await t.fetch(b.id)] == [sent.id]
    # Mail that came while nobody waited is noticed by the next wait at once.
    second = await other.send(message(a, b, "while not waiting"))
    assert await t.wait_for_mail(b.id, timeout=0.01) is True
    assert [m.id for m in await t.fetch(b.id)] == [sent.id, second.id]
    # Events come by re-reads too.
    await other.update_peer(a.id, PeerUpdate(summary="polled"))
    with anyio.fail_after(5):
        while (event := await anext(stream)).kind is not EventKind.SUMMARY:
            pass
    assert event.data["summary"] == "polled"
    await stream.aclose()  # type: ignore[attr-defined]


async def test_polling_delivers_a_send_from_another_process(
    short_dir: Path, opened: Callable[..., Any]
) -> None:
    db = short_dir / "peers.db"
    t = await opened(db, wakeup="poll")
    b = await t.register(peer())
    args = {"url": f"sqlite:///{db}", "namespace": NS, "sender": new_peer_id(),
            "recipients": [b.id], "count": 1}  # fmt: skip
    result = short_dir / "sender.json"
    worker = Path(__file__).parent / "_stress_worker.py"
    env = {**os.environ, "PEERS_WAKEUP": "poll"}
    command = [sys.executable, str(worker), "send", json.dumps(args), str(result)]
    async with await anyio.open_process(command, env=env) as child:
        with anyio.fail_after(30):
            woke = await t.wait_for_mail(b.id, timeout=25)
        await child.wait()
    assert woke is True and child.returncode == 0
    [got] = await t.fetch(b.id)
    assert got.sender_id == args["sender"]


async def test_a_sandbox_that_refuses_sendto_falls_back_to_polling(
    short_dir: Path, opened: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from peers.transports.sqlite import wakeup

    class Refusing(socket.socket):
        def sendto(self, *args: Any) -> int:  # type: ignore[override]
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(wakeup.socket, "socket", Refusing)
    db = short_dir / "peers.db"
    t = await opened(db)
    assert "not permitted" in (await t.info())["wakeup"]
    b = await t.register(peer())
    a = await t.register(peer())
    sent = await t.send(message(a, b))  # the poke fails quietly; the mail is stored
    started = time.monotonic()
    assert await t.wait_for_mail(b.id, timeout=10) is True
    assert time.monotonic() - started < 2.0
    assert [m.id for m in await t.fetch(b.id)] == [sent.id]
