"""The gateway's Realm endpoint: Realm's WebSocket protocol (PROTOCOL §7) over the gateway's workflows.

``modelriver dev --realm-port 8080`` starts it with the gateway (in its lifespan) and stops it
with the gateway. A ``generate`` call runs as an ordinary gateway request (same workflows,
providers, failover, upstream timeout, request log): ``params.model`` names the workflow,
``params.prompt`` is the one user message, and each ``tokens`` event of the request becomes a
Realm token record. A model name that is no workflow (Realm's SDK examples send
``tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf``) is never refused: like Realm's server, which falls back
to its default model, the endpoint runs its default workflow (``demo-chat``, else the first
runnable one); ``metadata`` says which (``default_model``), and the ``complete`` answer's
``model`` names the workflow that ran. ``pipeline``, ``health`` and ``metadata`` are
``RealmServer``'s (``metadata`` also lists the workflows as ``models``). The per-tenant rate limit
is the gateway's ``rate_limit`` (calls a minute).

Authentication is on by default, with the gateway's API key (``RealmEndpointConfig.api_key``
sets another); an open endpoint needs ``auth=False`` (``--realm-no-auth``) and is logged as a
warning: anyone who reaches the port runs the gateway's workflows.

What Realm cannot express is refused or mapped:

* event-driven workflows named by ``model`` (they need a webhook and a callback) →
  ``DISPATCH_ERROR`` *(ours: the name is known, so it is not replaced by the default)*;
* a failover that continues the answer (the default: ``reset: false``) is invisible: the tokens
  go on; one that restarts it (a workflow's ``failover = "restart"``) after tokens were already
  streamed (a Realm stream cannot take tokens back) → ``INTERNAL_ERROR`` naming the failed
  provider; before the first token, or in a non-streaming call, it is invisible too;
* the request failing (``error``) → ``INTERNAL_ERROR`` with the gateway's message and details;
* ``max_tokens`` stops the answer (and the request) after that many tokens.

Cancelling the Realm call (or closing its socket) cancels the gateway request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from modelriver.devserver.config import GatewayConfig, ScriptedOverrides, WorkflowConfig
from modelriver.devserver.requests import RequestRun
from modelriver.phoenix import Entry, payload_of
from modelriver.realm.exceptions import RealmCancelledError, RealmDispatchError, RealmInternalError
from modelriver.realm.server import GenerateRequest, RealmServer

__all__ = ["DEFAULT_MODEL", "GatewayRealmServer", "start_realm_endpoint"]

logger = logging.getLogger("modelriver.devserver")


class Gateway(Protocol):
    """What the endpoint needs of the gateway (``modelriver.devserver.gateway.Gateway``)."""

    @property
    def config(self) -> GatewayConfig: ...

    def start_request(self, workflow: WorkflowConfig, messages: Sequence[Mapping[str, Any]], *,
                      events: Sequence[str], webhook_url: str | None, overrides: ScriptedOverrides,
                      public_base: str) -> RequestRun: ...

DEFAULT_MODEL = "demo-chat"
"""The workflow a ``generate`` call runs when its model is no workflow (when it can run)."""


class _Feed:
    """A request subscriber that queues the request's events for one Realm call."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Entry] = asyncio.Queue()

    def push(self, entry: Entry) -> None:
        self.queue.put_nowait(entry)

    def drop(self, reason: str) -> None:
        """``drop_socket_after`` closes channel sockets; a Realm call has none to drop."""


