"""Redis URLs and the clients built from them.

``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS, with the
``PEERS_REDIS_*`` certificate settings) and ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``.
redis-py's own URL query options pass through. Passwords never appear in a message.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from peers import constants as c
from peers.config import Settings
from peers.errors import ConfigError
from peers.redact import redact_url
from peers.transports.redis.client import Client

__all__ = ["SCHEMES", "build_clients", "check_redis_url", "describe"]

SCHEMES: Final = ("redis", "rediss", "unix")


def check_redis_url(url: str) -> None:
    if urlsplit(url).scheme.lower() not in SCHEMES:
        raise ConfigError(
            f"PEERS_URL {redact_url(url)!r} is not a Redis URL (redis://, rediss:// or unix://)"
        )


def build_clients(settings: Settings, shown: str) -> tuple[Client, Client]:
    """A client for commands (bounded per call) and one for pub/sub (its socket timeout
    outlasts its reads' wait, or redis-py raises)."""
    s = settings
    scheme = urlsplit(s.url).scheme.lower()
    options: dict[str, Any] = {
        "decode_responses": True,
        "client_name": "peers",
        "driver_info": None,  # no CLIENT SETINFO: one round trip less per connection
        "health_check_interval": c.REDIS_HEALTH_CHECK_INTERVAL,
        "socket_connect_timeout": c.REDIS_CONNECT_TIMEOUT,
    }
    if scheme == "rediss":
        options["ssl_cert_reqs"] = "required" if s.redis_verify else "none"
        options["ssl_check_hostname"] = s.redis_verify
        for option, value in (
            ("ssl_ca_certs", s.redis_ca_file),
            ("ssl_ca_path", s.redis_ca_path),
            ("ssl_certfile", s.redis_cert_file),
            ("ssl_keyfile", s.redis_key_file),
        ):
            if value:
                options[option] = value

    def build(socket_timeout: float | None) -> Client:
        retry = Retry(
            ExponentialBackoff(cap=c.REDIS_BACKOFF_CAP, base=c.REDIS_BACKOFF_BASE),
            c.REDIS_RETRIES,
        )
        try:
            return Client.from_url(s.url, socket_timeout=socket_timeout, retry=retry, **options)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"PEERS_URL {shown!r} is not usable: {exc}") from None

    commands = build(None)  # bounded per call instead: see REDIS_OP_TIMEOUT
    blocking = build(c.REDIS_BLOCK_MS / 1000 + c.REDIS_SOCKET_TIMEOUT)
    return commands, blocking


def describe(client: Any, settings: Settings) -> str:
    """Where a ready-made client points, for messages (password never shown)."""
    if type(client).__module__.split(".")[0] == "fakeredis":
        return "fakeredis"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    if "host" in kwargs:
        return f"redis://{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    return redact_url(settings.url)
