"""Many real processes on one SQLite file: every message exactly once, in order, never "locked"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from peers import procinfo
from peers.config import load_settings
from peers.ids import new_peer_id
from peers.models import Peer
from peers.transports import create_transport

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("_stress_worker.py")
SENDERS = 20
PER_SENDER = 200
READERS = 4
DEADLINE = 90.0


async def register_readers(url: str, namespace: str, readers: list[tuple[str, str]]) -> None:
    """Readers' records exist before any send, so no send meets PeerNotFound."""
    transport = create_transport(load_settings(url=url, namespace=namespace))
    async with transport:
        pid = os.getpid()
        for peer_id, name in readers:
            await transport.register(
                Peer(
                    id=peer_id,
                    namespace=namespace,
                    name=name,
                    host=transport.host,
                    pid=pid,
                    pid_start=procinfo.process_start_time(pid),
                    cwd=os.getcwd(),
                )
            )


async def leftovers(url: str, namespace: str) -> dict[str, int]:
    async with create_transport(load_settings(url=url, namespace=namespace)) as transport:
        return await transport.pending_counts()


def spawn(role: str, args: dict[str, Any], result: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), role, json.dumps(args), str(result)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_twenty_senders_four_readers_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'peers.db'}"
    namespace = "stress"
    readers = [(new_peer_id(), f"reader-{i}") for i in range(READERS)]
    senders = [new_peer_id() for _ in range(SENDERS)]
    recipient_ids = [peer_id for peer_id, _ in readers]
    anyio.run(register_readers, url, namespace, readers)

    expected = {peer_id: 0 for peer_id in recipient_ids}
    for seq in range(PER_SENDER):
        expected[recipient_ids[seq % READERS]] += SENDERS

    procs: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    base = {"url": url, "namespace": namespace}
    started = time.monotonic()
    for peer_id, name in readers:
        result = tmp_path / f"read-{peer_id}.json"
        args = {**base, "recipient": peer_id, "name": name,
                "expected": expected[peer_id], "deadline": DEADLINE}  # fmt: skip
        procs[peer_id] = (spawn("read", args, result), result)
    for sender in senders:
        result = tmp_path / f"send-{sender}.json"
        args = {**base, "sender": sender, "recipients": recipient_ids, "count": PER_SENDER}
        procs[sender] = (spawn("send", args, result), result)

    outputs: dict[str, str] = {}
    try:
        for peer_id, (proc, _) in procs.items():
            remaining = max(1.0, DEADLINE + 30 - (time.monotonic() - started))
            outputs[peer_id], _ = proc.communicate(timeout=remaining)
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.monotonic() - started

    problems = []
    results: dict[str, Any] = {}
    for peer_id, (proc, result) in procs.items():
        report = json.loads(result.read_text()) if result.exists() else {}
        if proc.returncode != 0 or "error" in report:
            problems.append(
                f"{peer_id} rc={proc.returncode}: {report.get('error')}\n{outputs[peer_id]}"
            )
        if "database is locked" in outputs[peer_id]:
            problems.append(f"{peer_id} saw 'database is locked':\n{outputs[peer_id]}")
        results[peer_id] = report.get("ok")
    assert not problems, "\n".join(problems)

    seen: dict[tuple[str, int], str] = {}
    for peer_id in recipient_ids:
        received = results[peer_id]["received"]
        assert results[peer_id]["leftover"] == []
        assert len(received) == expected[peer_id]
        for sender in senders:
            seqs = [seq for _, from_, seq in received if from_ == sender]
            assert seqs == sorted(seqs), f"{peer_id} got {sender}'s mail out of order"
        for message_id, sender, seq in received:
            assert (sender, seq) not in seen, f"({sender}, {seq}) arrived twice"
            assert seq % READERS == recipient_ids.index(peer_id)
            seen[(sender, seq)] = message_id
    assert len(seen) == SENDERS * PER_SENDER
    assert len(set(seen.values())) == SENDERS * PER_SENDER
    assert anyio.run(leftovers, url, namespace) == {}
    print(f"{SENDERS * PER_SENDER} messages through {len(procs)} processes in {elapsed:.1f}s")
