"""A real ``peers serve`` driven with raw JSON-RPC lines (the handshake and exit tests).

The SDK's client would hide what these tests look at: which requests were
answered, how often, in what order, and what reached stdout at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from peers.mcpclient import serve_command

__all__ = ["RawServe", "initialize", "request"]


def initialize(
    request_id: int | str = 1,
    version: str = "2025-11-25",
    client: str = "claude-code",
    channel: bool = False,
) -> dict[str, Any]:
    return request(
        request_id,
        "initialize",
        {
            "protocolVersion": version,
            "capabilities": {"experimental": {"claude/channel": {}}} if channel else {},
            "clientInfo": {"name": client, "version": "1.0.0"},
        },
    )


def request(
    request_id: int | str, method: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


class RawServe:
    """One ``peers serve`` subprocess: write JSON-RPC lines, read what it writes back."""

    def __init__(self, env: dict[str, str], stderr: Path) -> None:
        self.env = {**os.environ, **env}
        self.stderr_path = stderr
        self.proc: anyio.abc.Process | None = None
        self._out: BufferedByteReceiveStream | None = None
        self.received: list[dict[str, Any]] = []
        self.exited_at: float | None = None

    async def __aenter__(self) -> Self:
        command, args = serve_command()
        self._errfile = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in __aexit__
        self.proc = await anyio.open_process(
            [command, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._errfile, env=self.env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self._out = BufferedByteReceiveStream(self.proc.stdout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self.proc.aclose()
        self._errfile.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def send(self, *messages: dict[str, Any] | bytes) -> None:
        """Write the messages (dicts as JSON lines, bytes as they are) in one write."""
        assert self.proc is not None and self.proc.stdin is not None
        data = b"".join(
            m if isinstance(m, bytes) else json.dumps(m).encode() + b"\n" for m in messages
        )
        await self.proc.stdin.send(data)

    async def close_stdin(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        await self.proc.stdin.aclose()

    async def next(self, timeout: float = 30) -> dict[str, Any]:
        """The next message on stdout (every one is kept in ``received``)."""
        assert self._out is not None
        with anyio.fail_after(timeout):
            line = await self._out.receive_until(b"\n", 64 * 1024 * 1024)
        message: dict[str, Any] = json.loads(line)
        self.received.append(message)
        return message

    async def reply(self, request_id: int | str, timeout: float = 30) -> dict[str, Any]:
        """The (first) answer to one request, read now or before (all are kept in ``received``)."""
        for message in self.received:
            if message.get("id") == request_id and "method" not in message:
                return message
        while True:
            message = await self.next(timeout)
            if message.get("id") == request_id and "method" not in message:
                return message

    async def rest(self, timeout: float = 30) -> list[dict[str, Any]]:
        """Everything else it writes until it closes stdout."""
        got: list[dict[str, Any]] = []
        with anyio.fail_after(timeout):
            while True:
                try:
                    got.append(await self.next(timeout))
                except (anyio.EndOfStream, anyio.IncompleteRead):
                    return got

    def signal(self, signum: signal.Signals) -> float:
        os.kill(self.pid, signum)
        return time.monotonic()

    async def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        with anyio.fail_after(timeout):
            code = await self.proc.wait()
        self.exited_at = time.monotonic()
        return code

    def stderr(self) -> str:
        if not self._errfile.closed:
            self._errfile.flush()
        return self.stderr_path.read_text(errors="replace")
