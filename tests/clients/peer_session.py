"""Another agent session for the real-client tests: a ``peers serve`` driven by PeerClient.

The tests are synchronous (the CLIs are blocking subprocesses, the fake model
answers from its own threads), so the session lives on an event loop in a
thread of its own, and its tool calls are submitted to that loop from any
thread, the fake model's included.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import mcp_types as types

from peers.mcpclient import PeerClient

__all__ = ["PeerSession"]


class PeerSession:
    """``with PeerSession(store_env, name="alice", cwd=...) as alice: alice.call_ok("whoami")``."""

    def __init__(
        self,
        store_env: dict[str, str],
        *,
        name: str | None = None,
        cwd: Path | None = None,
        client_name: str = "test-peer",
        errlog: Path | None = None,
        **env: str,
    ) -> None:
        extra = {"PEERS_NAME": name} if name else {}
        self._env = {"PEERS_LOG_LEVEL": "warning", **store_env, **extra, **env}
        self._cwd = str(cwd) if cwd else None
        self._client_name = client_name
        self._errlog_path = errlog
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="peer-session", daemon=True
        )
        self._client: PeerClient | None = None
        self._stop: asyncio.Event | None = None
        self._main: Future[None] | None = None
        self.me: dict[str, Any] = {}

    def __enter__(self) -> PeerSession:
        self._thread.start()
        ready: Future[None] = Future()
        self._main = asyncio.run_coroutine_threadsafe(self._run(ready), self._loop)
        try:
            ready.result(timeout=60)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.me = self.call_ok("whoami")
        return self

    async def _run(self, ready: Future[None]) -> None:
        self._stop = asyncio.Event()
        errlog = open(self._errlog_path, "a") if self._errlog_path else None  # noqa: SIM115
        try:
            client = PeerClient(
                self._env, client_name=self._client_name, channel=False, cwd=self._cwd,
                errlog=errlog,
            )  # fmt: skip
            async with client:
                self._client = client
                await client.wait_registered(timeout=30)
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise
        finally:
            self._client = None
            if errlog:
                errlog.close()

    def __exit__(self, *exc: object) -> None:
        if self._main is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            # Shutting down: the test's own assertions matter more than a close error.
            with contextlib.suppress(Exception):
                self._main.result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def id(self) -> str:
        return str(self.me["id"])

    def call(self, tool: str, timeout: float = 30.0, **arguments: Any) -> types.CallToolResult:
        client = self._client
        if client is None:
            raise RuntimeError("the session is not running")
        return asyncio.run_coroutine_threadsafe(client.call(tool, **arguments), self._loop).result(
            timeout
        )

    def call_ok(self, tool: str, timeout: float = 30.0, **arguments: Any) -> dict[str, Any]:
        client = self._client
        if client is None:
            raise RuntimeError("the session is not running")
        future = asyncio.run_coroutine_threadsafe(client.call_ok(tool, **arguments), self._loop)
        return future.result(timeout)
