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
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
from collections.abc import AsyncIterator
from typing import Self

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


class LineWriter:
    """``await write(text)`` then ``await flush()``: flush returns once the pipe took it all."""

    def __init__(self, stream: asyncio.StreamWriter) -> None:
        self._stream = stream

    async def write(self, text: str) -> None:
        self._stream.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._stream.drain()


def _two_pipes(read_fd: int, write_fd: int) -> bool:
    try:
        read_st, write_st = os.fstat(read_fd), os.fstat(write_fd)
    except OSError:
        return False
    return (
        stat.S_ISFIFO(read_st.st_mode)
        and stat.S_ISFIFO(write_st.st_mode)
        and (read_st.st_dev, read_st.st_ino) != (write_st.st_dev, write_st.st_ino)
    )


def _divert(fd: int, target: int) -> None:
    with contextlib.suppress(OSError):
        os.dup2(target, fd)


@contextlib.asynccontextmanager
async def event_loop_stdio() -> AsyncIterator[tuple[LineReader, LineWriter] | None]:
    """stdin and stdout as event-loop streams, or None when they are not two pipes (use the SDK's)."""
    if not _two_pipes(0, 1):
        yield None
        return
    loop = asyncio.get_running_loop()
    # Private duplicates carry the wire; fd 0 and 1 are then pointed away from it.
    wire_in = os.fdopen(fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3), "rb", buffering=0)
    wire_out = os.fdopen(fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3), "wb", buffering=0)
    transports: list[asyncio.BaseTransport] = []
    try:
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), wire_in
        )
        transports.append(read_transport)
        write_transport, write_protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, wire_out
        )
        transports.append(write_transport)
        # drain() then waits until the pipe took every byte, like a blocking write.
        write_transport.set_write_buffer_limits(high=0)
        writer = asyncio.StreamWriter(write_transport, write_protocol, None, loop)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _divert(0, devnull)
            _divert(1, 2)
        finally:
            os.close(devnull)
        yield LineReader(reader), LineWriter(writer)
    finally:
        for wire in (wire_in, wire_out):
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(wire.fileno(), True)  # the launcher shares these descriptions
        for transport in transports:
            transport.close()  # closes its file too
        for wire in (wire_in, wire_out)[len(transports) :]:
            wire.close()  # set up only partly: no transport took it
