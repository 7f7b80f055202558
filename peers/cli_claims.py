"""The claims commands of the ``peers`` CLI: ``claims``, ``release`` and ``guard``.

Registered on :data:`peers.cli.app` when :mod:`peers.cli` is imported (its last
line imports this module).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Annotated, Any

import anyio
import typer

from peers import commitguard
from peers.board import repo_matches
from peers.claiming import claim_json
from peers.cli import JsonOption, _errors, _run, _service, _settings, app
from peers.errors import PeersError
from peers.models import Claim, Peer, PeerFilter
from peers.render import Column, Output, iso

__all__ = ["guard_app"]

_CLAIM_COLUMNS = [
    Column("REPO"),
    Column("PATH", wide=True),
    Column("HOLDER"),
    Column("HOW"),
    Column("UNTIL"),
    Column("REASON", wide=True),
]
# The commit guard gives up on the store after this long and lets the commit through.
_GUARD_PATIENCE = 3.0


def _how(claim: Claim) -> str:
    if claim.auto:
        return "editing"
    return "exclusive" if claim.exclusive else "shared"


@app.command()
def claims(
    repo: Annotated[
        str | None,
        typer.Option("--repo", help="Only claims in this repository: its name, remote, or a path in it."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """File claims of the live sessions: path, holder, exclusive or shared, until when, why."""
    out = Output(json_mode=json_out)

    async def go() -> None:
        settings = _settings()
        async with _service(settings) as service:
            found = await service.transport.list_claims()
            holders = {p.id: p for p in await service.transport.list_peers(PeerFilter())}
        shown = [
            cl for cl in found
            if cl.holder_id in holders and (repo is None or repo_matches(holders[cl.holder_id], repo))
        ]  # fmt: skip
        if json_out:
            out.json(
                {
                    "namespace": settings.namespace,
                    "claims": [
                        claim_json(cl) | {"holder_name": holders[cl.holder_id].name} for cl in shown
                    ],
                }
            )
            return
        if not shown:
            out.line("No file claims." if repo is None else f"No file claims in {repo}.")
            return
        rows = [
            [
                cl.repo,
                cl.path,
                holders[cl.holder_id].label,
                _how(cl),
                (iso(cl.expires_at) or "")[11:19] + "Z",
                cl.reason,
            ]
            for cl in shown
        ]
        out.table(_CLAIM_COLUMNS, rows)

    _run(go)


async def _holder(target: str, service: Any) -> Peer:
    """A session by id or name, live or not (its claims may outlive it)."""
    peer: Peer | None = await service.transport.get_peer(target.strip())
    if peer is None:
        peer = await service.transport.get_peer_by_name(target.strip().lower())
    if peer is None:
        resolved: Peer = await service.resolve(target)
        return resolved
    return peer


@app.command()
def release(
    peer: Annotated[str, typer.Argument(help="The session (name or id) whose claims to end.")],
    paths: Annotated[
        list[str] | None, typer.Argument(help="Claimed paths to release (default: all).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """End a session's file claims (all of them, or those on PATH...), for when one is stuck."""
    out = Output(json_mode=json_out)

    async def go() -> None:
        settings = _settings()
        async with _service(settings) as service:
            holder = await _holder(peer, service)
            released = await service.claims.release(holder.id, paths or None)
        if json_out:
            out.json({"peer_id": holder.id, "released": [claim_json(cl) for cl in released]})
            return
        if not released:
            what = "claims" if not paths else f"claims on {', '.join(paths)}"
            out.line(f"{holder.label} holds no {what}; nothing released")
            return
        out.line(f"released {holder.label}'s claims: {', '.join(cl.path for cl in released)}")

    _run(go)


guard_app = typer.Typer(
    name="guard",
    help="A git pre-commit hook that refuses commits touching another session's exclusive claim.",
    no_args_is_help=True,
)
app.add_typer(guard_app)


@guard_app.command("install")
def guard_install() -> None:
    """Add the pre-commit hook to this repository (an existing hook is kept and still runs)."""
    with _errors():
        done = commitguard.install(os.getcwd())
    if not done.changed:
        typer.echo(f"the peers commit guard is already in {done.hook}")
        return
    chained = f"; the hook that was there runs after it ({done.chained})" if done.chained else ""
    typer.echo(f"installed the peers commit guard in {done.hook}{chained}")


@guard_app.command("uninstall")
def guard_uninstall() -> None:
    """Remove peers' pre-commit hook (the hook it chained to is put back)."""
    with _errors():
        done = commitguard.uninstall(os.getcwd())
    if not done.changed:
        typer.echo(f"no peers commit guard in {done.hook}; nothing changed")
        return
    back = f"; {done.chained} is back in place" if done.chained else ""
    typer.echo(f"removed the peers commit guard from {done.hook}{back}")


@guard_app.command("check")
def guard_check() -> None:
    """What the pre-commit hook runs: exit 1 when a staged path is another session's exclusive claim."""
    try:
        blocked = anyio.run(_check)
    except Exception as exc:  # the guard never stops a commit because of itself
        sys.stderr.write(f"peers: the commit guard could not check claims ({exc}); commit allowed\n")
        return
    if blocked:
        sys.stderr.write(commitguard.refusal(blocked) + "\n")
        raise typer.Exit(1)


async def _check() -> list[commitguard.Blocked]:
    cwd = os.getcwd()
    paths = commitguard.staged_paths(cwd)
    if not paths:
        return []
    settings = _settings()
    repo, _ = commitguard.repo_key_here(cwd, settings.host)
    with anyio.fail_after(_GUARD_PATIENCE):
        try:
            async with _service(settings) as service:
                found = await service.transport.list_claims(repo=repo)
                live = await service.transport.list_peers(PeerFilter())
        except PeersError as exc:
            raise RuntimeError(str(exc)) from exc
    by_id = {p.id: p for p in live}
    own = commitguard.own_sessions(live, settings.host or socket.gethostname())
    blocked = commitguard.blocking_claims(paths, found, own)
    return [commitguard.Blocked(b.path, b.claim, by_id.get(b.claim.holder_id)) for b in blocked]

