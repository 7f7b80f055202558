"""The ``peers`` command line (typer).

``serve`` and ``demo`` start things; the rest are the operator's commands,
thin faces over :class:`peers.service.PeersService` and the transport
contract (they never touch a store directly). Every read command takes
``--json`` (keys in the README, "JSON keys"). Exit codes: 0 ok, 1 a problem was found
(or the backend failed), 2 a usage error (bad argument, scope or configuration).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from peers import constants as c
from peers import sandbox
from peers.config import Settings, load_settings, redact_url
from peers.errors import (
    AmbiguousTarget,
    BackendUnavailable,
    ConfigError,
    InvalidInput,
    MessageNotFound,
    NameTaken,
    PeerNotFound,
    PeersError,
    RateLimited,
)
from peers.gitinfo import git_context
from peers.log import configure_logging
from peers.models import Check, CheckStatus, EventKind, HistoryQuery, Peer, Scope
from peers.procinfo import process_start_time
from peers.render import (
    PEER_COLUMNS,
    Column,
    Output,
    check_json,
    clock,
    delivery_paths,
    event_json,
    event_text,
    iso,
    message_json,
    peer_json,
    peer_rows,
    record_json,
    sender_label,
    status_style,
)
from peers.service import CLI_ID_PREFIX, PeersService, Sender, SendResult
from peers.transports import create_transport, transport_class

if TYPE_CHECKING:
    from peers.install import InstallPlan, InstallScope

__all__ = ["app", "main"]

_T = TypeVar("_T")

app = typer.Typer(
    name="peers",
    help="Let AI coding-agent sessions find each other, message each other and coordinate.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def serve() -> None:
    """Run the stdio MCP server for one agent session (launched by the agent client)."""
    from peers.serve import run_serve

    run_serve()


@app.command()
def demo() -> None:
    """Start three real sessions in a temporary store and show them talking."""
    from peers.demo import run_demo

    try:
        run_demo()
    except Exception as exc:
        typer.echo(f"peers demo failed: {exc}", err=True)
        raise typer.Exit(1) from None


# -- operator commands ------------------------------------------------------------

# Everything below maps errors the same way: a PeersError becomes one line on
# stderr ("peers: ...") and exit 1, or exit 2 when the input was at fault.

_USAGE_ERRORS = (InvalidInput, ConfigError, AmbiguousTarget)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (keys: README, 'JSON keys').")
]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"peers: {message}", err=True)
    raise typer.Exit(code)


def _exit_code(exc: PeersError) -> int:
    return 2 if isinstance(exc, _USAGE_ERRORS) else 1


# The command being run (set by the app's callback, which runs before each command).
_invoked = "peers"


def _command() -> str:
    """The command being run, as typed: ``peers list``."""
    return _invoked


# Failures that are about the arguments given, wherever the command runs.
_ARGUMENT_ERRORS = (
    InvalidInput,
    AmbiguousTarget,
    PeerNotFound,
    MessageNotFound,
    NameTaken,
    RateLimited,
)


def _why(message: str, exc: BaseException) -> str:
    """Inside a sandbox, a failure of the store or the system says so, and what still works."""
    if not sandbox.sockets_blocked() or isinstance(exc, _ARGUMENT_ERRORS):
        return message
    hint = ""
    if isinstance(exc, BackendUnavailable):
        hint = (
            f"; to use `{_command()}` here too, add the store's directory to Codex's "
            "sandbox_workspace_write.writable_roots"
        )
    return f"{message}; {sandbox.WHY}; {sandbox.TOOLS_NOTE}{hint}"


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn every failure into one stderr line and an exit code, never a traceback."""
    try:
        yield
    except PeersError as exc:
        _fail(_why(str(exc), exc), _exit_code(exc))
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:
        if os.environ.get("PEERS_LOG_LEVEL", "").lower() == "debug":
            raise
        _fail(
            _why(
                f"unexpected {type(exc).__name__}: {exc} "
                "(PEERS_LOG_LEVEL=debug shows the traceback)",
                exc,
            )
        )


