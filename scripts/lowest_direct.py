"""Each package's tests with its direct dependencies at their lowest declared versions.

`prepare` resolves each package with ``uv pip compile --resolution lowest-direct`` (the package and,
for an integration, core are editable, so every dependency they declare is a direct one), and syncs
one virtualenv per package under ``.venv-lowest/`` to that resolution; a venv whose resolution has not
changed is reused as it is (its marker file holds the resolution's hash). The test tools are pinned to
the versions in the main ``.venv`` (their lower bounds are not what is tested). `test` runs each
package's selected tests in its venv. `make test` prepares while the main suite runs, then tests.

Which tests: per package, the test modules that exercise the code paths into each third-party
dependency it declares (HTTP client, WebSockets client and server, the gateway's ASGI stack, Django's
checks, views, Channels and Daphne, Streamlit's components v2 and AppTest, Gradio's server and
client), each with at least one test against real servers. Left to the main run: tests of pure-Python
code with no third-party dependency (the sans-I/O Phoenix machines, webhook signatures: property
tests that cost most of the time), fuzzing, the browser suites beyond one streamed answer each, the
scale-out and end-to-end suites (Redis, several processes) and the benchmarks' smoke runs.

Usage: python scripts/lowest_direct.py [prepare|test|all] [PACKAGE ...]
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / ".venv-lowest"
# The test tools are the root's dev dependency group, pinned to the main venv's versions (their lower
# bounds are not what is tested here), less the tools no test imports and less every package that the
# packages under test depend on themselves (the resolution under test decides those).
NOT_FOR_TESTS = {"ruff", "mypy", "tox", "tox-uv", "coverage", "mkdocs", "mkdocs-material", "mkdocstrings", "twine",
                 "matplotlib", "tqdm", "orjson"}
# Test tools that a framework under test brings, pinned (gradio pins its gradio-client): not asked for.
FRAMEWORK_PINNED = {"gradio-client"}


@dataclass(frozen=True)
class Package:
    name: str
    requirements: tuple[str, ...]
    # Which tests run at the lowest versions (see the module docstring): the tests that exercise the
    # third-party code each package depends on, with at least one against real servers.
    tests: tuple[str, ...]


CORE = "-e core[gateway,markdown]"
PACKAGES = (
    # httpx (the API client), websockets (the stream client, the Realm client and server), the gateway
    # (starlette, uvicorn, jsonschema, PyJWT) as a real `modelriver dev`, markdown-it-py, the README.
    Package("core", (CORE,), (
        "tests/core/test_api.py", "tests/core/test_stream.py", "tests/core/test_gateway_workflows.py",
        "tests/core/test_devserver_units.py", "tests/core/test_exports.py", "tests/core/test_realm_gateway.py",
        "tests/core/test_markdown.py", "tests/core/test_readme_examples.py")),
    # Django's system checks on real manage.py processes, the views, the Channels consumer, Daphne, uvicorn.
    Package("django", (CORE, "-e integrations/django[redis,uvicorn]"), (
        "tests/django/test_conf_checks.py", "tests/django/test_views.py", "tests/django/test_consumer.py",
        "tests/django/test_upstream_setting.py", "tests/django/test_daphne_close.py",
        "tests/django/test_uvicorn_relay.py")),
    # The adapter and AppTest, and component mode (components v2) in Chromium on a real `streamlit run`.
    Package("streamlit", (CORE, "-e integrations/streamlit"), (
        "tests/streamlit/test_adapter.py", "tests/streamlit/test_apptest.py",
        "tests/streamlit/test_browser.py::test_tokens_and_steps_stream_live_and_the_value_returns"
        "[modelriver-component]")),
    # The view, the chat function on a real gateway, the webhook route, a real Gradio server's /chat.
    Package("gradio", (CORE, "-e integrations/gradio"), (
        "tests/gradio/test_view.py", "tests/gradio/test_chat_fn.py", "tests/gradio/test_webhooks.py",
        "tests/gradio/test_demo_client.py::test_partials_final_content_and_step_metadata[modelriver]")),
)


def log(message: str) -> None:
    print(f"[lowest-direct] {message}", flush=True)


def name_of(spec: str) -> str:
    return re.split(r"[\[<>=!~; @]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def declared(package: Package) -> set[str]:
    """Every distribution the package's own pyproject files name (dependencies and extras)."""
    names = set()
    for requirement in package.requirements:
        folder = requirement.removeprefix("-e ").split("[")[0]
        project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
        names.add(name_of(project["name"]))
        extras = project.get("optional-dependencies", {}).values()
        names.update(name_of(spec) for spec in itertools.chain(project.get("dependencies", []), *extras))
    return names


