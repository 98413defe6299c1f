"""tests/django: Django configured in-process from ``djmr_settings`` (no DJANGO_SETTINGS_MODULE).

Helpers for the in-process tests: ``mr_settings`` points the app at the session's real gateway,
``phx`` builds Phoenix frames, ``Socket`` wraps ``WebsocketCommunicator``.
"""

from __future__ import annotations

import json
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

from support import Gateway


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


def phx(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> str:
    return json.dumps([join_ref, ref, topic, event, payload])
