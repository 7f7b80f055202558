"""What git says about a directory: root, common dir, branch, remote, changed files."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field

__all__ = ["GitContext", "git_context", "normalise_remote"]

_GIT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class GitContext:
    root: str | None = None
    # Shared by every linked worktree of one repository.
    common_dir: str | None = None
    branch: str | None = None
    remote: str | None = None
    changed_files: tuple[str, ...] = field(default_factory=tuple)

    @property
    def repo_name(self) -> str | None:
        if self.remote:
            return self.remote.rsplit("/", 1)[-1]
        return os.path.basename(self.root) if self.root else None


def normalise_remote(url: str) -> str:
    """``git@github.com:Owner/Repo.git`` and ``https://github.com/owner/repo`` -> ``github.com/owner/repo``."""
    url = url.strip()
    scp = re.fullmatch(r"(?:[^@/]+@)?([^:/]+):(?!//)(.+)", url)
    if scp and "://" not in url:
        host, path = scp.group(1), scp.group(2)
    else:
        without_scheme = url.split("://", 1)[-1]
        without_user = (
            without_scheme.rsplit("@", 1)[-1]
            if "@" in without_scheme.split("/", 1)[0]
            else without_scheme
        )
        host, _, path = without_user.partition("/")
        host = host.split(":", 1)[0]  # drop a port
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return f"{host.lower()}/{path.lower()}"


async def _git(cwd: str, *args: str) -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), _GIT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return out.decode(errors="replace") if proc.returncode == 0 else None


async def git_context(cwd: str, *, with_files: bool = True) -> GitContext:
    """Ask git about ``cwd``; an empty context outside a repository or without git."""
    out = await _git(
        cwd,
        "rev-parse",
        "--path-format=absolute",
        "--show-toplevel",
        "--git-common-dir",
        "--abbrev-ref",
        "HEAD",
    )
    if out is None:
        # HEAD fails in a repository without commits: try without the branch.
        out = await _git(
            cwd, "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"
        )
        if out is None:
            return GitContext()
        out += "\n"
    lines = out.splitlines()
    root = lines[0] if lines else None
    common = lines[1].rstrip("/") if len(lines) > 1 else None
    branch = lines[2] if len(lines) > 2 and lines[2] else None
    remote_url = await _git(cwd, "config", "--get", "remote.origin.url")
    remote = normalise_remote(remote_url) if remote_url and remote_url.strip() else None
    files: tuple[str, ...] = ()
    if with_files and root:
        files = await changed_files(root)
    return GitContext(
        root=root, common_dir=common, branch=branch, remote=remote, changed_files=files
    )


async def changed_files(root: str, limit: int = 50) -> tuple[str, ...]:
    """Files with uncommitted changes (staged, unstaged or untracked), relative to the root."""
    out = await _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=normal")
    if not out:
        return ()
    names: list[str] = []
    entries = out.split("\0")
    i = 0
    while i < len(entries) and len(names) < limit:
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        if "R" in status or "C" in status:
            i += 1  # the original path of a rename follows
        names.append(path)
    return tuple(names)
