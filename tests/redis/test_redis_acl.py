"""deploy/redis/users.acl is enough for peers, and no more than it needs.

The whole contract suite runs again here, as user ``peers`` with the example
password, on a separate redis-server that loads a copy of the ACL file; after
every test the server's ACL LOG must hold no denial for ``peers``. Then the
file's other promises: the default user is off, and ``peers`` reaches no key,
channel or command outside its own.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis_helpers import admin_url, example_password, peers_url
from support import HOST, Opener, RedisProcess

from peers.config import load_settings
from peers.errors import BackendError, BackendUnavailable
from peers.transports import create_transport
from peers.transports.base import Transport

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]

# -- the contract suite, as user `peers` ---------------------------------------------------

_CONTRACT_DIR = Path(__file__).resolve().parents[1] / "contract"
if str(_CONTRACT_DIR) not in sys.path:
    sys.path.insert(0, str(_CONTRACT_DIR))
# Imported by name so that pytest rewrites its asserts (and reuses the module if the
# contract directory was collected already).
_contract = importlib.import_module("test_transport_contract")
# Not about a connected transport: they build their own stores.
_NOT_HERE = {
    "test_unreachable_store_is_backend_unavailable",
    "test_garbage_sqlite_file_is_store_corrupt",
}
for _module in (_contract, importlib.import_module("test_contract_claims")):
    for _name, _test in vars(_module).items():
        if _name.startswith("test_") and callable(_test) and _name not in _NOT_HERE:
            globals()[f"{_name}"] = _test


async def _peers_denials(server: RedisProcess) -> list[dict[str, Any]]:
    admin = aioredis.from_url(admin_url(server), decode_responses=True)
    try:
        entries: list[dict[str, Any]] = await admin.acl_log()
        return [e for e in entries if e.get("username") == "peers"]
    finally:
        await admin.aclose()


async def _reset_acl_log(server: RedisProcess) -> None:
    admin = aioredis.from_url(admin_url(server), decode_responses=True)
    try:
        await admin.acl_log_reset()
    finally:
        await admin.aclose()


@pytest.fixture(autouse=True)
async def no_denials(acl_redis: RedisProcess) -> AsyncIterator[None]:
    """Every test here must run without a single NOPERM for user `peers`."""
    await _reset_acl_log(acl_redis)
    yield
    denials = await _peers_denials(acl_redis)
    assert denials == [], f"users.acl denied peers: {denials}"


@pytest.fixture
async def transport_factory(acl_redis: RedisProcess, namespace: str) -> AsyncIterator[Opener]:
    opener = Opener({"url": peers_url(acl_redis), "namespace": namespace, "host": HOST})
    try:
        yield opener
    finally:
        await opener.aclose()


# Parametrised (one value) like the root conftest's `transport`, so that contract
# tests that read request.node.callspec.params["transport"] work here too.
@pytest.fixture(params=[pytest.param("redis_acl_transport", id="redis-acl")])
async def transport(transport_factory: Opener) -> Transport:
    return await transport_factory()


# -- what the ACL file refuses ----------------------------------------------------------------


async def test_default_user_is_disabled(acl_redis: RedisProcess, namespace: str) -> None:
    anonymous = aioredis.from_url(acl_redis.url)
    try:
        with pytest.raises(AuthenticationError):
            await anonymous.ping()
    finally:
        await anonymous.aclose()
    # Through the transport: a clear login error, not "unreachable".
    t = create_transport(load_settings(url=acl_redis.url, namespace=namespace, host=HOST))
    try:
        with pytest.raises(BackendError) as info:
            await t.connect()
        assert not isinstance(info.value, BackendUnavailable)
        assert "login" in str(info.value) and f":{acl_redis.port}" in str(info.value)
    finally:
        await t.close()
    await _reset_acl_log(acl_redis)


async def test_wrong_password_is_a_login_error_with_the_password_redacted(
    acl_redis: RedisProcess, namespace: str
) -> None:
    url = f"redis://peers:not-the-password@127.0.0.1:{acl_redis.port}/0"
    t = create_transport(load_settings(url=url, namespace=namespace, host=HOST))
    try:
        with pytest.raises(BackendError) as info:
            await t.connect()
    finally:
        await t.close()
    text = str(info.value)
    assert "not-the-password" not in text
    assert f"redis://peers:***@127.0.0.1:{acl_redis.port}/0" in text
    await _reset_acl_log(acl_redis)


async def test_peers_user_is_confined_to_its_keys_channels_and_commands(
    acl_redis: RedisProcess,
) -> None:
    client = aioredis.from_url(peers_url(acl_redis), decode_responses=True)
    try:
        await client.set("peers:{acl-test}:probe", "1")
        assert await client.get("peers:{acl-test}:probe") == "1"
        await client.delete("peers:{acl-test}:probe")
        with pytest.raises(NoPermissionError):
            await client.set("elsewhere:key", "1")
        with pytest.raises(NoPermissionError):
            await client.get("session:123")
        with pytest.raises(NoPermissionError):
            await client.publish("elsewhere", "x")
        for command in (
            ("FLUSHALL",),
            ("KEYS", "*"),
            ("CONFIG", "GET", "dir"),
            ("SCRIPT", "FLUSH"),
            # A script reaches no further than its caller.
            ("EVAL", "return redis.call('GET', KEYS[1])", "1", "elsewhere:key"),
            ("EVAL", "return redis.call('GET', 'elsewhere:key')", "0"),
        ):
            # NOPERM (a ResponseError inside a script, worded differently).
            with pytest.raises(ResponseError, match=r"(?i)noperm|no permissions|can't access"):
                await client.execute_command(*command)
    finally:
        await client.aclose()
    assert example_password() in peers_url(acl_redis)
    await _reset_acl_log(acl_redis)
