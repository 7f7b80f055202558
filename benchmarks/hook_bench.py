"""What a hook costs the agent: ``peers hook PostToolUse`` per call, Python start included.

    uv run python benchmarks/hook_bench.py [--url REDIS_URL] [--runs 200]

For each backend (a fresh SQLite file; Redis on a redis-server this script
starts on a free port, or ``--url``), a real ``peers serve`` session runs
(as Claude Code starts it: with a session id, which its hooks name on stdin),
and ``peers hook PostToolUse --client claude`` is run as a new process, as an
agent client runs it after every tool call: with no mail waiting (it prints
nothing), and with one message sent just before each run (it prints the
message, and acknowledges it once written). Each figure is the wall time of
the whole process, from spawn to exit. Targets (issue 10): p50 <= 30 ms,
p99 <= 60 ms per call, on both backends.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio
from benchsupport import pct, redis_server

from peers.mcpclient import PeerClient

P50_TARGET_MS = 30.0
P99_TARGET_MS = 60.0
PEERS = str(Path(sys.executable).parent / "peers")


def run_hook(env: dict[str, str], payload: bytes) -> tuple[float, bytes]:
    started = time.perf_counter()
    done = subprocess.run(
        [PEERS, "hook", "PostToolUse", "--client", "claude"],
        input=payload,
        capture_output=True,
        env=env,
        check=False,
    )
    return (time.perf_counter() - started) * 1000, done.stdout


async def bench(url: str, runs: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="peers-hook-") as tmp:
        run_dir = tempfile.mkdtemp(prefix="ph-", dir="/tmp")
        env = {
            **os.environ,
            "PEERS_URL": url,
            "PEERS_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            "PEERS_LOG_LEVEL": "warning",
            "PEERS_RATE_LIMIT": "1000000",
            "PEERS_RUNTIME_DIR": os.path.join(run_dir, "run"),
            "CLAUDE_PROJECT_DIR": tmp,
        }
        session_id = str(uuid.uuid4())
        payload = json.dumps(
            {"session_id": session_id, "hook_event_name": "PostToolUse", "cwd": tmp,
             "tool_name": "Read", "tool_input": {"file_path": f"{tmp}/x"}}
        ).encode()  # fmt: skip
        figures: dict[str, list[float]] = {"no mail": [], "one message": []}
        try:
            with open(os.devnull, "w") as errlog:
                target = PeerClient(
                    {**env, "PEERS_NAME": "target", "CLAUDE_CODE_SESSION_ID": session_id},
                    channel=False, cwd=tmp, errlog=errlog,
                )  # fmt: skip
                sender = PeerClient({**env, "PEERS_NAME": "sender"}, channel=False, cwd=tmp, errlog=errlog)
                async with target, sender:
                    await target.wait_registered()
                    await sender.wait_registered()
                    for _ in range(5):  # warm-up: caches, sockets
                        await anyio.to_thread.run_sync(run_hook, env, payload)
                    for _ in range(runs):
                        ms, out = await anyio.to_thread.run_sync(run_hook, env, payload)
                        assert out == b"", out
                        figures["no mail"].append(ms)
                    for n in range(runs):
                        await sender.call_ok("send_message", to_id="target", message=f"m{n}")
                        ms, out = await anyio.to_thread.run_sync(run_hook, env, payload)
                        assert f"m{n}".encode() in out, out
                        figures["one message"].append(ms)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        return figures


def report(backend: str, figures: dict[str, list[float]]) -> bool:
    ok = True
    for case, values in figures.items():
        p50, p99 = statistics.median(values), pct(values, 0.99)
        met = p50 <= P50_TARGET_MS and p99 <= P99_TARGET_MS
        ok = ok and met
        print(
            f"{backend:7s} {case:12s} p50 {p50:6.1f} ms (target <= {P50_TARGET_MS:.0f})   "
            f"p99 {p99:6.1f} ms (target <= {P99_TARGET_MS:.0f})   {'met' if met else 'MISSED'}"
        )
    return ok


async def main(url: str | None, runs: int) -> int:
    ok = True
    with tempfile.TemporaryDirectory(prefix="peers-hook-db-") as tmp:
        ok &= report("sqlite", await bench(f"sqlite:///{tmp}/peers.db", runs))
    if url:
        ok &= report("redis", await bench(url, runs))
    else:
        with redis_server() as own:
            ok &= report("redis", await bench(own, runs))
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a Redis URL to use instead of starting redis-server")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    sys.exit(anyio.run(main, args.url, args.runs))
