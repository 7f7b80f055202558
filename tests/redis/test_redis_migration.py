"""A namespace written by the previous key layout (every peer ever seen in the registry,
no inbox index, history only in the capped log) is brought up to date at connect."""

from __future__ import annotations

from typing import Any

import pytest
from support import Opener, make_message, make_peer

from peers.keys import RedisKeys
from peers.models import HistoryQuery

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]


async def test_an_older_layout_is_migrated_at_connect(
    opener: Opener, raw: Any, namespace: str
) -> None:
    t = await opener()
    keys = RedisKeys(namespace)
    gone = await t.register(make_peer(namespace, name="gone"))
    live = await t.register(make_peer(namespace))
    sent = await t.send(make_message(namespace, live, gone, "waiting since before"))
    await t.unregister(gone.id)
    await t.close()
    # Take the store back to layout 1.
    await raw.delete(keys.meta, keys.inbox, keys.offline, keys.history)
    await raw.zadd(keys.registry, {gone.id: gone.last_seen})

    fresh = await opener()
    assert await raw.hget(keys.meta, "version") == "2"
    assert await raw.zscore(keys.registry, gone.id) is None  # filed as offline
    assert await raw.zscore(keys.offline, gone.id) is not None
    assert await fresh.pending_counts() == {gone.id: 1}
    assert [r.message.id for r in await fresh.history(HistoryQuery())] == [sent.id]
    assert [p.id for p in await fresh.list_offline()] == [gone.id]
    assert [p.id for p in await fresh.list_peers()] == [live.id]
    heir = await fresh.register(make_peer(namespace, name="gone"))
    assert [m.id for m in await fresh.fetch(heir.id)] == [sent.id]
