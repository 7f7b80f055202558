"""Transport registry: the backend is chosen by the scheme of ``PEERS_URL``.

Backends are imported lazily, so SQLite users never import redis.
A ready-made :class:`Transport` can be handed to the service directly too.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from peers import leanimport
from peers.errors import ConfigError
from peers.redact import redact_url
from peers.transports.base import Capabilities, Transport

if TYPE_CHECKING:
    from peers.config import Settings

__all__ = [
    "SCHEMES",
    "Capabilities",
    "Transport",
    "check_scheme",
    "create_transport",
    "transport_class",
]

# redis-py's package __init__ files import its cluster, sentinel and sync clients,
# none of which a transport uses (about 1 MB of each session); its modules are
# imported by their own paths (see peers.leanimport).
_LEAN = {"peers.transports.redis": ("redis", "redis.asyncio")}
# redis.utils binds importlib.metadata as it loads, for the library version it sends
# in CLIENT SETINFO, which peers turns off (driver_info=None): loaded only if used.
# It would bring email, zipfile and csv with it, about 1.3 MB of a session.
_UNUSED = ("importlib.metadata",)

# scheme -> "module:Class"
SCHEMES: dict[str, str] = {
    "sqlite": "peers.transports.sqlite:SQLiteTransport",
    "redis": "peers.transports.redis:RedisTransport",
    "rediss": "peers.transports.redis:RedisTransport",
    "unix": "peers.transports.redis:RedisTransport",
}


def check_scheme(url: str) -> str:
    """The URL's scheme if a transport serves it (nothing imported), else a ConfigError."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        hint = difflib.get_close_matches(scheme, SCHEMES, n=1)
        did_you_mean = f" (did you mean {hint[0]}://?)" if hint else ""
        shown = f"'{scheme}://'" if scheme else "no scheme"
        raise ConfigError(
            f"PEERS_URL {redact_url(url)!r} has {shown}{did_you_mean}; known schemes: {known}"
        )
    return scheme


def transport_class(url: str) -> type[Transport]:
    """The transport class for a URL, or a ConfigError naming the known schemes."""
    module_name, class_name = SCHEMES[check_scheme(url)].split(":")
    lean = _LEAN.get(module_name)
    if lean and leanimport.enabled():
        module = leanimport.import_without_inits(
            module_name, lean, lambda: leanimport.resolved_on_first_use(_UNUSED)
        )
    else:
        module = importlib.import_module(module_name)
    cls: type[Transport] = getattr(module, class_name)
    return cls


def create_transport(settings: Settings) -> Transport:
    """A transport for the configured URL and namespace (not yet connected)."""
    return transport_class(settings.url).from_settings(settings)
