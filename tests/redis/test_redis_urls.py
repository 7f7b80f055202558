"""The URL forms of the Redis transport, each against a real server: unix://, rediss:// (TLS)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import HOST, Opener, RedisProcess, free_port, make_peer

from peers.config import load_settings
from peers.errors import BackendUnavailable, ConfigError
from peers.ids import new_message_id
from peers.models import Message
from peers.transports.base import Transport
from peers.transports.redis import RedisTransport

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]


async def round_trip(a: Transport, b: Transport, namespace: str) -> None:
    """Register on both, send from a to b with push, fetch and ack."""
    sender = await a.register(make_peer(namespace))
    recipient = await b.register(make_peer(namespace, name="far"))
    waiter = asyncio.create_task(b.wait_for_mail(recipient.id, timeout=10))
    await asyncio.sleep(0.05)
    msg = Message(
        id=new_message_id(),
        namespace=namespace,
        sender_id=sender.id,
        recipient_id=recipient.id,
        body="over the wire",
    )
    await a.send(msg)
    assert await asyncio.wait_for(waiter, 5) is True
    assert [m.body for m in await b.fetch(recipient.id)] == ["over the wire"]
    assert await b.ack(recipient.id, [msg.id]) == 1
    assert {p.id for p in await a.list_peers()} == {sender.id, recipient.id}


async def test_unknown_scheme_is_a_config_error(namespace: str) -> None:
    with pytest.raises(ConfigError):
        RedisTransport.from_settings(load_settings(url="sqlite:///x.db", namespace=namespace))


async def test_unix_socket(
    tmp_path: Path, redis_spawner: Callable[..., RedisProcess], namespace: str
) -> None:
    sock = tmp_path / "redis.sock"
    redis_spawner("--save", "", "--unixsocket", str(sock), "--unixsocketperm", "700")
    opener = Opener({"url": f"unix://{sock}?db=3", "namespace": namespace, "host": HOST})
    try:
        a, b = await opener(), await opener()
        await round_trip(a, b, namespace)
        info = await a.info()
        assert info["url"] == f"unix://{sock}?db=3"
        assert info["mode"] == "standalone"
    finally:
        await opener.aclose()


# -- TLS ---------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found")
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=peers test CA",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=peers test {who}",
                 "-keyout", f"{who}.key", "-out", f"{who}.csr", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{who}.crt", cwd=d)  # fmt: skip
    return d


@pytest.fixture
def tls_server(certs: Path, tmp_path: Path) -> Any:
    """A redis-server on TLS only (client certificates required); yields its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not found on PATH")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "",
         "--logfile", str(tmp_path / "redis.log"), "--port", "0", "--tls-port", str(port),
         "--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
         "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port  # readiness: the tests' first connect retries (plain PING cannot probe TLS)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _connect_when_up(t: Transport) -> None:
    for _ in range(100):
        try:
            await t.connect()
            return
        except BackendUnavailable:
            await asyncio.sleep(0.05)
    await t.connect()


async def test_tls_with_ca_and_client_certificate(
    certs: Path, tls_server: int, namespace: str
) -> None:
    url = f"rediss://127.0.0.1:{tls_server}/0"
    opener = Opener(
        {
            "url": url,
            "namespace": namespace,
            "host": HOST,
            "redis_ca_file": str(certs / "ca.crt"),
            "redis_cert_file": str(certs / "client.crt"),
            "redis_key_file": str(certs / "client.key"),
        }
    )
    try:
        a, b = opener.unconnected(), opener.unconnected()
        await _connect_when_up(a)
        await _connect_when_up(b)
        await round_trip(a, b, namespace)
        assert (await a.info())["url"] == url
    finally:
        await opener.aclose()


async def test_tls_without_client_certificate_is_refused(
    certs: Path, tls_server: int, namespace: str
) -> None:
    good = Opener(
        {
            "url": f"rediss://127.0.0.1:{tls_server}/0",
            "namespace": namespace,
            "host": HOST,
            "redis_ca_file": str(certs / "ca.crt"),
            "redis_cert_file": str(certs / "client.crt"),
            "redis_key_file": str(certs / "client.key"),
        }
    )
    bad = Opener(
        {
            "url": f"rediss://127.0.0.1:{tls_server}/0",
            "namespace": namespace,
            "host": HOST,
            "redis_ca_file": str(certs / "ca.crt"),
        }
    )
    try:
        await _connect_when_up(good.unconnected())  # the server is up
        t = bad.unconnected()
        with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{tls_server}"):
            await t.connect()
    finally:
        await good.aclose()
        await bad.aclose()


async def test_tls_server_certificate_is_verified(
    certs: Path, tls_server: int, namespace: str, tmp_path: Path
) -> None:
    # A CA that did not sign the server's certificate.
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other CA",
             "-keyout", "other.key", "-out", "other.crt", cwd=tmp_path)  # fmt: skip
    base = {
        "url": f"rediss://127.0.0.1:{tls_server}/0",
        "namespace": namespace,
        "host": HOST,
        "redis_cert_file": str(certs / "client.crt"),
        "redis_key_file": str(certs / "client.key"),
    }
    good = Opener({**base, "redis_ca_file": str(certs / "ca.crt")})
    wrong_ca = Opener({**base, "redis_ca_file": str(tmp_path / "other.crt")})
    unverified = Opener(
        {**base, "redis_ca_file": str(tmp_path / "other.crt"), "redis_verify": False}
    )
    try:
        await _connect_when_up(good.unconnected())
        with pytest.raises(BackendUnavailable):
            await wrong_ca.unconnected().connect()
        # PEERS_REDIS_VERIFY=false skips the check (for self-signed test setups only).
        t = unverified.unconnected()
        await t.connect()
        assert await t.ping() >= 0
    finally:
        await good.aclose()
        await wrong_ca.aclose()
        await unverified.aclose()
