"""End-to-end benchmark: 4 real ``peers serve`` sessions over MCP stdio.

Prints push latency (send_message call to notification at the recipient) p50/p99,
send calls per second, the time to answer ``initialize``, and an idle session's CPU
over 30 s and its RSS, beside the issue's targets.

    uv run python benchmarks/serve_bench.py                 # SQLite in a temp dir
    uv run python benchmarks/serve_bench.py --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers.mcpclient import PeerClient

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(url: str | None, rounds: int, idle_seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="peers-bench-") as tmp:
        env = {
            "PEERS_URL": url or f"sqlite:///{tmp}/peers.db",
            "PEERS_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            "PEERS_LOG_LEVEL": "warning",
            "PEERS_RATE_LIMIT": "1000000",
            "CLAUDE_PROJECT_DIR": tmp,
        }
        backend = env["PEERS_URL"].split("://", 1)[0]
        print(f"backend: {backend}  sessions: 4  rounds: {rounds}")
        with open(os.devnull, "w") as errlog:
            init_times: list[float] = []
            clients = []
            for i in range(4):
                client = PeerClient({**env, "PEERS_NAME": f"s{i}"}, cwd=tmp, errlog=errlog)
                started = time.perf_counter()
                await client.__aenter__()
                init_times.append(time.perf_counter() - started)
                clients.append(client)
            try:
                ids = [(await c.wait_registered())["id"] for c in clients]
                # Warm-up: the first message of each pair opens sockets and caches.
                for i, c in enumerate(clients):
                    await c.call_ok("send_message", to_id=ids[(i + 1) % 4], message="warm-up")
                for c in clients:
                    await c.next_channel()

                latencies: list[float] = []
                for n in range(rounds):
                    i = n % 4
                    sender, receiver = clients[i], clients[(i + 1) % 4]
                    t0 = time.time()
                    await sender.call_ok("send_message", to_id=ids[(i + 1) % 4], message=f"m{n}")
                    chan = await receiver.next_channel()
                    latencies.append((chan.received_at - t0) * 1000)

                count = rounds
                t0 = time.perf_counter()
                for n in range(count):
                    await clients[0].call_ok("send_message", to_id=ids[1], message=f"t{n}")
                send_rate = count / (time.perf_counter() - t0)
                for _ in range(count):
                    await clients[1].next_channel(timeout=60)

                idle = clients[3]
                pid = (await idle.call_ok("whoami"))["pid"]
                before = cpu_seconds(pid)
                await anyio.sleep(idle_seconds)
                idle_cpu = (cpu_seconds(pid) - before) / idle_seconds * 100
                rss = rss_mb(pid)
            finally:
                for c in reversed(clients):
                    await c.__aexit__(None, None, None)

    print(f"push latency p50: {statistics.median(latencies):7.2f} ms   (target <= 10 ms SQLite, <= 5 ms Redis; reference 490 ms)")
    print(f"push latency p99: {pct(latencies, 0.99):7.2f} ms   (target <= 50 ms SQLite, <= 25 ms Redis; reference 994 ms)")
    print(f"send_message calls/s: {send_rate:7.0f}")
    print(f"initialize answered: max {max(init_times) * 1000:.0f} ms (target <= 1500 ms)")
    print(f"idle session CPU over {idle_seconds:.0f} s: {idle_cpu:.2f} %   (target <= 0.5 %)")
    print(f"idle session RSS: {rss:.1f} MB   (target <= 100 MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="PEERS_URL (default: SQLite in a temp dir)")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    args = parser.parse_args()
    anyio.run(main, args.url, args.rounds, args.idle)
