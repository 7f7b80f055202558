"""`peers doctor`: configuration, backend, peers and client checks, each ok, warn or fail.

Backend-specific checks come from ``Transport.diagnostics()`` (they live behind
the transport edge); everything here goes through the service and the
transport contract only. A failure always carries its fix in one line.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from peers import clients
from peers import constants as c
from peers.config import Settings, redact_url
from peers.configfile import tilde
from peers.errors import BackendUnavailable, ConfigError, PeersError, StoreCorrupt
from peers.install import FoundEntry, ScanResult, command_resolves, scan_clients, scan_hooks
from peers.models import Check, CheckStatus, Peer, ReceiveMode
from peers.procinfo import find_agent_process
from peers.render import POLL_ONLY, PUSH_UNCONFIRMED, delivery_paths
from peers.service import PeersService
from peers.transports import create_transport
from peers.transports.base import Transport

__all__ = [
    "BACKLOG_WARN",
    "backend_checks",
    "client_checks",
    "config_checks",
    "failed",
    "hook_checks",
    "peer_checks",
    "run_doctor",
]

# Unread messages a live session may hold before doctor calls it a backlog.
BACKLOG_WARN = 20
# Round trips slower than this are worth a warning.
SLOW_PING = 0.1

OK, WARN, FAIL = CheckStatus.OK, CheckStatus.WARN, CheckStatus.FAIL


def failed(checks: Sequence[Check]) -> bool:
    return any(ch.status is FAIL for ch in checks)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- configuration ------------------------------------------------------------------


def config_checks(settings: Settings) -> tuple[list[Check], Transport | None]:
    """Settings and PEERS_URL; returns an unconnected transport when the URL is usable."""
    checks = [
        Check(
            name="configuration",
            status=OK,
            detail=f"namespace '{settings.namespace}', host '{settings.host}'",
        )
    ]
    if settings.peer_ttl <= settings.heartbeat_interval:
        checks.append(
            Check(
                name="peer ttl",
                status=FAIL,
                detail=(
                    f"PEERS_PEER_TTL ({settings.peer_ttl:g} s) is not longer than "
                    f"PEERS_HEARTBEAT_INTERVAL ({settings.heartbeat_interval:g} s): live "
                    "sessions would be reaped between heartbeats"
                ),
                fix="make PEERS_PEER_TTL three to four times PEERS_HEARTBEAT_INTERVAL",
            )
        )
    url = redact_url(settings.url)
    try:
        transport = create_transport(settings)
    except ConfigError as exc:
        checks.append(
            Check(
                name="PEERS_URL",
                status=FAIL,
                detail=str(exc),
                fix="set PEERS_URL to sqlite:///<absolute path> or redis://host:port/db",
            )
        )
        return checks, None
    checks.append(
        Check(name="PEERS_URL", status=OK, detail=f"{url} ({transport.capabilities.name})")
    )
    return checks, transport


# -- backend --------------------------------------------------------------------------


def _connect_fix(exc: PeersError, transport: Transport) -> str:
    if isinstance(exc, StoreCorrupt):
        return "move the database file away (peers starts an empty one), or upgrade peers"
    if transport.capabilities.networked:
        return "start the server PEERS_URL names, or point PEERS_URL at a running one"
    if isinstance(exc, BackendUnavailable):
        return "make the database's directory and file writable by you, or change PEERS_URL"
    return "see the detail; `peers doctor` again after fixing it"


async def backend_checks(transport: Transport) -> tuple[list[Check], bool]:
    """Connect, round-trip, versions and the transport's own diagnostics; (checks, connected)."""
    checks: list[Check] = []
    try:
        await transport.connect()
    except PeersError as exc:
        checks.append(
            Check(
                name="backend connection",
                status=FAIL,
                detail=str(exc),
                fix=_connect_fix(exc, transport),
            )
        )
        return checks, False
    try:
        latency = await transport.ping()
        slow = latency > SLOW_PING
        checks.append(
            Check(
                name="backend latency",
                status=WARN if slow else OK,
                detail=f"round trip {latency * 1000:.1f} ms",
                fix="a slow disk or network makes every message slower" if slow else "",
            )
        )
        info = await transport.info()
        facts = [
            f"{key.replace('_', ' ')} {value}"
            for key, value in info.items()
            if key not in ("backend", "url", "path", "wake_dir") and value
        ]
        checks.append(
            Check(name="backend", status=OK, detail=f"{info.get('backend', '?')}: {', '.join(facts)}")
        )
        checks.extend(await transport.diagnostics())
    except PeersError as exc:
        checks.append(
            Check(name="backend", status=FAIL, detail=str(exc), fix=_connect_fix(exc, transport))
        )
        return checks, False
    return checks, True