def _settings() -> Settings:
    settings = load_settings()
    quiet = "warning"
    if sandbox.sockets_blocked():
        settings = sandbox.sandboxed_settings(settings)
        # Wake-up sockets cannot work there: their warnings say nothing new.
        quiet = "error"
    # Operators want results on the terminal, not the transports' info chatter.
    level = os.environ.get("PEERS_LOG_LEVEL") or quiet
    configure_logging(level, settings.log_format)
    return settings


def _run(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    with _errors():
        if not sandbox.sockets_blocked():
            return asyncio.run(factory())
        # A sandbox (Codex's shell): no network for a store server, no self-pipe.
        url = load_settings().url
        if transport_class(url).capabilities.networked:
            _fail(sandbox.refusal(_command(), f"cannot reach the store at {redact_url(url)}"))
        return sandbox.run(factory)
    raise AssertionError("unreachable")  # pragma: no cover - _errors always raises or returns


# Commands that cannot work inside a sandbox, and what they would need.
_NOT_IN_SANDBOX = {
    "kill": "cannot signal a session from inside this sandbox",
    "demo": "cannot start its MCP servers inside this sandbox",
}


@app.callback()
def _sandbox_guard(ctx: typer.Context) -> None:
    """Let AI coding-agent sessions find each other, message each other and coordinate."""
    global _invoked
    _invoked = f"peers {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "peers"
    what = _NOT_IN_SANDBOX.get(ctx.invoked_subcommand or "")
    if what is not None and sandbox.sockets_blocked():
        _fail(sandbox.refusal(_invoked, what))


@contextlib.asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[PeersService]:
    """A connected service over the configured transport, closed on the way out."""
    transport = create_transport(settings)
    async with transport:
        yield PeersService(transport, settings)


async def _here(service: PeersService, sender_id: str) -> Peer:
    """This terminal as a peer record (never stored): scopes are judged from it."""
    cwd = os.getcwd()
    git = await git_context(cwd, with_files=False)
    pid = os.getpid()
    peer = service.new_peer(
        cwd=cwd,
        pid=pid,
        pid_start=process_start_time(pid),
        git_root=git.root,
        git_common_dir=git.common_dir,
        git_remote=git.remote,
        branch=git.branch,
        client="cli",
    )
    # The sender's id, not a fresh one: broadcast must not count this terminal.
    return peer.model_copy(update={"id": sender_id})


async def _scoped_peers(service: PeersService, scope: str) -> tuple[Scope, list[Peer]]:
    scope_ = service.parse_scope(scope)
    me = None
    if scope_ in (Scope.DIRECTORY, Scope.REPO):
        me = await _here(service, CLI_ID_PREFIX + "here")
    return scope_, await service.list_peers(scope_, me)


# -- status and list -------------------------------------------------------------------


@app.command()
def status(json_out: JsonOption = False) -> None:
    """Backend, reachability, versions, counts of live peers and unread mail, then the peers."""
    out = Output(json_mode=json_out)

    async def go() -> int:
        settings = _settings()
        transport = create_transport(settings)
        doc: dict[str, Any] = {
            "url": redact_url(settings.url),
            "backend": transport.capabilities.name,
            "namespace": settings.namespace,
            "host": settings.host,
            "reachable": False,
            "latency_ms": None,
            "error": None,
            "info": {},
            "live_peers": 0,
            "unread": 0,
            "peers": [],
        }
        try:
            await transport.connect()
            latency = await transport.ping()
            info = await transport.info()
        except PeersError as exc:
            doc["error"] = str(exc)
            if json_out:
                out.json(doc)
            with contextlib.suppress(PeersError):
                await transport.close()
            _fail(_why(str(exc), exc))
        try:
            service = PeersService(transport, settings)
            peers = await service.list_peers(Scope.ALL)
            counts = await transport.pending_counts()
        finally:
            await transport.close()
        info = {k: v for k, v in info.items() if k != "url"}
        doc.update(
            reachable=True,
            latency_ms=round(latency * 1000, 3),
            info=info,
            live_peers=len(peers),
            unread=sum(counts.values()),
            peers=[
                {**peer_json(p, counts.get(p.id, 0)), "delivery_paths": delivery_paths(p)}
                for p in peers
            ],
        )
        if json_out:
            out.json(doc)
            return 0
        version = ", ".join(
            f"{k.replace('_', ' ')} {v}"
            for k, v in info.items()
            if k not in ("backend", "path", "wake_dir") and v
        )
        rows = [
            ["backend", f"{doc['url']} ({doc['backend']})"],
            ["reachable", f"yes, {doc['latency_ms']:.1f} ms"],
            ["version", version or "-"],
            ["namespace", f"{settings.namespace} (this host: {settings.host})"],
            ["peers", f"{len(peers)} live, {doc['unread']} unread messages"],
        ]
        for key, value in rows:
            out.line(f"{key:<10} {value}")
        out.line()
        _peers_table(out, peers, counts, "all")
        return 0

    raise typer.Exit(_run(go))


def _peers_table(out: Output, peers: list[Peer], counts: dict[str, int], scope: str) -> None:
    if not peers:
        out.line(f"No live peers in scope '{scope}'.")
        return
    out.table(PEER_COLUMNS, peer_rows(peers, counts))


@app.command("list")
def list_(
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            "-s",
            help="all, machine (this host), directory or repo (as seen from this directory).",
        ),
    ] = "all",
    json_out: JsonOption = False,
) -> None:
    """Live peers: name, id, client, how mail reaches it, repo or cwd, branch, summary, last seen."""
    out = Output(json_mode=json_out)

    async def go() -> None:
        settings = _settings()
        async with _service(settings) as service:
            scope_, peers = await _scoped_peers(service, scope)
            counts = await service.transport.pending_counts()
        if json_out:
            out.json(
                {
                    "namespace": settings.namespace,
                    "scope": scope_.value,
                    "peers": [peer_json(p, counts.get(p.id, 0)) for p in peers],
                }
            )
            return
        _peers_table(out, peers, counts, scope_.value)

    _run(go)


