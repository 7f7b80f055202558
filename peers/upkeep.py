"""Upkeep that runs by itself: gc in the background of a live ``peers serve``.

One process per store does it at a time: each round, a server asks the store
for the upkeep lease (``Transport.acquire_lease``, atomic on both backends) under
its own peer id and runs ``gc`` only when it holds it; the holder renews it every
round, and a holder that dies loses it when it expires, so another server takes
over. gc itself works a page at a time, so other writers never wait long behind
it. A round that fails unexpectedly is logged and retried sooner; only
cancellation ends the loop, promptly, giving the lease back on the way out.

The lead wires it into ``peers serve``::

    task = asyncio.create_task(run_upkeep(service, lambda: session.peer_id))
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

from peers import constants as c
from peers.log import get_logger
from peers.models import GcReport
from peers.transports.base import Transport

__all__ = ["HasTransport", "run_upkeep", "upkeep_round"]

_log = get_logger(__name__)


class HasTransport(Protocol):
    """What upkeep needs of the service: its transport."""

    @property
    def transport(self) -> Transport: ...


async def upkeep_round(
    transport: Transport, holder: str, *, lease: str = c.UPKEEP_LEASE, lease_ttl: float = c.UPKEEP_LEASE_TTL
) -> GcReport | None:
    """One round: take (or renew) the lease and run gc under it; None when another holds it."""
    if not await transport.acquire_lease(lease, holder, lease_ttl):
        return None
    return await transport.gc()


async def run_upkeep(
    service: HasTransport,
    holder_id: Callable[[], str | None],
    *,
    interval: float = c.UPKEEP_INTERVAL,
    lease_ttl: float = c.UPKEEP_LEASE_TTL,
    retry: float = c.UPKEEP_RETRY,
    start_after: float = c.UPKEEP_START_DELAY,
    lease: str = c.UPKEEP_LEASE,
) -> None:
    """Run upkeep rounds every ``interval`` seconds until cancelled.

    ``holder_id`` names this server in the lease (its peer id): None while it has
    none (not registered yet), and the round is skipped. ``lease_ttl`` should
    outlast ``interval``, so the holder keeps the lease from round to round.
    """
    transport = service.transport
    held: str | None = None
    try:
        await asyncio.sleep(start_after)
        while True:
            delay = interval
            holder = holder_id()
            if holder is not None:
                try:
                    started = time.monotonic()
                    report = await upkeep_round(transport, holder, lease=lease, lease_ttl=lease_ttl)
                    held = holder if report is not None else None
                    if report is not None:
                        _log.info(
                            "upkeep: gc done",
                            seconds=round(time.monotonic() - started, 3),
                            peers_removed=report.peers_removed,
                            messages_removed=report.messages_removed,
                            wakeups_removed=report.wakeups_removed,
                        )
                except Exception as exc:  # log and go on: upkeep must never end the server
                    with contextlib.suppress(Exception):
                        _log.warning("upkeep round failed; retrying", error=repr(exc), retry_in=retry)
                    delay = min(retry, interval)
            await asyncio.sleep(delay)
    finally:
        if held is not None:
            # Hand the lease on at once (another server need not wait for it to expire);
            # bounded, so a dead store cannot hold up shutdown.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(c.UPKEEP_RELEASE_TIMEOUT):
                    await transport.release_lease(lease, held)