# -- peers ---------------------------------------------------------------------------------


def _ghost(peer: Peer, now: float, ttl: float) -> str:
    if peer.last_seen < now - ttl:
        return f"{peer.label} (silent for {now - peer.last_seen:.0f} s)"
    return f"{peer.label} (pid {peer.pid} gone)"


async def peer_checks(service: PeersService) -> list[Check]:
    """Ghosts, orphaned servers, unread backlog and poll-mode sessions."""
    transport = service.transport
    settings = service.settings
    checks: list[Check] = []
    now = time.time()

    reaped = await transport.reap()
    if reaped:
        shown = ", ".join(_ghost(p, now, settings.peer_ttl) for p in reaped[:10])
        checks.append(
            Check(
                name="ghost peers",
                status=WARN,
                detail=f"{_plural(len(reaped), 'peer')} still listed though gone: {shown}; marked offline now",
                fix="nothing left to do; `peers gc` deletes records older than the retention window",
            )
        )
    else:
        checks.append(Check(name="ghost peers", status=OK, detail="every listed peer is alive"))

    live = await transport.list_peers()
    local = [p for p in live if p.host == settings.host]
    orphans = [p for p in local if find_agent_process(p.pid) is None]
    if orphans:
        checks.append(
            Check(
                name="orphaned servers",
                status=WARN,
                detail="no agent process above the MCP server of "
                + ", ".join(f"{p.label} (pid {p.pid})" for p in orphans[:10]),
                fix="if no agent runs it any more: kill " + " ".join(str(p.pid) for p in orphans[:10]),
            )
        )
    checks.append(
        Check(
            name="live peers",
            status=OK,
            detail=f"{_plural(len(live), 'live peer')} ({len(local)} on this host)",
        )
    )

    checks.extend(await _backlog_checks(service, live))
    checks.extend(_poll_checks(live, settings.server_name))
    return checks


async def _backlog_checks(service: PeersService, live: Sequence[Peer]) -> list[Check]:
    transport = service.transport
    counts = await transport.pending_counts()
    total = sum(counts.values())
    by_id = {p.id: p for p in live}
    checks: list[Check] = []
    waiting: list[str] = []
    for recipient, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        peer = by_id.get(recipient)
        if peer is not None:
            if count >= BACKLOG_WARN:
                fix = (
                    "ask that session to call check_messages"
                    if peer.receive_mode is ReceiveMode.POLL
                    else "that session takes no mail: look at it, or end it with `peers kill`"
                )
                checks.append(
                    Check(
                        name="unread backlog",
                        status=WARN,
                        detail=f"{peer.label} ({peer.receive_mode.value}) has {count} unread messages",
                        fix=fix,
                    )
                )
            continue
        record = await transport.get_peer(recipient)
        if record is not None and (record.name or record.successor):
            waiting.append(f"{count} for {record.label}")
            continue
        checks.append(
            Check(
                name="unread backlog",
                status=WARN,
                detail=f"{_plural(count, 'message')} for {recipient}, which is gone and had no name: nobody will read them",
                fix="nothing to do; `peers gc` deletes them once the retention window ends",
            )
        )
    if not checks:
        detail = f"{_plural(total, 'unread message')} in total"
        if waiting:
            detail += f"; waiting for the next session of a name: {', '.join(waiting[:10])}"
        checks.append(Check(name="unread backlog", status=OK, detail=detail))
    return checks


def _poll_checks(live: Sequence[Peer], server_name: str) -> list[Check]:
    """Per session, how mail reaches its model: push, hooks, or only its next tool call."""
    now = time.time()
    paths = {p.id: delivery_paths(p, now) for p in live}
    poll_only = [p for p in live if paths[p.id] == [POLL_ONLY]]
    # Push not proven and no hooks: if the channel drops messages, they wait for a tool call.
    unproven = [p for p in live if paths[p.id] == [PUSH_UNCONFIRMED]]
    checks: list[Check] = []
    tally: dict[str, int] = {}
    for p in live:
        for path in paths[p.id]:
            key = path.split(" (")[0]
            tally[key] = tally.get(key, 0) + 1
    summary = ", ".join(f"{n} {key}" for key, n in tally.items()) or "no live session"
    checks.append(
        Check(
            name="delivery paths",
            status=OK,
            detail=f"{summary}; per session: "
            + "; ".join(f"{p.label}: {', '.join(paths[p.id])}" for p in live[:10])
            if live
            else summary,
        )
    )
    if poll_only:
        checks.append(
            Check(
                name="poll-mode sessions",
                status=WARN,
                detail="messages wait until the model calls a peers tool in "
                + ", ".join(f"{p.label} ({p.client})" for p in poll_only[:10]),
                fix=_poll_fix(poll_only, server_name),
            )
        )
    else:
        checks.append(
            Check(name="poll-mode sessions", status=OK, detail="no session is left waiting for a poll")
        )
    if unproven:
        checks.append(
            Check(
                name="unconfirmed push",
                status=WARN,
                detail="the channel is loaded but not proven to reach the model, and no hook "
                "reached peers yet, in " + ", ".join(p.label for p in unproven[:10]),
                fix="peers install claude (its hooks bring mail at every step even when "
                "Claude Code's channels are off), then restart those sessions",
            )
        )
    return checks


