"""``peers serve``: the stdio MCP server each agent session launches, its wire and its life.

It drives the MCP handshake itself (not ``Server.run``) so that ``server/discover``
is refused with -32601 and the connection stays on a revision that carries
``notifications/claude/channel`` (see CLIENTS.md). The process starts in
:mod:`peers.front`, which answers the handshake while this module loads, and
hands over what it read and answered. The tool handlers are in
:mod:`peers.server`; this module starts the session once ``initialize`` is
answered, runs its background loops, and ends the process on stdin EOF, a
signal or the parent's death, within :data:`EXIT_DEADLINE` of it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.models import InitializationOptions
from mcp.server.runner import serve_connection
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import SessionMessage
from opentelemetry import trace

from peers import __version__
from peers import constants as c
from peers.clients import client_kind
from peers.config import Settings, load_settings
from peers.errors import PeersError
from peers.front import CAPABILITIES, Handover
from peers.hookserver import remove_sockets
from peers.log import configure_logging, get_logger
from peers.models import Message, Peer, PushState
from peers.server import CHANNEL_METHOD, PeersServer, channel_meta, initial_push
from peers.service import PeersService
from peers.session import PushCallback, Session
from peers.stdio import Wire, event_loop_stdio
from peers.tools import INSTRUCTIONS
from peers.transports import check_scheme, create_transport
from peers.trim import Trimmer
from peers.wiretap import (
    CancelTap,
    RequestId,
    StreamWrapper,
    TrackedWriter,
    response_id,
    send_eagerly,
)

__all__ = [
    "EXIT_DEADLINE",
    "DeliveryFailed",
    "TrackedWriter",
    "build_server",
    "run_serve",
    "run_server",
    "serve",
]

log = get_logger("peers.serve")

# From a signal, stdin EOF or the parent's death to the process's end. Claude Code
# sends SIGINT, then SIGTERM 100 ms later, and logs a failure if the server is still
# there; a record left online past this is found dead by its pid, or expires (TTL).
EXIT_DEADLINE = 0.08
_UNREGISTER_BUDGET = 0.05
_FLUSH_BUDGET = 0.01


def run_serve(handover: Handover | None = None) -> None:
    """Read the settings and serve MCP on stdio.

    A configuration error ends the process with exit 2 and one line on stderr,
    unless a client is on the other end (``handover``: stdin and stdout are pipes):
    then the server stays, answers the handshake, and says what is wrong in every
    tool result (an exiting server is not restarted, and its reason is seen by nobody).
    """
    config_error: str | None = None
    try:
        settings = load_settings()
        # The backend module itself is imported after initialize is answered.
        check_scheme(settings.url)
    except PeersError as exc:
        print(f"peers serve: {exc}", file=sys.stderr, flush=True)
        if handover is None:
            raise SystemExit(2) from None
        config_error = str(exc)
        settings = Settings.model_construct()  # defaults only; no session is started
    else:
        configure_logging(settings.log_level, settings.log_format)
    serve(settings, handover, config_error)


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


class _FrontAnswered(StreamWrapper):
    """The stdout stream, less the SDK's answers to what the handshake front answered.

    Each is compared with the front's before it is dropped: a difference means
    the front has drifted from the SDK, which a test is there to catch first.
    """

    def __init__(
        self,
        inner: Any,
        answered: tuple[dict[str, Any], ...],
        dropped: Callable[[RequestId], None] | None = None,
    ) -> None:
        self.inner = inner
        self._expected = list(answered)
        # Told each dropped answer's id: that request was answered (by the front).
        self._dropped = dropped

    def _is_duplicate(self, msg: types.JSONRPCMessage) -> bool:
        if not self._expected or not isinstance(msg, types.JSONRPCResponse | types.JSONRPCError):
            return False
        is_error = isinstance(msg, types.JSONRPCError)
        for i, front in enumerate(self._expected):
            if front["id"] == msg.id and ("error" in front) == is_error:
                del self._expected[i]
                ours = msg.model_dump(by_alias=True, mode="json", exclude_unset=True)
                if ours != front:
                    log.error("the handshake front answered differently from the SDK",
                              front=front, sdk=ours)  # fmt: skip
                return True
        return False

    async def send(self, item: SessionMessage, /) -> None:
        if not self._is_duplicate(item.message):
            await send_eagerly(self.inner, item)
            return
        rid = response_id(item.message)
        if rid is not None and self._dropped is not None:
            self._dropped(rid)


class DeliveryFailed(PeersError):
    """A push could not be written (the client's pipe is closed); the message stays pending."""


def _no_tracer() -> bool:
    """True unless an OpenTelemetry tracer provider was installed (opentelemetry-instrument...)."""
    return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def build_server(handlers: PeersServer) -> tuple[Server[Any], InitializationOptions]:
    """The SDK server of a session and what its ``initialize`` declares (the front's answer too)."""
    server: Server[Any] = Server(
        c.SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
    )
    if _no_tracer():
        # The SDK's span middleware costs every call a span and a context switch even
        # with nothing recording them; its docs say to drop it from this list to opt out.
        server.middleware = [
            m for m in server.middleware if type(m).__name__ != "OpenTelemetryMiddleware"
        ]
    server.middleware.insert(0, _refuse_discover)
    init_options = server.create_initialization_options(
        experimental_capabilities=CAPABILITIES["experimental"]
    )
    return server, init_options


async def run_server(
    settings: Settings, handover: Handover | None = None, config_error: str | None = None
) -> None:
    """Serve MCP on stdio until stdin closes, a signal arrives or the parent dies."""
    handlers = PeersServer(settings)
    server, init_options = build_server(handlers)
    trimmer = Trimmer()
    initial_ppid = os.getppid()
    handover = handover or Handover()
    if handover.answered:
        log.debug("handshake answered by the front", requests=len(handover.answered))
    if config_error is not None:
        handlers.startup_error = f"peers cannot start: {config_error}"

    def pusher(conn: Connection, writer: TrackedWriter, wire: Wire | None) -> PushCallback:
        # Bound once: the module's lazy proxy builds a logger on every call, per push here.
        pushes = log.bind()

        async def deliver(message: Message, sender: Peer | None) -> None:
            before = writer.channel_sent
            await conn.notify(
                CHANNEL_METHOD, {"content": message.body, "meta": channel_meta(message, sender)}
            )
            # Made once the pipe took it, not once queued: the push's time and epoch,
            # which the transcript's drop proof compares, are those of its write.
            sent = writer.channel_sent
            if sent == before or (wire is not None and not await wire.pushed(sent)):
                raise DeliveryFailed(f"could not write message {message.id}; it stays pending")
            pushes.debug("pushed", message_id=message.id)

        return deliver

    async def start(
        conn: Connection, writer: TrackedWriter, wire: Wire | None, tg: anyio.abc.TaskGroup
    ) -> None:
        # The client's name and capabilities arrive with initialize.
        await conn.initialized.wait()
        params = conn.client_params
        if params is None:
            raise RuntimeError("initialized without initialize")
        if config_error is not None:
            log.error("invalid configuration; tool calls say why", error=config_error)
            return
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
        session.start(tg, pusher(conn, writer, wire) if push is not PushState.OFF else None)
        tg.start_soon(trimmer.run, session.registered)

    stopping = False
    stopped = anyio.Event()

    async def shutdown(deadline: float) -> None:
        """Unregister once (whoever comes second waits for the first), by ``deadline``."""
        nonlocal stopping
        with anyio.CancelScope(shield=True):
            if stopping:
                with anyio.move_on_after(deadline - time.monotonic()):
                    await stopped.wait()
                return
            stopping = True
            try:
                session = handlers._session
                if session is not None:
                    budget = min(_UNREGISTER_BUDGET, deadline - time.monotonic() - _FLUSH_BUDGET)
                    with anyio.move_on_after(budget) as scope:
                        await session.unregister()
                    if scope.cancelled_caught:
                        log.info("unregistering took too long; the record expires by itself")
                    # The process ends right after: closing is a courtesy, never a wait.
                    with anyio.move_on_after(deadline - time.monotonic() - _FLUSH_BUDGET):
                        with contextlib.suppress(PeersError):
                            await session.service.transport.close()
            finally:
                stopped.set()

    async with contextlib.AsyncExitStack() as stack:
        wire = await stack.enter_async_context(event_loop_stdio(handover.consumed))
        read_stream: Any
        write_stream: Any
        if wire is not None:
            read_stream, write_stream = wire.read, wire.write
            wire.on_write = trimmer.touch
            # In the pipe: the mail that response carried is the client's now.
            wire.on_written = handlers.response_written
        else:
            read_stream, write_stream = await stack.enter_async_context(stdio_server())

        async def flushed() -> None:
            # A message handed to the stdout writer just before goes out first.
            if wire is not None:
                await wire.drained()
            else:
                await anyio.sleep(_FLUSH_BUDGET)  # the SDK's writer thread: no signal to wait on

        async def finish() -> None:
            deadline = time.monotonic() + EXIT_DEADLINE
            # First: a hook from now on finds no socket and gives up at once.
            remove_sockets()
            await shutdown(deadline)
            with anyio.CancelScope(shield=True), anyio.move_on_after(deadline - time.monotonic()):
                await flushed()
            # Where the SDK reads stdin in a worker thread (stdin not a pipe), no
            # cancellation interrupts it: a clean return would hang. Interpreter
            # teardown of a loaded SDK would also take longer than the deadline.
            sys.stderr.flush()
            os._exit(0)

        # With the SDK's own stdio threads (stdio not two pipes) nothing sees the real
        # write: a response counts as written once the SDK's writer took it.
        def not_written(rid: RequestId) -> None:
            handlers.response_not_written(rid)
            if wire is not None:
                wire.admission.done(rid)  # never answered: its room is free

        writer = TrackedWriter(
            _FrontAnswered(
                write_stream,
                handover.answered,
                dropped=wire.admission.done if wire is not None else None,
            ),
            failed=not_written,
            written=None if wire is not None else handlers.response_written,
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
                    await finish()

                tg.start_soon(exit_when, _watch_signals())
                tg.start_soon(exit_when, _watch_parent(initial_ppid))
                tg.start_soon(start, conn, writer, wire, tg)
                async with server.lifespan(server) as lifespan_state:
                    await serve_connection(
                        server,
                        dispatcher,
                        connection=conn,
                        lifespan_state=lifespan_state,
                        init_options=init_options,
                    )
                log.info("stdin closed; shutting down")
                await finish()
        finally:
            await shutdown(time.monotonic() + EXIT_DEADLINE)


def serve(
    settings: Settings, handover: Handover | None = None, config_error: str | None = None
) -> None:
    """Entry point of ``peers serve``."""
    log.info(
        "peers serve starting",
        version=__version__,
        pid=os.getpid(),
        backend=settings.scheme,
        namespace=settings.namespace,
    )
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run_server, settings, handover, config_error)
    sys.stderr.flush()
