"""End-to-end benchmark of real ``peers serve`` sessions over MCP stdio, beside the targets.

Every session is driven by the same small JSON-RPC client (below), so that with
``--reference`` the TypeScript claude-peers-mcp (its MCP server over stdio, with
its broker on a free loopback port and a database of its own) is measured the
same way in the same run, and the ratio is printed. It prints:

- ``initialize`` answered, from spawn (target <= 500 ms), and ``tools/list``;
- send_message calls/s with 300 calls in flight per sender, 2 sessions sending
  to each other and 4 sessions sending round a ring, every session receiving by
  push, or (peers) with its own send_message results when mail arrived before
  its push (target >= the reference's); the median of ``--repeat`` runs, the two
  implementations taking turns so that both see the same load; after each run,
  every message sent is waited for;
- push latency (send_message call to the notification at the recipient);
- an idle session's CPU over ``--idle`` seconds and every session's RSS
  (target <= 60 MB);
- the exit after SIGTERM (target <= 100 ms).

Each peers session acts as a Claude Code session whose channel works: it
records every channel message it receives in its session transcript, in Claude
Code's format, as received and shown to the model, and peers acknowledges each
message from there (peers never acknowledges a notification alone). The
reference marks a message delivered when its poll reads it.

    uv run python benchmarks/serve_bench.py                 # SQLite in a temp dir
    uv run python benchmarks/serve_bench.py --url redis://127.0.0.1:6379/0
    uv run python benchmarks/serve_bench.py --reference /tmp/claude-peers-mcp

For the reference: a checkout of github.com/louislva/claude-peers-mcp with its
dependencies installed (``bun install``); ``bun`` on PATH or ``--bun PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchsupport import free_port, pct

from peers.mcpclient import channel_text
from peers.transcript import transcript_path

TICKS = os.sysconf("SC_CLK_TCK")
IN_FLIGHT = 300
QUIET = 2.0  # peers.trim.QUIET


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Session:
    """One MCP server subprocess, driven with raw JSON-RPC lines (no SDK on this side)."""

    def __init__(
        self, command: list[str], env: dict[str, str], cwd: str, transcript: Path | None = None
    ) -> None:
        self.command, self.env, self.cwd = command, env, cwd
        # Where this session records the channel messages it shows its model (Claude Code's
        # transcript), or None (the reference reads no transcript).
        self.transcript = transcript
        self.proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.channels: asyncio.Queue[float] = asyncio.Queue()
        # Messages sent to this session so far, and those that reached it, by either path:
        # a channel notification, or a tool result's new_mail (peers gives mail that has
        # not been pushed yet to the next result, the benchmark's own send_message calls
        # included). Counted once each by message id where the path names it (the
        # reference's notifications name none; its results carry no mail).
        self.expected = 0
        self.delivered = 0
        self._delivered_ids: set[str] = set()
        self._progress = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.init_ms = self.list_ms = float("nan")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        started = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env=self.env, cwd=self.cwd, limit=2**24,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        await self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {"experimental": {"claude/channel": {}}},
                "clientInfo": {"name": "claude-code", "version": "2.1.328"},
            },
        )
        self.init_ms = (time.perf_counter() - started) * 1000
        self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await self.request("tools/list", {})
        self.list_ms = (time.perf_counter() - started) * 1000

    def _write(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message = json.loads(line)
            if "id" in message and "method" not in message:
                future = self._waiting.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
            elif message.get("method") == "notifications/claude/channel":
                self.channels.put_nowait(time.perf_counter())
                params = message["params"]
                if self.transcript is not None:
                    self._record(params)
                self._arrived(params["meta"].get("message_id"))

    def _arrived(self, message_id: str | None) -> None:
        if message_id is not None:
            if message_id in self._delivered_ids:
                return  # pushed and also in a result (peers marks it also_pushed)
            self._delivered_ids.add(message_id)
        self.delivered += 1
        self._progress.set()

    def _record(self, params: dict[str, Any]) -> None:
        """What Claude Code writes when a channel message arrives and is shown (idle session)."""
        assert self.transcript is not None
        text = channel_text("peers", params["content"], params["meta"])
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        records: list[dict[str, Any]] = [
            {"type": "queue-operation", "operation": "enqueue", "content": text},
            {"type": "user", "message": {"role": "user", "content": text}, "isMeta": True,
             "origin": {"kind": "channel", "server": "peers"}},
        ]  # fmt: skip
        with self.transcript.open("a") as fh:
            for record in records:
                fh.write(json.dumps({"timestamp": stamp, **record}) + "\n")

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._write({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 60)
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = await self.request("tools/call", {"name": tool, "arguments": arguments})
        mail = (result.get("structuredContent") or {}).get("new_mail")
        for item in mail["messages"] if mail else ():
            self._arrived(item["message_id"])
        if result.get("isError"):
            raise RuntimeError(f"{tool} failed: {result['content'][0]['text']}")
        return result

    async def next_channel(self, timeout: float = 30) -> float:
        return await asyncio.wait_for(self.channels.get(), timeout)

    async def drained(self, timeout: float) -> None:
        """Wait until every message sent to this session reached it; then forget the
        notifications' arrival times (only push_latency reads them)."""
        deadline = time.monotonic() + timeout
        while self.delivered < self.expected:
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), deadline - time.monotonic())
            except TimeoutError:
                name = self.env.get("PEERS_NAME")
                raise RuntimeError(
                    f"session {name}: {self.delivered} of the {self.expected} messages sent "
                    f"to it arrived within {timeout:.0f} s"
                ) from None
        while not self.channels.empty():
            self.channels.get_nowait()

    async def stop(self) -> float:
        """SIGTERM, and the milliseconds until the process is gone (seen on a pidfd, not
        through the child watcher, whose thread hop would count too)."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return float("nan")
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(self.proc.pid)
        exited: asyncio.Future[float] = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(time.perf_counter())

        loop.add_reader(pidfd, on_exit)
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            ended = await asyncio.wait_for(exited, 10)
        except TimeoutError:
            self.proc.kill()
            ended = float("nan")
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        await self.proc.wait()
        took = (ended - started) * 1000
        if self._reader is not None:
            self._reader.cancel()
        return took


@dataclass
class Flavour:
    """How to run and address the sessions of one implementation."""

    name: str
    command: list[str]
    env: dict[str, str]
    find_ids: Callable[[list[Session]], Awaitable[list[str]]]
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    # Its sessions keep a Claude Code transcript (each with its own session id).
    transcripts: bool = False


async def _whoami_ids(sessions: list[Session]) -> list[str]:
    return [(await s.call("whoami"))["structuredContent"]["id"] for s in sessions]


def peers_flavour(url: str | None, tmp: str) -> Flavour:
    env = {
        **os.environ,
        "PEERS_URL": url or f"sqlite:///{tmp}/peers.db",
        "PEERS_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
        "PEERS_LOG_LEVEL": "warning",
        "PEERS_RATE_LIMIT": "100000000",
        "XDG_STATE_HOME": tmp,
        "CLAUDE_CONFIG_DIR": f"{tmp}/claude",
        "CLAUDE_PROJECT_DIR": tmp,
    }
    return Flavour(
        "peers", [sys.executable, "-m", "peers", "serve"], env, _whoami_ids, transcripts=True
    )


def reference_flavour(checkout: Path, bun: str, tmp: str) -> Flavour:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}  # never the network
    env |= {"CLAUDE_PEERS_PORT": str(port), "CLAUDE_PEERS_DB": f"{tmp}/reference.db"}
    broker = subprocess.Popen(
        [bun, str(checkout / "broker.ts")], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline or broker.poll() is not None:
                broker.kill()
                raise RuntimeError("the reference's broker did not start") from None
            time.sleep(0.05)

    async def broker_ids(sessions: list[Session]) -> list[str]:
        def listed() -> dict[int, str]:
            body = json.dumps({"scope": "machine", "cwd": tmp, "git_root": None}).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/list-peers", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=5) as reply:
                return {p["pid"]: p["id"] for p in json.loads(reply.read())}

        deadline = time.monotonic() + 30
        while True:
            by_pid = await asyncio.to_thread(listed)
            if all(s.pid in by_pid for s in sessions):
                return [by_pid[s.pid] for s in sessions]
            if time.monotonic() > deadline:
                raise RuntimeError("the reference's sessions did not register")
            await asyncio.sleep(0.05)

    def stop_broker() -> None:
        broker.terminate()
        broker.wait(10)

    return Flavour("reference", [bun, str(checkout / "server.ts")], env, broker_ids, [stop_broker])


async def send_rate(sessions: list[Session], ids: list[str], per_sender: int, run: int) -> float:
    """send_message calls/s: each session sends to the next, IN_FLIGHT calls at a time.

    Every body names its run (``run``, unique in the benchmark): peers answers a send
    of the same body from the same sender to the same recipient within
    SEND_REPEAT_WINDOW with the first one's result, sending nothing.
    """
    count = len(sessions)

    async def sender(i: int) -> None:
        target, queue = ids[(i + 1) % count], iter(range(per_sender))
        sessions[(i + 1) % count].expected += per_sender

        async def lane() -> None:
            for n in queue:
                result = await sessions[i].call(
                    "send_message", to_id=target, message=f"rate {run} {i}:{n}"
                )
                if (result.get("structuredContent") or {}).get("repeat"):
                    raise RuntimeError(f"send {run} {i}:{n} was taken for a repeat")

        await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))

    started = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(count)))
    return count * per_sender / (time.perf_counter() - started)


async def drain(sessions: list[Session], timeout: float = 120) -> None:
    """Wait until every message sent reached its session (nothing left to compete)."""
    for s in sessions:
        await s.drained(timeout)


@dataclass
class Figures:
    init_ms: list[float] = field(default_factory=list)
    list_ms: list[float] = field(default_factory=list)
    rate: dict[int, list[float]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    idle_cpu: float = float("nan")
    rss_idle: list[float] = field(default_factory=list)
    rss_after: list[float] = field(default_factory=list)
    exit_ms: list[float] = field(default_factory=list)


@dataclass
class Running:
    flavour: Flavour
    sessions: list[Session]
    ids: list[str]
    figures: Figures


async def start_flavour(flavour: Flavour, tmp: str) -> Running:
    figures = Figures()
    sessions = []
    for i in range(4):
        env = {**flavour.env, "PEERS_NAME": f"s{i}"}
        transcript = None
        if flavour.transcripts:
            env["CLAUDE_CODE_SESSION_ID"] = str(uuid.uuid4())
            transcript = transcript_path(env, tmp)
            assert transcript is not None
            transcript.parent.mkdir(parents=True, exist_ok=True)
        sessions.append(Session(flavour.command, env, tmp, transcript))
    running = Running(flavour, sessions, [], figures)
    for s in sessions:  # one at a time, as a client starts them
        await s.start()
        figures.init_ms.append(s.init_ms)
        figures.list_ms.append(s.list_ms)
    running.ids = ids = await flavour.find_ids(sessions)
    # Warm-up: the first message of each pair opens sockets and caches.
    for i, s in enumerate(sessions):
        sessions[(i + 1) % 4].expected += 1
        await s.call("send_message", to_id=ids[(i + 1) % 4], message="warm-up")
    await drain(sessions)
    await asyncio.sleep(QUIET + 0.5)  # peers gives memory back after this long without traffic
    figures.rss_idle = [rss_mb(s.pid) for s in sessions]
    return running


async def push_latency(running: Running, rounds: int) -> None:
    sessions, ids = running.sessions, running.ids
    for n in range(rounds):
        i = n % 4
        recipient = sessions[(i + 1) % 4]
        recipient.expected += 1
        sent = time.perf_counter()
        await sessions[i].call("send_message", to_id=ids[(i + 1) % 4], message=f"m{n}")
        # The recipient makes no calls: the message can only come by channel.
        arrived = await recipient.next_channel()
        running.figures.latencies.append((arrived - sent) * 1000)


async def stop_flavour(running: Running) -> None:
    try:
        for s in reversed(running.sessions):
            running.figures.exit_ms.append(await s.stop())
    finally:
        for step in running.flavour.cleanup:
            step()


async def measure(
    flavours: list[Flavour], tmp: str, args: argparse.Namespace
) -> dict[str, Figures]:
    """Both implementations up at once, their rate runs taking turns (the same load for both)."""
    runs: list[Running] = []
    try:
        for flavour in flavours:
            runs.append(await start_flavour(flavour, tmp))
        # The reference pushes by polling its broker once a second: no latency rounds.
        await push_latency(runs[0], args.rounds)
        turn = itertools.count()
        for _ in range(args.repeat):
            for count in (2, 4):
                for run in runs:
                    group = run.sessions[:count]
                    per = args.sends // count
                    rate = await send_rate(group, run.ids[:count], per, next(turn))
                    run.figures.rate.setdefault(count, []).append(rate)
                    await drain(group)
        before = [cpu_seconds(run.sessions[3].pid) for run in runs]
        await asyncio.sleep(args.idle)
        for run, cpu in zip(runs, before, strict=True):
            run.figures.idle_cpu = (cpu_seconds(run.sessions[3].pid) - cpu) / args.idle * 100
            run.figures.rss_after = [rss_mb(s.pid) for s in run.sessions]
    finally:
        for run in runs:
            await stop_flavour(run)
    return {run.flavour.name: run.figures for run in runs}


def show(label: str, value: float, unit: str, target: str = "") -> None:
    print(f"  {label:<42} {value:9.1f} {unit:<7} {target}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="peers-bench-") as tmp:
        ours = peers_flavour(args.url, tmp)
        backend = ours.env["PEERS_URL"].split("://", 1)[0]
        print(f"peers serve, backend {backend}: 4 sessions, {IN_FLIGHT} send_message calls "
              f"in flight per sender, {args.sends} calls per rate run, {args.repeat} run(s)")  # fmt: skip
        flavours = [ours]
        if args.reference:
            bun = args.bun or shutil.which("bun")
            if bun is None:
                raise SystemExit("--reference needs bun on PATH (or --bun PATH)")
            reference_dir = Path(tmp, "reference")
            reference_dir.mkdir()
            flavours.append(reference_flavour(Path(args.reference), bun, str(reference_dir)))
        results = await measure(flavours, tmp, args)

    ref = results.get("reference")
    for name, fig in results.items():
        print(f"\n{name}:")
        show("initialize answered, from spawn (max)", max(fig.init_ms), "ms",
             "(target <= 500 ms)" if name == "peers" else "")  # fmt: skip
        show("tools/list answered, from spawn (max)", max(fig.list_ms), "ms")
        for count, rates in sorted(fig.rate.items()):
            median = statistics.median(rates)
            target = ""
            if name == "peers" and ref is not None:
                ratio = median / statistics.median(ref.rate[count])
                target = f"({ratio:.2f}x the reference; target >= 1x)"
            elif name == "peers":
                target = "(target >= the reference's; run with --reference)"
            spread = f"[{min(rates):.0f}-{max(rates):.0f}] " if len(rates) > 1 else ""
            show(f"send_message calls/s, {count} sessions", median, "calls/s", spread + target)
        if fig.latencies:
            show("push latency p50", statistics.median(fig.latencies), "ms",
                 "(target <= 10 ms SQLite, <= 5 ms Redis; reference 490 ms)")  # fmt: skip
            show("push latency p99", pct(fig.latencies, 0.99), "ms",
                 "(target <= 50 ms SQLite, <= 25 ms Redis; reference 994 ms)")  # fmt: skip
        show(f"idle session CPU over {args.idle:.0f} s", fig.idle_cpu, "%",
             "(target <= 0.5 %)" if name == "peers" else "")  # fmt: skip
        show("RSS per session, idle after start (max)", max(fig.rss_idle), "MB",
             "(target <= 60 MB)" if name == "peers" else "")  # fmt: skip
        show("RSS per session, after the send runs (max)", max(fig.rss_after), "MB",
             "(target <= 60 MB)" if name == "peers" else "")  # fmt: skip
        show("exit after SIGTERM (max)", max(fig.exit_ms), "ms",
             "(target <= 100 ms)" if name == "peers" else "")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="PEERS_URL (default: SQLite in a temp dir)")
    parser.add_argument("--rounds", type=int, default=400, help="push latency rounds")
    parser.add_argument("--sends", type=int, default=3000, help="send_message calls per rate run")
    parser.add_argument("--repeat", type=int, default=3, help="rate runs per session count")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    parser.add_argument(
        "--reference", metavar="PATH", help="a claude-peers-mcp checkout to compare"
    )
    parser.add_argument("--bun", help="the bun binary for --reference (default: bun on PATH)")
    asyncio.run(main(parser.parse_args()))
