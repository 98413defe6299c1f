"""Copy the browser module into the packages that ship it, byte for byte.

The source is ``core/src/modelriver/browser/modelriver-link.js``; the Django widget's static folder
and the Streamlit component's frontend folder each ship a copy (committed, so an installed package
needs no build step). ``make browser`` runs this; ``make test`` fails when a copy differs
(``tests/core/test_browser_module.py``).

Usage: python scripts/sync_browser.py [--check]
    --check   change nothing; exit 1 and name each copy that differs from the source.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path("core/src/modelriver/browser/modelriver-link.js")
COPIES = (
    Path("integrations/django/src/django_modelriver/static/django_modelriver/modelriver-link.js"),
    Path("integrations/streamlit/src/streamlit_modelriver/frontend/modelriver-link.js"),
)


def drifted(root: Path = ROOT) -> list[Path]:
    """The copies under ``root`` that are missing or differ from the source."""
    source = (root / SOURCE).read_bytes()
    return [copy for copy in COPIES if not (root / copy).is_file() or (root / copy).read_bytes() != source]


def sync(root: Path = ROOT) -> list[Path]:
    """Write the source over every copy that differs; returns those copies."""
    source = (root / SOURCE).read_bytes()
    changed = drifted(root)
    for copy in changed:
        (root / copy).write_bytes(source)
    return changed


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        sys.stderr.write(__doc__ or "")
        return 2
    if argv == ["--check"]:
        stale = drifted()
        for copy in stale:
            sys.stderr.write(f"{copy} differs from {SOURCE}: run `make browser`\n")
        return 1 if stale else 0
    for copy in sync():
        sys.stdout.write(f"updated {copy}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
