"""Wheels built once per run (shared by xdist workers through a file lock), and a fresh virtualenv
per README, installed from those wheels only (third-party dependencies from PyPI, through uv's
shared cache). Nothing of the repository is on the venvs' ``sys.path``.

Every test here carries the ``packaging`` mark (``-m "not packaging"`` leaves them out).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from readme_quickstart import PACKAGES, Quickstart

from support import ROOT


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.packaging)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A folder with each distribution's wheel and sdist, built by ``uv build`` once per run."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # each xdist worker has its own basetemp under the run's
        shared = shared.parent
    out = shared / "dist"
    with FileLock(str(shared / "dist.lock")):
        if not (out / "built").exists():
            for source in PACKAGES.values():
                subprocess.run(["uv", "build", "--quiet", "--wheel", "--sdist", "--out-dir", str(out), str(source)],
                               check=True, timeout=300, cwd=ROOT)
            (out / "built").write_text("ok")
    return out


@pytest.fixture(scope="session")
def wheels(dist: Path) -> dict[str, Path]:
    """Each distribution's name to its wheel."""
    found = {name: next(dist.glob(f"{name.replace('-', '_')}-*.whl")) for name in PACKAGES}
    return found


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Iterator[Quickstart]:
    """An empty project folder and a new virtualenv (no packages yet: the README's pip line installs)."""
    root = tmp_path_factory.mktemp("quickstart")
    venv = root / "venv"
    subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=120)
    work = root / "work"
    work.mkdir()
    run = Quickstart(venv, work, wheels)
    try:
        yield run
    finally:
        run.stop()
