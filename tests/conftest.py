"""Fixtures shared by every area: a real `modelriver dev` gateway subprocess."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from e2e.figures import pytest_runtest_logreport, pytest_terminal_summary  # noqa: F401  (e2e figures, xdist too)

from support import Gateway, start_gateway
from support.leftovers import pytest_configure  # noqa: F401  (the run fails if a process it started outlives it)


@pytest.fixture(scope="session")
def gateway() -> Iterator[Gateway]:
    """One gateway for the session (read its request log by channel_id to stay isolated)."""
    gw = start_gateway()
    yield gw
    gw.process.stop()


@pytest.fixture
def gateway_factory() -> Iterator[Callable[..., Gateway]]:
    """Start extra gateways with their own options (`factory("--rate-limit", "2")`); stopped after."""
    started: list[Gateway] = []

    def factory(*args: str, **kwargs: object) -> Gateway:
        gw = start_gateway(*args, **kwargs)  # type: ignore[arg-type]
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        gw.process.stop()
