"""``peers serve``: the stdio MCP server each agent session launches, its wire and its life.

It drives the MCP handshake itself (not ``Server.run``) so that ``server/discover``
is refused with -32601 and the connection stays on a revision that carries
``notifications/claude/channel`` (see CLIENTS.md). The tool handlers are in
:mod:`peers.server`; this module starts the session once ``initialize`` is
answered, runs its background loops, and ends the process on stdin EOF, a
signal or the parent's death.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.connection import Connection
from mcp.server.runner import serve_connection
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher

from peers import __version__
from peers import constants as c
from peers.clients import client_kind
from peers.config import Settings, load_settings
from peers.errors import PeersError
from peers.log import configure_logging, get_logger
from peers.models import Message, Peer, PushState
from peers.server import CHANNEL_METHOD, PeersServer, channel_meta, initial_push
from peers.service import PeersService
from peers.session import PushCallback, Session
from peers.stdio import event_loop_stdio
from peers.tools import INSTRUCTIONS
from peers.transports import check_scheme, create_transport
from peers.wiretap import CancelTap, StdoutTap, TrackedWriter

__all__ = ["DeliveryFailed", "TrackedWriter", "run_serve", "run_server", "serve"]

log = get_logger("peers.serve")


def run_serve() -> None:
    """Read the settings and serve MCP on stdio (exit 2 on a configuration error)."""
    try:
        settings = load_settings()
        # The backend module itself is imported after initialize is answered.
        check_scheme(settings.url)
    except PeersError as exc:
        print(f"peers serve: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    serve(settings)


async def _refuse_discover(
    ctx: ServerRequestContext, call_next: Callable[[ServerRequestContext], Awaitable[Any]]
) -> Any:
    # Claude Code only keeps a channel server that answers initialize (CLIENTS.md).
    if ctx.method == "server/discover":
        raise MCPError(code=types.METHOD_NOT_FOUND, message="Method not found", data=ctx.method)
    return await call_next(ctx)


async def _watch_parent(initial_ppid: int) -> None:
    # stdio servers orphaned by a crashed client must not linger as ghosts.
    # No portable event exists for it (PR_SET_PDEATHSIG fires when the forking *thread*
    # exits, which launchers such as uv do), so look every two seconds: one syscall.
    while os.getppid() == initial_ppid:  # noqa: ASYNC110
        await anyio.sleep(2.0)
    log.info("parent process exited; shutting down")


async def _watch_signals() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal received; shutting down", signal=signal.Signals(signum).name)
            return


class DeliveryFailed(PeersError):
    """A push could not be written (the client's pipe is closed); the message stays pending."""


async def run_server(settings: Settings) -> None:
    """Serve MCP on stdio until stdin closes, a signal arrives or the parent dies."""
    handlers = PeersServer(settings)

    server: Server[Any] = Server(
        c.SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
    )
    server.middleware.insert(0, _refuse_discover)
    init_options = server.create_initialization_options(
        experimental_capabilities={"claude/channel": {}}
    )
    initial_ppid = os.getppid()

    def pusher(conn: Connection, writer: TrackedWriter) -> PushCallback:
        async def deliver(message: Message, sender: Peer | None) -> None:
            before = writer.channel_sent
            await conn.notify(
                CHANNEL_METHOD, {"content": message.body, "meta": channel_meta(message, sender)}
            )
            if writer.channel_sent == before:
                raise DeliveryFailed(f"could not write message {message.id}; it stays pending")
            log.debug("pushed", message_id=message.id)

        return deliver

    async def start(conn: Connection, writer: TrackedWriter, tg: anyio.abc.TaskGroup) -> None:
        # The client's name and capabilities arrive with initialize.
        await conn.initialized.wait()
        params = conn.client_params
        if params is None:
            raise RuntimeError("initialized without initialize")
        kind = settings.client or client_kind(params.client_info.name)
        push = initial_push(settings, params.capabilities)
        try:
            transport = create_transport(settings)
        except PeersError as exc:
            # Claude Code does not restart a server that exits: stay, and say why.
            handlers.startup_error = f"peers cannot start: {exc}"
            log.error("cannot create the transport", error=str(exc))
            return
        session = Session(PeersService(transport, settings), settings)
        handlers.attach(session)
        session.listen_for_hooks(tg)
        await session.build_context(kind, push)
        session.start(tg, pusher(conn, writer) if push is not PushState.OFF else None)

    async def shutdown() -> None:
        session = handlers._session
        if session is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await session.unregister()
            with contextlib.suppress(PeersError):
                await session.service.transport.close()

    async with (
        event_loop_stdio() as streams,
        stdio_server(
            *(
                cast(Any, s)
                for s in (
                    (streams[0], StdoutTap(streams[1], handlers.response_written))
                    if streams
                    else (None, None)
                )
            )
        ) as (read_stream, write_stream),
    ):
        # With the SDK's own stdio threads (stdio not two pipes) no tap sees the real
        # write: a response counts as written once the SDK's writer took it.
        writer = TrackedWriter(
            write_stream,
            started=handlers.response_write_started,
            written=None if streams else handlers.response_written,
        )
        dispatcher = JSONRPCDispatcher(
            CancelTap(read_stream, handlers.request_cancelled),
            writer,
            inline_methods=frozenset({"initialize"}),
        )
        conn = Connection.for_loop(dispatcher)
        try:
            async with anyio.create_task_group() as tg:

                async def exit_when(waiter: Awaitable[None]) -> None:
                    await waiter
                    await shutdown()
                    # A notification handed to the stdout writer just before is
                    # written by its own task: give it a moment to flush.
                    await anyio.sleep(0.1)
                    # Where the SDK reads stdin in a worker thread (stdin not a pipe),
                    # no cancellation interrupts it: a clean return would hang.
                    sys.stderr.flush()
                    os._exit(0)

                tg.start_soon(exit_when, _watch_signals())
                tg.start_soon(exit_when, _watch_parent(initial_ppid))
                tg.start_soon(start, conn, writer, tg)
                async with server.lifespan(server) as lifespan_state:
                    await serve_connection(
                        server,
                        dispatcher,
                        connection=conn,
                        lifespan_state=lifespan_state,
                        init_options=init_options,
                    )
                log.info("stdin closed; shutting down")
                tg.cancel_scope.cancel()
        finally:
            await shutdown()


def serve(settings: Settings) -> None:
    """Entry point of ``peers serve``."""
    log.info(
        "peers serve starting",
        version=__version__,
        pid=os.getpid(),
        backend=settings.scheme,
        namespace=settings.namespace,
    )
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run_server, settings)
    sys.stderr.flush()