# -- send and broadcast ------------------------------------------------------------------


def _read_body(message: str) -> str:
    if message != "-":
        return message
    if sys.stdin is None:
        _fail("no standard input to read the message from", 2)
    return sys.stdin.read().rstrip("\n")


def _send_json(result: SendResult) -> dict[str, Any]:
    return {
        "message": message_json(result.message),
        "recipient": peer_json(result.recipient),
        "delivery": result.delivery,
    }


@app.command()
def send(
    target: Annotated[str, typer.Argument(help="Peer id, name, or an unambiguous prefix of either.")],
    message: Annotated[str, typer.Argument(help="The message; '-' reads it from stdin.")],
    json_out: JsonOption = False,
) -> None:
    """Send a message from this terminal (shown to the peer as an unverified command-line sender)."""
    out = Output(json_mode=json_out)

    async def go() -> None:
        settings = _settings()
        body = _read_body(message)
        async with _service(settings) as service:
            result = await service.send(Sender.cli(), target, body)
        if json_out:
            out.json(_send_json(result))
        else:
            out.line(result.summary)

    _run(go)


@app.command()
def broadcast(
    message: Annotated[str, typer.Argument(help="The message; '-' reads it from stdin.")],
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            "-s",
            help="machine, directory, repo (as seen from this directory) or all.",
        ),
    ],
    json_out: JsonOption = False,
) -> None:
    """Send one message to every live peer in a scope, from this terminal (unverified)."""
    out = Output(json_mode=json_out)

    async def go() -> None:
        settings = _settings()
        body = _read_body(message)
        async with _service(settings) as service:
            scope_ = service.parse_scope(scope)
            cli = Sender.cli()
            me = await _here(service, cli.id) if scope_ in (Scope.DIRECTORY, Scope.REPO) else None
            sender = Sender(cli.id, cli.name, cli.kind, me)
            result = await service.broadcast(sender, body, scope_)
        if json_out:
            out.json(
                {"scope": result.scope.value, "sent": [_send_json(r) for r in result.results]}
            )
            return
        if not result.results:
            out.line(f"No live peers in scope '{result.scope.value}'; nothing was sent.")
            return
        for r in result.results:
            out.line(r.summary)

    _run(go)


