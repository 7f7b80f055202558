"""``python -m peers``: the same as the ``peers`` command."""

from peers.entry import main

raise SystemExit(main())
