"""The ``peers`` console script.

``peers serve`` is started by agent clients that wait for its ``initialize``
answer, so it skips importing the operator CLI (typer, rich, doctor, install);
``peers hook`` runs at every step of an agent and imports the standard library only.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> int | None:
    if sys.argv[1:2] == ["hook"]:
        # Runs on every tool call of every agent: standard library only (peers.hook).
        from peers.hook import main as hook_main

        return hook_main()
    if sys.argv[1:] == ["serve"]:
        # structlog imports rich, when installed, for pretty tracebacks: a fifth of the
        # time before peers serve can answer initialize. Nothing on this path needs it.
        sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
        from peers.serve import run_serve

        run_serve()
        return None
    from peers.cli import main as cli_main

    cli_main()
    return None
