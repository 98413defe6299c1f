"""The environment is read only by core's settings module and the CLI; no integration reads it.

An AST scan of every module in ``core/src`` and ``integrations/*/src`` for ``os.environ``,
``os.environb``, ``os.getenv``, ``os.getenvb`` and names imported from ``os`` to the same end.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core" / "src" / "modelriver"
ALLOWED = {CORE / "settings.py", CORE / "cli.py"}
READERS = {"environ", "environb", "getenv", "getenvb"}


def env_reads(source: str) -> list[int]:
    """The lines of ``source`` that read the environment through ``os``.

    Args:
        source: a module's text.

    Returns:
        Line numbers, sorted.
    """
    tree = ast.parse(source)
    os_names = {"os"}  # ``import os as system`` binds another name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {alias.asname for alias in node.names if alias.name == "os" and alias.asname}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in READERS for alias in node.names):
                lines.append(node.lineno)
        elif (isinstance(node, ast.Attribute) and node.attr in READERS
              and isinstance(node.value, ast.Name) and node.value.id in os_names):
            lines.append(node.lineno)
    return sorted(lines)


def modules() -> list[Path]:
    found = sorted(CORE.rglob("*.py")) + sorted(ROOT.glob("integrations/*/src/**/*.py"))
    assert len(found) > 20 and any("integrations" in p.parts for p in found)
    return found


def test_the_scan_finds_each_way_of_reading_the_environment() -> None:
    assert env_reads("import os\nos.environ.get('X')\n") == [2]
    assert env_reads("import os as o\nv = o.getenv('X')\n") == [2]
    assert env_reads("from os import environ\n") == [1]
    assert env_reads("from os import getenv as g\n") == [1]
    assert env_reads("import os\nenv = {**os.environ}\n") == [2]
    assert env_reads("import os\nos.path.join('a')\nsettings.environ\n") == []


def test_only_the_settings_module_and_the_cli_read_the_environment() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{line}"
                 for path in modules() if path not in ALLOWED
                 for line in env_reads(path.read_text(encoding="utf-8"))]
    assert offenders == [], "read the environment through modelriver.settings.Settings.from_env"


def test_the_settings_module_does_read_it() -> None:
    assert env_reads((CORE / "settings.py").read_text(encoding="utf-8"))
