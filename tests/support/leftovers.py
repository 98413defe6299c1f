"""A test run fails if a process it started is still alive at its end (issue 14, acceptance 4).

``LeftoverCheck`` is a pytest plugin, registered by this module's ``pytest_configure`` (imported
by ``tests/conftest.py``; ``-p support.leftovers`` loads it into any run). The controller tags the
run: it sets ``MODELRIVER_TEST_RUN=<uuid>`` in its environment before anything starts, so every
process of the run inherits it (xdist workers, the servers they start, their children, whatever
their session or parent becomes). At the end:

* each xdist worker lists its live descendants (``psutil``: those started with an environment of
  their own carry no tag), kills them and hands their descriptions to the controller;
* the controller, once the workers are gone, scans every process for the tag (an orphan of a
  worker has been reparented: only the tag finds it) and its own descendants, gives them a few
  seconds to finish exiting, then kills what is left, names everything found under "leftover
  processes" and fails the run (exit status 1).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Generator, Iterable
from typing import Any

import psutil
import pytest

__all__ = ["GRACE", "MARKER", "LeftoverCheck", "describe", "leftovers", "pytest_configure"]

MARKER = "MODELRIVER_TEST_RUN"
GRACE = float(os.environ.get("MODELRIVER_LEFTOVER_GRACE") or 5)
"""Seconds a process found at the end gets to finish exiting before it counts as left over."""
_OUTPUT_KEY = "modelriver_leftover_processes"
PLUGIN_NAME = "modelriver-leftovers"


def describe(proc: psutil.Process) -> str:
    """``pid 123 (sleep 60)``, or as much of it as can be read."""
    try:
        cmdline = " ".join(proc.cmdline())[:200] or proc.name()
    except psutil.Error:
        cmdline = "?"
    return f"pid {proc.pid} ({cmdline})"


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _tagged(token: str) -> list[psutil.Process]:
    """Every process (but this one) whose environment carries this run's tag."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(MARKER) == token:
                found.append(proc)
        except psutil.Error:  # gone, a zombie, or another user's
            continue
    return found


def _descendants() -> list[psutil.Process]:
    try:
        return list(psutil.Process().children(recursive=True))
    except psutil.Error:
        return []


def leftovers(token: str | None, *, grace: float = GRACE) -> list[psutil.Process]:
    """This process's live descendants and the processes tagged ``token``, after ``grace`` s
    for them to exit (polled)."""
    deadline = time.monotonic() + grace
    while True:
        found = {p.pid: p for p in [*_descendants(), *(_tagged(token) if token else [])] if _alive(p)}
        if not found or time.monotonic() >= deadline:
            return list(found.values())
        time.sleep(0.1)


def _kill(procs: Iterable[psutil.Process]) -> None:
    procs = list(procs)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=5)


class LeftoverCheck:
    """The plugin (see the module docstring)."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.token: str | None = None
        self._outer: str | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self._outer = os.environ.get(MARKER)
        if hasattr(config, "workerinput"):  # an xdist worker: the controller's tag, inherited
            self.token = self._outer
        else:  # a run of its own (even inside another run's test): a fresh tag
            self.token = os.environ[MARKER] = uuid.uuid4().hex

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Give an enclosing run (an in-process one) its tag back."""
        if self._outer is None:
            os.environ.pop(MARKER, None)
        else:
            os.environ[MARKER] = self._outer

    @pytest.hookimpl(optionalhook=True)  # xdist's hook
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """(controller) What a worker found and killed."""
        self.found.extend(getattr(node, "workeroutput", {}).get(_OUTPUT_KEY, []))

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        yield  # after every other finish hook: fixtures are torn down, xdist's workers are gone
        config = session.config
        if hasattr(config, "workerinput"):
            procs = leftovers(None)
            config.workeroutput[_OUTPUT_KEY] = [describe(p) for p in procs]  # type: ignore[attr-defined]
            _kill(procs)
            return
        procs = leftovers(self.token)
        self.found.extend(describe(p) for p in procs)
        _kill(procs)
        if not self.found:
            return
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        lines = [f"{len(self.found)} process(es) started by this test run were still alive at its "
                 f"end (killed now); a fixture or test does not stop what it starts:",
                 *(f"  {line}" for line in self.found)]
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.section("leftover processes", sep="=", red=True, bold=True)
            for line in lines:
                reporter.write_line(line)
        else:
            print("\n".join(lines))


def pytest_configure(config: pytest.Config) -> None:
    """Register ``LeftoverCheck`` once (its own ``pytest_configure`` then tags the run)."""
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(LeftoverCheck(), PLUGIN_NAME)
