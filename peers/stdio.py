"""stdin and stdout of ``peers serve``, read and written on the event loop.

The MCP SDK's ``stdio_server`` reads every line and writes every message
through a worker thread (``anyio.wrap_file``): three thread hops for a push,
about half a millisecond. When stdin and stdout are two different pipes (as
under every MCP client) they become asyncio pipe transports here instead, with
the SDK's line framing (one JSON-RPC message a line, parsed and dumped by
``mcp_types`` as its ``stdio_server`` does) and one difference: the messages
that are ready together go out in one write, so that a busy session pays one
system call (and one hand-over of the GIL) for many answers, not one each; and
the two memory streams hold a few messages, so that a line read or a message
written does not wait for the other task's turn. A message in the write buffer
is not written yet: a response counts as written, and a channel push as made,
only once the pipe took it (``on_written``, :meth:`Wire.pushed`).
The SDK's session runtime (dispatcher, runner, server) is fed through the two
memory streams it takes from any transport. Anything else keeps the SDK's own
``stdio_server`` and its threads: a file or a terminal
(epoll cannot watch a file, and a terminal shared with a shell must not turn
non-blocking), and sockets, where one socket serving as both stdin and stdout
(inetd style) would look closed to asyncio's write transport as soon as the
client writes. The pipes' open file descriptions are shared with whoever
launched the server, so they are put back into blocking mode at the end.

As the SDK does for its own streams, fd 0 and 1 are pointed elsewhere from
then on (the null device, stderr; the process ends when serving does): a child
process or a stray print cannot write on the wire or steal its input.

Bytes already read from stdin by the handshake front (:mod:`peers.front`) are
handed in as ``prefix`` and read first: nothing is read twice or lost.

Only public asyncio API is used: the write side is a pipe transport with a small
protocol of its own (low and high water marks at zero, so ``flush`` returns once
the pipe took every byte, like a blocking write), not ``StreamWriter``, whose
drain needs the private ``FlowControlMixin``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Self

import anyio
import anyio.lowlevel
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from peers.admission import Admission
from peers.front import two_pipes
from peers.log import get_logger
from peers.wiretap import RequestId, is_push, receive_eagerly, response_id, send_eagerly

__all__ = ["LineReader", "LineWriter", "Wire", "event_loop_stdio"]

log = get_logger(__name__)

# A JSON-RPC line longer than this is refused (the SDK's own reader has no limit;
# a 32 KiB message body is far below it).
MAX_LINE_BYTES = 64 * 1024 * 1024


class LineReader:
    """``async for line in reader``: stdin's lines as text (what the SDK's reader expects)."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        try:
            line = await self._stream.readline()
        except ValueError:
            # Over the limit: the reader dropped it. Hand on something that fails
            # parsing, so the SDK reports it and goes on with the next line.
            log.warning("stdin line over the size limit dropped", limit=MAX_LINE_BYTES)
            return "line too long\n"
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


