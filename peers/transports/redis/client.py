"""The Redis client the transport talks through: redis-py's connections, the commands it sends.

redis-py's ``Redis`` class carries every command Redis has and the synchronous
client it is built on (``redis.commands.core`` and ``redis.client``: about 3 MB of
each ``peers serve`` process). The transport sends about twenty commands, a few
pipelines and pub/sub reads. This client keeps the parts of redis-py that matter:
its connection pool (TLS, AUTH, RESP2 and RESP3, reconnects), its retry policy and
its reply callbacks, so every reply has the shape redis-py gives it. Each command
builds its arguments as redis-py's method of the same name does. A ready-made
redis-py client (fakeredis in tests) has the same methods and is used as it is.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

# helpers first: it and response_callbacks import each other, and helpers is the way in.
from redis._parsers import helpers as _helpers  # noqa: F401
from redis._parsers.response_callbacks import get_response_callbacks
from redis.asyncio.connection import Connection, ConnectionPool
from redis.exceptions import DataError, NoScriptError, ResponseError

from peers.transports.redis.replies import text

__all__ = ["Client", "Pipeline", "PubSub", "Script"]

Args = tuple[Any, ...]
T = TypeVar("T")


class Commands:
    """The commands the transport sends; ``execute_command`` runs or queues each one."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        raise NotImplementedError

    def ping(self) -> Any:
        return self.execute_command("PING")

    def get(self, name: str) -> Any:
        return self.execute_command("GET", name)

    def hget(self, name: str, key: str) -> Any:
        return self.execute_command("HGET", name, key)

    def hgetall(self, name: str) -> Any:
        return self.execute_command("HGETALL", name)

    def hmget(self, name: str, *keys: str) -> Any:
        return self.execute_command("HMGET", name, *keys)

    def exists(self, *names: str) -> Any:
        return self.execute_command("EXISTS", *names)

    def delete(self, *names: str) -> Any:
        return self.execute_command("DEL", *names)

    def smembers(self, name: str) -> Any:
        return self.execute_command("SMEMBERS", name)

    def zrange(
        self,
        name: str,
        start: Any,
        end: Any,
        *,
        byscore: bool = False,
        offset: int | None = None,
        num: int | None = None,
    ) -> Any:
        pieces: list[Any] = ["ZRANGE", name, start, end]
        if byscore:
            pieces.append("BYSCORE")
        if (offset is None) != (num is None):
            raise DataError("``offset`` and ``num`` must both be specified.")
        if offset is not None:
            pieces += ["LIMIT", offset, num]
        return self.execute_command(*pieces, withscores=False, score_cast_func=float)

    def xrange(self, name: str, min: str = "-", max: str = "+", count: int | None = None) -> Any:
        return self.execute_command("XRANGE", name, min, max, *_count("XRANGE", count))

    def xrevrange(
        self, name: str, max: str = "+", min: str = "-", count: int | None = None
    ) -> Any:
        return self.execute_command("XREVRANGE", name, max, min, *_count("XREVRANGE", count))

    def xdel(self, name: str, *ids: str) -> Any:
        return self.execute_command("XDEL", name, *ids)

    def xtrim(self, name: str, *, minid: str) -> Any:
        return self.execute_command("XTRIM", name, "MINID", "~", minid)  # ~: redis-py's default

    def xgroup_create(self, name: str, groupname: str, id: str = "$", mkstream: bool = False) -> Any:
        return self.execute_command(
            "XGROUP CREATE", name, groupname, id, *(["MKSTREAM"] if mkstream else [])
        )

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def script_load(self, script: str) -> Any:
        return self.execute_command("SCRIPT LOAD", script)

    def info(self, section: str) -> Any:
        return self.execute_command("INFO", section)


def _count(command: str, count: int | None) -> list[str]:
    if count is None:
        return []
    if not isinstance(count, int) or count < 1:
        raise DataError(f"{command} count must be a positive integer")
    return ["COUNT", str(count)]


class Client(Commands):
    """Commands over a redis-py connection pool, each retried as redis-py retries them."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.connection_pool = pool
        kwargs = pool.connection_kwargs
        # The callbacks redis-py's Redis would pick for this pool: the same reply shapes.
        callbacks = get_response_callbacks(
            user_protocol=kwargs.get("protocol"),
            legacy_responses=kwargs.get("legacy_responses", True),
        )
        self._callbacks: dict[str, Callable[..., Any]] = {k.upper(): v for k, v in callbacks.items()}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A client on a new pool for ``url`` (redis://, rediss://, unix://)."""
        return cls(ConnectionPool.from_url(url, **options))

    def parse(self, reply: Any, args: Args, options: dict[str, Any]) -> Any:
        callback = self._callbacks.get(str(args[0]).upper())
        return reply if callback is None else callback(reply, **options)

    async def on_connection(self, do: Callable[[Connection], Awaitable[T]]) -> T:
        """``do`` on a pooled connection, retried (after a disconnect) as redis-py retries."""
        pool = self.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            result: T = await conn.retry.call_with_retry(
                lambda: do(conn), lambda _error: conn.disconnect()
            )
            return result
        finally:
            await pool.release(conn)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self.on_connection(lambda conn: self._send(conn, args, options))

    async def _send(self, conn: Connection, args: Args, options: dict[str, Any]) -> Any:
        await conn.send_command(*args)
        return self.parse(await conn.read_response(), args, options)

    def pipeline(self, transaction: bool = False) -> Pipeline:
        """Commands sent together and answered together (never MULTI/EXEC)."""
        if transaction:
            raise ValueError("this client sends no transactions; use a script")
        return Pipeline(self)

    def pubsub(self, ignore_subscribe_messages: bool = False) -> PubSub:
        return PubSub(self.connection_pool, ignore_subscribe_messages)

    def register_script(self, script: str) -> Script:
        return Script(self, script)

    async def aclose(self) -> None:
        # aclose, not disconnect: it also ends the pool's maintenance-notification tasks.
        await self.connection_pool.aclose()


