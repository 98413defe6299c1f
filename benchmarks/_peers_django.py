"""The Django a user would write by hand, without django_modelriver: the peers of ``relay_latency``.

One module is the whole project (settings, URLs, views, consumer, ASGI app), served by Daphne or
uvicorn exactly as the demo is: ``daphne _peers_django:application`` with ``benchmarks/`` on the
path. The gateway comes from ``MODELRIVER_API_BASE`` / ``MODELRIVER_API_KEY`` (core's client reads
them); ``DJANGO_CHAT_SCRIPTED`` is the dev gateway's per-request script, as in the demo.

* ``POST /modelriver/start`` (CSRF-protected; ``GET /`` sets the cookie) ``{message}``: creates the
  request on the gateway with core's ``AsyncModelRiver`` and answers its async shape, with
  ``websocket_url`` pointing at this server's proxy socket and ``sse_url`` at the SSE view.
* ``/socket/websocket?token=...`` (WebSocket): the **per-browser proxy**, a Channels
  ``AsyncWebsocketConsumer`` that opens its own ``websockets`` connection to the gateway on the
  same query and copies every frame both ways, unparsed (no fan-out, no replay).
* ``GET /sse/<channel_id>?token=...``: the **SSE view**, an async ``StreamingHttpResponse`` that
  joins the request on the gateway with core's client and sends a ``: connected`` comment, each
  token as a ``data:`` line (``{"seq", "text"}``), then ``event: done`` (or ``event: error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

# -- settings (this module is DJANGO_SETTINGS_MODULE too) -------------------------------------------

SECRET_KEY = "peers-bench-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "channels"]
MIDDLEWARE = ["django.middleware.csrf.CsrfViewMiddleware"]
ROOT_URLCONF = __name__
DATABASES: dict[str, Any] = {}
USE_TZ = True
CHANNEL_LAYERS: dict[str, Any] = {}  # no fan-out: nothing goes through a layer
SCRIPTED = json.loads(os.environ.get("DJANGO_CHAT_SCRIPTED") or "{}")
WORKFLOW = "demo-chat"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", __name__)

from django.core.asgi import get_asgi_application  # noqa: E402  (after the settings above)

django_asgi = get_asgi_application()

import websockets  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import ensure_csrf_cookie  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402

from modelriver import AsyncModelRiver, Error, Response, Token  # noqa: E402
from modelriver.types import AsyncRequest  # noqa: E402

_client: AsyncModelRiver | None = None


def client() -> AsyncModelRiver:
    """One API client for the process (its HTTP connections are reused)."""
    global _client
    if _client is None:
        _client = AsyncModelRiver(max_retries=0)
    return _client


def gateway_ws() -> str:
    return client().api_base.replace("http", "ws", 1)


# -- views ------------------------------------------------------------------------------------------


@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("peers")


@require_POST
async def start(request: HttpRequest) -> JsonResponse:
    message = json.loads(request.body)["message"]
    created = await client().create_request(WORKFLOW, message, metadata={"scripted": SCRIPTED} if SCRIPTED else None)
    here = request.get_host()
    query = urlencode({"token": created.ws_token, "topic": created.topic})
    return JsonResponse({**created.raw, "websocket_url": f"ws://{here}/socket",
                         "sse_url": f"http://{here}/sse/{created.channel_id}?{query}"})


@require_GET
async def sse(request: HttpRequest, channel_id: str) -> StreamingHttpResponse:
    joined = AsyncRequest(channel_id, request.GET["token"], gateway_ws() + "/socket", request.GET["topic"])

    async def events() -> AsyncIterator[str]:
        stream = await client().connect(joined)
        yield ": connected\n\n"  # the response starts now (a server may hold headers until the first chunk)
        try:
            async for event in stream:
                if isinstance(event, Token):
                    yield f"data: {json.dumps({'seq': event.seq, 'text': event.data})}\n\n"
                elif isinstance(event, Error):
                    yield f"event: error\ndata: {json.dumps(event.message)}\n\n"
                    return
                elif isinstance(event, Response) and event.response.status != "ai_generated":
                    yield f"event: done\ndata: {json.dumps(event.response.status)}\n\n"
                    return
        finally:
            await stream.close()

    return StreamingHttpResponse(events(), content_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- the per-browser proxy ------------------------------------------------------------------------


class GatewayProxy(AsyncWebsocketConsumer):  # type: ignore[misc]
    """One upstream socket per browser socket; frames copied both ways as they are."""

    upstream: Any = None
    downstream: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        # Accepted first: the server drops a handshake not accepted in time (Daphne: 5 s), and the
        # browser's frames wait meanwhile (a consumer handles its messages one at a time).
        await self.accept()
        query = self.scope["query_string"].decode()
        try:
            self.upstream = await websockets.connect(f"{gateway_ws()}/socket/websocket?{query}", compression=None,
                                                     max_size=None, open_timeout=60, close_timeout=1)
        except Exception:
            await self.close(1011)
            return
        self.downstream = asyncio.create_task(self.copy_down())

    async def copy_down(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.upstream:
                await self.send(text_data=message)
        await self.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.upstream is not None and text_data is not None:
            await self.upstream.send(text_data)

    async def disconnect(self, code: int) -> None:
        if self.downstream is not None:
            self.downstream.cancel()
        if self.upstream is not None:
            await self.upstream.close()


urlpatterns = [path("", index), path("modelriver/start", start), path("sse/<str:channel_id>", sse)]

application = ProtocolTypeRouter({
    "http": django_asgi,
    "websocket": AllowedHostsOriginValidator(URLRouter([path("socket/websocket", GatewayProxy.as_asgi())])),
})
