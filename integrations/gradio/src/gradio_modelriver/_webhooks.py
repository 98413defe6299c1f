"""``WebhookReceiver``: the backend half of event-driven workflows, as a route on Gradio's app.

The gateway posts a signed webhook once the AI is done; the receiver verifies it with
``modelriver.webhooks.verify_signature`` (a replay of a delivery already received is refused
with 401 like a forgery), answers 200 at once, enriches the AI's data with your
``enrich`` function and calls back; the gateway then sends ``completed`` with that data, which
the chat shows::

    receiver = WebhookReceiver(enrich=lambda event: {**event.data, "ticket": "T-1"})
    demo = chat_interface(webhook_url=receiver.url_for("http://127.0.0.1:7860"))
    demo.launch(server_port=7860, app_kwargs={"routes": [receiver.route()]})
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelriver.api import AsyncModelRiver
from modelriver.exceptions import ModelRiverError, WebhookVerificationError
from modelriver.settings import Settings
from modelriver.webhooks import CALLBACK_URL_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookEvent, verify_signature

__all__ = ["DEFAULT_WEBHOOK_PATH", "Enrich", "WebhookReceiver"]

logger = logging.getLogger("gradio_modelriver")

DEFAULT_WEBHOOK_PATH = "/modelriver/webhook"

Enrich: TypeAlias = Callable[[WebhookEvent], "Mapping[str, Any] | Awaitable[Mapping[str, Any]]"]
"""Turns a verified webhook into the enriched data to call back with (sync or async)."""


def _passthrough(event: WebhookEvent) -> Mapping[str, Any]:
    return event.data if isinstance(event.data, Mapping) else {"data": event.data}


class WebhookReceiver:
    """Receives the gateway's webhooks and calls back with enriched data.

    Args:
        secret: the webhook secret; default ``MODELRIVER_WEBHOOK_SECRET``, else ``whsec_dev``
            (the embedded gateway's default).
        enrich: builds the callback data from the verified event; default: the AI's data as is.
        client: the API client used for the callback; default one created on first use.
        path: the route's path.
        tolerance: seconds the webhook's timestamp may be off.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        enrich: Enrich | None = None,
        client: AsyncModelRiver | None = None,
        path: str = DEFAULT_WEBHOOK_PATH,
        tolerance: int = 300,
    ) -> None:
        self.secret = secret or Settings.from_env().webhook_secret or "whsec_dev"
        self.enrich: Enrich = enrich or _passthrough
        self.path = path
        self.tolerance = tolerance
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: dict[str, float] = {}  # signatures received inside the window -> signed_at
        self.received = 0
        self.refused = 0

    def url_for(self, base_url: str) -> str:
        """The webhook URL under ``base_url`` (where the gateway can reach this app)."""
        return base_url.rstrip("/") + self.path

    def route(self) -> Route:
        """A Starlette route to hand to ``launch(app_kwargs={"routes": [...]})``."""
        return Route(self.path, self.handle, methods=["POST"], name="modelriver_webhook")

    async def handle(self, request: Request) -> JSONResponse:
        """Verify the webhook; answer 200 and call back in the background, or 401."""
        body = await request.body()
        try:
            event = verify_signature(
                body,
                request.headers.get(SIGNATURE_HEADER),
                request.headers.get(TIMESTAMP_HEADER),
                self.secret,
                tolerance=self.tolerance,
                callback_url=request.headers.get(CALLBACK_URL_HEADER),
            )
        except WebhookVerificationError as exc:
            self.refused += 1
            logger.warning("webhook refused: %s", exc)
            return JSONResponse({"error": "invalid signature", "message": str(exc)}, status_code=401)
        if self._replayed(request.headers.get(SIGNATURE_HEADER) or "", event.signed_at):
            self.refused += 1
            logger.warning("webhook refused: a replay of a delivery already received")
            return JSONResponse({"error": "invalid signature", "message": "replayed delivery"}, status_code=401)
        self.received += 1
        if event.is_event_driven and event.channel_id:
            task = asyncio.get_running_loop().create_task(self._call_back(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            logger.debug("webhook notification for %s", event.channel_id)
        return JSONResponse({"status": "received"})

    def _replayed(self, signature: str, signed_at: float) -> bool:
        """True when this exact signed delivery was already received (the gateway signs each
        redelivery afresh). Signatures are kept while their timestamp is inside the window."""
        now = time.time()
        for key, at in list(self._seen.items()):
            if abs(now - at) > self.tolerance:
                del self._seen[key]
        key = signature.lower().removeprefix("sha256=")
        if key in self._seen:
            return True
        self._seen[key] = signed_at
        return False

    async def _call_back(self, event: WebhookEvent) -> None:
        assert event.channel_id is not None
        try:
            data = self.enrich(event)
            if inspect.isawaitable(data):
                data = await data
            if self._client is None:
                self._client = AsyncModelRiver()
            await self._client.callback(event.channel_id, dict(data), task_id=event.task_id,
                                        callback_url=event.callback_url)
            logger.info("called back for %s", event.channel_id)
        except ModelRiverError as exc:
            logger.warning("callback for %s failed: %s", event.channel_id, exc)
        except Exception:
            logger.exception("enriching the webhook for %s failed", event.channel_id)
