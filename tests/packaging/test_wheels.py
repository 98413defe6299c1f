"""The built distributions carry what PyPI and a user's tools read: valid metadata and README
(``twine check --strict``), the MIT license text, Project-URLs, classifiers, ``py.typed``,
integrations pinned to the core's minor series, and core's browser module (a link in the
repository) as a real file in the Django and Streamlit wheels and sdists."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from readme_quickstart import PACKAGES, links

from support import ROOT

REPOSITORY = "https://github.com/modelriver/modelriver-python"
CORE_VERSION = re.search(r'__version__ = "(\d+)\.(\d+)\.\d+"',
                         (ROOT / "core/src/modelriver/_version.py").read_text())
IMPORT_NAMES = {"modelriver": "modelriver", "django-modelriver": "django_modelriver",
                "streamlit-modelriver": "streamlit_modelriver", "gradio-modelriver": "gradio_modelriver"}
BROWSER_MODULE = ROOT / "core/src/modelriver/browser/modelriver-link.js"
SHIPPED_BROWSER_MODULE = {"django-modelriver": "django_modelriver/static/django_modelriver/modelriver-link.js",
                          "streamlit-modelriver": "streamlit_modelriver/frontend/modelriver-link.js"}


def metadata_of(wheel: Path) -> tuple[Message, list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(meta).decode()), names


def test_twine_check_strict_passes_every_wheel_and_sdist(dist: Path) -> None:
    files = sorted(str(p) for p in dist.iterdir() if p.suffix in (".whl", ".gz"))
    assert len(files) == 2 * len(PACKAGES), files
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", list(PACKAGES))
def test_wheel_metadata(name: str, wheels: dict[str, Path]) -> None:
    meta, names = metadata_of(wheels[name])
    assert meta["Name"] == name
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    license_files = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/licenses/LICENSE", n)]
    assert license_files, names
    with zipfile.ZipFile(wheels[name]) as zf:
        assert zf.read(license_files[0]).decode().startswith("MIT License")
    assert f"{IMPORT_NAMES[name]}/py.typed" in names

    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert set(urls) == {"Homepage", "Documentation", "Repository", "Changelog", "Issues"}
    assert urls["Repository"] == urls["Homepage"] == REPOSITORY
    assert urls["Changelog"] == f"{REPOSITORY}/blob/main/CHANGELOG.md" and urls["Issues"] == f"{REPOSITORY}/issues"
    assert urls["Documentation"].startswith("https://")

    classifiers = set(meta.get_all("Classifier") or [])
    assert {"Typing :: Typed", "Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.12",
            "Programming Language :: Python :: 3.13"} <= classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert meta.get_all("Author") or meta.get_all("Author-email")
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith(f"# {name}")  # the README is the long description

    if name == "django-modelriver":
        assert {"Framework :: Django", "Framework :: Django :: 5.0", "Framework :: Django :: 5.1",
                "Framework :: Django :: 5.2"} <= classifiers
    if name != "modelriver":
        assert CORE_VERSION is not None
        major, minor = int(CORE_VERSION[1]), int(CORE_VERSION[2])
        pins = [r for r in meta.get_all("Requires-Dist") or [] if re.match(r"modelriver\b", r)]
        assert pins == [f"modelriver<{major}.{minor + 1},>={major}.{minor}"], pins


@pytest.mark.parametrize("name", list(PACKAGES))
def test_readme_links_are_absolute_so_they_work_on_pypi(name: str) -> None:
    targets = links(PACKAGES[name] / "README.md")
    assert targets
    relative = [t for t in targets if not t.startswith(("https://", "http://127.0.0.1", "mailto:"))]
    assert not relative, f"links that are dead on PyPI: {relative}"
    assert not [t for t in targets if "DESIGN" in t or "PROTOCOL" in t]


@pytest.mark.parametrize("name", list(SHIPPED_BROWSER_MODULE))
def test_the_browser_module_ships_as_cores_file_in_the_wheel_and_the_sdist(
        name: str, dist: Path, wheels: dict[str, Path]) -> None:
    source = BROWSER_MODULE.read_bytes()
    shipped = SHIPPED_BROWSER_MODULE[name]
    with zipfile.ZipFile(wheels[name]) as zf:
        assert zf.read(shipped) == source
    sdist = next(dist.glob(f"{IMPORT_NAMES[name]}-*.tar.gz"))
    with tarfile.open(sdist) as tf:  # a wheel built from the sdist (pip install <sdist>) reads this one
        member = tf.getmember(f"{sdist.name.removesuffix('.tar.gz')}/src/{shipped}")
        assert member.isfile(), f"{shipped} is a {'link' if member.issym() else 'non-file'} in the sdist"
        content = tf.extractfile(member)
        assert content is not None and content.read() == source
