"""The demo's webhook receiver: what your backend does for an event-driven workflow.

The gateway POSTs a signed webhook once the AI has answered (status ``ai_generated``); this
receiver verifies the signature (``modelriver.webhooks.verify_signature``), answers 200 at once,
then enriches the AI's data (a ticket id, an approval) and POSTs it to the webhook's
``callback_url``; the gateway then pushes the final ``completed`` response to the page.

It is a plain ``http.server`` on a free localhost port, started once per process (the app holds
it with ``st.cache_resource``). A hosted gateway cannot reach localhost: deploy a receiver
like this one on a public URL and set ``MODELRIVER_DEMO_WEBHOOK_URL`` to it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelriver import ModelRiver, ModelRiverError
from modelriver.webhooks import (
    CALLBACK_URL_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookEvent,
    verify_signature,
)

logger = logging.getLogger("streamlit_modelriver.demo")

MAX_BODY = 1 << 20


def enrich(event: WebhookEvent) -> dict[str, Any]:
    """Your backend's part: add what only it knows (ids, validation, approval)."""
    data = dict(event.data) if isinstance(event.data, dict) else {"ai": event.data}
    data["enrichment"] = {
        "ticket_id": f"T-{(event.channel_id or 'unknown')[:8]}",
        "approved": True,
        "processed_by": "streamlit-demo-backend",
        "processed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return data


class WebhookReceiver:
    """Receives the gateway's webhooks on ``http://host:port/webhook`` and calls back.

    Args:
        client: the API client used for the callback.
        secret: the webhook secret shared with the gateway.
        processing_seconds: how long the pretend backend works before calling back (so the
            "Waiting for backend callback..." step can be seen).
    """

    def __init__(self, client: ModelRiver, secret: str, *, host: str = "127.0.0.1", port: int = 0,
                 processing_seconds: float = 0.0) -> None:
        self.client = client
        self.secret = secret
        self.processing_seconds = processing_seconds
        self._closed = threading.Event()
        self.received: list[WebhookEvent] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("webhook receiver: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-webhooks",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/webhook"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        logger.info("webhook receiver listening on %s", self.url)
        return self

    def close(self) -> None:
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        if http.path.split("?")[0] != "/webhook" or length > MAX_BODY:
            self._answer(http, 404 if length <= MAX_BODY else 413, {"error": "not here"})
            return
        body = http.rfile.read(length)
        try:
            event = verify_signature(
                body, http.headers.get(SIGNATURE_HEADER), http.headers.get(TIMESTAMP_HEADER), self.secret,
                callback_url=http.headers.get(CALLBACK_URL_HEADER),
            )
        except ModelRiverError as exc:
            logger.warning("webhook refused: %s", exc)
            self._answer(http, 401, {"error": "invalid signature"})
            return
        self.received.append(event)
        self._answer(http, 200, {"received": True})
        if event.callback_url:
            threading.Thread(target=self._call_back, args=(event,), daemon=True).start()

    def _call_back(self, event: WebhookEvent) -> None:
        assert event.channel_id is not None
        if self._closed.wait(self.processing_seconds):  # the pretend enrichment work
            return
        try:
            self.client.callback(event.channel_id, enrich(event), task_id=event.task_id,
                                 callback_url=event.callback_url)
            logger.info("called back for %s", event.channel_id)
        except ModelRiverError as exc:
            logger.warning("callback for %s failed: %s", event.channel_id, exc)

    @staticmethod
    def _answer(http: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        http.send_response(status)
        http.send_header("Content-Type", "application/json")
        http.send_header("Content-Length", str(len(data)))
        http.end_headers()
        http.wfile.write(data)
