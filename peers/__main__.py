"""``python -m peers``: the same as the ``peers`` command."""

from peers.cli import main

main()
