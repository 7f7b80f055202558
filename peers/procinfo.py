"""Facts about processes: start times (to defeat pid reuse), liveness, ancestry, roles.

Every fact comes from psutil (no ``ps`` to fork, no /proc parsing of our own). Nothing here decides
whether a process may be signalled: :meth:`peers.service.PeersService.kill_peer`
holds that rule and asks these functions what a process is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import psutil

__all__ = [
    "LAUNCHERS",
    "LaunchChain",
    "ProcessInfo",
    "ancestors",
    "find_agent_process",
    "launch_chain",
    "process_alive",
    "process_info",
    "process_start_time",
]

# Programs that merely start the MCP server on an agent's behalf. They are passed
# over on the way up only when their command line leads to peers.
LAUNCHERS = frozenset(
    {
        "uv",
        "uvx",
        "env",
        "nohup",
        "timeout",
        "setsid",
        "stdbuf",
        "nice",
        "npx",
        "npm",
        "pnpm",
        "bunx",
        "pipx",
        "poetry",
        "pdm",
        "hatch",
    }
)
_SHELLS = frozenset(
    {"sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish", "tcsh", "csh", "busybox", "nu"}
)
_INTERPRETERS = re.compile(r"(python|pypy)[0-9.]*|node|nodejs|bun|deno")


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Processes that start or host sessions but are never the agent itself.
_ROLES: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "an init system or service manager",
        _names(
            "init systemd launchd runit runsv runsvdir s6-svscan s6-supervise supervisord tini "
            "dumb-init catatonit upstart containerd-shim containerd-shim-runc-v2 conmon"
        ),
    ),
    ("an SSH server", _names("sshd sshd-session dropbear mosh-server")),
    (
        "a login or user-switching program",
        _names("login su sudo doas runuser pkexec getty agetty"),
    ),
    ("a terminal multiplexer", _names("tmux screen zellij byobu abduco dtach")),
    (
        "a terminal emulator",
        _names(
            "xterm uxterm gnome-terminal gnome-terminal-server konsole kitty alacritty wezterm "
            "wezterm-gui wezterm-mux-server foot footclient terminator tilix xfce4-terminal "
            "mate-terminal lxterminal qterminal terminology urxvt urxvtd rxvt st sakura guake "
            "yakuake tilda ghostty hyper warp warp-terminal rio contour kgx ptyxis ptyxis-agent "
            "terminal iterm2 tabby conhost windowsterminal"
        ),
    ),
)
# `peers`, `peers.exe`, or the module run by `python -m peers[.cli|.entry]`.
_PEERS_WORD = re.compile(r"peers(\.exe|\.cli|\.entry|\.__main__)?")
_SHELL_COMMAND_FLAG = re.compile(r"-[A-Za-z]*c[A-Za-z]*|--command")
# A process title rewritten as "name: detail" (sshd, tmux, postgres...).
_TITLE = re.compile(r"-?([\w.+-]+):(\s|$)")


def _words(argv: tuple[str, ...]) -> list[str]:
    """Every word of a command line, shell command strings (`sh -c "..."`) included."""
    return [w.strip("\"'`;&|()") for arg in argv for w in arg.split()]


def _is_peers_word(word: str) -> bool:
    return bool(_PEERS_WORD.fullmatch(os.path.basename(word)))


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    ppid: int
    uid: int | None
    start: float | None
    argv: tuple[str, ...]
    # The kernel's short name (Linux /proc comm): survives a rewritten argv.
    comm: str = ""

    @property
    def exe_name(self) -> str:
        return os.path.basename(self.argv[0]) if self.argv else ""

    @property
    def command_line(self) -> str:
        """The command line on one printable line (safe to show in a prompt or an error)."""
        if not self.argv:
            return f"[{self.comm}]"
        text = "".join(ch if ch.isprintable() else " " for ch in " ".join(self.argv))
        return " ".join(text.split())

    @property
    def program(self) -> str:
        """What runs, lower-cased: the script or module for an interpreter, else argv[0]'s name."""
        if not self.argv:
            return self.comm.lower()
        head = self.argv[0]
        title = _TITLE.match(head)
        if title:
            head = title.group(1)  # "sshd: user@pts/0", "tmux: server"
        elif len(self.argv) == 1 and " " in head:
            head = head.split()[0]  # a process title holding its arguments
        name = os.path.basename(head).lstrip("-").lower()
        if not _INTERPRETERS.fullmatch(name):
            return name
        args = iter(self.argv[1:])
        for arg in args:
            if arg == "-m":
                return next(args, name).split(".")[0].lower()
            if arg == "-c":
                return name
            if arg in ("-W", "-X", "-r", "--require"):
                next(args, None)  # an option with a value
            elif not arg.startswith("-"):
                return re.sub(r"\.(py|js|mjs|cjs|ts)$", "", os.path.basename(arg).lower())
        return name

    @property
    def names(self) -> frozenset[str]:
        """The program name and the kernel's short name (either may be the telling one)."""
        return frozenset(n for n in (self.program, self.comm.lower()) if n)

    @property
    def mentions_peers(self) -> bool:
        """True if a word of the command line is peers (`peers serve`, `-m peers`, a path)."""
        return any(_is_peers_word(w) for w in _words(self.argv))

    @property
    def is_peers_server(self) -> bool:
        """True for a peers MCP server: `.../peers serve`, `python -m peers serve`, `uv run peers serve`."""
        words = _words(self.argv)
        for i, word in enumerate(words):
            if _is_peers_word(word):
                return "serve" in words[i + 1 :]
        return False

    @property
    def is_shell(self) -> bool:
        return bool(self.names & _SHELLS)

    @property
    def runs_shell_command(self) -> bool:
        """A shell given a command string (`sh -c "..."`), not an interactive one."""
        return self.is_shell and any(_SHELL_COMMAND_FLAG.fullmatch(a) for a in self.argv[1:])

    @property
    def is_launcher(self) -> bool:
        """A program that starts another (uv, env, timeout, npx, `sh -c`), whatever it starts."""
        return bool(self.names & LAUNCHERS) or self.runs_shell_command

    @property
    def role(self) -> str | None:
        """What this process is when it is clearly no agent session, else None."""
        for role, names in _ROLES:
            if self.names & names:
                return role
        if self.is_shell:
            if self.runs_shell_command:
                return "a shell running a command"
            if all(a.startswith("-") for a in self.argv[1:]):
                return "an interactive shell"
            return "a shell script"
        if self.is_launcher:
            return "a launcher"
        return None


