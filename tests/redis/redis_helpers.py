"""Helpers for the Redis-only tests: private redis-servers and transport openers.

The session ``redis_server`` of tests/conftest.py is shared; tests here that
need a server of their own (an ACL file, a port with nothing on it yet, a
server that forgets everything on restart) start one with :func:`spawn_redis`.
(A plain module, not conftest.py: test modules import from it by name.)
"""

from __future__ import annotations

import re
from pathlib import Path

from support import RedisProcess, free_port

REPO = Path(__file__).resolve().parents[2]
ACL_FILE = REPO / "deploy" / "redis" / "users.acl"

# An extra user the tests use to inspect the server (ACL LOG, SCAN); never peers'.
ADMIN_USER = "admin"
ADMIN_PASSWORD = "test-admin-password"


def example_password() -> str:
    """The password of user ``peers`` in deploy/redis/users.acl."""
    match = re.search(r"^user peers .*?>(\S+)", ACL_FILE.read_text(), re.MULTILINE)
    if match is None:
        raise AssertionError(f"{ACL_FILE} has no 'user peers ... >password' line")
    return match.group(1)


def spawn_redis(
    data_dir: Path, *args: str, port: int | None = None, start: bool = True
) -> RedisProcess:
    server = RedisProcess(port or free_port(), data_dir, list(args))
    if start:
        server.start()
    return server


def acl_server_args(data_dir: Path) -> list[str]:
    """Arguments for a server that loads a copy of deploy/redis/users.acl plus an admin user."""
    acl = data_dir / "users.acl"
    acl.write_text(
        ACL_FILE.read_text().rstrip("\n")
        + f"\nuser {ADMIN_USER} on >{ADMIN_PASSWORD} ~* &* +@all\n"
    )
    return ["--aclfile", str(acl), "--save", "", "--appendonly", "no"]


def peers_url(server: RedisProcess) -> str:
    return f"redis://peers:{example_password()}@127.0.0.1:{server.port}/0"


def admin_url(server: RedisProcess) -> str:
    return f"redis://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{server.port}/0"
