"""An interactive Claude Code in tmux, against the fake model: the session a user has.

``claude -p`` ignores the channel flag, so only an interactive session shows what
Claude Code does with ``--dangerously-load-development-channels server:peers`` when
its channel gate is off (offline): the screen says "Channels are not currently
available" and every notification is dropped. tmux runs it on a private socket;
``send-keys`` types, ``capture-pane`` reads the screen.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from pathlib import Path

from client_drivers import ClaudeDriver

__all__ = ["ClaudeTmux", "tmux_missing"]


def tmux_missing() -> str | None:
    return None if shutil.which("tmux") else "tmux is not installed (apt-get install tmux)"


class ClaudeTmux:
    """``claude ARGS`` in a detached tmux session of its own (a socket under ``root``)."""

    def __init__(self, driver: ClaudeDriver, root: Path, *args: str) -> None:
        self.driver = driver
        self.socket = root / "tmux.sock"
        self.args = list(args)
        self.started = False

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=check,
            timeout=30,
        )  # fmt: skip

    def start(self) -> ClaudeTmux:
        self.driver.configure()
        env = self.driver.env()
        env["TERM"] = "xterm-256color"  # a real terminal, as a user has
        env.pop("NO_COLOR", None)
        argv = [
            self.driver.binary.path, "--permission-mode", "default",
            "--allowedTools", self.driver.allowed_tools, *self.args,
        ]  # fmt: skip
        command = "env -i " + " ".join(
            [*(f"{k}={shlex.quote(v)}" for k, v in env.items()), *map(shlex.quote, argv)]
        )
        self._tmux(
            "new-session", "-d", "-s", "claude", "-x", "160", "-y", "45",
            "-c", str(self.driver.cwd), command,
        )  # fmt: skip
        self.started = True
        return self

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "claude", check=False).stdout

    def wait_screen(self, text: str, timeout: float = 30.0) -> str:
        """The screen once it shows ``text`` (AssertionError with the screen after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed {text!r}:\n{screen}")
            time.sleep(0.2)

    def type(self, text: str) -> None:
        """Type a prompt and submit it."""
        self._tmux("send-keys", "-t", "claude", "-l", text)
        # Submit separately: a newline inside -l text would be typed, not sent.
        time.sleep(0.3)
        self._tmux("send-keys", "-t", "claude", "Enter")

    def stop(self) -> None:
        if self.started:
            self._tmux("kill-server", check=False)  # SIGHUP to claude; peers serve sees EOF
            self.started = False
