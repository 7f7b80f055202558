"""peers serve through backend outages: Redis restarted mid-session, Redis absent at start."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import RedisProcess, free_port

from peers.mcpclient import PeerClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.redis_real]


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def _env(url: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    return {
        "PEERS_URL": url,
        "PEERS_NAMESPACE": namespace,
        "PEERS_LOG_LEVEL": "debug",
        "PEERS_HEARTBEAT_INTERVAL": "0.5",
        "PEERS_SAFETY_RECHECK": "1",
        "PEERS_RATE_LIMIT": "10000",
        "CLAUDE_PROJECT_DIR": str(tmp_path),
    }


async def _send_until_stored(client: PeerClient, to: str, body: str) -> None:
    """Retry while the backend is down; the tool answers with a clear error meanwhile."""
    with anyio.fail_after(60):
        while True:
            result = await client.call("send_message", to_id=to, message=body)
            if not result.is_error:
                return
            text = _text(result)
            assert "send_message failed" in text or "not connected" in text, text
            await anyio.sleep(0.2)


async def test_redis_restart_mid_session_loses_and_duplicates_nothing(
    redis_server: Any, namespace: str, tmp_path: Path
) -> None:
    env = _env(redis_server.url, namespace, tmp_path)
    with open(tmp_path / "servers.log", "w") as errlog:
        async with (
            PeerClient({**env, "PEERS_NAME": "sender"}, errlog=errlog, cwd=str(tmp_path)) as sender,
            PeerClient({**env, "PEERS_NAME": "pusher"}, errlog=errlog, cwd=str(tmp_path)) as pushed,
            PeerClient(
                {**env, "PEERS_NAME": "poller"},
                client_name="codex-mcp-client",
                channel=False,
                errlog=errlog,
                cwd=str(tmp_path),
            ) as polled,
        ):
            for c in (sender, pushed, polled):
                await c.wait_registered()
            bodies = [f"m{i:03d}" for i in range(60)]
            polled_bodies: list[str] = []
            for i, body in enumerate(bodies):
                if i == 20:
                    redis_server.stop()
                    # While Redis is down the tools answer with a clear error.
                    down = await sender.call("send_message", to_id="pusher", message="lost?")
                    assert down.is_error and "redis" in _text(down).lower(), _text(down)
                    redis_server.start()
                await _send_until_stored(sender, "pusher", body)
                await _send_until_stored(sender, "poller", body)
            with anyio.fail_after(60):
                while len(pushed.channels) < len(bodies):
                    await anyio.sleep(0.1)
                while len(polled_bodies) < len(bodies):
                    result = await polled.call("check_messages")
                    if not result.is_error:
                        polled_bodies += [m["body"] for m in result.structured_content["messages"]]
                    await anyio.sleep(0.1)
            # Give a duplicate the chance to show up before judging.
            await anyio.sleep(2)
            assert [c.content for c in pushed.channels] == bodies
            assert polled_bodies == bodies
            # Every server is still there and registered.
            for c in (sender, pushed, polled):
                assert (await c.call_ok("whoami"))["online"]


@pytest.fixture
def late_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server on a free port that is not started yet (the test starts it)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not found on PATH; .ci/run installs it")
    server = RedisProcess(free_port(), tmp_path, ["--save", "", "--appendonly", "no"])
    yield server
    server.stop()


async def test_redis_unreachable_at_start_then_recovers(
    late_redis: RedisProcess, namespace: str, tmp_path: Path
) -> None:
    port = late_redis.port
    env = _env(f"redis://127.0.0.1:{port}/0", namespace, tmp_path)
    with open(tmp_path / "servers.log", "w") as errlog:
        async with PeerClient(
            {**env, "PEERS_NAME": "early"}, errlog=errlog, cwd=str(tmp_path)
        ) as client:
            result = await client.call("whoami")
            assert result.is_error
            assert f"127.0.0.1:{port}" in _text(result)  # names the address it tried
            late_redis.start()
            with anyio.fail_after(60):
                while True:
                    result = await client.call("whoami")
                    if not result.is_error:
                        break
                    await anyio.sleep(0.2)
            assert result.structured_content["name"] == "early"
            assert os.path.exists(f"/proc/{result.structured_content['pid']}")
