"""``python -m simlab`` is the ``simlab`` command."""

from simlab.cli import main

raise SystemExit(main())
