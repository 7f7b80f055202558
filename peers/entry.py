"""The ``peers`` console script.

``peers serve`` is started by agent clients that wait for its ``initialize``
answer, so it starts in :mod:`peers.front` (standard library only), which
answers the handshake while the SDK loads, and never imports the operator CLI
(typer, rich, doctor, install).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        from peers.front import run

        run()
        return
    from peers.cli import main as cli_main

    cli_main()