# -- tail and log ------------------------------------------------------------------------


# How long `peers tail` waits for its stream and transport to wind down once stopped.
_TAIL_GRACE = 3.0


@app.command()
def tail(json_out: JsonOption = False) -> None:
    """Stream messages and presence events (joins, leaves, summaries, renames) until stopped."""
    out = Output(json_mode=json_out)

    async def go() -> None:
        settings = _settings()
        transport = create_transport(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await transport.connect()
        try:
            stream = transport.events()
            typer.echo(
                f"peers: watching namespace '{settings.namespace}' on "
                f"{redact_url(settings.url)} (Ctrl-C stops)",
                err=True,
            )

            async def consume() -> None:
                try:
                    async for event in stream:
                        message = None
                        if event.kind is EventKind.MESSAGE and event.data.get("id"):
                            message = await transport.get_message(str(event.data["id"]))
                        if json_out:
                            out.json_line(event_json(event, message))
                        else:
                            out.line(f"{clock(event.at)}  {event_text(event, message)}")
                finally:
                    aclose = getattr(stream, "aclose", None)
                    if aclose is not None:
                        with contextlib.suppress(Exception):
                            await aclose()

            consumer = asyncio.create_task(consume())
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                if not consumer.done():
                    consumer.cancel()
                    # A library deep in a blocking read may swallow the cancellation:
                    # closing the transport below ends the stream in any case.
                    await asyncio.wait({consumer}, timeout=_TAIL_GRACE)
            if consumer.done() and not consumer.cancelled():
                consumer.result()  # the stream's own error, if it failed
        except BrokenPipeError:
            # The reader went away (`peers tail | head`): a normal end.
            # Point stdout at /dev/null so that the final flush cannot fail again.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            with contextlib.suppress(PeersError, TimeoutError):
                await asyncio.wait_for(transport.close(), _TAIL_GRACE)

    _run(go)


@app.command()
def watch(
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            "-s",
            help="all, machine (this host), directory or repo (as seen from this directory).",
        ),
    ] = "all",
    repo: Annotated[
        str | None,
        typer.Option(
            "--repo", help="Only sessions in this repository: its name, remote, or a path in it."
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Print one frame as plain text and exit.")
    ] = False,
) -> None:
    """A live board of the sessions, their messages and conflicting files (q quits)."""
    from peers.board import BoardFilter
    from peers.watch import Watcher, snapshot

    async def go() -> None:
        settings = _settings()
        async with _service(settings) as service:
            scope_ = service.parse_scope(scope)
            me = None
            if scope_ in (Scope.DIRECTORY, Scope.REPO):
                me = await _here(service, CLI_ID_PREFIX + "here")
            flt = BoardFilter(scope=scope_, me=me, repo=repo)
            # Judged now, before the screen changes: a scope that needs a repository.
            service.scope_filter(scope_, me)
            if once:
                text = await snapshot(service, flt, Output().console.width)
        if once:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        await Watcher(settings, flt).run_on_terminal()

    if not once and not (sys.stdout.isatty() and sys.stdin is not None):
        _fail("peers watch needs a terminal; `peers watch --once` prints one frame as text", 2)
    _run(go)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float | None = None) -> float:
    """``30m``, ``1h``, ``2d``, ``1w`` ago, or an ISO date/time (local unless it says otherwise)."""
    text = value.strip().lower()
    now = time.time() if now is None else now
    m = _DURATION.fullmatch(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"--since {value!r}: use a duration such as 30m, 1h, 2d or 1w, "
            "or a date such as 2026-11-20T14:00"
        ) from None
    return moment.timestamp()


# How many of the newest messages `log --peer` searches for a peer no longer registered.
_LOG_LOOKUP_LIMIT = 10_000


