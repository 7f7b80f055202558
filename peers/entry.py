"""The ``peers`` console script.

``peers serve`` is started by agent clients that wait for its ``initialize``
answer, so it starts in :mod:`peers.front` (standard library only), which
answers the handshake while the SDK loads, and never imports the operator CLI
(typer, rich, doctor, install); ``peers hook`` runs at every step of an agent
and imports the standard library only.
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
        from peers.front import run

        run()
        return None
    from peers.cli import main as cli_main

    cli_main()
    return None
