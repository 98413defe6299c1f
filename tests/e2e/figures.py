"""The e2e figures in pytest's terminal summary (section "e2e figures").

Tests record figures with the ``figures`` fixture (``tests/e2e/conftest.py``): they travel in the
test reports' ``user_properties``, so the controller of a pytest-xdist run sees them too. These
hooks are imported by the top ``tests/conftest.py``, which the controller always loads.
"""

from __future__ import annotations

from typing import Any

import pytest

KEY = "e2e-figures"
_FIGURES: list[tuple[str, dict[str, Any]]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for key, values in report.user_properties:
        if key == KEY:
            _FIGURES.append((report.nodeid, values))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("e2e figures")
    for nodeid, values in _FIGURES:
        name = nodeid.split("::", 1)[-1]
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