async def _log_peer_id(service: PeersService, target: str) -> str:
    """A peer id for the history filter: live or gone, by id, name or prefix."""
    target = target.strip()
    if target.startswith(CLI_ID_PREFIX):
        return target  # a command-line sender: only ever in the history
    # An exact id is that peer's own history, not that of whoever took its name
    # (which is where resolve would lead).
    record = await service.transport.get_peer(target)
    if record is not None:
        return record.id
    try:
        return (await service.resolve(target)).id
    except PeerNotFound as exc:
        not_found = exc
    # Gone from the registry (an unnamed peer that left is forgotten at once, an old one
    # at gc) but still in the history: find it there, by id, id prefix or sender name.
    records = await service.transport.history(HistoryQuery(limit=_LOG_LOOKUP_LIMIT))
    lowered = target.lower()
    ids: set[str] = set()
    for rec in records:
        m = rec.message
        for pid in (m.sender_id, m.recipient_id):
            if pid == target:
                return pid
            if pid.startswith(target):
                ids.add(pid)
        if m.sender_name is not None and m.sender_name.lower() == lowered:
            ids.add(m.sender_id)
    if len(ids) == 1:
        return ids.pop()
    if ids:
        raise AmbiguousTarget(target, sorted(ids))
    raise not_found


@app.command()
def log(
    peer: Annotated[
        str | None, typer.Option("--peer", "-p", help="Only messages sent by or to this peer.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only newer messages: 30m, 1h, 2d, or a date.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="At most this many, the newest.")
    ] = 50,
    json_out: JsonOption = False,
) -> None:
    """Message history within the retention window, with delivery state."""
    out = Output(json_mode=json_out)

    async def go() -> None:
        settings = _settings()
        since_ts = parse_since(since) if since is not None else None
        async with _service(settings) as service:
            peer_id = await _log_peer_id(service, peer) if peer is not None else None
            records = await service.transport.history(
                HistoryQuery(peer_id=peer_id, since=since_ts, limit=limit)
            )
            names: dict[str, str | None] = {}
            for rec in records:
                for pid in (rec.message.sender_id, rec.message.recipient_id):
                    if pid not in names and not pid.startswith(CLI_ID_PREFIX):
                        found = await service.transport.get_peer(pid)
                        names[pid] = found.name if found else None
        if json_out:
            out.json(
                {
                    "namespace": settings.namespace,
                    "peer": peer_id,
                    "since": iso(since_ts),
                    "messages": [record_json(r, names) for r in records],
                }
            )
            return
        if not records:
            out.line("No messages in the retention window match.")
            return
        rows = []
        for rec in records:
            m = rec.message
            to = names.get(m.recipient_id)
            rows.append(
                [
                    clock(m.sent_at),
                    rec.state.value,
                    sender_label(m),
                    f"{to} ({m.recipient_id})" if to else m.recipient_id,
                    m.body,
                    m.id,
                ]
            )
        out.table(
            [
                Column("SENT"),
                Column("STATE"),
                Column("FROM"),
                Column("TO"),
                Column("MESSAGE", wide=True),
                Column("ID", style="dim"),
            ],
            rows,
        )

    _run(go)


# -- kill and gc ---------------------------------------------------------------------------


@app.command()
def kill(
    peer: Annotated[str, typer.Argument(help="Peer id, name, or an unambiguous prefix.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOption = False,
) -> None:
    """End a peer's agent session (its client process, not just the MCP server)."""
    out = Output(json_mode=json_out)

    async def go() -> None:
        settings = _settings()
        async with _service(settings) as service:
            if yes:
                result = await service.kill_peer(peer)
            else:
                # Every check first, so that the question names the very process to signal.
                plan = await service.kill_peer(peer, dry_run=True)
                target = plan.peer
                question = (
                    f"End {target.label}'s {target.client} session in {target.repo or target.cwd}?\n"
                    f"  agent process: pid {plan.pid}: {plan.command}\n"
                    f"  (above its MCP server, pid {target.pid})\n"
                    f"Send {plan.signal} to pid {plan.pid}?"
                )
                try:
                    confirmed = typer.confirm(question, default=False, err=True)
                except typer.Abort:
                    confirmed = False
                if not confirmed:
                    _fail("not confirmed; nothing was done")
                result = await service.kill_peer(target.id, expect_pid=plan.pid)
        if json_out:
            out.json(
                {
                    "peer": peer_json(result.peer),
                    "pid": result.pid,
                    "command": result.command,
                    "signal": result.signal,
                }
            )
        else:
            out.line(
                f"sent {result.signal} to {result.peer.label}'s agent "
                f"(pid {result.pid}: {result.command})"
            )

    _run(go)


@app.command()
def gc(json_out: JsonOption = False) -> None:
    """Mark dead peers offline, then delete what outlived retention: peers, mail, wake-up sockets, claims."""
    out = Output(json_mode=json_out)

    async def go() -> None:
        settings = _settings()
        async with _service(settings) as service:
            reaped = await service.transport.reap()
            report = await service.transport.gc()
        doc = {
            "peers_reaped": len(reaped),
            "peers_removed": report.peers_removed,
            "messages_removed": report.messages_removed,
            "wakeups_removed": report.wakeups_removed,
            "claims_removed": report.claims_removed,
        }
        if json_out:
            out.json(doc)
            return
        out.line(
            f"marked {_count(len(reaped), 'dead peer')} offline; removed "
            f"{_count(report.peers_removed, 'expired peer')}, "
            f"{_count(report.messages_removed, 'expired message')}, "
            f"{_count(report.wakeups_removed, 'stale wake-up socket')} and "
            f"{_count(report.claims_removed, 'ended file claim')}"
        )

    _run(go)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


# -- install and doctor ----------------------------------------------------------------------


ScopeOption = Annotated[
    str, typer.Option("--scope", "-s", help="user (every project) or project (this repo).")
]
ServerNameOption = Annotated[
    str, typer.Option("--name", help="The name the client registers the server under.")
]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the change; write nothing.")]


def _install_scope(scope: str) -> InstallScope:
    from peers.install import InstallScope

    try:
        return InstallScope(scope)
    except ValueError:
        raise InvalidInput(f"unknown scope {scope!r}; use user or project") from None


def _check_client(client: str) -> None:
    from peers import clients

    if clients.by_name(client) is None:
        raise InvalidInput(f"unknown client {client!r}; use one of: {', '.join(clients.names())}")


def _show_plan(out: Output, plan: InstallPlan, dry_run: bool, nothing: str) -> None:
    """Write the plan (or show it, for a dry run), saying what changed where."""
    from peers.install import apply_plan, tighten_permissions

    changed = [f for f in plan.files if f.changed]
    if not changed:
        out.line(nothing)
        if not dry_run and tighten_permissions(plan):
            out.line(f"Made {plan.location.path} private (0600): its entry holds a password.")
        return
    if dry_run:
        for f in changed:
            verb = "create" if f.before is None else "change"
            out.line(f"Would {verb} {f.path} ({', '.join(f.roles)}; dry run, nothing written):")
            out.line(f.diff().rstrip("\n"))
        return
    backups = apply_plan(plan)
    for f in changed:
        verb = "Created" if f.before is None else "Updated"
        out.line(f"{verb} {f.path} ({', '.join(f.roles)}).")
    for backup in backups:
        out.line(f"Backup of the previous file: {backup}")


@app.command()
def install(
    client: Annotated[
        str, typer.Argument(metavar="CLIENT", help="claude, codex, cursor or gemini.")
    ],
    scope: ScopeOption = "user",
    name: ServerNameOption = c.SERVER_NAME,
    dry_run: DryRunOption = False,
    hooks: Annotated[
        bool,
        typer.Option(
            "--hooks/--no-hooks",
            help="Also install peers' hooks: mail at every prompt and tool step, the edit guard.",
        ),
    ] = True,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust/--no-trust",
            help='Gemini: write "trust": true, so that it runs the peers tools without asking.',
        ),
    ] = True,
    trust_hooks: Annotated[
        bool,
        typer.Option(
            "--trust-hooks",
            help="Codex: record your trust of peers' hooks, as approving them in /hooks does.",
        ),
    ] = False,
) -> None:
    """Write peers (MCP entry and hooks) into an agent client's settings, keeping a backup."""
    from peers.install import plan_install, start_hint

    out = Output()
    with _errors():
        _check_client(client)
        plan = plan_install(
            client, _install_scope(scope), name, hooks=hooks, trust=trust, trust_hooks=trust_hooks
        )
        what = f"the '{plan.name}' entry" + (" and peers' hooks" if plan.hooks.present else "")
        where = ", ".join(str(f.path) for f in plan.files)
        _show_plan(out, plan, dry_run, f"{where} already has {what}; nothing to change.")
        assert plan.entry is not None
        args = plan.entry.get("args", [])
        out.line(f"Command: {' '.join([plan.entry['command'], *args])}")
        if plan.hooks.present:
            out.line(f"Hooks: {_hooks_line(plan)}")
        elif hooks and plan.client.hooks is None:
            out.line(f"Hooks: none ({plan.client.title} gets no hooks from peers)")
        for note in plan.notes:
            out.line(f"Note: {note}.")
        out.line()
        for hint in start_hint(plan):
            out.line(hint)


def _hooks_line(plan: InstallPlan) -> str:
    from peers.clients import HookEvent

    spec = plan.client.hooks
    assert spec is not None
    parts = []
    for event in HookEvent:
        label = spec.events[event]
        if event is HookEvent.PRE_TOOL_USE:
            label += f" (edit tools: {spec.edit_matcher})"
        elif event is HookEvent.POST_TOOL_USE:
            label += " (every tool)"
        parts.append(label)
    return f"{plan.hooks.command} hook EVENT --client {plan.client.name} on " + ", ".join(parts)


@app.command()
def uninstall(
    client: Annotated[
        str, typer.Argument(metavar="CLIENT", help="claude, codex, cursor or gemini.")
    ],
    scope: ScopeOption = "user",
    name: ServerNameOption = c.SERVER_NAME,
    dry_run: DryRunOption = False,
) -> None:
    """Take peers' MCP entry and hooks out of an agent client's settings, keeping a backup."""
    from peers.install import plan_uninstall

    out = Output()
    with _errors():
        _check_client(client)
        plan = plan_uninstall(client, _install_scope(scope), name)
        where = ", ".join(str(f.path) for f in plan.files)
        _show_plan(out, plan, dry_run, f"No '{plan.name}' entry or peers hooks in {where}; nothing to change.")
        for note in plan.notes:
            out.line(f"Note: {note}.")
        if plan.changed and not dry_run:
            out.line(f"Restart {plan.client.title} sessions that are running to drop peers.")


@app.command()
def doctor(json_out: JsonOption = False) -> None:
    """Check configuration, backend, peers and client configs; exit 1 if any check fails."""
    from peers.doctor import client_checks, failed, run_doctor

    out = Output(json_mode=json_out)

    async def go() -> list[Check]:
        try:
            settings = _settings()
        except ConfigError as exc:
            checks = [
                Check(
                    name="configuration",
                    status=CheckStatus.FAIL,
                    detail=str(exc),
                    fix="fix or unset the PEERS_* variable named above",
                )
            ]
            return checks + client_checks(Path.cwd())
        return await run_doctor(settings, Path.cwd())

    checks = _run(go)
    counts = {s: sum(1 for ch in checks if ch.status is s) for s in CheckStatus}
    if json_out:
        out.json(
            {
                "ok": not failed(checks),
                "counts": {s.value: n for s, n in counts.items()},
                "checks": [check_json(ch) for ch in checks],
            }
        )
    else:
        for ch in checks:
            word = {CheckStatus.OK: "ok", CheckStatus.WARN: "warn", CheckStatus.FAIL: "FAIL"}[
                ch.status
            ]
            out.line(f"{word:<5} {ch.name}: {ch.detail}", style=status_style(ch.status))
            if ch.fix and ch.status is not CheckStatus.OK:
                out.line(f"      fix: {ch.fix}")
        out.line()
        out.line(
            f"{_count(counts[CheckStatus.OK], 'check')} ok, "
            f"{_count(counts[CheckStatus.WARN], 'warning')}, "
            f"{_count(counts[CheckStatus.FAIL], 'failure')}"
        )
    if failed(checks):
        raise typer.Exit(1)

def main() -> None:
    app()


# The claims commands (claims, release, guard) register themselves on the app.
from peers import cli_claims  # noqa: E402,F401
