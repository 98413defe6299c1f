"""The Gradio chat demo: every built-in workflow of the embedded gateway in one ChatInterface.

Run it::

    python demo_projects/gradio_chat/app.py        # starts its own `modelriver dev` if needed
    make demo                                      # beside the other demos, on one gateway

Environment (all optional):

- ``MODELRIVER_API_BASE`` / ``MODELRIVER_API_KEY``: the gateway to use. Without an API base the
  demo starts an embedded gateway (``modelriver dev``) on a free port with a fresh key.
- ``MODELRIVER_UPSTREAM=realm``: talk to a Realm server instead (``REALM_URL``,
  ``REALM_API_KEY``), through ``modelriver.upstream.upstream_from_env()``. Without a
  ``REALM_URL`` the embedded gateway is started with its Realm endpoint (``--realm-port``) and the
  demo uses that. Realm has no webhooks, so ``demo-events`` is left out of the workflows then, and
  the scripted pace in the metadata box does not apply (Realm calls carry no metadata).
- ``MODELRIVER_WEBHOOK_SECRET``: the webhook secret shared with the gateway (``whsec_dev``).
- ``GRADIO_SERVER_PORT`` (7860) / ``GRADIO_SERVER_NAME`` (127.0.0.1): where Gradio listens.
- ``MODELRIVER_DEMO_METADATA``: JSON sent as each request's ``metadata``, e.g.
  ``{"scripted": {"tokens_per_second": 20}}`` to slow the scripted answers down. The
  "Request metadata (JSON)" box under the chat starts with it and can change it per message.
- ``MODELRIVER_DEMO_WEBHOOK_URL``: where the gateway can reach this app's webhook route, when
  not ``http://127.0.0.1:<port>/modelriver/webhook``.
- ``MODELRIVER_DEMO_MAX_MESSAGE_BYTES``: the largest message accepted (32768).

Event-driven workflow (``demo-events``): the gateway posts a signed webhook to the route that
``WebhookReceiver`` adds to Gradio's own FastAPI app; it verifies the signature, answers 200,
adds a ticket id and a timestamp to the AI's data, and calls back; the chat then shows the
backend step done and the enriched data.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from gradio_modelriver import DEFAULT_WORKFLOWS, WebhookReceiver, chat_interface
from modelriver import AsyncModelRiver
from modelriver.upstream import ENV_REALM_API_KEY, ENV_REALM_URL, ENV_UPSTREAM, upstream_from_env
from modelriver.webhooks import WebhookEvent

logger = logging.getLogger("gradio_modelriver.demo")

DESCRIPTION = (
    "Streams answers from a ModelRiver workflow over its WebSocket: the workflow steps appear "
    "as thoughts, `demo-structured` shows its `reply` in the chat and the rest beside it, "
    "`demo-events` waits for this app's webhook to enrich the answer. Stop cancels the request "
    "at the gateway."
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_embedded_gateway(realm_port: int | None = None, realm_key: str | None = None,
                           ) -> tuple[str, str]:
    """Start `modelriver dev` on a port the system picks, with a fresh key; stopped when the demo exits.

    With ``realm_port``, its Realm endpoint listens there too (auth with ``realm_key``).
    """
    api_key = f"mr_dev_{secrets.token_hex(12)}"
    realm = ["--realm-port", str(realm_port)] if realm_port else []
    if realm and realm_key:
        realm += ["--realm-api-key", realm_key]
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelriver", "dev", "--port", "0", "--api-key", api_key,
         *realm],
        stdout=subprocess.PIPE, text=True,
    )
    atexit.register(proc.terminate)
    # SIGTERM skips atexit unless it is turned into a normal exit: stop the gateway with us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        if "modelriver dev ready on" in line:
            url = line.split("ready on", 1)[1].strip()
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the embedded gateway did not start")
    else:
        raise RuntimeError(f"the embedded gateway exited ({proc.wait()})")
    # Keep draining its output, or it would block once the pipe is full.
    threading.Thread(target=lambda: sys.stdout.writelines(proc.stdout or ()), daemon=True).start()
    return url, api_key


def enrich(event: WebhookEvent) -> dict[str, Any]:
    """What "your backend" adds to the AI's answer before the user sees it."""
    data = event.data if isinstance(event.data, dict) else {"ai_data": event.data}
    return {
        **data,
        "ticket_id": f"T-{uuid.uuid4().hex[:8].upper()}",
        "verified": True,
        "enriched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    realm = (os.environ.get(ENV_UPSTREAM) or "").strip().lower() == "realm"
    if realm and not os.environ.get(ENV_REALM_URL):
        realm_port, realm_key = free_port(), f"sk_dev_{secrets.token_hex(12)}"
        api_base, _ = start_embedded_gateway(realm_port, realm_key)
        os.environ[ENV_REALM_URL] = f"ws://127.0.0.1:{realm_port}"
        os.environ[ENV_REALM_API_KEY] = realm_key
        print(f"Started an embedded gateway on {api_base}, Realm endpoint "
              f"{os.environ[ENV_REALM_URL]}", flush=True)
    elif not realm and not os.environ.get("MODELRIVER_API_BASE"):
        api_base, api_key = start_embedded_gateway()
        os.environ["MODELRIVER_API_BASE"], os.environ["MODELRIVER_API_KEY"] = api_base, api_key
        print(f"Started an embedded gateway on {api_base}", flush=True)
    port = int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    host = os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    metadata = json.loads(os.environ.get("MODELRIVER_DEMO_METADATA") or "null")
    max_bytes = int(os.environ.get("MODELRIVER_DEMO_MAX_MESSAGE_BYTES") or 32 * 1024)

    # One upstream per process, shared by every user (and the webhook route, on ModelRiver).
    client = upstream_from_env()
    routes = []
    webhook_url = None
    workflows: tuple[str, ...] = DEFAULT_WORKFLOWS
    if isinstance(client, AsyncModelRiver):
        receiver = WebhookReceiver(client=client, enrich=enrich)
        routes.append(receiver.route())
        webhook_url = (os.environ.get("MODELRIVER_DEMO_WEBHOOK_URL")
                       or receiver.url_for(f"http://127.0.0.1:{port}"))
    else:  # no webhooks or callbacks: the event-driven workflow cannot run
        workflows = tuple(w for w in DEFAULT_WORKFLOWS if w != "demo-events")
    logger.info("upstream: %s", client.api_base)
    demo = chat_interface(
        client=client,
        workflows=workflows,
        metadata=metadata,
        webhook_url=webhook_url,
        additional_outputs=True,
        metadata_input=True,
        max_message_bytes=max_bytes,
        title="ModelRiver + Gradio",
        description=DESCRIPTION,
    )
    demo.queue(default_concurrency_limit=64)
    demo.launch(server_name=host, server_port=port, show_error=True,
                app_kwargs={"routes": routes})


if __name__ == "__main__":
    main()
