"""The HTTP API (docs/gateway.md): async, reconnect, callback, cancel, request log, health.

Every error is JSON ``{"error": <code>, "message": <what to fix>}``. Bodies are read with a size
limit (413) and parsed strictly (400 naming the problem) before anything else happens; a string
UTF-8 cannot encode (a lone surrogate such as ``"\\ud800"``) anywhere in a body is a 400. Answers
that show stored text (the request log) replace such characters, so they never fail.

The HTML log at ``/`` needs the API key like ``/v1/requests``: an ``Authorization: Bearer`` header,
or the key posted once by the page's form, which sets an HttpOnly cookie holding an HMAC of the key
(never the key itself, never in a URL).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from modelriver._jsjson import strict_loads
from modelriver._version import __version__
from modelriver.devserver.config import ConfigError, ScriptedOverrides, parse_overrides
from modelriver.devserver.gateway import Gateway
from modelriver.devserver.logview import render_key_form, render_log
from modelriver.devserver.requests import RequestRun
from modelriver.text import scrub, unencodable_path

__all__ = ["ApiError", "AsyncBody", "HttpApi", "SafeJSONResponse", "parse_async_body", "public_urls"]

LOG_COOKIE = "modelriver_dev_log"
"""The HTML log's cookie: an HMAC of the API key, set by the key form (HttpOnly, SameSite=Strict)."""


class SafeJSONResponse(JSONResponse):
    """A JSON answer that any stored string can be written into (lone surrogates become U+FFFD)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return scrub(text).encode("utf-8")


class ApiError(Exception):
    """An error answer: HTTP ``status`` with JSON ``{error: code, message}`` (``str(error)``)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers

    def response(self) -> JSONResponse:
        return SafeJSONResponse({"error": self.code, "message": str(self)}, self.status,
                                headers=self.headers)


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


@dataclass(frozen=True, slots=True)
class AsyncBody:
    """A validated ``POST /v1/ai/async`` body."""

    workflow: str
    messages: list[dict[str, Any]]
    webhook_url: str | None
    events: list[str] | None
    metadata: dict[str, Any]
    overrides: ScriptedOverrides


def parse_async_body(body: Any) -> AsyncBody:
    """Validate an async request body.

    Raises:
        ApiError: 400 with a message naming the first problem.
    """
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object")
    workflow = body.get("workflow")
    if not isinstance(workflow, str) or not workflow:
        raise _bad("'workflow' is required (a non-empty string)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' is required (a non-empty list of {role, content})")
    clean: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}] must be an object {{role, content}}")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise _bad(f"messages[{i}].role must be a non-empty string")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            texts = [p.get("text") for p in content if isinstance(p, dict)]
            if not all(isinstance(t, str) for t in texts):
                raise _bad(f"messages[{i}].content parts must be {{type: 'text', text}}")
            content = "".join(t for t in texts if isinstance(t, str))
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise _bad(f"messages[{i}].content must be a string")
        clean.append({**message, "role": role, "content": content})
    delivery = body.get("delivery_method", "websocket")
    if delivery is not None and delivery != "websocket":
        raise _bad(f"delivery_method {delivery!r} is not supported (only 'websocket')")
    webhook_url = body.get("webhook_url")
    if webhook_url == "":
        webhook_url = None
    if webhook_url is not None and not _is_http_url(webhook_url):
        raise _bad("'webhook_url' must be an http(s) URL")
    events = body.get("events")
    if events is not None and (
        not isinstance(events, list) or not all(isinstance(e, str) and e for e in events)
    ):
        raise _bad("'events' must be a list of event names")
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _bad("'metadata' must be an object")
    try:
        overrides = parse_overrides(metadata.get("scripted"))
    except ConfigError as exc:
        raise _bad(str(exc)) from exc
    return AsyncBody(workflow, clean, webhook_url, events, metadata, overrides)


def public_urls(request: Request, public_url: str | None) -> tuple[str, str]:
    """``(http base, websocket_url)`` for answers to ``request``.

    From ``public_url`` when set, else from the request: ``https``/``wss`` when it came over
    https or with ``X-Forwarded-Proto: https``; host from ``X-Forwarded-Host`` or ``Host``.
    """
    if public_url:
        base = public_url.rstrip("/")
        if base.endswith("/socket"):
            base = base[: -len("/socket")]
        scheme, _, rest = base.partition("://")
        secure = scheme in ("https", "wss")
    else:
        headers = request.headers
        proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        secure = request.url.scheme in ("https", "wss") or proto == "https"
        host = headers.get("x-forwarded-host", "").split(",")[0].strip() or headers.get("host") \
            or request.url.netloc
        rest = host
    http_base = f"{'https' if secure else 'http'}://{rest}"
    return http_base, f"{'wss' if secure else 'ws'}://{rest}/socket"


