"""Copy the browser module into the packages that ship it, byte for byte.

The source is ``core/src/modelriver/browser/modelriver-link.js``; the Django widget's static folder
and the Streamlit component's frontend folder each ship a copy (committed, so an installed package
needs no build step). ``make browser`` runs this; ``make test`` fails when a copy differs
(``tests/core/test_browser_module.py``).

The Django widget's Markdown libraries are vendored the same way: their ES module builds, from
the exact versions ``tests/node/package.json`` pins (``npm ci`` there), are copied into
``static/django_modelriver/vendor/`` without the trailing ``sourceMappingURL`` comment (the maps
are not shipped; Django's manifest storage would fail on a missing one).

Usage: python scripts/sync_browser.py [--check]
    --check   change nothing; exit 1 and name each copy that differs from the source.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path("core/src/modelriver/browser/modelriver-link.js")
COPIES = (
    Path("integrations/django/src/django_modelriver/static/django_modelriver/modelriver-link.js"),
    Path("integrations/streamlit/src/streamlit_modelriver/frontend/modelriver-link.js"),
)
NODE_MODULES = Path("tests/node/node_modules")
VENDOR_DIR = Path("integrations/django/src/django_modelriver/static/django_modelriver/vendor")
VENDORED = (  # (source under NODE_MODULES, copy)
    (Path("markdown-it/dist/browser/markdown-it.esm.min.mjs"), VENDOR_DIR / "markdown-it.min.mjs"),
    (Path("dompurify/dist/purify.es.mjs"), VENDOR_DIR / "purify.es.mjs"),
)
_SOURCE_MAP = re.compile(rb"\n//# sourceMappingURL=[^\n]*\s*\Z")


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


def vendored_bytes(source: Path) -> bytes:
    """What a vendored library's copy holds: its build without the trailing source-map comment."""
    return _SOURCE_MAP.sub(b"\n", source.read_bytes())


def drifted_vendor(root: Path = ROOT) -> list[Path]:
    """The vendored copies under ``root`` that are missing or differ from ``tests/node``'s build.

    Raises:
        FileNotFoundError: a library is not installed (run ``npm ci`` in tests/node).
    """
    return [copy for source, copy in VENDORED if not (root / copy).is_file()
            or (root / copy).read_bytes() != vendored_bytes(root / NODE_MODULES / source)]


def sync_vendor(root: Path = ROOT) -> list[Path]:
    """Write each vendored library's build over its copy when it differs; returns those copies."""
    changed = drifted_vendor(root)
    sources = {copy: source for source, copy in VENDORED}
    for copy in changed:
        (root / copy).parent.mkdir(parents=True, exist_ok=True)
        (root / copy).write_bytes(vendored_bytes(root / NODE_MODULES / sources[copy]))
    return changed


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        sys.stderr.write(__doc__ or "")
        return 2
    if argv == ["--check"]:
        stale = [*drifted(), *drifted_vendor()]
        for copy in stale:
            sys.stderr.write(f"{copy} differs from its source: run `make browser`\n")
        return 1 if stale else 0
    for copy in [*sync(), *sync_vendor()]:
        sys.stdout.write(f"updated {copy}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
