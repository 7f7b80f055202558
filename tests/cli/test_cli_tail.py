"""`peers tail`: a real subprocess streaming what other processes do, on both backends."""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import pytest
from cli_helpers import PEERS, Cli, subprocess_env

from peers.models import PeerUpdate

pytestmark = pytest.mark.slow

WAIT = 20.0


class Lines:
    """Lines of a child's pipe, read on a thread so that waits can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def next(self, timeout: float = WAIT) -> str:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s") from None
        if line is None:
            raise AssertionError("the stream ended")
        return line


@contextlib.contextmanager
def running_tail(cli: Cli, *args: str) -> Iterator[tuple[subprocess.Popen[str], Lines, Lines]]:
    """`peers tail ARGS` as another process, once it said it is watching; killed after."""
    proc = subprocess.Popen(
        [*PEERS, "tail", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(cli),
        cwd=cli.cwd,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        ready = err.next()
        assert "watching namespace" in ready, ready
        yield proc, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def tail(any_cli: Cli) -> Iterator[tuple[subprocess.Popen[str], Lines, Lines]]:
    with running_tail(any_cli, "--json") as running:
        yield running


def next_event(lines: Lines, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while True:
        event: dict[str, Any] = json.loads(lines.next(max(0.1, deadline - time.monotonic())))
        if event["kind"] == kind:
            return event


def test_tail_streams_a_message_sent_by_another_process(
    any_cli: Cli, tail: tuple[subprocess.Popen[str], Lines, Lines]
) -> None:
    proc, out, _ = tail
    peer = any_cli.register(name="listener")
    joined = next_event(out, "join")
    assert joined["peer_id"] == peer.id and joined["peer_name"] == "listener"

    sent = subprocess.run(
        [*PEERS, "send", "listener", "hello from another process", "--json"],
        env=subprocess_env(any_cli),
        cwd=any_cli.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    message_id = json.loads(sent.stdout)["message"]["id"]

    event = next_event(out, "message")
    assert set(event) == {"kind", "at", "peer_id", "peer_name", "data", "message"}
    assert event["data"]["id"] == message_id
    assert event["data"]["recipient_id"] == peer.id
    assert event["message"]["body"] == "hello from another process"
    assert event["message"]["sender_kind"] == "cli"
    assert event["at"].endswith("Z")

    any_cli.with_transport(lambda t: t.update_peer(peer.id, PeerUpdate(summary="now reviewing")))
    summary = next_event(out, "summary")
    assert summary["data"]["summary"] == "now reviewing"
    any_cli.with_transport(lambda t: t.unregister(peer.id))
    assert next_event(out, "leave")["peer_id"] == peer.id

    # SIGTERM (or Ctrl-C) is the normal way to stop it.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT) == 0


def test_tail_text_output(any_cli: Cli) -> None:
    with running_tail(any_cli) as (proc, out, _err):
        peer = any_cli.register(name="texty")
        assert f"join     texty ({peer.id})" in out.next()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT) == 0
