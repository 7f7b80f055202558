"""peers.alive: the liveness rule's process check, answered from a held /proc descriptor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peers import alive
from peers.procinfo import process_alive, process_start_time

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc here")


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    alive.forget()
    yield
    alive.forget()


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_live_process_is_live_and_then_watched(child: subprocess.Popen[bytes]) -> None:
    start = process_start_time(child.pid)
    assert alive.process_alive_watched(child.pid, start)
    assert (child.pid, start) in alive._watched
    assert alive.process_alive_watched(child.pid, start)


def test_a_process_is_dead_as_soon_as_it_exits_even_unreaped(
    child: subprocess.Popen[bytes],
) -> None:
    start = process_start_time(child.pid)
    assert alive.process_alive_watched(child.pid, start)
    os.kill(child.pid, signal.SIGKILL)
    # Not reaped yet: a zombie, which the rule counts as dead, as soon as /proc says so.
    deadline = time.monotonic() + 30
    while _state(child.pid) != "Z":
        assert time.monotonic() < deadline, "the killed child never became a zombie"
        os.sched_yield()
    assert not alive.process_alive_watched(child.pid, start)
    assert not process_alive(child.pid, start)  # the full check agrees
    child.wait()
    assert not alive.process_alive_watched(child.pid, start)


def test_another_start_time_is_another_process(child: subprocess.Popen[bytes]) -> None:
    start = process_start_time(child.pid)
    assert start is not None
    # The same pid with another start time: the pid was reused, the peer is gone.
    assert not alive.process_alive_watched(child.pid, start - 1)
    assert alive.process_alive_watched(child.pid, start)


def test_a_pid_that_does_not_exist_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_time(proc.pid) or 1.0
    proc.wait()
    assert not alive.process_alive_watched(proc.pid, start)
    assert not alive.process_alive_watched(proc.pid, start)  # from the dead verdicts


def test_without_procfs_every_call_does_the_full_check(
    child: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alive, "_procfs", False)
    start = process_start_time(child.pid)
    assert alive.process_alive_watched(child.pid, start)
    assert alive._watched == {}
    child.kill()
    child.wait()
    assert not alive.process_alive_watched(child.pid, start)


def test_at_most_watched_descriptors_are_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alive, "WATCHED", 2)
    procs = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(4)
    ]
    try:
        before = _open_fds()
        for proc in procs:
            assert alive.process_alive_watched(proc.pid, process_start_time(proc.pid))
        assert len(alive._watched) == 2
        assert _open_fds() == before + 2
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
