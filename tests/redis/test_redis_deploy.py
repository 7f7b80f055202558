"""deploy/redis/ as shipped: a real redis-server loads redis.conf and users.acl, and doctor is happy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis_helpers import ACL_FILE, REPO, example_password, peers_url
from support import HOST, Opener, RedisProcess, free_port, make_message, make_peer

from peers.models import CheckStatus
from peers.transports import check_scheme

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]

DEPLOY = REPO / "deploy" / "redis"


async def test_the_shipped_config_passes_every_doctor_check(tmp_path: Path, namespace: str) -> None:
    # Only what must differ outside the container: the container's paths (redis
    # applies `dir` as it reads it, so they are rewritten in a copy), port, address.
    shipped = (DEPLOY / "redis.conf").read_text()
    paths = {
        "dir /data": f"dir {tmp_path}",
        "aclfile /usr/local/etc/redis/users.acl": f"aclfile {ACL_FILE}",
    }
    for line in paths:
        assert re.search(rf"^{line}$", shipped, re.MULTILINE), f"redis.conf lost '{line}'"
    config = tmp_path / "redis.conf"
    config.write_text(
        re.sub(
            "|".join(f"^{line}$" for line in paths),
            lambda m: paths[m[0]],
            shipped,
            flags=re.MULTILINE,
        )
    )
    server = RedisProcess(free_port(), tmp_path, [], config=config)
    server.start()
    opener = Opener({"url": peers_url(server), "namespace": namespace, "host": HOST})
    try:
        t = await opener()
        checks = await t.diagnostics()
        assert {c.name for c in checks} >= {
            "redis server", "redis persistence", "redis eviction policy", "redis mode",
        }  # fmt: skip
        problems = [c for c in checks if c.status is not CheckStatus.OK]
        assert problems == [], problems
        a = await t.register(make_peer(namespace, name="a"))
        b = await t.register(make_peer(namespace, name="b"))
        sent = await t.send(make_message(namespace, a, b, "over the shipped config"))
        assert [m.id for m in await t.fetch(b.id)] == [sent.id]
        # AOF is really on: the file is there after a write.
        assert any(p.name.startswith("appendonly") for p in tmp_path.rglob("*"))
    finally:
        await opener.aclose()
        server.stop()


def test_compose_mounts_the_shipped_files_and_checks_health_with_their_password() -> None:
    compose = (DEPLOY / "compose.yaml").read_text()
    assert re.search(r"image:\s*redis:7", compose)
    assert "./redis.conf:/usr/local/etc/redis/redis.conf:ro" in compose
    assert "./users.acl:/usr/local/etc/redis/users.acl:ro" in compose
    assert "aclfile /usr/local/etc/redis/users.acl" in (DEPLOY / "redis.conf").read_text()
    health = re.search(r"--user peers --pass (\S+) ping", compose)
    assert health is not None and health.group(1) == example_password()


def test_the_devcontainer_points_its_sessions_at_the_shared_redis() -> None:
    """What no engine runs here is checked for consistency: files, service names, URL."""
    folder = REPO / "deploy" / "devcontainer"
    compose = (folder / "compose.yaml").read_text()
    jsonc = (folder / "devcontainer.json").read_text()
    config = json.loads(
        "\n".join(line for line in jsonc.splitlines() if not line.strip().startswith("//"))
    )
    assert (folder / config["dockerComposeFile"]).is_file()
    services = set(re.findall(r"^  (\w[\w-]*):\s*$", compose, re.MULTILINE))
    assert {config["service"], *config["runServices"]} <= services
    # Both places give container sessions the same URL: user peers, the ACL's
    # password, the compose service name as host.
    urls = {config["remoteEnv"]["PEERS_URL"], *re.findall(r"PEERS_URL:\s*(\S+)", compose)}
    assert len(urls) == 1
    url = urlsplit(urls.pop())
    assert (url.scheme, url.username, url.password) == ("redis", "peers", example_password())
    assert url.hostname in services and url.port == 6379
    assert check_scheme(f"{url.scheme}://x") == "redis"
    # The Redis service loads deploy/redis's files, which the test above runs.
    for mount in re.findall(r"- (\.\./redis/[\w.]+):", compose):
        assert (folder / mount).resolve().is_file(), mount
    assert "--pass " + example_password() in compose
