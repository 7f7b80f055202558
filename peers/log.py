"""structlog set-up: everything goes to stderr, never stdout (stdout is MCP's)."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO, cast

import structlog

__all__ = ["configure_logging", "get_logger"]


def configure_logging(level: str = "info", fmt: str = "console") -> None:
    global _configured
    _configured = True
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _Stderr())),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (mcp, redis) also go to stderr.
    logging.basicConfig(stream=sys.stderr, level=max(numeric, logging.WARNING))


_configured = False


class _Stderr:
    """Whatever ``sys.stderr`` is at write time (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    # structlog's own default prints to stdout, which would corrupt MCP framing.
    if not _configured:
        configure_logging(
            os.environ.get("PEERS_LOG_LEVEL", "info"), os.environ.get("PEERS_LOG_FORMAT", "console")
        )
    return structlog.get_logger(name)  # type: ignore[no-any-return]
