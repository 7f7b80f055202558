"""Process facts through psutil, in the unit peers has always stored.

Peers registered by an earlier version carry start times read by hand (Linux:
field 22 of /proc/PID/stat, clock ticks since boot; elsewhere ``ps -o lstart``,
whole seconds): an upgrade must not mark those live peers dead.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from peers import procinfo
from peers.models import Peer
from peers.transports.base import Transport

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def legacy_linux_start(pid: int) -> float:
    """What peers before psutil stored: /proc/PID/stat field 22, as a float."""
    with open(f"/proc/{pid}/stat") as fh:
        raw = fh.read()
    return float(raw[raw.rfind(")") + 2 :].split()[19])


def legacy_ps_start(pid: int) -> float | None:
    """What peers before psutil stored off Linux: `ps -o lstart` as local time."""
    out = subprocess.run(
        ["ps", "-o", "lstart=", "-p", str(pid)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout
    text = " ".join(out.split())
    if not text:
        return None
    return time.mktime(time.strptime(text, "%a %b %d %H:%M:%S %Y"))


@linux_only
def test_linux_start_time_is_the_legacy_tick_count(child: subprocess.Popen[bytes]) -> None:
    legacy = legacy_linux_start(child.pid)
    assert procinfo.process_start_time(child.pid) == legacy
    assert procinfo.process_alive(child.pid, legacy)
    about = procinfo.process_info(child.pid)
    assert about is not None and about.start == legacy


@linux_only
@pytest.mark.anyio
async def test_a_peer_stored_with_a_legacy_start_time_stays_live(
    sqlite_transport: Transport,
    make_peer: Callable[..., Peer],
    child: subprocess.Popen[bytes],
) -> None:
    peer = make_peer(pid=child.pid, pid_start=legacy_linux_start(child.pid))
    await sqlite_transport.register(peer)
    assert [p.id for p in await sqlite_transport.list_peers()] == [peer.id]
    assert await sqlite_transport.reap() == []
    child.kill()
    child.wait(timeout=10)
    assert [p.id for p in await sqlite_transport.reap()] == [peer.id]


def test_start_time_off_linux_is_whole_epoch_seconds(
    monkeypatch: pytest.MonkeyPatch, child: subprocess.Popen[bytes]
) -> None:
    monkeypatch.setattr(procinfo, "_LINUX", False)
    start = procinfo.process_start_time(child.pid)
    assert start is not None and start == int(start)
    assert time.time() - 60 <= start <= time.time()
    assert procinfo.process_alive(child.pid, start)
    assert not procinfo.process_alive(child.pid, start - 60)  # a reused pid
    about = procinfo.process_info(child.pid)
    assert about is not None
    assert about.start == start and about.ppid == os.getpid() and about.uid == os.getuid()
    assert about.argv[1:] == ("-c", "import time; time.sleep(60)")


@pytest.mark.skipif(shutil.which("ps") is None, reason="no ps to compare with")
def test_start_time_off_linux_matches_what_ps_gave(
    monkeypatch: pytest.MonkeyPatch, child: subprocess.Popen[bytes]
) -> None:
    legacy = legacy_ps_start(child.pid)
    if legacy is None:
        pytest.skip("this ps has no lstart")
    monkeypatch.setattr(procinfo, "_LINUX", False)
    assert procinfo.process_start_time(child.pid) == legacy
    assert procinfo.process_alive(child.pid, legacy)


def test_gone_zombie_and_impossible_pids_are_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = None
    deadline = time.monotonic() + 10
    while start is None and time.monotonic() < deadline:
        start = procinfo.process_start_time(proc.pid)
    # Not reaped yet: a zombie, whose record is still there.
    deadline = time.monotonic() + 10
    while procinfo.process_alive(proc.pid, None) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not procinfo.process_alive(proc.pid, start)
    proc.wait(timeout=10)
    assert not procinfo.process_alive(proc.pid, start)
    assert procinfo.process_info(proc.pid) is None
    assert procinfo.process_start_time(proc.pid) is None
    for pid in (0, -1, 2**40):
        assert not procinfo.process_alive(pid, None)
        assert procinfo.process_info(pid) is None
        assert procinfo.process_start_time(pid) is None


def test_ancestors_reach_up_from_this_process() -> None:
    chain = procinfo.ancestors(os.getpid())
    assert chain[0].pid == os.getpid()
    assert chain[0].argv and chain[0].start == procinfo.process_start_time(os.getpid())
    for lower, upper in itertools.pairwise(chain):
        assert lower.ppid == upper.pid
    assert all(info.pid > 1 for info in chain)


def test_importing_procinfo_stays_cheap() -> None:
    code = "import sys; import peers.procinfo; print(sorted(m for m in ('pydantic', 'mcp', 'structlog', 'redis') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
