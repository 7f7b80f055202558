"""`peers watch` benchmark: the live board's CPU while nothing happens, and how fast it follows.

Four real ``peers serve`` sessions (heartbeating, with mail and a conflict) share
a store; ``peers watch`` runs on a pseudo-terminal of 80x24. Prints the board's
CPU over 30 s of quiet (its only work: the slow refresh every 5 s) and how many
times it redrew meanwhile, then the time from a send to the message on the
screen, beside the targets.

    uv run python benchmarks/watch_bench.py                 # SQLite in a temp dir
    uv run python benchmarks/watch_bench.py --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import uuid
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchsupport import cpu_seconds

from peers.mcpclient import PeerClient

HEADER = b"peers watch"


class Screen:
    """The master side of the board's pty, drained on a thread (a full pty would block it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def mark(self) -> int:
        with self.lock:
            return len(self.data)

    def since(self, mark: int) -> bytes:
        with self.lock:
            return bytes(self.data[mark:])

    async def wait_for(self, needle: bytes, mark: int, timeout: float = 10.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if needle in self.since(mark):
                return time.perf_counter()
            await anyio.sleep(0.001)
        raise TimeoutError(f"{needle!r} never reached the screen")


def start_board(env: dict[str, str], cwd: str) -> tuple[subprocess.Popen[bytes], Screen]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    board_env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "peers", "watch"],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.DEVNULL,
        env={**board_env, "TERM": "xterm-256color"},
        cwd=cwd,
        start_new_session=True,  # the pty becomes its controlling terminal
    )
    os.close(slave)
    return proc, Screen(master)


async def main(url: str | None, idle_seconds: float, sends: int) -> None:
    with tempfile.TemporaryDirectory(prefix="peers-bench-") as tmp:
        env = {
            **os.environ,
            "PEERS_URL": url or f"sqlite:///{tmp}/peers.db",
            "PEERS_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            "PEERS_LOG_LEVEL": "warning",
            "PEERS_RATE_LIMIT": "1000000",
            "CLAUDE_PROJECT_DIR": tmp,
        }
        backend = env["PEERS_URL"].split("://", 1)[0]
        print(f"backend: {backend}  sessions: 4  terminal: 80x24")
        with open(os.devnull, "w") as errlog:
            clients = [
                PeerClient({**env, "PEERS_NAME": f"s{i}"}, cwd=tmp, errlog=errlog) for i in range(4)
            ]
            for client in clients:
                await client.__aenter__()
            proc, screen = start_board(env, tmp)
            try:
                for i, client in enumerate(clients):
                    await client.wait_registered()
                    await client.call_ok("set_summary", summary=f"task {i}")
                await clients[0].call_ok("send_message", to_id="s1", message="warm-up")
                await screen.wait_for(b"warm-up", 0, timeout=30)
                # Let the board settle after the start and the burst above.
                await anyio.sleep(6)

                mark = screen.mark()
                before = cpu_seconds(proc.pid)
                await anyio.sleep(idle_seconds)
                idle_cpu = (cpu_seconds(proc.pid) - before) / idle_seconds * 100
                redraws = screen.since(mark).count(HEADER)

                latencies = []
                for n in range(sends):
                    body = f"probe-{n}-{uuid.uuid4().hex[:6]}"
                    mark = screen.mark()
                    t0 = time.perf_counter()
                    await clients[n % 4].call_ok(
                        "send_message", to_id=f"s{(n + 1) % 4}", message=body
                    )
                    seen = await screen.wait_for(body.encode(), mark)
                    latencies.append((seen - t0) * 1000)
                    await anyio.sleep(0.3)  # past the board's coalescing interval
            finally:
                proc.terminate()
                proc.wait(timeout=10)
                for client in reversed(clients):
                    await client.__aexit__(None, None, None)

    print(
        f"idle board CPU over {idle_seconds:.0f} s: {idle_cpu:.3f} % of one core   "
        "(target <= 0.2 %)"
    )
    print(f"redraws while idle: {redraws}   (the slow refresh every 5 s; nothing else)")
    print(
        f"send_message to the message on screen: p50 {statistics.median(latencies):.0f} ms, "
        f"max {max(latencies):.0f} ms over {sends} sends"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="PEERS_URL (default: SQLite in a temporary directory)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of quiet to measure")
    parser.add_argument("--sends", type=int, default=20, help="messages timed onto the screen")
    args = parser.parse_args()
    anyio.run(main, args.url, args.idle, args.sends)