class HttpApi:
    """The HTTP routes of one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._key = gateway.config.api_key.encode()
        self._log_cookie = hmac.new(self._key, b"modelriver dev: HTML request log",
                                    hashlib.sha256).hexdigest()

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        for prefix in ("", "/api"):
            routes += [
                Route(f"{prefix}/v1/ai/async", self.create, methods=["POST"]),
                Route(f"{prefix}/v1/ai/reconnect", self.reconnect, methods=["POST"]),
                Route(f"{prefix}/v1/ai/cancel", self.cancel, methods=["POST"]),
                Route(f"{prefix}/v1/callback/{{channel_id}}", self.callback, methods=["POST"]),
                Route(f"{prefix}/v1/requests", self.list_requests, methods=["GET"]),
                Route(f"{prefix}/v1/requests/{{channel_id}}", self.get_request, methods=["GET"]),
            ]
        routes += [
            Route("/health", self.health, methods=["GET"]),
            Route("/", self.index, methods=["GET"]),
            Route("/", self.log_in, methods=["POST"]),
        ]
        return routes

    # -- helpers -----------------------------------------------------------------------------------

    def _bearer(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def _key_ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self._key)

    def _authorize(self, request: Request) -> str:
        key = self._bearer(request)
        if not self._key_ok(key):
            raise ApiError(401, "unauthorized",
                           "missing or invalid API key (send Authorization: Bearer <key>)")
        assert key is not None
        return key

    async def _body(self, request: Request) -> bytes:
        limit = self.gateway.config.server.max_body
        declared = request.headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and (
                len(declared) > 18 or int(declared) > limit):
            raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _json(self, request: Request) -> Any:
        raw = await self._body(request)
        if not raw.strip():
            raise _bad("body is empty; expected a JSON object")
        try:
            value = strict_loads(raw)
        except ValueError as exc:
            raise _bad(f"body is not valid JSON: {exc}") from exc
        where = unencodable_path(value)
        if where is not None:
            raise _bad(f"{where} is not valid Unicode text (it holds a lone surrogate such as "
                       "\\ud800, which UTF-8 cannot encode)")
        return value

    async def _channel_body(self, request: Request) -> RequestRun:
        body = await self._json(request)
        channel_id = body.get("channel_id") if isinstance(body, dict) else None
        if not isinstance(channel_id, str) or not channel_id:
            raise _bad("'channel_id' is required (a string)")
        return self._run(channel_id)

    def _run(self, channel_id: str) -> RequestRun:
        run = self.gateway.store.get(channel_id)
        if run is None:
            raise ApiError(404, "not_found", f"no request with channel_id {channel_id!r}")
        return run

    def _socket_answer(self, request: Request, run: RequestRun) -> dict[str, Any]:
        gateway = self.gateway
        _, websocket_url = public_urls(request, gateway.config.public_url)
        return {
            "channel_id": run.channel_id,
            "project_id": gateway.project_id,
            "ws_token": gateway.tokens.issue(run.channel_id, run.topic),
            "websocket_url": websocket_url,
            "websocket_channel": run.topic,
        }

    # -- routes ------------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        key = self._authorize(request)
        wait = self.gateway.limiter.acquire(key, time.monotonic())
        if wait is not None:
            raise ApiError(429, "rate_limited",
                           f"rate limit of {self.gateway.limiter.per_minute} requests/minute exceeded",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        body = parse_async_body(await self._json(request))
        config = self.gateway.config
        workflow = config.workflows.get(body.workflow)
        if workflow is None:
            raise ApiError(404, "workflow_not_found",
                           f"unknown workflow {body.workflow!r}; available: {', '.join(config.workflows)}")
        events = list(workflow.events) if body.events is None else body.events
        webhook_url = body.webhook_url or workflow.webhook_url
        if events and not webhook_url:
            raise _bad(f"workflow {workflow.name!r} is event-driven ({', '.join(events)}): "
                       "send a 'webhook_url' for its webhook")
        http_base, _ = public_urls(request, config.public_url)
        run = self.gateway.start_request(workflow, body.messages, events=events,
                                         webhook_url=webhook_url, overrides=body.overrides,
                                         public_base=http_base)
        answer = self._socket_answer(request, run)
        instructions = {"websocket": f"Connect to {answer['websocket_url']} with token=<ws_token> "
                                     f"and join {run.topic}"}
        if webhook_url:
            instructions["webhook"] = (
                f"A signed webhook goes to {webhook_url}; POST the enriched data to its callback_url"
                if events else f"A signed notification webhook goes to {webhook_url}")
        return SafeJSONResponse({"message": "success", "status": "pending", **answer,
                             "instructions": instructions, "test_mode": True})

    async def reconnect(self, request: Request) -> Response:
        self._authorize(request)
        run = await self._channel_body(request)
        return SafeJSONResponse(self._socket_answer(request, run))

    async def cancel(self, request: Request) -> Response:
        self._authorize(request)
        run = await self._channel_body(request)
        if not run.cancel():
            raise ApiError(409, "already_finished", f"request already ended ({run.status})")
        return SafeJSONResponse({"status": "cancelled", "channel_id": run.channel_id})

    async def callback(self, request: Request) -> Response:
        channel_id = request.path_params["channel_id"]
        run = self.gateway.store.get(channel_id)
        token = request.query_params.get("token")
        token_ok = run is not None and token is not None and hmac.compare_digest(
            token.encode(), run.callback_token.encode())
        if not token_ok and not self._key_ok(self._bearer(request)):
            raise ApiError(401, "unauthorized",
                           "send Authorization: Bearer <API key> or use the callback_url as given")
        if run is None:
            raise ApiError(404, "not_found", f"no request with channel_id {channel_id!r}")
        body = await self._json(request)
        if not isinstance(body, dict):
            raise _bad("callback body must be a JSON object: {data, task_id} or the data itself")
        data: Any = body
        task_id: str | None = None
        if isinstance(body.get("data"), dict):
            data = body["data"]
            raw_task = body.get("task_id")
            if raw_task is not None and (isinstance(raw_task, bool) or not isinstance(raw_task, str | int)):
                raise _bad("'task_id' must be a string")
            task_id = None if raw_task is None else str(raw_task)
        result = run.receive_callback(data, task_id)
        if result == "conflict":
            raise ApiError(409, "not_waiting",
                           f"request is not waiting for a callback (status: {run.status})")
        return SafeJSONResponse({"status": "ok", "channel_id": run.channel_id,
                             "duplicate": result == "repeat"})

    async def list_requests(self, request: Request) -> Response:
        self._authorize(request)
        return SafeJSONResponse({"requests": [run.to_log() for run in self.gateway.store.newest_first()]})

    async def get_request(self, request: Request) -> Response:
        self._authorize(request)
        return SafeJSONResponse(self._run(request.path_params["channel_id"]).to_log())

    async def health(self, request: Request) -> Response:
        return SafeJSONResponse({"status": "ok", "version": __version__})

    async def index(self, request: Request) -> Response:
        """The HTML log, for the key (Bearer header or the form's cookie); else the key form (401)."""
        cookie = request.cookies.get(LOG_COOKIE)
        if not (self._key_ok(self._bearer(request)) or (
                cookie is not None and hmac.compare_digest(cookie.encode(), self._log_cookie.encode()))):
            return HTMLResponse(render_key_form(), 401)
        gateway = self.gateway
        page = render_log(gateway.store.newest_first(), gateway.config.workflows)
        return HTMLResponse(scrub(page), headers={"Cache-Control": "no-store"})

    async def log_in(self, request: Request) -> Response:
        """The key form's POST: a right key sets the log cookie and goes back to ``/``."""
        try:
            fields = parse_qs((await self._body(request)).decode("utf-8"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            fields = {}
        key = (fields.get("key") or [""])[0].strip()
        if not self._key_ok(key):
            return HTMLResponse(render_key_form(wrong=bool(key)), 401)
        response = RedirectResponse("/", 303)
        secure = request.url.scheme == "https" or \
            request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() == "https"
        response.set_cookie(LOG_COOKIE, self._log_cookie, httponly=True, samesite="strict",
                            secure=secure, path="/")
        return response


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return SafeJSONResponse({"error": codes.get(exc.status_code, "http_error"), "message": exc.detail},
                        exc.status_code, headers=exc.headers)


async def server_error_handler(request: Request, exc: Exception) -> Response:
    return SafeJSONResponse({"error": "internal_error", "message": "internal gateway error"}, 500)
