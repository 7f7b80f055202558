"""Send-to-wake latency and sustained throughput of a transport, across two processes.

    uv run python benchmarks/transport_bench.py [--url URL] [--check]

Without ``--url`` it runs on a fresh SQLite file in a temporary directory. It
is written against the Transport ABC only, so any URL that
``peers.transports.create_transport`` understands works (``redis://...``).

A receiver process registers a peer and loops wait_for_mail / fetch / ack.
The sender (this process):

1. latency: sends single messages, spaced out, each carrying ``time.time()``
   taken just before ``send``; the receiver subtracts it from the wall-clock
   time at which ``wait_for_mail`` returned. Only wall-clock time crosses the
   process boundary (perf_counter is per process).
2. throughput: sends N messages back to back; the figure is N divided by the
   time from the first send to the receiver's last ack. It runs once per
   ``--in-flight`` value: 1 is one send after another (each waits for its
   commit), 8 keeps eight sends outstanding, as a process with several busy
   tasks would. With ``--senders 4`` four sender processes (four sessions)
   share the N messages, each with that many sends in flight.

``--check`` exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import resource
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from peers.config import Settings, load_settings
from peers.constants import FETCH_LIMIT
from peers.ids import new_message_id, new_peer_id
from peers.models import Message, Peer
from peers.procinfo import process_start_time
from peers.transports import create_transport

# Targets from the issues: SQLite (issue 2) and Redis (issue 4) differ.
TARGETS = {
    "sqlite": {"p50_ms": 5.0, "p99_ms": 20.0, "rate": 3000.0},
    "redis": {"p50_ms": 5.0, "p99_ms": 25.0, "rate": 5000.0},
}

# How long either side waits for the other before declaring the run broken.
STEP_TIMEOUT = 300.0


@dataclass(frozen=True)
class Plan:
    url: str
    namespace: str
    receiver_id: str
    latency_count: int
    latency_gap: float
    throughput_count: int
    body_bytes: int
    in_flight: tuple[int, ...]
    senders: int


def cpu_seconds() -> float:
    """User plus system CPU time of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_peer(settings: Settings, peer_id: str, name: str) -> Peer:
    pid = os.getpid()
    return Peer(
        id=peer_id,
        namespace=settings.namespace,
        name=name,
        host=settings.host,
        pid=pid,
        pid_start=process_start_time(pid),
        cwd=os.getcwd(),
        client="bench",
    )


# -- receiver (child process) ------------------------------------------------------


async def receive(plan: Plan, out: Queue[tuple[str, Any]]) -> None:
    settings = load_settings(url=plan.url, namespace=plan.namespace)
    async with create_transport(settings) as transport:
        await transport.register(make_peer(settings, plan.receiver_id, "bench-receiver"))
        out.put(("ready", None))

        latencies: list[float] = []
        while len(latencies) < plan.latency_count:
            await transport.wait_for_mail(plan.receiver_id, timeout=settings.safety_recheck)
            woke_at = time.time()
            batch = await transport.fetch(plan.receiver_id, limit=FETCH_LIMIT)
            for message in batch:
                latencies.append(woke_at - json.loads(message.body)["ts"])
            if batch:
                await transport.ack(plan.receiver_id, [m.id for m in batch])
        out.put(("latency", latencies))

        for _ in plan.in_flight:
            received = 0
            wakes = 0
            cpu_before = cpu_seconds()
            while received < plan.throughput_count:
                await transport.wait_for_mail(plan.receiver_id, timeout=settings.safety_recheck)
                wakes += 1
                # Take what is there before sleeping again, as a server would: a
                # short page means the mailbox is empty.
                while True:
                    batch = await transport.fetch(plan.receiver_id, limit=FETCH_LIMIT)
                    if batch:
                        received += await transport.ack(plan.receiver_id, [m.id for m in batch])
                    if len(batch) < FETCH_LIMIT:
                        break
            done = time.time()
            cpu = cpu_seconds() - cpu_before
            figures = {"received": received, "done": done, "wakes": wakes, "cpu": cpu}
            out.put(("throughput", figures))
        await transport.unregister(plan.receiver_id)


def receiver_main(plan: Plan, out: Queue[tuple[str, Any]]) -> None:
    try:
        asyncio.run(receive(plan, out))
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))
        raise


# -- extra senders (child processes, with --senders > 1) -------------------------------