def _poll_fix(sessions: Sequence[Peer], server_name: str) -> str:
    kinds = sorted({p.client for p in sessions})
    names = [client.name for kind in kinds if (client := clients.by_kind(kind)) and client.hooks]
    fixes = []
    if names:
        fixes.append(
            f"peers install {' / '.join(names)} (hooks: mail at every prompt and tool step), "
            "then restart those sessions"
        )
    if any((client := clients.by_kind(k)) and client.push for k in kinds):
        fixes.append(
            f"or restart Claude Code with: claude --dangerously-load-development-channels "
            f"server:{server_name}"
        )
    return "; ".join(fixes) or "ask those sessions to call check_messages"


# -- clients ------------------------------------------------------------------------------


def _reinstall(found: FoundEntry) -> str:
    loc = found.location
    scope = "project" if loc.scope == "project" else "user"
    name = f" --name {found.name}" if found.name != c.SERVER_NAME else ""
    command = f"peers install {loc.client} --scope {scope}{name}"
    if loc.scope == "local":
        command += f" (and drop the local one: claude mcp remove {found.name} -s local)"
    return command


def client_checks(cwd: Path, server_name: str = c.SERVER_NAME) -> list[Check]:
    """A peers entry in some client's configuration, with a command that resolves."""
    scan = scan_clients(cwd, server_name)
    checks: list[Check] = []
    for loc, error in scan.errors:
        checks.append(
            Check(
                name=f"{loc.client} config",
                status=FAIL,
                detail=error,
                fix=f"repair {loc.path} by hand; peers does not rewrite a file it cannot parse",
            )
        )
    if not scan.entries:
        checks.append(
            Check(
                name="client entries",
                status=WARN,
                detail="no Claude Code, Codex, Cursor or Gemini configuration has a peers entry",
                fix="peers install claude  (or codex, cursor, gemini)",
            )
        )
    for found in scan.entries:
        label = f"{found.location.label}: {found.name}"
        ok, resolved = command_resolves(found.entry)
        args = found.entry.get("args")
        argv = " ".join([resolved, *(a for a in args if isinstance(a, str))]) if isinstance(args, list) else resolved
        if not ok:
            checks.append(
                Check(name=label, status=FAIL, detail=resolved, fix=_reinstall(found))
            )
            continue
        client = clients.by_name(found.location.client)
        if client is not None and client.trust_key and found.entry.get(client.trust_key) is not True:
            checks.append(
                Check(
                    name=label,
                    status=WARN,
                    detail=f'{argv}; without "{client.trust_key}": true, `gemini -p` hides the '
                    "peers tools from the model and the UI asks before every call",
                    fix=_reinstall(found),
                )
            )
            continue
        if client is None or not client.push:
            checks.append(Check(name=label, status=OK, detail=argv))
            continue
        env = found.entry.get("env")
        expects = env.get("PEERS_SERVER_NAME") if isinstance(env, dict) else None
        expects = expects or c.SERVER_NAME
        if expects != found.name:
            checks.append(
                Check(
                    name=label,
                    status=FAIL,
                    detail=(
                        f"registered as '{found.name}', but that server looks for the channel "
                        f"flag server:{expects}, so push never turns on"
                    ),
                    fix=_reinstall(found),
                )
            )
            continue
        checks.append(
            Check(
                name=label,
                status=OK,
                detail=f"{argv}; start claude with --dangerously-load-development-channels server:{found.name}",
            )
        )
    checks.extend(hook_checks(cwd, scan, {loc.path for loc, _ in scan.errors}))
    return checks


def _hook_program(command: str) -> str:
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    return words[0] if words else command