class GatewayRealmServer(RealmServer):
    """A ``RealmServer`` whose model is the gateway's workflows.

    Args:
        gateway: the running gateway (its workflows, providers, request store).
        api_key: the key clients must send; None for no auth.
    """

    def __init__(self, gateway: Gateway, *, api_key: str | None = None) -> None:
        super().__init__(
            self._generate,
            api_keys=None if api_key is None else {api_key},
            rate_limit_per_minute=gateway.config.server.rate_limit,
            max_frame_size=gateway.config.server.max_frame,
        )
        self.gateway = gateway

    @property
    def models(self) -> list[str]:
        """The workflows a ``generate`` call may name (the event-driven ones excluded)."""
        return sorted(w.name for w in self.gateway.config.workflows.values() if not w.events)

    @property
    def default_model(self) -> str | None:
        """The workflow an unknown (or absent) model runs: ``demo-chat``, else the first one."""
        models = self.models
        if DEFAULT_MODEL in models:
            return DEFAULT_MODEL
        return models[0] if models else None

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "models": self.models, "default_model": self.default_model,
                "unknown_model": "runs default_model (never refused, as Realm's server)"}

    def resolve_model(self, model: str | None) -> str | None:
        workflow = self.gateway.config.workflows.get(model or "")
        return workflow.name if workflow is not None else self.default_model

    def _workflow(self, name: str | None) -> WorkflowConfig:
        workflow = self.gateway.config.workflows.get(name or "")
        if workflow is None:
            default = self.default_model
            if default is None:
                raise RealmDispatchError("the gateway has no workflow Realm can run",
                                         details={"param": "model"})
            if name:
                logger.info("realm: model %r is no workflow: running %s", name[:80], default)
            workflow = self.gateway.config.workflows[default]
        if workflow.events:
            raise RealmDispatchError(
                f"workflow {workflow.name!r} is event-driven (webhook and callback): Realm cannot "
                "run it", details={"param": "model", "models": self.models},
            )
        return workflow

    async def _generate(self, request: GenerateRequest) -> AsyncIterator[str]:
        """Run the workflow as a gateway request and yield its tokens (see the module docstring)."""
        workflow = self._workflow(request.model)
        gateway = self.gateway
        run = gateway.start_request(
            workflow, [{"role": "user", "content": request.prompt}], events=(), webhook_url=None,
            overrides=ScriptedOverrides(),
            public_base=(gateway.config.public_url or "http://127.0.0.1").rstrip("/"),
        )
        logger.info("realm: request %s (workflow %s, tenant %s)", run.channel_id, workflow.name,
                    request.tenant_id)
        feed = _Feed()
        for entry in run.subscribe(feed, None):
            feed.push(entry)
        limit = request.max_tokens
        parts: list[str] = []  # the current provider's tokens
        streamed = 0  # tokens already sent to the client
        try:
            while True:
                entry = await feed.queue.get()
                event, payload = entry.event, payload_of(entry)
                if event == "tokens":
                    text = payload.get("data")
                    if not isinstance(text, str):
                        continue
                    parts.append(text)
                    if request.stream:
                        streamed += 1
                        yield text
                    if limit is not None and len(parts) >= limit:
                        break
                elif event == "status" and payload.get("status") == "failover":
                    if payload.get("reset") is False:
                        continue  # the next provider continues the answer
                    if streamed:
                        raise RealmInternalError(
                            f"provider {payload.get('from')!r} failed after {streamed} streamed "
                            f"tokens ({payload.get('reason')}); the failover to "
                            f"{payload.get('to')!r} restarts the answer, which a Realm stream "
                            "cannot express",
                            details={"workflow": workflow.name, "failover": {
                                k: payload.get(k) for k in ("from", "to", "reason")}},
                        )
                    parts.clear()
                elif event == "error":
                    details = payload.get("details")
                    raise RealmInternalError(
                        str(payload.get("message") or "the request failed"),
                        details={"workflow": workflow.name,
                                 **(details if isinstance(details, dict) else {})},
                    )
                elif event == "response":
                    status = payload.get("status")
                    if status == "cancelled":
                        raise RealmCancelledError("the request was cancelled at the gateway")
                    if status in ("success", "completed"):
                        break
            if not request.stream:
                for text in parts:
                    yield text
        finally:
            run.unsubscribe(feed)
            if not run.ended:
                run.cancel()


async def start_realm_endpoint(gateway: Gateway) -> GatewayRealmServer:
    """Start the endpoint ``gateway.config.realm`` describes and log its URL.

    The key clients must send is the endpoint's own ``api_key``, else the gateway's; with
    ``auth`` off there is none, and a warning says so.

    Raises:
        OSError: the port could not be bound.
    """
    settings = gateway.config.realm
    assert settings is not None
    key = (settings.api_key or gateway.config.api_key) if settings.auth else None
    server = GatewayRealmServer(gateway, api_key=key)
    await server.start(settings.host, settings.port)
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    rate = gateway.config.server.rate_limit
    logger.info("Realm:       ws://%s:%d (auth %s, rate limit %s, default model %s)", host,
                server.port, "on" if server.auth_enabled else "off",
                f"{rate} calls/minute per tenant" if rate else "off", server.default_model)
    if not server.auth_enabled:
        logger.warning("the Realm endpoint ws://%s:%d has authentication OFF: anyone who can "
                       "reach it runs the gateway's workflows", host, server.port)
    return server
