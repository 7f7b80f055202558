"""stdin and stdout of ``peers serve``, read and written on the event loop.

The MCP SDK's ``stdio_server`` reads every line and writes every message
through a worker thread (``anyio.wrap_file``): three thread hops for a push,
about half a millisecond. When stdin and stdout are two different pipes (as
under every MCP client) they become asyncio pipe transports here instead, and
the SDK keeps the framing and parsing (its ``stdio_server`` takes the two
streams). Anything else keeps the SDK's own threads: a file or a terminal
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
from collections.abc import AsyncIterator
from typing import Self

from peers.front import two_pipes
from peers.log import get_logger

__all__ = ["LineReader", "LineWriter", "event_loop_stdio"]

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

    async def drained(self) -> None:
        """Return once everything handed to the writer so far is in the pipe."""
        # A message the SDK's writer task has just taken is written on its next turn.
        for _ in range(3):
            await asyncio.sleep(0)
        await self._protocol.writable.wait()


def _divert(fd: int, target: int) -> None:
    with contextlib.suppress(OSError):
        os.dup2(target, fd)


@contextlib.asynccontextmanager
async def event_loop_stdio(
    prefix: bytes = b"",
) -> AsyncIterator[tuple[LineReader, LineWriter] | None]:
    """stdin and stdout as event-loop streams, or None when they are not two pipes (use the SDK's).

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
        yield LineReader(reader), LineWriter(write_transport, write_protocol)
    finally:
        for wire in (wire_in, wire_out):
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(wire.fileno(), True)  # the launcher shares these descriptions
        for transport in transports:
            transport.close()  # closes its file too
        for wire in (wire_in, wire_out)[len(transports) :]:
            wire.close()  # set up only partly: no transport took it
