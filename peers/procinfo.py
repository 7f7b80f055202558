"""Facts about processes: start times (to defeat pid reuse), liveness, ancestry."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ProcessInfo",
    "ancestors",
    "process_alive",
    "process_info",
    "process_start_time",
]

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    ppid: int
    uid: int | None
    start: float | None
    argv: tuple[str, ...]

    @property
    def exe_name(self) -> str:
        return os.path.basename(self.argv[0]) if self.argv else ""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    return raw[raw.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> float | None:
    """Start time of a process in clock ticks since boot (Linux), or None if unknown."""
    if sys.platform.startswith("linux"):
        fields = _stat_fields(pid)
        if fields is None or len(fields) < 20:
            return None
        return float(fields[19])  # starttime is field 22 overall
    return None


def process_alive(pid: int, start: float | None) -> bool:
    """True if the process exists and, when a start time is known, it is the same one."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start is None:
        return True
    current = process_start_time(pid)
    if current is None:
        return True
    # A zombie still has its stat entry; treat it as dead.
    fields = _stat_fields(pid)
    if fields is not None and fields and fields[0] in ("Z", "X"):
        return False
    return current == start


def process_info(pid: int) -> ProcessInfo | None:
    """Parent, owner, start time and command line of a process (Linux /proc, else ps)."""
    if sys.platform.startswith("linux"):
        fields = _stat_fields(pid)
        if fields is None:
            return None
        try:
            argv_raw = (_PROC / str(pid) / "cmdline").read_bytes()
            uid = (_PROC / str(pid)).stat().st_uid
        except OSError:
            return None
        argv = tuple(a.decode(errors="replace") for a in argv_raw.split(b"\0") if a)
        return ProcessInfo(pid, int(fields[1]), uid, float(fields[19]), argv)
    return _ps_info(pid)


def _ps_info(pid: int) -> ProcessInfo | None:
    import subprocess

    try:
        out = subprocess.run(
            ["ps", "-o", "ppid=,uid=,command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    ppid, uid, *cmd = out.split(None, 2)
    return ProcessInfo(pid, int(ppid), int(uid), None, tuple(" ".join(cmd).split()))


def ancestors(pid: int, limit: int = 32) -> list[ProcessInfo]:
    """The process itself and its ancestors, nearest first, up to (not including) pid 1."""
    chain: list[ProcessInfo] = []
    current = pid
    while current > 1 and len(chain) < limit:
        info = process_info(current)
        if info is None:
            break
        chain.append(info)
        current = info.ppid
    return chain


# Processes that merely start the MCP server on an agent's behalf.
LAUNCHERS = frozenset(
    {
        "uv",
        "uvx",
        "env",
        "sh",
        "bash",
        "zsh",
        "dash",
        "fish",
        "nohup",
        "timeout",
        "npx",
        "npm",
        "pipx",
        "sudo",
        "setsid",
        "python",
        "python3",
        "peers",
    }
)


def _launcher_name(info: ProcessInfo) -> str:
    name = info.exe_name
    # "python3.11", "python3.12": versioned interpreters are launchers too.
    if name.startswith("python"):
        return "python"
    return name


def find_agent_process(server_pid: int) -> ProcessInfo | None:
    """The agent session that launched an MCP server: the first ancestor that is not a launcher."""
    chain = ancestors(server_pid)
    for info in chain[1:]:
        if _launcher_name(info) not in LAUNCHERS:
            return info
    return None
