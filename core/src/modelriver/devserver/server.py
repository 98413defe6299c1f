"""Serving the gateway with uvicorn: ``serve()`` (async) and ``run()`` (blocking).

uvicorn runs with the sans-I/O websockets protocol when available, per-message deflate off
(it costs a quarter of the throughput) and lifespan on. SIGINT/SIGTERM stop it cleanly and
``run()`` returns normally (uvicorn would otherwise re-raise the signal after shutdown).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Generator
from socket import socket
from typing import Any

import uvicorn

from modelriver.devserver.app import create_app
from modelriver.devserver.config import GatewayConfig

__all__ = ["run", "serve", "uvicorn_config"]

logger = logging.getLogger("modelriver.devserver")

ReadyCallback = Callable[[str], Any]


def _ws_protocol() -> str:
    from uvicorn.config import WS_PROTOCOLS

    return "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"


def uvicorn_config(config: GatewayConfig, *, host: str = "127.0.0.1", port: int = 8787,
                   **options: Any) -> uvicorn.Config:
    """The uvicorn configuration the gateway runs with (``options`` override it)."""
    settings: dict[str, Any] = {
        "host": host, "port": port, "lifespan": "on", "ws": _ws_protocol(),
        "ws_per_message_deflate": False,
        "ws_max_size": max(4 * config.server.max_frame, 1 << 20),
        "log_level": "warning", "access_log": False, "timeout_graceful_shutdown": 5,
        "server_header": False,
        # Idle keep-alive longer than clients' own (httpx: 5 s), so the server never closes a pooled
        # connection just as a client reuses it (a create_request on it would fail, unretryable).
        "timeout_keep_alive": 75,
    }
    settings.update(options)
    return uvicorn.Config(create_app(config), **settings)


class _Server(uvicorn.Server):
    """uvicorn's server, announcing readiness and leaving signals handled (no re-raise)."""

    def __init__(self, config: uvicorn.Config, on_ready: ReadyCallback | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            url = self.bound_url
            logger.info("modelriver dev listening on %s", url)
            if self._on_ready is not None:
                self._on_ready(url)

    @property
    def bound_url(self) -> str:
        port = self.config.port
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                port = sock.getsockname()[1]
                break
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


async def serve(config: GatewayConfig, *, host: str = "127.0.0.1", port: int = 8787,
                on_ready: ReadyCallback | None = None, **options: Any) -> None:
    """Serve the gateway until SIGINT/SIGTERM (or the task is cancelled).

    Args:
        config: the gateway's configuration.
        host: the interface to bind.
        port: the port (0 picks a free one; ``on_ready`` gets the real URL).
        on_ready: called with ``http://host:port`` once connections are accepted.
        options: extra ``uvicorn.Config`` settings.

    Raises:
        SystemExit: uvicorn could not start (e.g. the port is taken).
    """
    server = _Server(uvicorn_config(config, host=host, port=port, **options), on_ready)
    await server.serve()


def run(config: GatewayConfig, *, host: str = "127.0.0.1", port: int = 8787,
        on_ready: ReadyCallback | None = None, **options: Any) -> None:
    """``serve()`` on uvicorn's event loop (uvloop when installed); blocks until stopped."""
    server = _Server(uvicorn_config(config, host=host, port=port, **options), on_ready)
    server.run()
