"""Link the browser module into the packages that ship it; vendor the widget's Markdown libraries.

The source is ``core/src/modelriver/browser/modelriver-link.js``. The Django widget's static
folder and the Streamlit component's frontend folder each hold a relative symbolic link to it
(committed: git stores a link, so the repository holds the code once). The builds ship a real
file: hatchling's wheel reads through the link, and each integration's
``[tool.hatch.build.targets.sdist.force-include]`` puts core's file in the sdist in its place
(``tests/packaging/test_wheels.py`` checks both). ``make browser`` (re)creates the links, e.g.
after a checkout without symlink support; ``make test`` fails when one is missing or is a file
(``tests/core/test_browser_module.py``).

The Django widget's Markdown libraries are vendored copies: their ES module builds, from
the exact versions ``tests/node/package.json`` pins (``npm ci`` there), are copied into
``static/django_modelriver/vendor/`` without the trailing ``sourceMappingURL`` comment (the maps
are not shipped; Django's manifest storage would fail on a missing one).

Usage: python scripts/sync_browser.py [--check]
    --check   change nothing; exit 1 and name each link or copy that differs from its source.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path("core/src/modelriver/browser/modelriver-link.js")
SHIPPED = (
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


def link_target(shipped: Path) -> str:
    """The relative link text from a shipped path to the source (``../`` steps, POSIX slashes)."""
    return Path(os.path.relpath(SOURCE, shipped.parent)).as_posix()


def drifted(root: Path = ROOT) -> list[Path]:
    """The shipped paths under ``root`` that are not the relative link to the source."""
    return [path for path in SHIPPED
            if not (root / path).is_symlink() or os.readlink(root / path) != link_target(path)]


def sync(root: Path = ROOT) -> list[Path]:
    """Make every shipped path that is not the link to the source that link; returns those paths."""
    changed = drifted(root)
    for path in changed:
        (root / path).unlink(missing_ok=True)
        (root / path).symlink_to(link_target(path))
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