async def pump_messages(
    transport: Any, me: Peer, plan: Plan, numbers: Any, in_flight: int, padding: str
) -> None:
    """Send the numbered messages, ``in_flight`` sends outstanding at a time."""

    async def pump() -> None:
        for i in numbers:
            await transport.send(
                Message(
                    id=new_message_id(),
                    namespace=plan.namespace,
                    sender_id=me.id,
                    sender_name=me.name,
                    recipient_id=plan.receiver_id,
                    body=f"{i} {padding}",
                )
            )

    await asyncio.gather(*(pump() for _ in range(in_flight)))


async def send_share(
    plan: Plan, index: int, commands: Queue[int | None], out: Queue[tuple[str, Any]]
) -> None:
    settings = load_settings(url=plan.url, namespace=plan.namespace)
    async with create_transport(settings) as transport:
        me = await transport.register(make_peer(settings, new_peer_id(), f"bench-sender-{index}"))
        out.put(("ready", None))
        share = plan.throughput_count // plan.senders
        padding = "x" * plan.body_bytes
        while (in_flight := await asyncio.to_thread(commands.get)) is not None:
            cpu_before = cpu_seconds()
            await pump_messages(transport, me, plan, iter(range(share)), in_flight, padding)
            out.put(("sent", {"done": time.time(), "cpu": cpu_seconds() - cpu_before}))
        await transport.unregister(me.id)


def sender_main(
    plan: Plan, index: int, commands: Queue[int | None], out: Queue[tuple[str, Any]]
) -> None:
    try:
        asyncio.run(send_share(plan, index, commands, out))
    except BaseException as exc:
        out.put(("error", f"sender {index}: {type(exc).__name__}: {exc}"))
        raise


# -- sender (this process) -----------------------------------------------------------


async def expect(out: Queue[tuple[str, Any]], proc: BaseProcess, kind: str) -> Any:
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            got_kind, value = await asyncio.to_thread(out.get, True, 0.5)
        except queue.Empty:
            if not proc.is_alive():
                raise SystemExit(f"receiver exited with {proc.exitcode} before '{kind}'") from None
            continue
        if got_kind == "error":
            raise SystemExit(f"receiver failed: {value}")
        if got_kind != kind:
            raise SystemExit(f"expected '{kind}' from the receiver, got '{got_kind}'")
        return value
    raise SystemExit(f"receiver sent no '{kind}' within {STEP_TIMEOUT:.0f}s")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


@dataclass
class Senders:
    """The sender child processes (none with --senders 1), their queues and their replies."""

    procs: list[BaseProcess]
    commands: list[Queue[int | None]]
    out: Queue[tuple[str, Any]]


async def run(
    plan: Plan, proc: BaseProcess, out: Queue[tuple[str, Any]], senders: Senders
) -> tuple[dict[str, float], list[dict[str, float]]]:
    settings = load_settings(url=plan.url, namespace=plan.namespace)
    async with create_transport(settings) as transport:
        me = await transport.register(make_peer(settings, new_peer_id(), "bench-sender"))
        await expect(out, proc, "ready")

        def message(body: str) -> Message:
            return Message(
                id=new_message_id(),
                namespace=plan.namespace,
                sender_id=me.id,
                sender_name=me.name,
                recipient_id=plan.receiver_id,
                body=body,
            )

        print(
            f"latency: {plan.latency_count} single messages, {plan.latency_gap * 1000:.0f} ms apart"
        )
        for i in range(plan.latency_count):
            await transport.send(message(json.dumps({"ts": time.time(), "i": i})))
            await asyncio.sleep(plan.latency_gap)
        latencies: list[float] = await expect(out, proc, "latency")

        padding = "x" * plan.body_bytes
        phases: list[dict[str, float]] = []
        for in_flight in plan.in_flight:
            print(
                f"throughput: {plan.throughput_count} messages back to back, "
                f"{in_flight} send(s) in flight per sender, {plan.senders} sender(s)"
            )
            cpu_before = cpu_seconds()
            started = time.time()
            if senders.procs:
                for commands in senders.commands:
                    commands.put(in_flight)
                shares = [await expect(senders.out, p, "sent") for p in senders.procs]
                sent_at = max(share["done"] for share in shares)
                sender_cpu = sum(share["cpu"] for share in shares)
            else:
                # Several tasks share one counter; each sends one message at a time.
                counter = iter(range(plan.throughput_count))
                await pump_messages(transport, me, plan, counter, in_flight, padding)
                sent_at = time.time()
                sender_cpu = cpu_seconds() - cpu_before
            result = await expect(out, proc, "throughput")
            elapsed = result["done"] - started
            phases.append(
                {
                    "in_flight": in_flight,
                    "senders": plan.senders,
                    "rate": result["received"] / elapsed,
                    "send_rate": plan.throughput_count / (sent_at - started),
                    "elapsed": elapsed,
                    "wakes": result["wakes"],
                    "sender_cpu_us": sender_cpu / plan.throughput_count * 1e6,
                    "receiver_cpu_us": result["cpu"] / plan.throughput_count * 1e6,
                }
            )
        await transport.unregister(me.id)

    latency = {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
    }
    return latency, phases