def hook_checks(cwd: Path, scan: ScanResult, reported: set[Path]) -> list[Check]:
    """peers' hooks next to each client's entry: there, complete, runnable, trusted, on."""
    checks: list[Check] = []
    files = scan_hooks(cwd)
    for client in clients.CLIENTS:
        spec = client.hooks
        if spec is None:
            continue
        mine = [f for f in files if f.client is client]
        entries = [e for e in scan.entries if e.location.client == client.name]
        for f in mine:
            if f.error and f.path not in reported:
                checks.append(
                    Check(
                        name=f"{client.name} hooks",
                        status=FAIL,
                        detail=f.error,
                        fix=f"repair {f.path} by hand; peers does not rewrite a file it cannot parse",
                    )
                )
        ours = [(f, h) for f in mine for h in f.ours]
        if not entries:
            if ours:
                where = ", ".join(sorted({tilde(f.path) for f, _ in ours}))
                checks.append(
                    Check(
                        name=f"{client.name} hooks",
                        status=WARN,
                        detail=f"peers' hooks in {where} but no peers entry: they find no "
                        "session and do nothing",
                        fix=f"peers install {client.name}, or peers uninstall {client.name}",
                    )
                )
            continue
        scope = "project" if all(e.location.scope == "project" for e in entries) else "user"
        reinstall = f"peers install {client.name} --scope {scope}"
        if not ours:
            checks.append(
                Check(
                    name=f"{client.name} hooks",
                    status=WARN,
                    detail=f"{client.title} has a peers entry but none of peers' hooks: mail "
                    "waits until its model calls a peers tool, and edits are not guarded",
                    fix=reinstall,
                )
            )
            continue
        problems: list[Check] = []
        present = {h.event for _, h in ours}
        missing = [name for name in spec.events.values() if name not in present]
        if missing:
            problems.append(
                Check(
                    name=f"{client.name} hooks",
                    status=WARN,
                    detail=f"peers' hooks lack {', '.join(missing)}",
                    fix=reinstall,
                )
            )
        broken = sorted(
            {
                f"{program} ({why})"
                for _, h in ours
                for program in [_hook_program(h.command)]
                for ok, why in [command_resolves({"command": program})]
                if not ok
            }
        )
        if broken:
            problems.append(
                Check(
                    name=f"{client.name} hooks",
                    status=FAIL,
                    detail=f"peers' hooks run a command that does not resolve: {', '.join(broken)}",
                    fix=reinstall,
                )
            )
        for f in mine:
            if f.ours and f.disabled:
                problems.append(
                    Check(
                        name=f"{client.name} hooks",
                        status=WARN,
                        detail=f"{tilde(f.path)}: {f.disabled}",
                        fix=f"change that setting in {f.path}",
                    )
                )
            not_trusted = [
                f"{h.event} ({status})" for h, status in zip(f.ours, f.trust, strict=False)
                if status != "trusted"
            ]
            if not_trusted:
                problems.append(
                    Check(
                        name=f"{client.name} hooks",
                        status=WARN,
                        detail=f"{tilde(f.path)}: Codex skips untrusted hooks silently, and "
                        f"these of peers' are not trusted: {', '.join(not_trusted)}",
                        fix="in Codex type /hooks and trust the peers hooks, or run "
                        f"{reinstall} --trust-hooks",
                    )
                )
        if problems:
            checks.extend(problems)
            continue
        where = ", ".join(sorted({tilde(f.path) for f, _ in ours}))
        trusted = " (trusted)" if spec.needs_trust else ""
        checks.append(
            Check(
                name=f"{client.name} hooks",
                status=OK,
                detail=f"{len(ours)} of peers' hooks in {where}{trusted}",
            )
        )
    return checks


# -- everything ------------------------------------------------------------------------------


async def run_doctor(settings: Settings, cwd: Path) -> list[Check]:
    """Every check, in order: configuration, backend, peers, clients."""
    checks, transport = config_checks(settings)
    if transport is not None:
        try:
            backend, connected = await backend_checks(transport)
            checks.extend(backend)
            if connected:
                try:
                    checks.extend(await peer_checks(PeersService(transport, settings)))
                except PeersError as exc:
                    checks.append(
                        Check(
                            name="peers",
                            status=FAIL,
                            detail=str(exc),
                            fix="fix the backend problem above, then run `peers doctor` again",
                        )
                    )
        finally:
            with contextlib.suppress(PeersError):
                await transport.close()
    checks.extend(client_checks(cwd, settings.server_name))
    return checks
