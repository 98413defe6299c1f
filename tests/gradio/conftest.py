"""Fixtures of the Gradio tests: the demo app as a real subprocess on a real gateway.

Every test that uses ``upstream`` (directly, or through ``demo`` / ``down_demo``) runs twice:
on the ModelRiver upstream (the demo's ``AsyncModelRiver`` on the session's gateway) and on the
Realm upstream (``MODELRIVER_UPSTREAM=realm``: a ``RealmUpstream`` on a second gateway's Realm
endpoint, ``modelriver dev --realm-port``). ``@pytest.mark.modelriver_only(reason)`` keeps a test
to the first (webhooks and callbacks: Realm has neither).

No ``__init__.py`` here on purpose: this folder must never shadow the ``gradio`` package.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from gradio_client import Client

from modelriver import AIResponse, ModelRiver
from support import ROOT, Gateway, Process, free_port, start_gateway
from support.upstreams import REALM_KEY, Upstream

DEMO = ROOT / "demo_projects" / "gradio_chat" / "app.py"
REALM_CONFIG = ROOT / "tests" / "gradio" / "realm_gateway.toml"
UPSTREAMS = ("modelriver", "realm")
CHANNEL_ID = re.compile(r"request `([0-9a-f-]{36})`")
DEFAULT_METADATA = {"scripted": {"first_token_ms": 20}}
"""The demo's MODELRIVER_DEMO_METADATA; tests send their own pace per message on top of it."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "modelriver_only(reason): run on the ModelRiver upstream only, not on Realm")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses ``upstream`` once per upstream (see the module docstring)."""
    if "upstream" not in metafunc.fixturenames:
        return
    only = metafunc.definition.get_closest_marker("modelriver_only")
    if only is not None and not (only.args or only.kwargs.get("reason")):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: modelriver_only needs a reason")
    names = UPSTREAMS[:1] if only is not None else UPSTREAMS
    metafunc.parametrize("upstream", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def realm_gateway() -> Iterator[tuple[Gateway, str]]:
    """A second gateway with its Realm endpoint (auth on; demo-chat paced, see the config)."""
    port = free_port()
    gw = start_gateway("--realm-port", str(port), "--realm-api-key", REALM_KEY,
                       "--config", str(REALM_CONFIG))
    try:
        yield gw, f"ws://127.0.0.1:{port}"
    finally:
        gw.process.stop()


@pytest.fixture(scope="session")
def upstream(request: pytest.FixtureRequest, gateway: Gateway) -> Upstream:
    """The upstream of this run of the test (parametrized by ``pytest_generate_tests``)."""
    if request.param == "realm":
        realm_gw, url = request.getfixturevalue("realm_gateway")
        return Upstream("realm", realm_gw, url)
    return Upstream("modelriver", gateway)


@dataclass
class Demo:
    """A running `demo_projects/gradio_chat/app.py`."""

    url: str
    process: Process

    def client(self) -> Client:
        return Client(self.url, verbose=False, download_files=False)


def launch_demo(upstream: Upstream, metadata: dict[str, Any] | None = None,
                *, down: bool = False) -> tuple[str, Process]:
    """Start the demo on ``upstream`` (``down``: pointed where nothing listens) without waiting:
    its URL and process."""
    port = free_port()
    proc = Process.start([sys.executable, str(DEMO)], env={
        **upstream.env(down=down),
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "MODELRIVER_DEMO_METADATA": json.dumps(metadata) if metadata is not None else "",
    })
    return f"http://127.0.0.1:{port}/", proc


def wait_demo(url: str, proc: Process) -> Demo:
    # Importing gradio is CPU-heavy: on a loaded 2-core machine startup can take a minute.
    proc.wait_for("Running on local URL", timeout=100)
    return Demo(url, proc)


@pytest.fixture(scope="session")
def launched(upstream: Upstream) -> Iterator[dict[str, tuple[str, Process]]]:
    """Both demo processes of an upstream, started together at once (each fixture below waits
    for its own): ``up`` on the upstream, ``down`` on a port where nothing listens."""
    started: dict[str, tuple[str, Process]] = {}
    try:
        started["up"] = launch_demo(upstream, DEFAULT_METADATA)
        started["down"] = launch_demo(upstream, down=True)
        yield started
    finally:
        for _, proc in started.values():
            proc.stop()


@pytest.fixture(scope="session")
def demo(launched: dict[str, tuple[str, Process]]) -> Demo:
    """The demo app on the upstream."""
    return wait_demo(*launched["up"])


@pytest.fixture(scope="session")
def down_demo(launched: dict[str, tuple[str, Process]]) -> Demo:
    """The demo pointed at a port where nothing listens (the upstream is "down")."""
    return wait_demo(*launched["down"])


@pytest.fixture
def oracle(gateway: Gateway) -> Callable[[str, str], AIResponse]:
    """The gateway's own answer to a prompt, read with the bare core client (unpaced).

    Always the session's gateway (the scripted answers depend on the prompt only), so on the
    Realm upstream the tests' own gateway logs one request per prompt (see ``Upstream.log``).

    The sync client: it runs its own loop thread, so it works beside Playwright's loop too.
    """

    def answer(workflow: str, prompt: str) -> AIResponse:
        with ModelRiver(api_key=gateway.api_key, api_base=gateway.url) as client, client.stream(
            workflow, prompt, metadata={"scripted": {"tokens_per_second": 0}}, request_timeout=30
        ) as stream:
            return stream.wait()

    return answer


def _channel_id_of(messages: list[dict[str, Any]]) -> str:
    for message in messages:
        found = CHANNEL_ID.search(str(message.get("content") or ""))
        if found:
            return found.group(1)
    raise AssertionError(f"no channel id in {messages!r}")


def _wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def channel_id_of() -> Callable[[list[dict[str, Any]]], str]:
    """The request's channel id, shown in the workflow thought's content."""
    return _channel_id_of


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., Any]:
    """``wait_until(check, timeout, what)``: poll state outside this process until truthy."""
    return _wait_until
