"""The service's claims rules and the edit guard's verdicts, on every transport."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from peers import constants as c
from peers.config import load_settings
from peers.errors import InvalidInput
from peers.models import Peer
from peers.procinfo import process_start_time
from peers.service import PeersService
from peers.transports.base import Transport

pytestmark = pytest.mark.anyio

REPO = {"git_root": "/work/app", "git_common_dir": "/work/app/.git", "git_remote": "github.com/acme/app"}


@pytest.fixture
def service(transport: Transport) -> PeersService:
    settings = load_settings(
        url="sqlite:///unused.db", namespace=transport.namespace, host=socket.gethostname()
    )
    return PeersService(transport, settings)


@pytest.fixture
def new(service: PeersService) -> Callable[..., Any]:
    async def make(name: str | None = None, **fields: Any) -> Peer:
        base: dict[str, Any] = {"cwd": "/work/app", "pid": os.getpid(),
                                "pid_start": process_start_time(os.getpid()), **REPO}  # fmt: skip
        base.update(fields)
        return await service.register(service.new_peer(name=name, **base))

    return make


async def test_claims_are_checked_before_they_reach_the_store(
    service: PeersService, new: Callable[..., Any]
) -> None:
    me = await new("alice")
    claims = service.claims
    for kwargs, words in (
        ({"paths": "src/a.py", "ttl": 5}, "ttl"),
        ({"paths": "src/a.py", "ttl": "soon"}, "ttl"),
        ({"paths": "src/a.py", "reason": "x" * (c.MAX_CLAIM_REASON + 1)}, "reason"),
        ({"paths": [f"f{i}" for i in range(c.MAX_CLAIM_PATHS + 1)]}, "at most"),
        ({"paths": [1, 2]}, "list of file paths"),
        ({"paths": "src/a.py", "exclusive": "yes"}, "true or false"),
        ({"paths": "/elsewhere/a.py"}, "outside the repository"),
    ):
        paths = kwargs.pop("paths")
        with pytest.raises(InvalidInput, match=words):
            await claims.claim(me, paths, **kwargs)
    outside = await new("nogit", git_root=None, git_common_dir=None, git_remote=None)
    with pytest.raises(InvalidInput, match="git repository"):
        await claims.claim(outside, ["a.py"])
    assert await claims.of(me.id) == []


async def test_a_refusal_names_the_holder_and_how_to_ask_it(
    service: PeersService, new: Callable[..., Any]
) -> None:
    alice = await new("alice", summary="rewriting the API")
    bob = await new("bob")
    await service.claims.claim(alice, ["src/api"], reason="big refactor")
    outcome = await service.claims.claim(bob, ["/work/app/src/api/v1.py", "src/db.py"])
    assert [g.path for g in outcome.granted] == ["src/db.py"]
    (held,) = outcome.refused
    assert held.path == "src/api/v1.py" and held.holder is not None and held.holder.name == "alice"
    assert held.ask_with() == {
        "to_id": "alice",
        "message": "May I change src/api/v1.py (you claimed src/api)? Tell me when you are done "
        "with it, or release it with release_files.",
    }
    text = held.describe()
    assert "claimed exclusively by alice" in text and "big refactor" in text
    assert "rewriting the API" in text and '"to_id": "alice"' in text
    assert held.json()["holder_summary"] == "rewriting the API"


async def test_the_guard_blocks_warns_and_records(
    service: PeersService, new: Callable[..., Any]
) -> None:
    alice = await new("alice")
    bob = await new("bob", files=("README.md",))
    await service.claims.claim(alice, ["src/api.py"])
    await service.claims.claim(alice, ["lib"], exclusive=False)
    verdict = await service.claims.guard(bob, ["src/api.py", "src/new.py"])
    assert [h.holder.name for h in verdict.blocked if h.holder] == ["alice"]
    assert "alice" in verdict.refusal() and "send_message" in verdict.refusal()
    verdict = await service.claims.guard(bob, ["lib/util.py", "/tmp/outside.py"])
    assert not verdict.blocked and [h.claim.path for h in verdict.shared] == ["lib"]
    mine = {cl.path: cl for cl in await service.claims.of(bob.id)}
    assert mine["lib/util.py"].auto and not mine["lib/util.py"].exclusive
    # alice edits what bob changes: warned of bob's uncommitted work, and of his claim.
    verdict = await service.claims.guard(alice, ["README.md"])
    assert [(p, o.name) for p, o in verdict.changing] == [("README.md", "bob")]
    assert (await service.claims.guard(alice, ["/tmp/x"])).blocked == ()
    # Outside a repository nothing is guarded.
    nogit = await new("nogit", git_root=None, git_common_dir=None, git_remote=None)
    assert (await service.claims.guard(nogit, ["src/api.py"])).blocked == ()
