"""``python -m instrumentd``: the same command as ``instrumentd``."""

from instrumentd.clients.cli import main

raise SystemExit(main())
