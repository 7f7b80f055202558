"""Helpers for the background tasks of the transports and the server."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it ended, however it ended.

    A cancellation of the caller itself still propagates (a bare
    ``suppress(CancelledError)`` would swallow a deadline aimed at the caller).
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:  # the task's own failure no longer matters: it is being shut down
        with contextlib.suppress(Exception):
            task.exception()