@dataclass(frozen=True, slots=True)
class LaunchChain:
    """A process, the launchers above it that lead to it, and the first ancestor that is none."""

    process: ProcessInfo
    launchers: tuple[ProcessInfo, ...]
    # None when the chain ends first (the server was orphaned, or pid 1 is next).
    candidate: ProcessInfo | None


# Linux start times are kept in clock ticks since boot (field 22 of /proc/PID/stat):
# what peers has always stored, and unlike a wall-clock time it never moves when
# the clock is set. Elsewhere: whole seconds since the epoch, as `ps -o lstart` gave.
_LINUX = psutil.LINUX
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _start_of(proc: psutil.Process) -> float:
    """A process's start time in the stored unit (see _LINUX)."""
    if not _LINUX:
        return float(int(proc.create_time()))
    # psutil gives boot time + ticks / CLK_TCK, reading the boot time each call;
    # recover the ticks exactly (a clock step between the reads: read again).
    for _ in range(3):
        boot = psutil.boot_time()
        created = proc.create_time()
        if psutil.boot_time() == boot:
            return float(round((created - boot) * _CLOCK_TICKS))
    return float(round((created - boot) * _CLOCK_TICKS))


def _process(pid: int) -> psutil.Process | None:
    if pid <= 0:
        return None
    try:
        return psutil.Process(pid)
    except (psutil.Error, OverflowError, ValueError):
        return None


def process_start_time(pid: int) -> float | None:
    """When a process started, or None if unknown.

    Linux: clock ticks since boot. Elsewhere: a Unix timestamp to the second.
    Values compare only on one host, and stay what earlier versions stored.
    """
    proc = _process(pid)
    if proc is None:
        return None
    try:
        return _start_of(proc)
    except psutil.Error:
        return None


def process_alive(pid: int, start: float | None) -> bool:
    """True if the process exists and, when a start time is known, it is the same one."""
    proc = _process(pid)
    if proc is None:
        return False
    try:
        with proc.oneshot():
            if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                return False
            return start is None or _start_of(proc) == start
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # exists, and nothing more can be learnt about it


def process_info(pid: int) -> ProcessInfo | None:
    """Parent, owner (real uid), start time and command line of a process."""
    proc = _process(pid)
    if proc is None:
        return None
    try:
        with proc.oneshot():
            ppid = proc.ppid()
            start = _start_of(proc)
            try:
                uid: int | None = proc.uids().real
            except psutil.AccessDenied:
                uid = None
            try:
                argv = tuple(proc.cmdline())
            except (psutil.AccessDenied, psutil.ZombieProcess):
                argv = ()
            try:
                comm = proc.name()
            except psutil.AccessDenied:
                comm = ""
    except psutil.Error:
        return None
    return ProcessInfo(pid, ppid, uid, start, argv, comm)


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


def launch_chain(pid: int) -> LaunchChain | None:
    """Walk up from a process past the launchers whose command lines lead to peers.

    The first ancestor that is not such a launcher is the candidate: for an MCP
    server started by an agent client, the agent. What it really is (a shell,
    tmux, sshd...) is for the caller to judge from :attr:`ProcessInfo.role`.
    """
    chain = ancestors(pid)
    if not chain:
        return None
    launchers: list[ProcessInfo] = []
    for info in chain[1:]:
        if not (info.is_launcher and info.mentions_peers):
            return LaunchChain(chain[0], tuple(launchers), info)
        launchers.append(info)
    return LaunchChain(chain[0], tuple(launchers), None)


def find_agent_process(server_pid: int) -> ProcessInfo | None:
    """The candidate agent above an MCP server (see :func:`launch_chain`), or None."""
    found = launch_chain(server_pid)
    return None if found is None else found.candidate
