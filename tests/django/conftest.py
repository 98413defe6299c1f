"""tests/django: Django configured in-process from ``djmr_settings`` (no DJANGO_SETTINGS_MODULE).

Fixtures: ``mr_settings`` points the in-process app at the session's real gateway; ``demo`` runs
demo_projects/django_chat on Daphne; ``realm_chat`` runs it on Realm (its own gateway with a
Realm endpoint); ``chat`` is either, by the test's ``djmr_demo.upstreams()`` parameter;
``browser`` is Debian's Chromium through Playwright.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import django
from django.conf import settings

if not settings.configured:
    import djmr_settings

    settings.configure(**{k: v for k, v in vars(djmr_settings).items() if k.isupper()})
    django.setup()

from django.test import override_settings
from djmr_demo import REALM_GATEWAY_CONFIG, Chat, Demo, demo_env, migrate, scripted_env, start_demo

from support import CHROMIUM_ARGS, Gateway, chromium_path, free_port, start_gateway
from support.upstreams import REALM_KEY, Upstream


@pytest.fixture
def mr_settings(gateway: Gateway) -> Iterator[dict[str, Any]]:
    """MODELRIVER pointed at the session gateway (the app's caches reset around the test)."""
    value = {"API_KEY": gateway.api_key, "API_BASE": gateway.url, "WEBHOOK_SECRET": gateway.webhook_secret,
             "DEFAULT_WORKFLOW": "demo-chat", "PERMISSION": "djmr_support.gate"}
    with override_settings(MODELRIVER=value):
        yield value


@pytest.fixture
async def hub_cleanup() -> AsyncIterator[None]:
    """Close this loop's hub (pumps, clients) before the test's loop goes away."""
    yield
    from django_modelriver.hub import get_hub

    await get_hub().close()


@pytest.fixture(scope="session")
def demo(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """demo_projects/django_chat on Daphne (runserver), migrated first as its README says."""
    db = tmp_path_factory.mktemp("django_chat") / "db.sqlite3"
    env = demo_env(gateway, db, **scripted_env(tokens_per_second=30))
    migrate(env)
    assert db.exists()
    server = start_demo(env)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def realm_chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    """The demo with ``MODELRIVER_UPSTREAM=realm`` on a gateway's Realm endpoint (Realm's key only)."""
    tmp = tmp_path_factory.mktemp("django_chat_realm")
    config = tmp / "gateway.toml"
    config.write_text(REALM_GATEWAY_CONFIG)
    realm_port = free_port()
    gateway = start_gateway("--config", str(config), "--realm-port", str(realm_port),
                            "--realm-api-key", REALM_KEY)
    try:
        upstream = Upstream("realm", gateway, f"ws://127.0.0.1:{realm_port}")
        env = {**demo_env(gateway, tmp / "db.sqlite3"), **upstream.env()}
        del env["MODELRIVER_API_KEY"]  # no ModelRiver key at all: Realm's is the only one
        migrate(env)
        server = start_demo(env)
        try:
            yield Chat(upstream, server, (REALM_KEY,))
        finally:
            server.stop()
    finally:
        gateway.process.stop()


@pytest.fixture(scope="module")
def chat(request: pytest.FixtureRequest) -> Chat:
    """The demo on the upstream the test is parametrized with (``djmr_demo.upstreams()``)."""
    if request.param == "realm":
        realm: Chat = request.getfixturevalue("realm_chat")
        return realm
    gateway: Gateway = request.getfixturevalue("gateway")
    return Chat(Upstream("modelriver", gateway), request.getfixturevalue("demo"), (gateway.api_key,))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, per module: Playwright's sync API holds an event loop
    while it runs, which the async tests of other modules need free."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
