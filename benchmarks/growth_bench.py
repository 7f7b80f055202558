"""Cost that does not grow with history: list_peers, send and pending_counts with dead sessions.

    uv run python benchmarks/growth_bench.py [--url REDIS_URL] [--dead 0,1000,10000] [--check]

For each backend (a fresh SQLite file; Redis on a redis-server this script starts
on a free port, or ``--url``) and each count of dead sessions, a fresh namespace
gets that many sessions that registered and then crashed (their process gone,
their heartbeat stopped, never unregistered), named, with no mail. Then a
few live sessions register, one listing reaps the dead ones (its time is shown
as "first list"), and the three calls are timed (median of ``--rounds`` calls
each). The target (issue 12): with 10,000 dead sessions each call stays within
2x of the figure with none. ``--check`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchsupport import redis_server

from peers.config import load_settings
from peers.ids import new_message_id, new_peer_id
from peers.models import Message, Peer
from peers.procinfo import process_start_time
from peers.transports import create_transport
from peers.transports.base import Transport

TARGET_RATIO = 2.0
CALLS = ("list_peers", "send", "pending_counts")
LIVE = 5
# Dead sessions are registered this many at a time, by one transport instance that
# is then closed without unregistering (as a crash leaves them).
CHUNK = 50
DEAD_TTL = 0.5


def dead_pid() -> tuple[int, float | None]:
    """The pid and start time of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_time(proc.pid)
    proc.wait()
    return proc.pid, start


def peer(namespace: str, name: str | None, host: str, pid: tuple[int, float | None] | None = None) -> Peer:
    pid_, start = pid or (os.getpid(), process_start_time(os.getpid()))
    return Peer(
        id=new_peer_id(),
        namespace=namespace,
        name=name,
        host=host,
        pid=pid_,
        pid_start=start,
        cwd="/work/growth",
        client="bench",
    )


async def add_dead(url: str, namespace: str, count: int) -> None:
    """``count`` sessions that registered and then crashed: their process is gone and they
    stopped heartbeating (their TTL runs out), never unregistered."""
    gone = dead_pid()
    host = load_settings(url=url).host
    for start in range(0, count, CHUNK):
        settings = load_settings(url=url, namespace=namespace, peer_ttl=DEAD_TTL)
        t = create_transport(settings)
        await t.connect()
        try:
            n = min(CHUNK, count - start)
            await asyncio.gather(
                *(t.register(peer(namespace, f"dead-{start + i}", host, gone)) for i in range(n))
            )
        finally:
            await t.close()  # no unregister: a crash
    if count:
        await asyncio.sleep(DEAD_TTL + 0.3)


async def median_ms(call: Callable[[], Awaitable[object]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def measure(url: str, dead: int, rounds: int) -> dict[str, float]:
    namespace = f"growth-{uuid.uuid4().hex[:10]}"
    await add_dead(url, namespace, dead)
    settings = load_settings(url=url, namespace=namespace)
    async with create_transport(settings) as t:
        live = [await t.register(peer(namespace, f"live-{i}", settings.host)) for i in range(LIVE)]
        started = time.perf_counter()
        listed = await t.list_peers()
        first = (time.perf_counter() - started) * 1000
        assert len(listed) == LIVE, f"{len(listed)} live peers listed, expected {LIVE}"
        sender, recipient = live[0], live[1]

        async def send() -> None:
            message = Message(
                id=new_message_id(),
                namespace=namespace,
                sender_id=sender.id,
                recipient_id=recipient.id,
                body="ping",
            )
            await t.send(message)

        figures = {
            "first list": first,
            "list_peers": await median_ms(t.list_peers, rounds),
            "send": await median_ms(send, rounds),
            "pending_counts": await median_ms(t.pending_counts, rounds),
        }
        await drain(t, recipient.id)
    return figures


async def drain(t: Transport, peer_id: str) -> None:
    while batch := await t.fetch(peer_id, limit=1000):
        await t.ack(peer_id, [m.id for m in batch])


def report(backend: str, results: dict[int, dict[str, float]]) -> bool:
    base = results.get(0)
    ok = True
    print(f"\n{backend}: median ms per call (first list reaps the dead once)")
    print(f"  {'dead':>6}  {'first list':>10}  " + "  ".join(f"{c:>22}" for c in CALLS))
    for dead, figures in results.items():
        cells = []
        for call in CALLS:
            value = figures[call]
            if base is None or dead == 0:
                cells.append(f"{value:10.3f}{'':12}")
                continue
            ratio = value / base[call] if base[call] else float("inf")
            verdict = "ok" if ratio <= TARGET_RATIO else "MISS"
            ok = ok and ratio <= TARGET_RATIO
            cells.append(f"{value:10.3f} {ratio:4.2f}x {verdict:>5}")
        print(f"  {dead:>6}  {figures['first list']:10.1f}  " + "  ".join(cells))
    print(f"  target: every call within {TARGET_RATIO:g}x of the store without dead sessions")
    return ok


async def run(args: argparse.Namespace, urls: dict[str, str]) -> bool:
    ok = True
    for backend, url in urls.items():
        results = {dead: await measure(url, dead, args.rounds) for dead in args.dead}
        ok = report(backend, results) and ok
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a Redis URL to use instead of starting redis-server")
    parser.add_argument("--dead", default="0,1000,10000", help="dead-session counts (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=200, help="calls timed per figure")
    parser.add_argument("--backend", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    args.dead = [int(x) for x in args.dead.split(",")]
    with tempfile.TemporaryDirectory(prefix="peers-growth-") as tmp, contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        if args.backend in ("sqlite", "both"):
            urls["sqlite"] = f"sqlite:///{Path(tmp) / 'peers.db'}"
        if args.backend in ("redis", "both"):
            urls["redis"] = args.url or stack.enter_context(redis_server())
        print("(figures from a loaded machine are indicative only)")
        ok = asyncio.run(run(args, urls))
    if args.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