def tools(package: Package) -> list[str]:
    """The test tools' requirements, pinned (see NOT_FOR_TESTS and FRAMEWORK_PINNED)."""
    group = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    skip = NOT_FOR_TESTS | FRAMEWORK_PINNED | declared(package)
    return [f"{name_of(spec)}=={metadata.version(name_of(spec))}" for spec in group
            if name_of(spec) not in skip and not name_of(spec).startswith("types-")
            and not name_of(spec).endswith("-stubs")]


def resolve(package: Package, work: Path) -> str:
    """The lowest-direct resolution of the package plus its test tools, as requirements text."""
    req_in = work / f"{package.name}.in"
    req_in.write_text("\n".join([*package.requirements, *tools(package)]) + "\n")
    # To stdout, not `-o`: uv would take an existing output file's pins as preferences.
    done = subprocess.run(
        ["uv", "pip", "compile", "--quiet", "--resolution", "lowest-direct", "--python", sys.executable,
         "--no-header", "--no-annotate", str(req_in)],
        check=True, cwd=ROOT, capture_output=True, text=True,
    )
    (work / f"{package.name}.txt").write_text(done.stdout)
    return done.stdout


def prepare(package: Package) -> Path:
    """The package's venv, synced to its lowest-direct resolution (reused if that is unchanged)."""
    VENVS.mkdir(exist_ok=True)
    work = VENVS / "resolutions"
    work.mkdir(exist_ok=True)
    lock = resolve(package, work)
    digest = hashlib.sha256(lock.encode()).hexdigest()[:16]
    venv = VENVS / package.name
    marker = venv / "lowest-direct.sha256"
    if marker.exists() and marker.read_text() == digest:
        log(f"{package.name}: venv up to date ({digest})")
        return venv
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, cwd=ROOT)
    subprocess.run(
        ["uv", "pip", "sync", "--quiet", "--python", str(venv / "bin" / "python"),
         str(work / f"{package.name}.txt")],
        check=True, cwd=ROOT,
    )
    marker.write_text(digest)
    log(f"{package.name}: venv synced in {time.monotonic() - started:.0f} s ({digest})")
    return venv


def lowest_versions(venv: Path, package: Package) -> str:
    """The installed versions of the package's own direct dependencies, for the log."""
    code = (
        "import importlib.metadata as m, re, sys\n"
        "names = sys.argv[1:]\n"
        "seen = []\n"
        "for n in names:\n"
        "    for r in m.requires(n) or []:\n"
        "        if 'extra ==' in r and 'redis' not in r and 'gateway' not in r: continue\n"
        "        d = re.split(r'[ ;<>=!~\\[]', r, maxsplit=1)[0]\n"
        "        if d not in seen and d != 'modelriver': seen.append(d)\n"
        "print(', '.join(f'{d} {m.version(d)}' for d in seen))\n"
    )
    dists = ["modelriver"] + [r.split("/")[-1].split("[")[0].replace("integrations/", "")
                              for r in package.requirements[1:]]
    dists = [d if d in ("modelriver",) else f"{d}-modelriver" for d in dists]
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code, *dists],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def run_tests(package: Package) -> int:
    venv = VENVS / package.name
    log(f"{package.name}: {lowest_versions(venv, package)}")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    started = time.monotonic()
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-n", "2", *package.tests],
        cwd=ROOT, env=env,
    )
    log(f"{package.name}: tests exited {done.returncode} in {time.monotonic() - started:.0f} s")
    return done.returncode


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "all"
    wanted = set(argv[1:])
    packages = [p for p in PACKAGES if not wanted or p.name in wanted]
    if action in ("prepare", "all"):
        with ThreadPoolExecutor(len(packages)) as pool:
            list(pool.map(prepare, packages))
    if action in ("test", "all"):
        failed = [p.name for p in packages if run_tests(p) != 0]
        if failed:
            log(f"FAILED at the lowest versions: {', '.join(failed)}")
            return 1
        log("every package passed at its lowest direct dependencies")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
