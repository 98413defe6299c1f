"""Fixtures for the Streamlit adapter: the demo under `streamlit run`, Chromium via Playwright.

Both upstreams: ``upstream`` (indirect parameter ``"modelriver"`` or ``"realm"``, a
``support.upstreams.Upstream``) is the session's gateway, or a gateway whose Realm endpoint
(``--realm-port``) the adapter reaches through core's ``SyncRealmUpstream`` (``MODELRIVER_UPSTREAM=realm``).
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from support import CHROMIUM_ARGS, ROOT, Gateway, Process, chromium_path, free_port, start_gateway
from support.upstreams import REALM_KEY, Upstream

REALM_CONFIG = Path(__file__).resolve().parent / "realm_gateway.toml"

DEMO = ROOT / "demo_projects" / "streamlit_chat" / "app.py"
PROBE_APP = Path(__file__).resolve().parent / "apps" / "probe_app.py"


@dataclass
class StreamlitApp:
    """A real `streamlit run` of the demo."""

    url: str
    process: Process


@pytest.fixture(scope="session")
def realm_gateway() -> Iterator[tuple[Gateway, str]]:
    """A gateway with a Realm endpoint (auth on), its chat provider paced by realm_gateway.toml."""
    port = free_port()
    gw = start_gateway("--realm-port", str(port), "--realm-api-key", REALM_KEY, "--config", str(REALM_CONFIG))
    yield gw, f"ws://127.0.0.1:{port}"
    gw.process.stop()


@pytest.fixture(scope="module")
def upstream(request: pytest.FixtureRequest, gateway: Gateway) -> Upstream:
    """The upstream named by the indirect parameter (default ``modelriver``)."""
    if getattr(request, "param", "modelriver") == "modelriver":
        return Upstream("modelriver", gateway)
    realm, url = request.getfixturevalue("realm_gateway")
    return Upstream("realm", realm, url)


def start_streamlit(app: Path, gateway: Gateway, **env: str) -> StreamlitApp:
    port = free_port()
    process = Process.start(
        [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
         "--global.developmentMode", "false"],
        env={**gateway.env, "MODELRIVER_WEBHOOK_SECRET": gateway.webhook_secret, **env},
    )
    process.wait_for(f"127.0.0.1:{port}", timeout=60)
    url = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as resp:
        assert resp.status == 200
    return StreamlitApp(url, process)


@pytest.fixture(scope="module")
def demo_app(upstream: Upstream) -> Iterator[StreamlitApp]:
    """The demo app served by `streamlit run`, against ``upstream``."""
    app = start_streamlit(DEMO, upstream.gateway, **upstream.env())
    yield app
    app.process.stop()


@pytest.fixture(scope="module")
def probe_app(gateway: Gateway) -> Iterator[StreamlitApp]:
    """A bare one-call app (tests/streamlit/apps/probe_app.py) shaped by query parameters."""
    app = start_streamlit(PROBE_APP, gateway)
    yield app
    app.process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Capture:
    """Everything a page received or sent: websocket frames (every socket) and page sources."""

    frames: list[tuple[str, str | bytes]] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        def on_socket(ws: Any) -> None:
            self.sockets.append(ws.url)
            ws.on("framesent", lambda payload: self.frames.append((ws.url, payload)))
            ws.on("framereceived", lambda payload: self.frames.append((ws.url, payload)))

        page.on("websocket", on_socket)

    def gateway_frames(self) -> list[str]:
        return [p if isinstance(p, str) else p.decode("utf-8", "replace")
                for url, p in self.frames if "/socket/websocket" in url]


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Capture]]:
    """A fresh browser context and page (a new Streamlit session), its traffic captured."""
    context = browser.new_context(viewport={"width": 1200, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(20_000)
    capture = Capture()
    capture.watch(page)
    yield page, capture
    context.close()


def new_channel_ids(gateway: Gateway, before: set[str]) -> list[str]:
    return [r["channel_id"] for r in gateway.requests() if r["channel_id"] not in before]


@pytest.fixture
def requests_since(gateway: Gateway) -> Callable[[], list[str]]:
    """Channel ids the gateway saw since the test began (newest first)."""
    before = {r["channel_id"] for r in gateway.requests()}
    return lambda: new_channel_ids(gateway, before)
