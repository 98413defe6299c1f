"""``python -m modelriver``: the ``modelriver`` command."""

from modelriver.cli import main

raise SystemExit(main())
