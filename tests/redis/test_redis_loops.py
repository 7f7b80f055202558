"""Background loops on Redis survive what they did not expect: a doorbell read that
fails with an unknown error still rings afterwards, and an unreadable log entry is
skipped by the event stream, which goes on. Only close ends them."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from support import Opener, make_message, make_peer

from peers.keys import RedisKeys
from peers.models import EventKind, PeerUpdate

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]


async def test_a_doorbell_survives_an_unexpected_error(opener: Opener, namespace: str) -> None:
    t, other = await opener(), await opener()
    me = await t.register(make_peer(namespace))
    sender = await other.register(make_peer(namespace))
    bell = t._doorbell._bells[me.id]  # type: ignore[attr-defined]
    real = bell.pubsub.get_message
    failed: list[bool] = []

    async def broken_once(*args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append(True)
            raise RuntimeError("a reply nobody expected")
        return await real(*args, **kwargs)

    bell.pubsub.get_message = broken_once
    with anyio.fail_after(15):
        while not failed:
            await anyio.sleep(0.05)
        assert await t.wait_for_mail(me.id, timeout=10) is True  # the error rang: re-fetch
        assert not bell.reader.done()
        await other.send(make_message(namespace, sender, me, "after the error"))
        assert await t.wait_for_mail(me.id, timeout=10) is True
    [got] = await t.fetch(me.id)
    assert got.body == "after the error"


async def test_the_event_stream_skips_an_unreadable_entry_and_goes_on(
    opener: Opener, raw: Any, namespace: str
) -> None:
    watcher, actor = await opener(), await opener()
    stream = watcher.events()
    keys = RedisKeys(namespace)
    a = await actor.register(make_peer(namespace, name="a"))
    with anyio.fail_after(10):
        assert (await anext(stream)).kind is EventKind.JOIN
    # A summary whose data is not JSON (written by something that is not peers).
    fields = ["k", "summary", "p", a.id, "n", "a", "at", "1", "d", "{not json"]
    entry = await raw.xadd(keys.log, dict(zip(fields[::2], fields[1::2], strict=True)))
    await raw.publish(keys.events_channel, json.dumps([entry, fields]))
    await actor.update_peer(a.id, PeerUpdate(summary="readable"))
    with anyio.fail_after(10):
        event = await anext(stream)
    assert (event.kind, event.data["summary"]) == (EventKind.SUMMARY, "readable")
    await stream.aclose()  # type: ignore[attr-defined]
