"""deploy/redis/ as shipped: a real redis-server loads redis.conf and users.acl, and doctor is happy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from redis_helpers import ACL_FILE, REPO, example_password, peers_url
from support import HOST, Opener, RedisProcess, free_port, make_message, make_peer

from peers.models import CheckStatus

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
