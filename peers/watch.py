"""`peers watch`: the live board, kept current by the store's events.

The board is read again (:func:`peers.board.load_board`) when an event says
something changed, at most every ``WATCH_MIN_INTERVAL`` however busy the store,
and every ``WATCH_REFRESH`` seconds for what no event announces: heartbeat
ages, sessions that died without a word, mail read. Nothing else runs: no
redraw timer, no polling of the terminal (keys arrive through the loop's
reader), so an idle board costs a few store reads every few seconds.

A failing store (Redis stopped, a file that cannot be read) is shown on the
board, and the watcher reconnects with a fresh transport after 1, 2, 4, then
every 5 s, and reads the whole board again. Ctrl-C, SIGTERM, a closed terminal
(SIGHUP, or end of input) and ``q`` all end it the same way: the alternate
screen is left, the cursor shown and the terminal's modes put back.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from peers import constants as c
from peers.board import STORE_CLAIMS, Board, BoardFilter, ClaimsSource, load_board
from peers.board_view import Status, frame, plain
from peers.config import Settings, redact_url
from peers.errors import BackendUnavailable, PeersError
from peers.log import get_logger
from peers.models import Event, EventKind
from peers.service import PeersService
from peers.terminal import key_mode, parse_keys, read_available
from peers.transports import create_transport

__all__ = ["Watcher", "backend_label", "snapshot"]

_log = get_logger(__name__)

# Lines of what was logged while the board had the screen, shown once it is gone.
_LOG_TAIL = 20


def backend_label(settings: Settings) -> str:
    """The store's URL, password hidden and a SQLite file under home as ``sqlite:///~/...``."""
    url = redact_url(settings.url)
    prefix = "sqlite:///"
    home = os.path.expanduser("~").rstrip("/")
    if url.startswith(prefix) and home:
        path = "/" + url[len(prefix) :].lstrip("/")
        if path.startswith(home + "/"):
            return f"{prefix}~/{path[len(home) + 1 :]}"
    return url


async def snapshot(
    service: PeersService, flt: BoardFilter, width: int, claims: ClaimsSource = STORE_CLAIMS
) -> str:
    """One frame of the board as plain text (``peers watch --once``)."""
    board = await load_board(service, flt, claims=claims)
    status = Status(backend=backend_label(service.settings), filter_text=flt.describe())
    return plain(frame(board, status, width=width))


class _Frame:
    """What Live draws: the current board at the console's current size (resizes included)."""

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        w = self._watcher
        lines = frame(
            w.board,
            w.status(),
            width=options.max_width,
            height=options.height or console.height,
        )
        yield Text("\n", end="").join(lines)


