"""peers' own Redis client (peers.transports.redis.client) on a real redis-server.

Every reply must have the shape redis-py's ``Redis`` gives the same command, because
the transport runs on either (fakeredis hands it a redis-py client). So each command
is sent through both, on the same server, and the answers compared.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from support import RedisProcess

from peers.transports.redis.client import Client, PubSub

pytestmark = [pytest.mark.anyio, pytest.mark.redis_real]


@pytest.fixture
async def pair(redis_server: RedisProcess) -> AsyncIterator[tuple[Client, Any]]:
    if not redis_server.running:
        redis_server.start()
    ours = Client.from_url(redis_server.url, decode_responses=True, driver_info=None)
    theirs = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield ours, theirs
    finally:
        await ours.aclose()
        await theirs.aclose()


def _key(kind: str) -> str:
    return f"client-test:{kind}:{uuid.uuid4().hex[:8]}"


async def test_every_command_answers_as_redis_pys_client_does(pair: tuple[Client, Any]) -> None:
    ours, theirs = pair
    h, z, s, x, missing = _key("h"), _key("z"), _key("s"), _key("x"), _key("none")
    await theirs.hset(h, mapping={"a": "1", "b": "2"})
    await theirs.zadd(z, {"m1": 1.0, "m2": 2.5, "m3": 4.0})
    await theirs.sadd(s, "p", "q")
    ids = [await theirs.xadd(x, {"f": str(i)}) for i in range(4)]
    await theirs.xgroup_create(x, "existing", id="0")
    await theirs.set(missing + ":str", "v")

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("ping", (), {}),
        ("get", (missing + ":str",), {}),
        ("get", (missing,), {}),
        ("hget", (h, "a"), {}),
        ("hget", (h, "zz"), {}),
        ("hgetall", (h,), {}),
        ("hgetall", (missing,), {}),
        ("hmget", (h, "a", "zz", "b"), {}),
        ("exists", (h, missing), {}),
        ("smembers", (s,), {}),
        ("smembers", (missing,), {}),
        ("zrange", (z, 0, -1), {}),
        ("zrange", (z, "-inf", "(4.0"), {"byscore": True, "offset": 1, "num": 5}),
        ("xrange", (x, "-", "+"), {"count": 2}),
        ("xrange", (x, f"({ids[1]}", "+"), {}),
        ("xrevrange", (x, "+", "-"), {"count": 3}),
        ("xrange", (missing, "-", "+"), {}),
        ("info", ("server",), {}),
    ]
    for name, args, kwargs in calls:
        got = await getattr(ours, name)(*args, **kwargs)
        want = await getattr(theirs, name)(*args, **kwargs)
        if name == "info":  # uptime and the like move between the two calls
            assert got.keys() == want.keys() and got["redis_version"] == want["redis_version"]
        else:
            assert got == want, (name, args, kwargs)
            assert type(got) is type(want), (name, args)

    # Writes, each on its own key so that both clients' effects can be compared.
    for client in (ours, theirs):
        stream = _key("xw")
        for i in range(5):
            await theirs.xadd(stream, {"f": str(i)})
        entries = await theirs.xrange(stream)
        assert await client.xgroup_create(stream, "g", id="0", mkstream=True) is True
        assert await client.xgroup_create(_key("new"), "g", id="$", mkstream=True) is True
        assert await client.xdel(stream, entries[0][0]) == 1
        assert await client.xtrim(stream, minid=entries[3][0]) >= 0
        assert await client.delete(stream, _key("gone")) == 1
    with pytest.raises(ResponseError, match="BUSYGROUP"):
        await ours.xgroup_create(x, "existing", id="0")


async def test_scripts_run_by_sha_and_load_again_once_the_server_forgot_them(
    pair: tuple[Client, Any],
) -> None:
    ours, theirs = pair
    key = _key("script")
    script = ours.register_script("return {KEYS[1], ARGV[1], redis.call('EXISTS', KEYS[1])}")
    assert script.sha == (theirs.register_script(script.script)).sha
    assert await ours.script_load(script.script) == script.sha
    assert await ours.evalsha(script.sha, 1, key, "x") == [key, "x", 0]
    await theirs.script_flush()
    assert await script(keys=[key], args=["y"]) == [key, "y", 0]
    assert await ours.evalsha(script.sha, 1, key, "z") == [key, "z", 0]  # loaded again


async def test_a_pipeline_answers_in_order_and_raises_its_first_error_after_reading_all(
    pair: tuple[Client, Any],
) -> None:
    ours, theirs = pair
    h, text = _key("ph"), _key("pt")
    await theirs.hset(h, "a", "1")
    await theirs.set(text, "v")
    async with ours.pipeline(transaction=False) as pipe:
        pipe.hgetall(h)
        pipe.exists(h)
        pipe.hmget(h, "a", "b")
        assert await pipe.execute() == [{"a": "1"}, 1, ["1", None]]
    async with ours.pipeline(transaction=False) as pipe:
        pipe.hgetall(h)
        pipe.hgetall(text)  # WRONGTYPE
        pipe.exists(h)
        with pytest.raises(ResponseError, match=r"Command # 2 \(HGETALL\).*WRONGTYPE"):
            await pipe.execute()
    # The connection was left clean: the replies after the error were read.
    assert await ours.hgetall(h) == {"a": "1"}
    async with ours.pipeline() as pipe:
        assert await pipe.execute() == []
    with pytest.raises(ValueError, match="no transactions"):
        ours.pipeline(transaction=True)


async def _next(pubsub: PubSub, kind: str, within: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message = await pubsub.get_message(timeout=0.5)
            if message is not None and message["type"] == kind:
                return message


async def test_pubsub_confirms_delivers_pongs_and_leaves(pair: tuple[Client, Any]) -> None:
    ours, theirs = pair
    channel = _key("ch")
    pubsub = ours.pubsub(ignore_subscribe_messages=False)
    with pytest.raises(RuntimeError, match="subscribe first"):
        await pubsub.get_message(timeout=0)
    try:
        await pubsub.subscribe(channel)
        assert pubsub.subscribed
        confirmed = await _next(pubsub, "subscribe")
        assert confirmed == {"type": "subscribe", "pattern": None, "channel": channel, "data": 1}
        assert await pubsub.get_message(timeout=0.05) is None  # nothing more: a timeout
        assert await theirs.publish(channel, "hello") == 1
        message = await _next(pubsub, "message")
        assert message == {"type": "message", "pattern": None, "channel": channel, "data": "hello"}
        await pubsub.ping()
        assert (await _next(pubsub, "pong"))["channel"] is None
        await pubsub.unsubscribe(channel)
        await _next(pubsub, "unsubscribe")
        assert not pubsub.subscribed
        assert await theirs.publish(channel, "nobody") == 0
    finally:
        await pubsub.aclose()
    assert pubsub.connection is None and not pubsub.subscribed


@pytest.mark.parametrize("retries", [0, 3])
async def test_pubsub_subscribes_again_after_its_connection_is_killed(
    redis_server: RedisProcess, pair: tuple[Client, Any], retries: int
) -> None:
    """With retries (the transport's clients) the read itself reconnects; without, the
    read fails and the next one reconnects (the transport's readers read again)."""
    _, theirs = pair
    name = f"peers-test-{uuid.uuid4().hex[:8]}"
    ours = Client.from_url(
        redis_server.url,
        decode_responses=True,
        driver_info=None,
        client_name=name,
        retry=Retry(NoBackoff(), retries),
    )
    channel = _key("re")
    pubsub = ours.pubsub()
    try:
        await pubsub.subscribe(channel)
        await _next(pubsub, "subscribe")
        killed = [c["id"] for c in await theirs.client_list() if c["name"] == name]
        assert len(killed) == 1
        await theirs.execute_command("CLIENT", "KILL", "ID", killed[0])
        if retries == 0:
            with pytest.raises(RedisConnectionError):
                await pubsub.get_message(timeout=1.0)
        # The next read reconnects, subscribes again, and hands over the confirmation.
        await _next(pubsub, "subscribe")
        assert [c["id"] for c in await theirs.client_list() if c["name"] == name] != killed
        assert await theirs.publish(channel, "after") == 1
        assert (await _next(pubsub, "message"))["data"] == "after"
    finally:
        await pubsub.aclose()
        await ours.aclose()


async def test_ignored_subscribe_messages_are_not_returned(pair: tuple[Client, Any]) -> None:
    ours, theirs = pair
    channel = _key("quiet")
    pubsub = ours.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(channel)
        assert await theirs.publish(channel, "x") == 1  # subscribed: the server confirmed it
        async with asyncio.timeout(5):
            first = None
            while first is None:
                first = await pubsub.get_message(timeout=0.5)
        assert first["type"] == "message" and first["data"] == "x"
    finally:
        await pubsub.aclose()


async def test_bad_arguments_are_refused_before_anything_is_sent(pair: tuple[Client, Any]) -> None:
    ours, _ = pair
    with pytest.raises(DataError, match="offset"):
        await ours.zrange(_key("z"), 0, -1, offset=1)
    with pytest.raises(DataError, match="XRANGE count"):
        await ours.xrange(_key("x"), count=0)
    with pytest.raises(DataError, match="XREVRANGE count"):
        await ours.xrevrange(_key("x"), count=-1)


async def test_an_unsubscribe_takes_effect_when_replies_are_not_decoded(
    redis_server: RedisProcess,
) -> None:
    raw = Client.from_url(redis_server.url, driver_info=None)  # bytes replies
    channel = _key("raw")
    pubsub = raw.pubsub()
    try:
        await pubsub.subscribe(channel)
        assert (await _next(pubsub, "subscribe"))["channel"] == channel.encode()
        await pubsub.unsubscribe(channel)
        await _next(pubsub, "unsubscribe")
        assert not pubsub.subscribed  # a reconnect would not subscribe again
    finally:
        await pubsub.aclose()
        await raw.aclose()
