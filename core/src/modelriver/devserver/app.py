"""``create_app(config)``: the gateway as a Starlette ASGI app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import WebSocketRoute

from modelriver.devserver.config import GatewayConfig
from modelriver.devserver.gateway import Gateway
from modelriver.devserver.http import (
    ApiError,
    HttpApi,
    api_error_handler,
    http_error_handler,
    server_error_handler,
)
from modelriver.devserver.socket import socket_endpoint

__all__ = ["create_app"]


def create_app(config: GatewayConfig) -> Starlette:
    """The gateway app for ``config``; its ``Gateway`` is ``app.state.gateway``.

    Args:
        config: the gateway's configuration.

    Returns:
        A Starlette app; run it with lifespan on (background housekeeping starts and stops
        with it).
    """
    gateway = Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.startup()
        try:
            yield
        finally:
            await gateway.shutdown()

    app = Starlette(
        routes=[*HttpApi(gateway).routes(), WebSocketRoute("/socket/websocket", socket_endpoint)],
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: http_error_handler,
            Exception: server_error_handler,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
