"""A real, scriptable HTTP server on a loopback port, for ``test_api.py``.

Each test queues one handler per expected request (``server.script(...)``); every request is
recorded as an ``Arrival`` with its server-side arrival time. A handler may block on
``server.release`` (``hang``), which teardown sets, so no thread outlives its test for long.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "Arrival",
    "Reply",
    "ScriptedServer",
    "async_answer",
    "json_reply",
    "raw_reply",
]


@dataclass(frozen=True)
class Arrival:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request had fully arrived

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Arrival], Reply]


def json_reply(status: int, payload: Any, **headers: str) -> Handler:
    """A handler answering ``payload`` as JSON (header names use ``_`` for ``-``)."""
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    hdrs.setdefault("Content-Type", "application/json")
    return lambda _: Reply(status, json.dumps(payload).encode(), hdrs)


def raw_reply(status: int, body: bytes, content_type: str = "application/json") -> Handler:
    """A handler answering ``body`` as is."""
    return lambda _: Reply(status, body, {"Content-Type": content_type})


def async_answer(channel_id: str = "ch-1", **extra: Any) -> dict[str, Any]:
    """A ``POST /v1/ai/async`` success answer (PROTOCOL §1)."""
    return {
        "message": "success",
        "status": "pending",
        "channel_id": channel_id,
        "project_id": "proj-1",
        "ws_token": "ws-token-1",
        "websocket_url": "wss://example.test/socket",
        "websocket_channel": f"ai_response:proj-1:{channel_id}",
        **extra,
    }


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        arrival = Arrival(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        reply = self.server.owner.dispatch(arrival)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has gone away; writing to it fails. Not a test failure.
        pass


class ScriptedServer:
    """A threaded HTTP server answering from a per-test script."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.release = threading.Event()
        self._script: deque[Handler] = deque()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *handlers: Handler) -> None:
        """Queue handlers, one per coming request, in order."""
        with self._lock:
            self._script.extend(handlers)

    def hang(self) -> Handler:
        """A handler that blocks until ``release`` is set, then answers 200 ``{}``."""

        def handler(_: Arrival) -> Reply:
            self.release.wait(timeout=10)
            return Reply(200, b"{}", {"Content-Type": "application/json"})

        return handler

    def dispatch(self, arrival: Arrival) -> Reply:
        with self._lock:
            self.arrivals.append(arrival)
            handler = self._script.popleft() if self._script else None
        if handler is None:
            return Reply(599, b'{"message": "unscripted request"}')
        return handler(arrival)

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
