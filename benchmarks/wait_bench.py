"""``wait_for_messages`` benchmark: how fast a reply sent while waiting comes back, and what a wait costs.

An orchestrator session (a real ``peers serve`` over MCP stdio, a poll client
like Codex) calls ``wait_for_messages(from=worker)``; once the server reports it
is waiting (its first progress notification), the reply is sent, and the time
until the wait's result reaches the orchestrator's client is measured. Two
senders: the store directly (what the waiting path alone costs), and a worker
session's own ``send_message`` (the whole round, the worker's MCP call included).
Then the server's CPU during one long wait with nothing arriving. Both backends;
Redis on a redis-server this script starts (or ``--url``).

    uv run python benchmarks/wait_bench.py                    # SQLite and Redis
    uv run python benchmarks/wait_bench.py --backend sqlite --rounds 500
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchsupport import cpu_seconds, pct, redis_server

from peers.config import load_settings
from peers.ids import new_message_id
from peers.mcpclient import PeerClient
from peers.models import Message, SenderKind
from peers.transports import create_transport

TARGET_P50_MS = 10.0
IDLE_TARGET_PCT = 0.5  # an idle session's target (serve_bench): a wait adds nothing to it


class Wait:
    """One wait_for_messages call: started, waiting (first progress), returned."""

    def __init__(self) -> None:
        self.waiting = anyio.Event()
        self.returned_at = 0.0
        self.result: Any = None

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.waiting.set()

    async def run(self, client: PeerClient, args: dict[str, Any]) -> None:
        self.result = await client.session.call_tool(
            "wait_for_messages", args, progress_callback=self.on_progress
        )
        self.returned_at = time.perf_counter()


async def round_trip(orch: PeerClient, send: Any) -> float:
    """Milliseconds from the send to the wait's result at the orchestrator."""
    wait = Wait()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait.run, orch, {"timeout_s": 30, "from": "worker"})
        with anyio.fail_after(30):
            await wait.waiting.wait()
        started = time.perf_counter()
        await send()
    messages = (wait.result.structured_content or {}).get("messages", [])
    if wait.result.is_error or len(messages) != 1:
        raise RuntimeError(f"the wait did not return the reply: {wait.result}")
    return (wait.returned_at - started) * 1000


async def measure(url: str, rounds: int, idle_seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="peers-wait-bench-") as tmp:
        env = {
            "PEERS_URL": url,
            "PEERS_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            "PEERS_LOG_LEVEL": "warning",
            "PEERS_RATE_LIMIT": "1000000",
            "CLAUDE_PROJECT_DIR": tmp,
            "CLAUDE_CONFIG_DIR": f"{tmp}/claude",
            "XDG_STATE_HOME": f"{tmp}/state",
            "PEERS_RUNTIME_DIR": f"{tmp}/run",
        }
        settings = load_settings(url=url, namespace=env["PEERS_NAMESPACE"])
        with open(os.devnull, "w") as errlog:
            async with (
                PeerClient(
                    {**env, "PEERS_NAME": "orch"}, client_name="codex-mcp-client",
                    channel=False, cwd=tmp, errlog=errlog,
                ) as orch,
                PeerClient(
                    {**env, "PEERS_NAME": "worker"}, client_name="codex-mcp-client",
                    channel=False, cwd=tmp, errlog=errlog,
                ) as worker,
                create_transport(settings) as store,
            ):  # fmt: skip
                me = await orch.wait_registered()
                w = await worker.wait_registered()

                async def by_store() -> None:
                    await store.send(
                        Message(
                            id=new_message_id(), namespace=settings.namespace,
                            sender_id=w["id"], sender_name="worker",
                            sender_kind=SenderKind.PEER, recipient_id=me["id"], body="DONE",
                        )
                    )  # fmt: skip

                sent = 0

                async def by_session() -> None:
                    nonlocal sent
                    sent += 1  # an identical send within a minute would be taken for a retry
                    await worker.call_ok("send_message", to_id="orch", message=f"DONE {sent}")

                for _ in range(10):  # warm-up: sockets, caches, the sender's lookups
                    await round_trip(orch, by_store)
                    await round_trip(orch, by_session)
                direct = [await round_trip(orch, by_store) for _ in range(rounds)]
                whole = [await round_trip(orch, by_session) for _ in range(rounds)]

                pid = int(me["pid"])
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                await anyio.sleep(idle_seconds)  # the same session, not waiting: the baseline
                baseline = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                wait = Wait()
                await wait.run(orch, {"timeout_s": idle_seconds, "from": "worker"})
                cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
                timed_out = (wait.result.structured_content or {}).get("timed_out")
        return {
            "direct": direct,
            "whole": whole,
            "idle_cpu": cpu,
            "baseline_cpu": baseline,
            "timed_out": timed_out,
        }


def report(backend: str, figures: dict[str, Any], idle_seconds: float) -> bool:
    ok = True
    print(f"\n{backend}")
    for key, label in (("direct", "sent by the store"), ("whole", "sent by a session")):
        values = figures[key]
        p50, p99 = statistics.median(values), pct(values, 0.99)
        ok = ok and p50 <= TARGET_P50_MS
        print(
            f"  reply while waiting -> result ({label}): p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
            f"   (target p50 <= {TARGET_P50_MS:g} ms)  n={len(values)}"
        )
    cpu = figures["idle_cpu"]
    ok = ok and cpu <= IDLE_TARGET_PCT
    print(
        f"  server CPU during a {idle_seconds:g} s wait with nothing arriving: {cpu:.2f} %"
        f"   (target <= {IDLE_TARGET_PCT:g} %, an idle session's){'' if figures['timed_out'] else '  NOT TIMED OUT'}"
    )
    print(f"  the same session idle, not waiting, as long: {figures['baseline_cpu']:.2f} %")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a Redis URL to use instead of starting redis-server")
    parser.add_argument("--backend", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=200, help="replies timed per sender")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the idle wait")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="peers-wait-") as tmp, contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        if args.backend in ("sqlite", "both"):
            urls["sqlite"] = f"sqlite:///{Path(tmp) / 'peers.db'}"
        if args.backend in ("redis", "both"):
            urls["redis"] = args.url or stack.enter_context(redis_server())
        print("(figures from a loaded machine are indicative only)")
        for backend, url in urls.items():
            figures = anyio.run(measure, url, args.rounds, args.idle)
            ok = report(backend, figures, args.idle) and ok
    if args.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
