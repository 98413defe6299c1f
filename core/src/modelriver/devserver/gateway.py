"""The gateway's state: configuration, tokens, live sockets, requests, rate limit, HTTP client.

One ``Gateway`` per app (no module-level state): ``create_app`` builds it, routes reach it
through ``app.state.gateway``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelriver.devserver.config import GatewayConfig, ScriptedOverrides, WorkflowConfig
from modelriver.devserver.providers import make_provider
from modelriver.devserver.requests import RequestRun, RequestStore, RunSettings
from modelriver.devserver.tokens import LiveSockets, TokenIssuer
from modelriver.devserver.webhook_delivery import WebhookSender
from modelriver.ratelimit import RateLimiter

if TYPE_CHECKING:
    import httpx
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

    from modelriver.devserver.realm_endpoint import GatewayRealmServer

__all__ = ["Gateway"]

logger = logging.getLogger("modelriver.devserver")


class Gateway:
    """Everything one running gateway holds.

    Args:
        config: the gateway's configuration.
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.project_id = str(uuid.uuid4())
        self.tokens = TokenIssuer(self.project_id, ttl=config.server.token_ttl)
        self.live = LiveSockets()
        self.store = RequestStore(retention=config.server.retention,
                                  max_finished=config.server.max_requests)
        self.limiter = RateLimiter(config.server.rate_limit)
        self._http: httpx.AsyncClient | None = None
        self._validators: dict[str, Draft202012Validator] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.realm: GatewayRealmServer | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client (webhooks, OpenAI-compatible providers)."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    def topic(self, channel_id: str) -> str:
        return f"ai_response:{self.project_id}:{channel_id}"

    def start_request(
        self,
        workflow: WorkflowConfig,
        messages: Sequence[Mapping[str, Any]],
        *,
        events: Sequence[str],
        webhook_url: str | None,
        overrides: ScriptedOverrides,
        public_base: str,
    ) -> RequestRun:
        """Create, register and start a request; call from the event loop."""
        if len(self.store) > self.store.max_finished:  # else the periodic sweep is enough: O(1) here
            self.store.sweep()
        server = self.config.server
        configs = overrides.apply([self.config.providers[name] for name in workflow.providers])
        drop_after = overrides.drop_socket_after
        if drop_after is None:
            drop_after = next((getattr(c, "drop_socket_after", 0) for c in configs
                               if getattr(c, "drop_socket_after", 0)), 0)
        channel_id = str(uuid.uuid4())
        settings = RunSettings(
            server=server,
            webhooks=WebhookSender(self.http, self.config.webhook_secret,
                                   retries=server.webhook_retries),
            public_base=public_base,
            overrides=overrides,
            validator=self._validator(workflow),
            drop_socket_after=drop_after,
        )
        run = RequestRun(
            channel_id=channel_id, topic=self.topic(channel_id), workflow=workflow,
            providers=[make_provider(c, self.http) for c in configs], messages=messages,
            events=events, webhook_url=webhook_url, settings=settings,
        )
        self.store.add(run)
        run.start()
        logger.info("request %s: workflow %s started", channel_id, workflow.name)
        return run

    def _validator(self, workflow: WorkflowConfig) -> Draft202012Validator | None:
        if workflow.schema is None:
            return None
        validator = self._validators.get(workflow.name)
        if validator is None:
            from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

            validator = Draft202012Validator(workflow.schema)
            self._validators[workflow.name] = validator
        return validator

    async def startup(self) -> None:
        """Start background housekeeping (expiring finished requests) and the Realm endpoint.

        Raises:
            OSError: the Realm endpoint's port could not be bound.
        """
        if self.config.realm is not None:
            from modelriver.devserver.realm_endpoint import start_realm_endpoint

            self.realm = await start_realm_endpoint(self)
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="modelriver-dev-sweeper")

    async def shutdown(self) -> None:
        """Stop the Realm endpoint, every request and the housekeeping; close the HTTP client."""
        if self.realm is not None:
            await self.realm.close()
            self.realm = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.store.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _sweep_loop(self) -> None:
        interval = max(1.0, min(30.0, self.config.server.retention / 4))
        while True:
            await asyncio.sleep(interval)  # housekeeping period, not waiting for an event
            removed = self.store.sweep(time.time())
            if removed:
                logger.debug("expired %d finished request(s)", removed)
