"""The Django relay as a browser sees it: demo_projects/django_chat on Daphne (``djmr_demo``).

``DjangoSession`` is one browser (its own cookies): it loads the page for the CSRF cookie, then
starts requests and asks the relay's reconnect view for fresh socket tokens. ``origin_for(url)``
makes core's stream client send the page's ``Origin`` header, as a browser does (the relay's
``AllowedHostsOriginValidator`` refuses sockets without one).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import websockets
from cutlib import unique_text

import modelriver.stream
from modelriver.types import AsyncRequest
from support.faultproxy import FaultProxy

__all__ = ["RELAY_TPS", "RELAY_WORDS", "DjangoSession", "origin_for", "port_of", "relay_text", "via"]

RELAY_WORDS = 240
RELAY_TPS = 60


def relay_text() -> str:
    """The text every request of the ``relay`` fixture streams (its demo scripts one for all)."""
    return unique_text(0, RELAY_WORDS)


def via(proxy: FaultProxy, request: AsyncRequest) -> AsyncRequest:
    """The request with its websocket_url pointing at the proxy."""
    return replace(request, websocket_url=proxy.rewrite(request.websocket_url))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def origin_for(monkeypatch: pytest.MonkeyPatch, origin: str) -> None:
    """core's stream client sends ``Origin: <origin>`` on its sockets (for this test)."""
    monkeypatch.setattr(modelriver.stream, "websockets",
                        SimpleNamespace(connect=functools.partial(websockets.connect, origin=origin)))


class DjangoSession:
    """One browser session (its own cookies) on the relay: the page, then start and reconnect."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.AsyncClient(base_url=base, timeout=10)

    async def __aenter__(self) -> DjangoSession:
        page = await self.http.get("/")
        assert page.status_code == 200
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    @property
    def socket_headers(self) -> dict[str, str]:
        """What a browser's socket sends along: the session's cookies (a token opens a socket only
        with the session it was issued to)."""
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())}

    def csrf_headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.http.cookies.get("csrftoken") or "", "Referer": self.base + "/"}

    async def post(self, path: str, body: Any, *, csrf: bool = True) -> httpx.Response:
        return await self.http.post(path, json=body, headers=self.csrf_headers() if csrf else {})

    async def start(self, message: str, **body: Any) -> AsyncRequest:
        answer = await self.post("/modelriver/start", {"message": message, **body})
        assert answer.status_code == 200, answer.text
        return AsyncRequest.from_payload(answer.json())

    async def reconnect(self, channel_id: str) -> AsyncRequest:
        answer = await self.post("/modelriver/api/v1/ai/reconnect", {"channel_id": channel_id}, csrf=False)
        assert answer.status_code == 200, answer.text
        return AsyncRequest.from_payload(answer.json())
