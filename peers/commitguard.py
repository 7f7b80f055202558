"""The commit guard: a git pre-commit hook that refuses a commit touching another live
session's exclusive claim.

``peers guard install`` writes ``pre-commit`` in the hooks directory git uses
(``git rev-parse --git-path hooks``: ``core.hooksPath`` when set, else the common
``.git/hooks`` every worktree shares). A hook already there is never overwritten:
it moves to ``pre-commit.before-peers`` and ours runs it after its own check, with
the same arguments and standard input, so both must pass. ``peers guard
uninstall`` puts it back.

At commit time ``peers guard check`` reads the staged paths (a rename counts as
both its old and new path), the claims of the repository, and refuses the commit
(exit 1) when a path is under an exclusive claim of another live session, naming
the holder, why, until when, and ``git commit --no-verify`` as the way out. The
committing session's own claims never block it: it is the live session whose
agent process is an ancestor of this commit. An unreachable store, a missing
peers or anything unexpected lets the commit through with a warning.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from peers import claimpaths, claimrules
from peers.errors import ConfigError
from peers.gitinfo import normalise_remote
from peers.models import Claim, Peer
from peers.procinfo import ancestors, find_agent_process
from peers.views import iso

__all__ = [
    "BEFORE_PEERS",
    "MARKER",
    "Blocked",
    "GuardInstall",
    "blocking_claims",
    "hooks_dir",
    "install",
    "own_sessions",
    "refusal",
    "staged_paths",
    "uninstall",
]

MARKER = "# peers commit guard"
HOOK = "pre-commit"
BEFORE_PEERS = "pre-commit.before-peers"


def _git(cwd: str | Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=10
    )
    if done.returncode != 0:
        raise ConfigError(
            f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip() or 'not a git repository?'}"
        )
    return done.stdout


def hooks_dir(cwd: str | Path) -> Path:
    """Where git looks for this repository's hooks (core.hooksPath respected)."""
    path = _git(cwd, "rev-parse", "--path-format=absolute", "--git-path", "hooks").strip()
    return Path(path)


def _script(peers: str) -> str:
    exe = shlex.quote(peers)
    return f"""#!/bin/sh
{MARKER} (written by `peers guard install`; `peers guard uninstall` removes it).
# Refuses a commit that touches a path another live agent session claimed exclusively.
# Commit anyway: git commit --no-verify
if [ -x {exe} ]; then
  {exe} guard check || exit $?
else
  echo "peers: {peers} is gone; the commit guard let this commit through" >&2
fi
before="$(dirname "$0")/{BEFORE_PEERS}"
if [ -x "$before" ]; then
  exec "$before" "$@"
fi
exit 0
"""


def _ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(errors="replace")
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class GuardInstall:
    hook: Path
    # Where a hook that was there before now lives (None: there was none).
    chained: Path | None
    changed: bool