def report(url: str, latency: dict[str, float], phases: list[dict[str, float]]) -> bool:
    target = TARGETS["sqlite" if url.startswith("sqlite") else "redis"]
    p50_target, p99_target, rate_target = target["p50_ms"], target["p99_ms"], target["rate"]
    rows = [
        ("send-to-wake p50", f"{latency['p50_ms']:.2f} ms", f"<= {p50_target:g} ms",
         latency["p50_ms"] <= p50_target),
        ("send-to-wake p99", f"{latency['p99_ms']:.2f} ms", f"<= {p99_target:g} ms",
         latency["p99_ms"] <= p99_target),
    ]  # fmt: skip
    for phase in phases:
        rows.append(
            (
                f"throughput, {phase['in_flight']:.0f} in flight",
                f"{phase['rate']:,.0f} msg/s",
                f">= {rate_target:,.0f} msg/s",
                phase["rate"] >= rate_target,
            )
        )
    print(f"\nbackend: {url}  senders: {phases[0]['senders'] if phases else 1:.0f}")
    for label, value, target, ok in rows:
        print(f"  {label:<24} {value:>14}   target {target:<16} {'ok' if ok else 'MISSED'}")
    print(f"  latency max {latency['max_ms']:.2f} ms")
    for phase in phases:
        print(
            f"  {phase['in_flight']:.0f} in flight: sender alone {phase['send_rate']:,.0f} msg/s, "
            f"{phase['elapsed']:.2f} s end to end, {phase['wakes']:.0f} wake-ups, CPU per "
            f"message: sender {phase['sender_cpu_us']:.0f} us, receiver "
            f"{phase['receiver_cpu_us']:.0f} us"
        )
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return all(ok for *_, ok in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", help="transport URL (default: a temporary SQLite file)")
    parser.add_argument("--latency-count", type=int, default=500)
    parser.add_argument("--latency-gap-ms", type=float, default=4.0)
    parser.add_argument("--throughput-count", type=int, default=20_000)
    parser.add_argument("--body-bytes", type=int, default=200)
    parser.add_argument(
        "--in-flight",
        default="1,8",
        help="comma-separated sends outstanding per throughput run (default 1,8)",
    )
    parser.add_argument(
        "--senders",
        type=int,
        default=1,
        help="sender processes sharing the throughput messages (default 1)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="peers-bench-") as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        plan = Plan(
            url=url,
            # A namespace of its own: a shared server's other data is never touched.
            namespace=f"bench-{uuid.uuid4().hex[:8]}",
            receiver_id=new_peer_id(),
            latency_count=args.latency_count,
            latency_gap=args.latency_gap_ms / 1000,
            throughput_count=args.throughput_count // max(1, args.senders) * max(1, args.senders),
            body_bytes=args.body_bytes,
            in_flight=tuple(int(n) for n in args.in_flight.split(",")),
            senders=args.senders,
        )
        ctx = multiprocessing.get_context("spawn")
        out: Queue[tuple[str, Any]] = ctx.Queue()
        proc = ctx.Process(target=receiver_main, args=(plan, out), daemon=True)
        proc.start()
        senders = Senders([], [], ctx.Queue())
        if plan.senders > 1:
            for index in range(plan.senders):
                commands: Queue[int | None] = ctx.Queue()
                child = ctx.Process(
                    target=sender_main, args=(plan, index, commands, senders.out), daemon=True
                )
                child.start()
                senders.procs.append(child)
                senders.commands.append(commands)
        try:
            for child in senders.procs:
                asyncio.run(expect(senders.out, child, "ready"))
            latency, phases = asyncio.run(run(plan, proc, out, senders))
        finally:
            for commands in senders.commands:
                commands.put(None)
            for child in [*senders.procs, proc]:
                child.join(timeout=30)
                if child.is_alive():
                    child.terminate()
    met = report(url, latency, phases)
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
