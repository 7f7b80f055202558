"""The Lua scripts ship with the package and each one is used."""

from __future__ import annotations

from importlib import resources

from peers.keys import RedisKeys
from peers.transports.redis import scripts


def test_every_script_file_is_in_the_package_and_used() -> None:
    folder = resources.files(scripts.__package__)
    shipped = {p.name for p in folder.iterdir() if p.name.endswith(".lua")}
    used = {f"{n}.lua" for n in scripts.SCRIPTS} | {"prelude.lua"}
    used |= {f"{p}.lua" for parts in scripts.SCRIPTS.values() for p in parts}
    assert shipped == used
    for name in scripts.SCRIPTS:
        text = scripts.source(name, RedisKeys("ns"))
        assert 'local PEER = "peers:{ns}:peer:"' in text
