"""The ``peers`` console script.

``peers serve`` is started by agent clients that wait for its ``initialize``
answer, so it skips importing the operator CLI (typer, rich, doctor, install).
"""

from __future__ import annotations

import sys

__all__ = ["main", "run_serve"]


def run_serve() -> None:
    """Read the settings and serve MCP on stdio (exit 2 on a configuration error)."""
    # structlog imports rich, when installed, for pretty tracebacks: a fifth of the
    # time before peers serve can answer initialize. Nothing on this path needs it.
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    from peers.config import load_settings
    from peers.errors import PeersError
    from peers.log import configure_logging
    from peers.transports import check_scheme

    try:
        settings = load_settings()
        # The backend module itself is imported after initialize is answered.
        check_scheme(settings.url)
    except PeersError as exc:
        print(f"peers serve: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    from peers.server import serve

    serve(settings)


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        run_serve()
        return
    from peers.cli import main as cli_main

    cli_main()