def _peers_command() -> str:
    """The peers executable this process runs as (absolute), for the hook to call."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "peers" and argv0.exists():
        return str(argv0.resolve())
    beside = Path(sys.executable).parent / "peers"
    return str(beside if beside.exists() else argv0.resolve())


def install(cwd: str | Path, peers: str | None = None) -> GuardInstall:
    directory = hooks_dir(cwd)
    directory.mkdir(parents=True, exist_ok=True)
    hook = directory / HOOK
    before = directory / BEFORE_PEERS
    chained: Path | None = before if before.exists() else None
    text = _script(peers or _peers_command())
    if hook.exists() or hook.is_symlink():
        if _ours(hook):
            if hook.read_text() == text:
                return GuardInstall(hook, chained, False)
        elif before.exists() or before.is_symlink():
            raise ConfigError(
                f"{hook} is not peers' hook and {before} exists too; move one of them away "
                "first (peers never overwrites a hook)"
            )
        else:
            os.replace(hook, before)
            chained = before
    tmp = hook.with_name(f".{HOOK}.peers-tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, hook)
    return GuardInstall(hook, chained, True)


def uninstall(cwd: str | Path) -> GuardInstall:
    directory = hooks_dir(cwd)
    hook = directory / HOOK
    before = directory / BEFORE_PEERS
    if not _ours(hook):
        return GuardInstall(hook, before if before.exists() else None, False)
    hook.unlink()
    if before.exists() or before.is_symlink():
        os.replace(before, hook)
        return GuardInstall(hook, hook, True)
    return GuardInstall(hook, None, True)


# -- the check ---------------------------------------------------------------------------


def staged_paths(cwd: str | Path) -> list[str]:
    """Paths the commit changes, relative to the worktree root; a rename gives both ends."""
    out = _git(cwd, "diff", "--cached", "--name-status", "-M", "-z", "--no-ext-diff")
    fields = out.split("\0")
    paths: list[str] = []
    i = 0
    while i < len(fields):
        status = fields[i]
        if not status:
            i += 1
            continue
        count = 2 if status[0] in "RC" else 1
        paths += fields[i + 1 : i + 1 + count]
        i += 1 + count
    return list(dict.fromkeys(p for p in paths if p))


def repo_key_here(cwd: str | Path, host: str | None = None) -> tuple[str, str]:
    """(the repository's claims key, the worktree root) for the commit's directory."""
    root = _git(cwd, "rev-parse", "--show-toplevel").strip()
    common = _git(cwd, "rev-parse", "--path-format=absolute", "--git-common-dir").strip().rstrip("/")
    remote = subprocess.run(
        ["git", "config", "--get", "remote.origin.url"], cwd=cwd, capture_output=True,
        text=True, check=False, timeout=10,
    ).stdout.strip()  # fmt: skip
    probe = Peer(
        id="commit",
        namespace="-",
        host=host or socket.gethostname(),
        pid=os.getpid(),
        cwd=str(cwd),
        git_root=root,
        git_common_dir=common,
        git_remote=normalise_remote(remote) if remote else None,
    )
    key = claimrules.repo_key(probe)
    assert key is not None  # a common dir is always there inside a repository
    return key, root


def own_sessions(peers: list[Peer], host: str, pid: int | None = None) -> set[str]:
    """The live session this process runs under: the one whose agent process is its
    nearest ancestor (an agent that started another agent is not the one committing)."""
    depth = {(p.pid, p.start): i for i, p in enumerate(ancestors(pid or os.getpid()))}
    found: dict[str, int] = {}
    for peer in peers:
        if peer.host != host:
            continue
        agent = find_agent_process(peer.pid)
        if agent is None or agent.role is not None:
            continue
        at = depth.get((agent.pid, agent.start))
        if at is not None:
            found[peer.id] = at
    nearest = min(found.values(), default=None)
    return {peer_id for peer_id, at in found.items() if at == nearest}


@dataclass(frozen=True, slots=True)
class Blocked:
    path: str
    claim: Claim
    holder: Peer | None


def blocking_claims(paths: list[str], claims: list[Claim], own: set[str]) -> list[Blocked]:
    found: list[Blocked] = []
    for path in paths:
        for cl in claims:
            if cl.exclusive and cl.holder_id not in own and claimpaths.covers(cl.path, path):
                found.append(Blocked(path, cl, None))
    return found


def refusal(blocked: list[Blocked]) -> str:
    lines = ["peers: this commit touches paths another live agent session claimed exclusively:"]
    for item in blocked:
        holder = item.holder
        who = holder.label if holder is not None else item.claim.holder_id
        address = (holder.name or holder.id) if holder is not None else item.claim.holder_id
        under = "" if item.claim.path == item.path else f" (claim: {item.claim.path})"
        why = f": {item.claim.reason}" if item.claim.reason else ""
        lines.append(
            f"  {item.path}{under} held by {who} until {iso(item.claim.expires_at)}{why}"
            f" (ask: peers send {address} '...')"
        )
    lines.append("Commit anyway with: git commit --no-verify")
    return "\n".join(lines)