class _WriteProtocol(asyncio.BaseProtocol):
    """Flow control of the stdout pipe: writable when its buffer is empty, an error once it is gone."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.lost: BaseException | None = None

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionResetError("stdout closed")
        self.writable.set()


class LineWriter:
    """``await write(text)`` then ``await flush()``: flush returns once the pipe took it all."""

    def __init__(self, transport: asyncio.WriteTransport, protocol: _WriteProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def write(self, text: str) -> None:
        if self._protocol.lost is not None:
            raise ConnectionResetError("stdout closed") from self._protocol.lost
        self._transport.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._protocol.writable.wait()
        if self._protocol.lost is not None:
            raise ConnectionResetError("stdout closed") from self._protocol.lost
        if self._transport.is_closing():
            # A failed write closes the transport at once and reports it a turn later.
            raise ConnectionResetError("stdout closed")

    async def drained(self) -> None:
        """Return once everything written so far is in the pipe."""
        await self._protocol.writable.wait()


# Messages that are ready together go out in one write, at most this many.
WRITE_BATCH = 256
# Messages each memory stream holds between its two tasks. Unbuffered, every message
# made its sender wait for the receiving task's turn: a switch between tasks per line
# read and per message written. The reader's own limit is the admission's (requests
# read ahead); the SDK's writes wait once the writer is this far behind.
READ_BUFFER = 16
WRITE_BUFFER = 64


async def _read_messages(
    lines: LineReader,
    messages: MemoryObjectSendStream[SessionMessage | Exception],
    admission: Admission,
) -> None:
    """stdin's lines as the SDK's messages; a line that does not parse goes on as its error.

    A request is read on only once there is room for it (:mod:`peers.admission`).
    """
    async with messages:
        async for line in lines:
            item: SessionMessage | Exception
            try:
                message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            except Exception as exc:  # what the SDK's reader hands on: the dispatcher logs it
                item = exc
            else:
                await admission.admit(message)
                item = SessionMessage(message)
            try:
                await send_eagerly(messages, item)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the session is over


@dataclass
class Wire:
    """The two streams the SDK's dispatcher takes, and the stdout writer behind them."""

    read: MemoryObjectReceiveStream[SessionMessage | Exception]
    write: MemoryObjectSendStream[SessionMessage]
    writer: LineWriter
    _taken: MemoryObjectReceiveStream[SessionMessage]
    _ended: MemoryObjectSendStream[SessionMessage | Exception]
    # The client's requests open now (answered ones leave it as their write completes).
    admission: Admission = field(default_factory=Admission)
    # Called after each write (peers.trim notes the traffic).
    on_write: Callable[[], None] | None = None
    # Called with each response's id once the pipe took it (peers.wiretap: the mail it
    # carries is the client's from then on).
    on_written: Callable[[RequestId], None] | None = None

    # Channel pushes the pipe took, in the order they were handed to the writer.
    pushes_written: int = 0
    # Set after each batch (and when the writer ends); a new one for the next.
    _progress: anyio.Event = field(default_factory=anyio.Event)
    _busy: bool = False
    _gone: bool = False  # the writer ended: nothing handed to it from now on is written

    def _next_batch(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    async def run_writer(self) -> None:
        """Write what the SDK sends, every message ready at the time in one write."""
        try:
            async with self._taken:
                while True:
                    try:
                        batch = [await receive_eagerly(self._taken)]
                    except anyio.EndOfStream:
                        return
                    self._busy = True
                    try:
                        # One turn of the loop first: responses finishing in it go in this write.
                        await anyio.lowlevel.checkpoint()
                        while len(batch) < WRITE_BATCH:
                            try:
                                batch.append(self._taken.receive_nowait())
                            except (anyio.WouldBlock, anyio.EndOfStream):
                                break
                        text = "".join(
                            m.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                            for m in batch
                        )
                        await self.writer.write(text)
                        await self.writer.flush()
                        for message in batch:
                            rid = response_id(message.message)
                            if rid is not None:
                                self.admission.done(rid)
                                if self.on_written is not None:
                                    self.on_written(rid)
                            elif is_push(message.message):
                                self.pushes_written += 1
                        if self.on_write is not None:
                            self.on_write()
                    except OSError as exc:
                        # The client closed our stdout: end the session as at stdin EOF.
                        log.info("stdout closed; shutting down", error=str(exc))
                        self._ended.close()
                        return
                    finally:
                        self._busy = False
                        self._next_batch()
        finally:
            self._gone = True
            self._next_batch()

    async def pushed(self, count: int) -> bool:
        """Wait until the pipe took the first ``count`` channel pushes handed to the writer;
        False if the writer ended first (those left are never written)."""
        while self.pushes_written < count:
            if self._gone:
                return False
            await self._progress.wait()
        return True

    async def drained(self) -> None:
        """Return once every message handed to the writer so far is in the pipe (or the
        writer ended)."""
        # A message sent just now is taken in the writer task's next turn.
        for _ in range(2):
            await anyio.lowlevel.checkpoint()
        while not self._gone and (self._busy or self._taken.statistics().current_buffer_used):
            await self._progress.wait()
        await self.writer.drained()


def _divert(fd: int, target: int) -> None:
    with contextlib.suppress(OSError):
        os.dup2(target, fd)


@contextlib.asynccontextmanager
async def event_loop_stdio(prefix: bytes = b"") -> AsyncIterator[Wire | None]:
    """stdin and stdout as the SDK's message streams on the event loop, or None when they
    are not two pipes (then use the SDK's ``stdio_server``).

    ``prefix``: bytes already read from stdin, read before the pipe's.
    """
    if not two_pipes(0, 1):
        if prefix:
            raise RuntimeError("bytes read ahead from stdin need the event-loop reader")
        yield None
        return
    loop = asyncio.get_running_loop()
    # Private duplicates carry the wire; fd 0 and 1 are then pointed away from it.
    wire_in = os.fdopen(fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3), "rb", buffering=0)
    wire_out = os.fdopen(fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3), "wb", buffering=0)
    transports: list[asyncio.BaseTransport] = []
    try:
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        reader.feed_data(prefix)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), wire_in
        )
        transports.append(read_transport)
        write_transport, write_protocol = await loop.connect_write_pipe(_WriteProtocol, wire_out)
        transports.append(write_transport)
        # Paused whenever a byte waits: flush() then returns once the pipe took them all.
        write_transport.set_write_buffer_limits(high=0)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _divert(0, devnull)
            _divert(1, 2)
        finally:
            os.close(devnull)
        read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](
            READ_BUFFER
        )
        write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](WRITE_BUFFER)
        writer = LineWriter(write_transport, write_protocol)
        streams = Wire(read_recv, write_send, writer, write_recv, read_send)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read_messages, LineReader(reader), read_send, streams.admission)
            tg.start_soon(streams.run_writer)
            try:
                yield streams
            finally:
                # Served (the process normally ends before this): stop both tasks.
                tg.cancel_scope.cancel()
    finally:
        for wire in (wire_in, wire_out):
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(wire.fileno(), True)  # the launcher shares these descriptions
        for transport in transports:
            transport.close()  # closes its file too
        for wire in (wire_in, wire_out)[len(transports) :]:
            wire.close()  # set up only partly: no transport took it