class Watcher:
    """One live board on one terminal, over one store (reconnecting as needed)."""

    def __init__(
        self,
        settings: Settings,
        flt: BoardFilter,
        *,
        console: Console | None = None,
        claims: ClaimsSource = STORE_CLAIMS,
        refresh: float = c.WATCH_REFRESH,
        min_interval: float = c.WATCH_MIN_INTERVAL,
    ) -> None:
        self.settings = settings
        self.flt = flt
        # Made when the board takes the screen (see run_on_terminal), unless given.
        self.console = console
        self.claims = claims
        self.refresh = refresh
        self.min_interval = min_interval
        self.board: Board | None = None
        self.selected: str | None = None
        self.paused = False
        self.missed = 0
        self.connected = True
        self.error: str | None = None
        self.down_since: float | None = None
        # Moments seen in events, per peer id (the ACTIVE column).
        self.activity: dict[str, float] = {}
        self.names: dict[str, str | None] = {}
        self._backend = backend_label(settings)
        self._live: Live | None = None
        self._stop = asyncio.Event()
        self._wanted = asyncio.Event()
        self.hung_up = False

    # -- state ---------------------------------------------------------------------

    def status(self) -> Status:
        return Status(
            backend=self._backend,
            connected=self.connected,
            error=self.error,
            down_since=self.down_since,
            paused=self.paused,
            missed=self.missed,
            keys=True,
            filter_text=self.flt.describe(),
        )

    def stop(self) -> None:
        self._stop.set()

    def redraw(self) -> None:
        if self._live is None or self.hung_up:
            return
        try:
            self._live.refresh()
        except OSError:
            self._hang_up()  # the terminal is gone (EIO)

    def _hang_up(self) -> None:
        """The terminal went away: stop, and never write to it again."""
        self.hung_up = True
        if self.console is not None:
            with contextlib.suppress(OSError, ValueError):
                self.console.file = open(os.devnull, "w")  # noqa: SIM115 - as long as the console
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        self.stop()

    # -- keys ------------------------------------------------------------------------

    def on_keys(self, data: bytes) -> None:
        for key in parse_keys(data):
            self.on_key(key)

    def on_key(self, key: str) -> None:
        rows = self.board.sessions if self.board else ()
        ids = [r.peer.id for r in rows]
        if key in ("q", "Q", "ctrl-d"):
            self.stop()
            return
        if key in ("p", "P", " "):
            self.paused = not self.paused
            self.missed = 0
            if not self.paused:
                self._wanted.set()
            self.redraw()
            return
        if key == "r":
            self._wanted.set()
            return
        new = self.selected
        if key in ("0", "a", "esc"):
            new = None
        elif key.isdigit() and 1 <= int(key) <= len(ids):
            pick = ids[int(key) - 1]
            new = None if pick == self.selected else pick
        elif key in ("tab", "down", "shift-tab", "up") and ids:
            step = 1 if key in ("tab", "down") else -1
            if self.selected in ids:
                new = ids[(ids.index(self.selected) + step) % len(ids)]
            else:
                new = ids[0] if step == 1 else ids[-1]
        else:
            return
        if new != self.selected:
            self.selected = new
            # The paused board keeps its data; the selection applies on resume.
            self._wanted.set()

    # -- the store --------------------------------------------------------------------

    async def _reload(self, service: PeersService) -> None:
        board = await load_board(
            service,
            self.flt,
            selected=self.selected,
            claims=self.claims,
            activity=self.activity,
            names=self.names,
        )
        self.board = board
        self.selected = board.selected
        if self.connected is False or self.error is not None:
            self.connected, self.error, self.down_since = True, None, None

    def _on_event(self, event: Event) -> None:
        at = max(self.activity.get(event.peer_id, 0.0), event.at)
        self.activity[event.peer_id] = at
        if event.kind is EventKind.LEAVE:
            self.activity.pop(event.peer_id, None)
        if len(self.activity) > 4096:
            self.activity.clear()
        if self.paused:
            self.missed += 1
        self._wanted.set()

    async def _consume(self, stream: AsyncIterator[Event]) -> None:
        async for event in stream:
            self._on_event(event)
        raise BackendUnavailable("the store's event stream ended")

    async def _refresher(self, service: PeersService) -> None:
        """Reads the board again when asked (events, keys) or every ``refresh`` seconds."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh):
                    await self._wanted.wait()
            self._wanted.clear()
            if not self.paused:
                await self._reload(service)
            self.redraw()
            # Coalescing: what arrives meanwhile is read in one go afterwards.
            await asyncio.sleep(self.min_interval)

    async def _session(self) -> None:
        """One connection: the first picture, then events until something fails or stop."""
        transport = create_transport(self.settings)
        try:
            await transport.connect()
            service = PeersService(transport, self.settings)
            stream = transport.events()
            try:
                await self._reload(service)
                self.redraw()
                tasks = {
                    asyncio.create_task(self._consume(stream)),
                    asyncio.create_task(self._refresher(service)),
                    asyncio.create_task(self._stop.wait()),
                }
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.wait(tasks, timeout=c.WATCH_GRACE)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(aclose(), c.WATCH_GRACE)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(transport.close(), c.WATCH_GRACE)

    async def run(self) -> None:
        """Keep the board current until stopped; failures are shown, then retried."""
        delay = c.WATCH_RETRY_MIN
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await self._session()
            except (PeersError, OSError) as exc:
                self._set_down(str(exc) or type(exc).__name__)
            except Exception as exc:  # a bug must not take the board down with it
                _log.warning("watch: unexpected error; reconnecting", error=repr(exc))
                self._set_down(f"unexpected {type(exc).__name__}: {exc}")
            if self._stop.is_set():
                break
            if time.monotonic() - started > 30:
                delay = c.WATCH_RETRY_MIN  # it had been working: start the backoff over
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            delay = min(delay * 2, c.WATCH_RETRY_MAX)

    def _set_down(self, error: str) -> None:
        if self.connected:
            self.down_since = time.time()
        self.connected = False
        self.error = error
        self.redraw()

    # -- the terminal -----------------------------------------------------------------

    async def run_on_terminal(self) -> None:
        """Run full-screen: alternate screen, keys, signals; everything put back on the way out."""
        # The terminal's own size, as it changes: COLUMNS and LINES (which rich
        # honours) would pin the board to the size they had when it started.
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)
        console = self.console = self.console or Console(highlight=False)
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for sig, action in (
            (signal.SIGINT, self.stop),
            (signal.SIGTERM, self.stop),
            (signal.SIGHUP, self._hang_up),
            (signal.SIGWINCH, self.redraw),
        ):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, action)
                handled.append(sig)
        fd = _stdin_fd()
        try:
            with _captured_stderr() as captured, key_mode(fd) as keys:
                if keys:
                    loop.add_reader(fd, self._read_keys, fd)
                try:
                    live = Live(
                        _Frame(self),
                        console=console,
                        screen=True,
                        auto_refresh=False,
                        redirect_stdout=False,
                        redirect_stderr=False,
                    )
                    with _quiet_if_gone(self), live:
                        self._live = live
                        try:
                            await self.run()
                        finally:
                            self._live = None
                finally:
                    if keys:
                        loop.remove_reader(fd)
            if not self.hung_up:
                for line in captured.getvalue().splitlines()[-_LOG_TAIL:]:
                    print(line, file=sys.stderr)
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def _read_keys(self, fd: int) -> None:
        data = read_available(fd)
        if data is None:
            self._hang_up()
        elif data:
            self.on_keys(data)


def _stdin_fd() -> int:
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return -1


@contextlib.contextmanager
def _captured_stderr() -> Iterator[io.StringIO]:
    """Logs written while the board owns the screen would tear it: keep them for later."""
    buffer = io.StringIO()
    saved = sys.stderr
    sys.stderr = buffer
    try:
        yield buffer
    finally:
        sys.stderr = saved


@contextlib.contextmanager
def _quiet_if_gone(watcher: Watcher) -> Iterator[None]:
    """Leaving the alternate screen on a terminal that is gone fails: that is fine then."""
    try:
        yield
    except OSError:
        if not watcher.hung_up:
            raise
