"""Helpers for the Redis-only tests: private redis-servers and transport openers.

The session ``redis_server`` of tests/conftest.py is shared; tests here that
need a server of their own (an ACL file, a port with nothing on it yet, a
server that forgets everything on restart) start one with :func:`spawn_redis`.
(A plain module, not conftest.py: test modules import from it by name.)
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ACL_FILE = REPO / "deploy" / "redis" / "users.acl"

# An extra user the tests use to inspect the server (ACL LOG, SCAN); never peers'.
ADMIN_USER = "admin"
ADMIN_PASSWORD = "test-admin-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def example_password() -> str:
    """The password of user ``peers`` in deploy/redis/users.acl."""
    match = re.search(r"^user peers .*?>(\S+)", ACL_FILE.read_text(), re.MULTILINE)
    if match is None:
        raise AssertionError(f"{ACL_FILE} has no 'user peers ... >password' line")
    return match.group(1)


class PrivateRedis:
    """A redis-server child process on its own port and directory."""

    def __init__(self, port: int, data_dir: Path, args: list[str]) -> None:
        self.port = port
        self.dir = data_dir
        self.args = args
        self.url = f"redis://127.0.0.1:{port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server not found on PATH; .ci/run installs it")
        self._proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--logfile", str(self.dir / "redis.log"), *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}:\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    # Any reply (PONG, or NOAUTH when the default user is off) means it is up.
                    if sock.recv(64):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def spawn_redis(
    data_dir: Path, *args: str, port: int | None = None, start: bool = True
) -> PrivateRedis:
    server = PrivateRedis(port or free_port(), data_dir, list(args))
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


def peers_url(server: PrivateRedis) -> str:
    return f"redis://peers:{example_password()}@127.0.0.1:{server.port}/0"


def admin_url(server: PrivateRedis) -> str:
    return f"redis://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{server.port}/0"
