"""File claims under the transport contract (docs/CONTRACT.md, "Claims").

Run on SQLite, fakeredis and a real redis-server like the rest of the contract;
every assertion reads what was stored back, most through a second instance.
"""

from __future__ import annotations

import time

import anyio
import pytest
from test_transport_contract import Factory, MakePeer, dead_process

from peers import constants as c
from peers.errors import InvalidInput, PeerNotFound
from peers.models import Claim, ClaimRequest
from peers.transports.base import Transport

pytestmark = pytest.mark.anyio

REPO = "github.com/acme/app"


def ask(holder: str, *paths: str, exclusive: bool = True, **more: object) -> ClaimRequest:
    return ClaimRequest(holder_id=holder, repo=REPO, paths=paths, exclusive=exclusive, **more)  # type: ignore[arg-type]


def paths(claims: list[Claim]) -> list[str]:
    return [cl.path for cl in claims]


async def test_a_claim_is_granted_stored_and_listed_by_repo_and_holder(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    t, other = await transport_factory(), await transport_factory()
    a = await t.register(make_peer(name="alice"))
    result = await t.claim(ask(a.id, "src/api.py", "docs", reason="rewriting", ttl=600))
    assert paths(list(result.granted)) == ["src/api.py", "docs"] and not result.conflicts
    (docs, api) = await other.list_claims(repo=REPO)
    assert (api.holder_id, api.path, api.exclusive, api.reason, api.auto) == (
        a.id, "src/api.py", True, "rewriting", False,
    )  # fmt: skip
    assert docs.path == "docs" and 595 < api.expires_at - time.time() <= 600
    assert await other.list_claims(repo="elsewhere") == []
    assert paths(await other.list_claims(holder_id=a.id)) == ["docs", "src/api.py"]


async def test_exclusive_conflicts_with_any_claim_shared_only_with_exclusive(
    transport: Transport, make_peer: MakePeer
) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    await transport.claim(ask(a.id, "src/api.py", reason="mine"))
    await transport.claim(ask(a.id, "lib/util.py", exclusive=False))
    refused = await transport.claim(ask(b.id, "src/*.py", "lib/util.py", "new.py", exclusive=False))
    # The shared glob meets a's exclusive claim; the shared file shares a's shared claim.
    assert paths(list(refused.granted)) == ["lib/util.py", "new.py"]
    ((conflict),) = refused.conflicts
    assert (conflict.path, conflict.claim.holder_id, conflict.claim.reason) == ("src/*.py", a.id, "mine")
    assert [(s.path, s.claim.holder_id, s.blocking) for s in refused.shared_with] == [
        ("lib/util.py", a.id, False)
    ]
    # Exclusive over someone's shared claim: refused too.
    again = await transport.claim(ask(b.id, "lib"))
    assert not again.granted and again.conflicts[0].claim.path == "lib/util.py"


async def test_twenty_sessions_claiming_one_path_at_once_leave_exactly_one_winner(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    instances = [await transport_factory() for _ in range(4)]
    peers = [await instances[i % 4].register(make_peer()) for i in range(20)]
    results: dict[str, bool] = {}

    async def one(i: int) -> None:
        got = await instances[i % 4].claim(ask(peers[i].id, "src/api.py"))
        results[peers[i].id] = bool(got.granted)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, i)
    winners = [pid for pid, won in results.items() if won]
    assert len(winners) == 1, results
    (stored,) = await instances[0].list_claims(repo=REPO)
    assert stored.holder_id == winners[0]


async def test_a_holder_upgrades_renews_and_releases_its_own_claims(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    t, other = await transport_factory(), await transport_factory()
    a = await t.register(make_peer())
    first = (await t.claim(ask(a.id, "src/a.py", exclusive=False, ttl=60))).granted[0]
    upgraded = (await t.claim(ask(a.id, "src/a.py", ttl=120))).granted[0]
    assert upgraded.exclusive and upgraded.claimed_at == first.claimed_at
    await t.claim(ask(a.id, "src/b.py", "src/c/d.py", "*.md"))
    await anyio.sleep(0.05)
    renewed = await t.renew_claims(a.id, ["src/a.py"])
    assert [cl.path for cl in renewed] == ["src/a.py"] and renewed[0].expires_at > upgraded.expires_at
    gone = await t.release_claims(a.id, ["src/c", "*.md"])
    assert sorted(paths(gone)) == ["*.md", "src/c/d.py"]
    assert paths(await other.list_claims(holder_id=a.id)) == ["src/a.py", "src/b.py"]
    assert paths(await t.release_claims(a.id)) == ["src/a.py", "src/b.py"]
    assert await other.list_claims() == []


async def test_an_auto_claim_only_renews_what_the_holder_already_covers(
    transport: Transport, make_peer: MakePeer
) -> None:
    a = await transport.register(make_peer())
    (mine,) = (await transport.claim(ask(a.id, "src", ttl=100))).granted
    got = await transport.claim(ask(a.id, "src/x.py", exclusive=False, auto=True, renew_all=True))
    assert [(cl.path, cl.exclusive, cl.auto) for cl in got.granted] == [("src", True, False)]
    got = await transport.claim(ask(a.id, "lib/y.py", exclusive=False, auto=True))
    assert [(cl.path, cl.exclusive, cl.auto, cl.reason) for cl in got.granted] == [
        ("lib/y.py", False, True, "editing")
    ]
    listed = await transport.list_claims(holder_id=a.id)
    assert paths(listed) == ["lib/y.py", "src"] and listed[1].expires_at >= mine.expires_at


async def test_claims_of_a_holder_that_is_not_live_do_not_count(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    t = await transport_factory()
    pid, start = dead_process()
    crashed = await t.register(make_peer(pid=pid, pid_start=start))
    b = await t.register(make_peer())
    with pytest.raises(PeerNotFound):
        await t.claim(ask(crashed.id, "src/api.py"))
    a = await t.register(make_peer())
    await t.claim(ask(a.id, "src/api.py"))
    await t.unregister(a.id)
    assert await t.list_claims() == []
    assert (await t.claim(ask(b.id, "src/api.py"))).granted


async def test_claims_expire_by_their_ttl(transport: Transport, make_peer: MakePeer) -> None:
    a = await transport.register(make_peer())
    b = await transport.register(make_peer())
    await transport.claim(ask(a.id, "src/api.py", ttl=0.5))
    assert (await transport.claim(ask(b.id, "src/api.py"))).conflicts
    await anyio.sleep(0.7)
    assert await transport.list_claims(holder_id=a.id) == []
    assert (await transport.claim(ask(b.id, "src/api.py"))).granted


async def test_a_successor_with_the_name_takes_the_claims_an_anonymous_holder_loses_them(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    t, other = await transport_factory(), await transport_factory()
    first = await t.register(make_peer(name="alice"))
    await t.claim(ask(first.id, "src/api.py", reason="rewriting"))
    await t.unregister(first.id)
    anon = await t.register(make_peer())
    await t.claim(ask(anon.id, "lib/x.py"))
    await t.unregister(anon.id)
    assert await other.list_claims() == []
    successor = await other.register(make_peer(name="alice"))
    (inherited,) = await t.list_claims()
    assert (inherited.holder_id, inherited.path, inherited.reason) == (
        successor.id, "src/api.py", "rewriting",
    )  # fmt: skip
    # The anonymous holder's claim is gone for good: a release finds nothing.
    assert await t.release_claims(anon.id) == []


async def test_gc_removes_expired_claims_and_those_nobody_will_take_over(
    transport_factory: Factory, make_peer: MakePeer
) -> None:
    t = await transport_factory()
    a = await t.register(make_peer())
    named = await t.register(make_peer(name="bob"))
    await t.claim(ask(a.id, "short.py", ttl=0.3))
    await t.claim(ask(a.id, "long.py"))
    await t.claim(ask(named.id, "kept.py"))
    pid, start = dead_process()
    crashed = await t.register(make_peer(pid=pid, pid_start=start))
    await anyio.sleep(0.5)
    report = await t.gc()
    assert report.claims_removed == 1
    await t.unregister(named.id)  # named: its claim waits for a successor
    assert (await t.gc()).claims_removed == 0
    assert paths(await t.release_claims(named.id)) == ["kept.py"]
    assert crashed.id not in {cl.holder_id for cl in await t.list_claims()}


async def test_bad_claim_requests_are_refused_clearly(
    transport: Transport, make_peer: MakePeer
) -> None:
    a = await transport.register(make_peer())
    with pytest.raises(InvalidInput, match="at least one path"):
        await transport.claim(ask(a.id))
    with pytest.raises(InvalidInput, match="not normalised"):
        await transport.claim(ask(a.id, "./src/a.py"))
    with pytest.raises(InvalidInput, match="climbs out"):
        await transport.claim(ask(a.id, "../etc/passwd"))
    with pytest.raises(InvalidInput, match="lasts"):
        await transport.claim(ask(a.id, "a.py", ttl=0))
    many = [f"f{i}.py" for i in range(c.MAX_CLAIMS + 1)]
    with pytest.raises(InvalidInput, match="at most"):
        await transport.claim(ask(a.id, *many))
    assert await transport.list_claims() == []
