"""The Redis transport's server-side scripts, one ``.lua`` file each beside this module.

Each script is sent as a prelude (the namespace's key stems and constants as Lua
locals, built from :class:`peers.keys.RedisKeys`, the one place for key names;
then ``prelude.lua``'s helpers), the shared pieces it needs (``names.lua``) and
its own body. Calls then carry only their own arguments. ``KEYS[1]`` is always a
key of the namespace, which routes the script to its slot on Redis Cluster.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from peers import constants as c
from peers.keys import RedisKeys

__all__ = ["SCRIPTS", "source"]

# script name -> the shared pieces it is built on, in order.
SCRIPTS: dict[str, tuple[str, ...]] = {
    "claim": ("names",),
    "update": ("names",),
    "send": (),
    "fetch": (),
    "ack": (),
    "touch": (),
    "offline": (),
    "roster": (),
    "expire": (),
    "collect": (),
    "counts": (),
    "records": (),
    "lease": (),
    "release": (),
    "migrate": (),
    "claims_read": (),
    "claims_write": (),
}


@functools.cache
def _read(name: str) -> str:
    # The module's own loader reads a file beside it, from a directory or a zip alike:
    # what importlib.resources would do, without the zipfile and readers it imports.
    loader: Any = __spec__.loader
    data: bytes = loader.get_data(os.path.join(os.path.dirname(__file__), f"{name}.lua"))
    return data.decode("utf-8")


def _lua_string(text: str) -> str:
    """A Lua 5.1 string literal for any text (printable ASCII as is, the rest as \\ddd)."""
    out = [chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in text.encode()]
    return '"' + "".join(out) + '"'


def _constants(keys: RedisKeys) -> str:
    values = {
        "PEER": keys.peer(""),
        "ALIVE": keys.alive(""),
        "MBOX": keys.mailbox(""),
        "MSG": keys.message(""),
        "NAME": keys.name(""),
        "RING": keys.ring(""),
        "WAKE": keys.wake_channel(""),
        "BACKLOG": keys.backlog(""),
        "REGISTRY": keys.registry,
        "OFFLINE": keys.offline,
        "INBOX": keys.inbox,
        "HISTORY": keys.history,
        "LOG": keys.log,
        "EVENTS": keys.events_channel,
        "CLAIMS": keys.claims(""),
        "CLAIMANTS": keys.claimants,
        "CLAIMS_VERSION": keys.claims_version,
        "GROUP": c.REDIS_GROUP,
        # One consumer per mailbox: every instance of the recipient sees the same pending list.
        "CONSUMER": "mail",
    }
    numbers = {
        "MAXLEN": c.REDIS_EVENT_LOG_MAXLEN,
        "RING_TTL": c.REDIS_RING_TTL_MS,
        "HOPS": c.MAX_SUCCESSOR_HOPS,
    }
    lines = [f"local {name} = {_lua_string(value)}" for name, value in values.items()]
    lines += [f"local {name} = {value}" for name, value in numbers.items()]
    return "\n".join(lines) + "\n"


def source(name: str, keys: RedisKeys) -> str:
    """The full text of one script for one namespace."""
    parts = [_constants(keys), _read("prelude"), *(_read(p) for p in SCRIPTS[name]), _read(name)]
    return "\n".join(parts)
