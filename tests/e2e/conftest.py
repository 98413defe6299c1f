"""tests/e2e: the whole stack under stress, on loopback (issue 8).

Each test records its figures (cuts made, tokens checked, lost, duplicated, cases tried...) with
the ``figures`` fixture; they are printed in pytest's terminal summary, whatever ``-s`` says, and
travel with the test report (``user_properties``), so they show under pytest-xdist too (the hooks:
``figures.py``, imported by ``tests/conftest.py``).
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
for extra in (HERE, HERE.parent / "django"):  # e2e helpers; the Django tests' process helpers
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from e2e.figures import KEY  # noqa: E402  (after the sys.path lines)
from relaylib import RELAY_TPS, relay_text  # noqa: E402


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figures(title="...", cuts=100, lost=0, ...)``: record a line for the terminal summary."""

    def record(**values: Any) -> None:
        request.node.user_properties.append((KEY, values))
        line = ", ".join(f"{k}={v}" for k, v in values.items())
        print(f"[figures] {request.node.nodeid}: {line}")

    return record


@pytest.fixture(scope="session")
def relay(gateway: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """demo_projects/django_chat on Daphne (one process, in-memory layer) on the session gateway.

    Its requests are scripted long and paced (``relaylib.RELAY_WORDS`` tokens at ``RELAY_TPS``/s,
    one text for every request: ``relaylib.relay_text()``), so the fault tests meet live streams.
    """
    from djmr_demo import demo_env, migrate, scripted_env, start_demo

    db = tmp_path_factory.mktemp("e2e_relay") / "db.sqlite3"
    script = scripted_env(tokens_per_second=RELAY_TPS, first_token_ms=0, text=relay_text())
    env = demo_env(gateway, db, DJANGO_SECRET_KEY="e2e-" + secrets.token_hex(16), **script)
    migrate(env)
    server = start_demo(env)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server on loopback (no persistence)."""
    import shutil

    from support import Process, free_port

    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    assert Path(server).exists(), "redis-server is missing: run `make setup`"
    port = free_port()
    proc = Process.start([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    proc.wait_for("Ready to accept connections", timeout=20)
    yield f"redis://127.0.0.1:{port}/0"
    proc.stop()