class Pipeline(Commands):
    """Queued commands, sent in one write; ``execute`` raises the first error, as redis-py's."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._queue: list[tuple[Args, dict[str, Any]]] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._queue.clear()

    def execute_command(self, *args: Any, **options: Any) -> Self:
        self._queue.append((args, options))
        return self

    async def execute(self) -> list[Any]:
        queued, self._queue = self._queue, []
        if not queued:
            return []
        return await self._client.on_connection(lambda conn: self._send(conn, queued))

    async def _send(self, conn: Connection, queued: Sequence[tuple[Args, dict[str, Any]]]) -> list[Any]:
        await conn.send_packed_command(conn.pack_commands(args for args, _ in queued))
        replies: list[Any] = []
        for args, options in queued:
            try:
                replies.append(self._client.parse(await conn.read_response(), args, options))
            except ResponseError as exc:
                replies.append(exc)  # every reply is read, or the next user gets this one's
        for number, (reply, (args, _)) in enumerate(zip(replies, queued, strict=True), 1):
            if isinstance(reply, ResponseError):
                reply.args = (
                    f"Command # {number} ({args[0]}) of pipeline caused error: {reply.args[0]}",
                    *reply.args[1:],
                )
                raise reply
        return replies


class Script:
    """A server-side script by SHA1, loaded again when the server has forgotten it."""

    def __init__(self, client: Client, script: str) -> None:
        self._client = client
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return await self._client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.sha = await self._client.script_load(self.script)
            return await self._client.evalsha(self.sha, len(keys), *keys, *args)


class PubSub:
    """Channel subscriptions on a connection of their own, read by one task.

    Like redis-py's: after a lost connection the next read reconnects and
    subscribes again to every channel (whose confirmations are then read as
    messages). Unlike it, no health-check PING of its own: the transport's readers
    PING a connection that has been quiet too long.
    """

    def __init__(self, pool: ConnectionPool, ignore_subscribe_messages: bool = False) -> None:
        self.connection_pool = pool
        self.connection: Connection | None = None
        self._ignore_subscribe_messages = ignore_subscribe_messages
        self._channels: set[str] = set()
        self._leaving: set[str] = set()

    @property
    def subscribed(self) -> bool:
        return bool(self._channels)

    async def _connected(self) -> Connection:
        if self.connection is None:
            self.connection = await self.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            self.connection.register_connect_callback(self._on_connect)
        else:
            await self.connection.connect()  # type: ignore[no-untyped-call]
        return self.connection

    async def _on_connect(self, connection: Connection) -> None:
        self._leaving.clear()
        if self._channels:
            await connection.send_command("SUBSCRIBE", *self._channels, check_health=False)

    async def _reconnect(self, conn: Connection) -> None:
        await conn.disconnect()
        await conn.connect()  # type: ignore[no-untyped-call]  # subscribes again: _on_connect

    async def _command(self, *args: str) -> None:
        conn = await self._connected()
        check = not self.subscribed  # a health check's PING would read a message instead
        await conn.retry.call_with_retry(
            lambda: conn.send_command(*args, check_health=check), lambda _error: self._reconnect(conn)
        )

    async def subscribe(self, *channels: str) -> None:
        await self._command("SUBSCRIBE", *channels)
        self._channels.update(channels)
        self._leaving.difference_update(channels)

    async def unsubscribe(self, *channels: str) -> None:
        self._leaving.update(channels)
        await self._command("UNSUBSCRIBE", *channels)

    async def ping(self) -> None:
        """PING on the subscribed connection: the answer is read as a ``pong`` message."""
        await self._command("PING")

    async def get_message(self, timeout: float | None = 0.0) -> dict[str, Any] | None:
        """The next message within ``timeout`` seconds (None: wait for one), else None."""
        conn = self.connection
        if conn is None:
            raise RuntimeError("this pub/sub connection has no subscription yet: subscribe first")
        if not conn.is_connected:
            await conn.connect()  # type: ignore[no-untyped-call]
        reply = await conn.retry.call_with_retry(
            lambda: conn.read_response(
                timeout=math.inf if timeout is None else timeout,
                disconnect_on_error=False,
                push_request=True,
            ),
            lambda _error: self._reconnect(conn),
        )
        return self._message(reply) if reply is not None else None

    def _message(self, reply: Any) -> dict[str, Any] | None:
        if isinstance(reply, bytes | str):  # a PING's answer: "PONG" (RESP3)
            reply = ["pong", "" if reply in ("PONG", b"PONG") else reply]
        kind = text(reply[0])
        if kind == "pong":
            return {"type": kind, "pattern": None, "channel": None, "data": reply[1]}
        message = {"type": kind, "pattern": None, "channel": reply[1], "data": reply[2]}
        # Names are kept as given (text); a client that does not decode answers in bytes.
        channel = text(reply[1])
        if kind == "unsubscribe" and channel in self._leaving:
            self._leaving.discard(channel)
            self._channels.discard(channel)
        if self._ignore_subscribe_messages and kind in ("subscribe", "unsubscribe"):
            return None
        return message

    async def aclose(self) -> None:
        conn, self.connection = self.connection, None
        if conn is not None:
            await conn.disconnect(nowait=True)
            conn.deregister_connect_callback(self._on_connect)  # type: ignore[no-untyped-call]
            await self.connection_pool.release(conn)
        self._channels.clear()
        self._leaving.clear()
