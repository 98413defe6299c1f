"""The ModelRiver HTTP API client: ``ModelRiver`` (sync) and ``AsyncModelRiver`` (async).

Backend only: the API key never reaches a browser (PROTOCOL §1)::

    from modelriver.api import ModelRiver

    with ModelRiver() as client:  # key from MODELRIVER_API_KEY
        request = client.create_request("my-workflow", "Hello!")
        # hand request.channel_id / request.ws_token / request.websocket_url to the browser

    async with AsyncModelRiver(api_key="mr_...") as client:
        request = await client.create_request("my-workflow", [{"role": "user", "content": "Hi"}])

Layout (as httpx's ``BaseClient`` / ``Client`` / ``AsyncClient``): ``_BaseModelRiver`` holds
every non-I/O rule (request building, retry decisions and delays, answer parsing, error mapping)
as generator *flows* that yield ``_Attempt(request, delay)`` and receive the response, or the
``httpx.RequestError`` raised while sending it, and the one loop that drives them; the twins only
sleep, send and open streams. Each public method is written once, as ``AsyncModelRiver``'s
coroutine; ``ModelRiver``'s I/O blocks instead of suspending, so its methods are one-line
forwards that run the same coroutine to its end at once.

Retry rule (``max_retries`` extra attempts, 2 by default):

- ``create_request`` starts paid work, so it is retried only when the API surely did not start
  it: on 429 and 503, and on errors raised before the request went out
  (``httpx.ConnectError``, ``ConnectTimeout``, ``PoolTimeout``). A read timeout, a dropped
  connection or any other 5xx after sending is *not* retried: the request may be running.
- ``reconnect``, ``cancel``, ``callback`` and ``health`` are safe to repeat: they are retried on
  429, 500, 502, 503, 504 and any transport error (timeouts included).
- The delay is ``Retry-After`` (seconds, fractions allowed, or an HTTP-date) when a 429/503
  carries one, else an exponential backoff with jitter (0.5 s doubling, capped at 8 s). A
  ``Retry-After`` longer than 60 s is not waited for: the error is raised at once.

Errors (``modelriver.exceptions``): 401/403 give ``AuthenticationError``; 429
``RateLimitError`` (``.retry_after``); any other non-2xx ``APIError`` (``.status``, ``.body``);
an answer that is not the expected JSON ``APIError`` with its status; ``httpx.TimeoutException``
``APITimeoutError``; other httpx request errors ``APIConnectionError``, always ``from`` the httpx
error. A missing API key raises ``AuthenticationError`` at call time, before anything is sent
(``health()`` needs no key); text that UTF-8 cannot encode (a lone surrogate) raises
``InvalidInputError`` (a ``ValueError`` too), before anything is sent. The key never appears in
a repr, an error message or a log line; the ``modelriver.api`` logger logs method, path and status at debug level only.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypedDict, TypeVar, Unpack, overload
from urllib.parse import quote

import httpx

from modelriver._closing import AsyncClosing, Closing
from modelriver._version import __version__
from modelriver.backoff import exponential as backoff
from modelriver.exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    InvalidInputError,
    RateLimitError,
)
from modelriver.settings import Settings, mask_secret
from modelriver.stream import Stream, SyncStream, connect, connect_sync
from modelriver.text import unencodable_path
from modelriver.types import AsyncRequest

__all__ = [
    "AsyncModelRiver",
    "Message",
    "Messages",
    "ModelRiver",
    "RequestOptions",
    "backoff",
    "parse_retry_after",
]

_LOG = logging.getLogger("modelriver.api")

_T = TypeVar("_T")
_R = TypeVar("_R")
_P = ParamSpec("_P")
_H = TypeVar("_H", httpx.Client, httpx.AsyncClient)

Message = Mapping[str, Any]
"""One chat message, ``{"role": ..., "content": ...}``."""

Messages = str | Sequence[Message]
"""Messages of a request; a plain string means one user message."""


class RequestOptions(TypedDict, total=False):
    """``create_request``'s options that ``stream`` passes on (any upstream's)."""

    events: Sequence[str] | None
    webhook_url: str | None
    metadata: Mapping[str, Any] | None

_Outcome = httpx.Response | httpx.RequestError
_Auth = Literal["required", "optional", "none"]

# Retry rules: which statuses, and which transport errors, may be retried.
_SAFE_STATUSES = frozenset({429, 500, 502, 503, 504})
_CREATE_STATUSES = frozenset({429, 503})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_AFTER_STATUSES = frozenset({429, 503})

_MAX_TEXT_IN_MESSAGE = 200


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value.

    Args:
        value: the header value: delay seconds (fractions allowed) or an HTTP-date.
        now: the current Unix time, to turn an HTTP-date into a delay.

    Returns:
        The delay (0 for a date in the past), or None when the value is absent or invalid.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One step of a flow: wait ``delay`` seconds, then send ``request``."""

    request: httpx.Request
    delay: float


_Flow = Generator[_Attempt, _Outcome, _T]


@dataclass(frozen=True, slots=True)
class _Call:
    """What a flow needs to know about one API call."""

    method: str
    url: str
    body: dict[str, Any] | None
    auth: _Auth
    # True: the call may have side effects that must not run twice (create_request).
    unsafe: bool


class _BaseModelRiver(Generic[_H]):
    """The twins' shared part: construction, requests, retries, parsing, errors, the send loop.

    Each public method is written once, as ``AsyncModelRiver``'s coroutine: it builds a flow and
    awaits ``_run`` (and ``_open`` for a stream). A twin supplies the I/O: ``_sleep``, ``_send``
    and ``_open``. ``AsyncModelRiver``'s suspend; ``ModelRiver``'s block and never suspend, so
    ``ModelRiver``'s methods run the same coroutines to their end at once (``_blocking``).
    """

    _http_class: type[_H]
    _http_mismatch: str

    def __init__(
        self,
        api_key: str | None = None,
        *,
        api_base: str | None = None,
        timeout: float | httpx.Timeout | None = 30.0,
        max_retries: int = 2,
        http_client: _H | None = None,
    ) -> None:
        if http_client is not None and not isinstance(http_client, self._http_class):
            raise TypeError(self._http_mismatch)
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.settings = Settings.from_env().merged(api_key=api_key, api_base=api_base)
        self.timeout = timeout
        self.max_retries = max_retries
        self._client: _H = http_client if http_client is not None else self._http_class()
        self._owns_http = http_client is None
        # Retry tuning; private so the public signature stays small (tests shorten them).
        self._initial_delay = 0.5
        self._max_delay = 8.0
        self._max_retry_after = 60.0
        self._random: Callable[[], float] = random.random
        self._now: Callable[[], float] = time.time

    # --- I/O: one send loop, the twins' sleep and send ----------------------------------

    async def _run(self, flow: _Flow[_T]) -> _T:
        """Drive ``flow``: sleep each attempt's delay, send it, hand back what came of it."""
        attempt = next(flow)
        while True:
            if attempt.delay > 0:
                await self._sleep(attempt.delay)
            outcome: _Outcome
            try:
                outcome = await self._send(attempt.request)
            except httpx.RequestError as exc:
                outcome = exc
            try:
                attempt = flow.send(outcome)
            except StopIteration as stop:
                result: _T = stop.value
                return result

    async def _sleep(self, seconds: float) -> None:
        raise NotImplementedError

    async def _send(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    @property
    def api_base(self) -> str:
        """The API base URL, without a trailing slash."""
        return self.settings.api_base

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(api_base={self.api_base!r}, "
            f"api_key={mask_secret(self.settings.api_key)!r}, "
            f"timeout={self.timeout!r}, max_retries={self.max_retries!r})"
        )

    # --- flows: one per public method ------------------------------------------------

    def _create_request_flow(
        self,
        workflow: str,
        messages: Messages,
        *,
        events: Sequence[str] | None,
        webhook_url: str | None,
        metadata: Mapping[str, Any] | None,
        delivery_method: str,
    ) -> _Flow[AsyncRequest]:
        if isinstance(messages, str):
            wire_messages = [{"role": "user", "content": messages}]
        else:
            wire_messages = [dict(message) for message in messages]
        body: dict[str, Any] = {
            "workflow": workflow,
            "messages": wire_messages,
            "delivery_method": delivery_method,
        }
        if events is not None:
            body["events"] = list(events)
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        if metadata is not None:
            body["metadata"] = dict(metadata)
        call = _Call("POST", self._url("/v1/ai/async"), body, auth="required", unsafe=True)
        return self._flow(call, self._parse_async_request)

    def _reconnect_flow(self, channel_id: str) -> _Flow[AsyncRequest]:
        body = {"channel_id": channel_id}
        call = _Call("POST", self._url("/v1/ai/reconnect"), body, auth="required", unsafe=False)
        return self._flow(call, self._parse_async_request)

    def _callback_flow(
        self,
        channel_id: str,
        data: Mapping[str, Any],
        *,
        task_id: str | None,
        callback_url: str | None,
    ) -> _Flow[dict[str, Any]]:
        body: dict[str, Any] = {"data": dict(data)}
        if task_id is not None:
            body["task_id"] = task_id
        auth: _Auth
        if callback_url is None:
            url, auth = self._url(f"/v1/callback/{quote(channel_id, safe='')}"), "required"
        elif self._same_origin(callback_url):
            # A gateway-issued URL may carry its own token: the key is optional there.
            url, auth = callback_url, "optional"
        else:
            # Never hand the API key to another origin; rely on the URL's own token.
            url, auth = callback_url, "none"
        call = _Call("POST", url, body, auth=auth, unsafe=False)
        return self._flow(call, self._parse_lenient_object)

    def _cancel_flow(self, channel_id: str) -> _Flow[dict[str, Any]]:
        body = {"channel_id": channel_id}
        call = _Call("POST", self._url("/v1/ai/cancel"), body, auth="required", unsafe=False)
        return self._flow(call, self._parse_object)

    def _health_flow(self) -> _Flow[dict[str, Any]]:
        call = _Call("GET", self._url("/health"), None, auth="none", unsafe=False)
        return self._flow(call, self._parse_object)

    # --- the retry loop, written once -------------------------------------------------

    def _flow(self, call: _Call, parse: Callable[[httpx.Response], _T]) -> _Flow[_T]:
        """Send ``call`` until it succeeds, fails for good, or runs out of retries.

        Yields:
            ``_Attempt``: the caller sleeps ``delay``, sends ``request``, and sends back the
            response or the ``httpx.RequestError`` raised.

        Returns:
            ``parse(response)`` of the first 2xx response.

        Raises:
            APIError, AuthenticationError, RateLimitError, APIConnectionError, APITimeoutError,
            InvalidInputError (from ``_build_request``, before anything is sent).
        """
        request = self._build_request(call)
        path = request.url.path
        delays = backoff(
            initial=self._initial_delay, maximum=self._max_delay, rand=self._random
        )
        delay = 0.0
        attempts = self.max_retries + 1
        for attempt in itertools.count(1):
            outcome = yield _Attempt(request, delay)
            retry_after: float | None = None
            cause: httpx.RequestError | None = None
            error: APIError | APIConnectionError
            if isinstance(outcome, httpx.Response):
                status = outcome.status_code
                _LOG.debug("%s %s -> %d", call.method, path, status)
                if outcome.is_success:
                    return parse(outcome)
                if status in _RETRY_AFTER_STATUSES:
                    retry_after = parse_retry_after(
                        outcome.headers.get("Retry-After"), now=self._now()
                    )
                error = self._status_error(outcome, retry_after=retry_after)
                statuses = _CREATE_STATUSES if call.unsafe else _SAFE_STATUSES
                retryable = status in statuses
            else:
                cause = outcome
                _LOG.debug("%s %s -> %s", call.method, path, type(outcome).__name__)
                error = self._transport_error(call, path, outcome)
                retryable = self._transport_retryable(call, outcome)
            if retry_after is not None and retry_after > self._max_retry_after:
                retryable = False
            if not retryable or attempt >= attempts:
                raise error from cause
            delay = retry_after if retry_after is not None else next(delays)
            _LOG.debug(
                "%s %s: retrying in %.2fs (attempt %d of %d)",
                call.method,
                path,
                delay,
                attempt + 1,
                attempts,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _transport_retryable(call: _Call, exc: httpx.RequestError) -> bool:
        if isinstance(exc, httpx.UnsupportedProtocol) or not isinstance(
            exc, httpx.TransportError
        ):
            return False
        if call.unsafe:
            return isinstance(exc, _NOT_SENT)
        return True

    # --- requests ---------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.api_base}{path}"

    def _same_origin(self, url: str) -> bool:
        try:
            theirs, ours = httpx.URL(url), httpx.URL(self.api_base)
        except httpx.InvalidURL:
            return False
        return (theirs.scheme, theirs.host, theirs.port) == (ours.scheme, ours.host, ours.port)

    def _build_request(self, call: _Call) -> httpx.Request:
        headers = {
            "Accept": "application/json",
            "User-Agent": f"modelriver-python/{__version__}",
        }
        key = self.settings.api_key
        if call.auth == "required" and key is None:
            raise AuthenticationError(
                "no API key: pass api_key= or set MODELRIVER_API_KEY (nothing was sent)",
                status=401, answered=False,
            )
        if call.auth != "none" and key is not None:
            headers["Authorization"] = f"Bearer {key}"
        where = unencodable_path(call.body, "request") if call.body is not None else None
        if where is not None:
            raise InvalidInputError(
                f"{where} is not valid Unicode text: it holds a lone surrogate such as \\ud800, "
                "which UTF-8 cannot encode (nothing was sent)"
            )
        try:
            return self._client.build_request(
                call.method, call.url, json=call.body, headers=headers, timeout=self.timeout
            )
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid URL for {call.method}: {exc}") from exc

    # --- answers ----------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, "***") if key else text

    def _parse_object(self, response: httpx.Response) -> dict[str, Any]:
        """The answer's JSON object; an empty body gives ``{}``.

        Raises:
            APIError: the body is not JSON, or not an object.
        """
        if not response.content.strip():
            return {}
        where = f"{response.request.method} {response.request.url.path}"
        try:
            value = response.json()
        except ValueError as exc:
            raise APIError(
                f"{where}: the API answered invalid JSON: {self._snippet(response.text)}",
                status=response.status_code,
                body=self._redact(response.text),
            ) from exc
        if not isinstance(value, dict):
            raise APIError(
                f"{where}: the API answered JSON {type(value).__name__}, expected an object",
                status=response.status_code,
                body=value,
            )
        return value

    def _parse_lenient_object(self, response: httpx.Response) -> dict[str, Any]:
        """Like ``_parse_object``, but any 2xx is success: a non-object answer gives ``{}``."""
        try:
            return self._parse_object(response)
        except APIError:
            return {}

    def _parse_async_request(self, response: httpx.Response) -> AsyncRequest:
        payload = self._parse_object(response)
        try:
            return AsyncRequest.from_payload(payload)
        except (KeyError, TypeError) as exc:
            where = f"{response.request.method} {response.request.url.path}"
            raise APIError(
                f"{where}: unexpected answer ({type(exc).__name__}: {exc})",
                status=response.status_code,
                body=payload,
            ) from exc

    def _status_error(self, response: httpx.Response, *, retry_after: float | None) -> APIError:
        """The typed error for a non-2xx response."""
        status = response.status_code
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = self._redact(response.text) or None
        detail = _error_detail(body) or response.reason_phrase or "error"
        message = self._redact(
            f"{response.request.method} {response.request.url.path} failed: "
            f"{self._snippet(detail)}"
        )
        if status in (401, 403):
            return AuthenticationError(message, status=status, body=body)
        if status == 429:
            return RateLimitError(message, status=status, body=body, retry_after=retry_after)
        return APIError(message, status=status, body=body)

    def _transport_error(
        self, call: _Call, path: str, exc: httpx.RequestError
    ) -> APIConnectionError:
        detail = self._snippet(str(exc) or type(exc).__name__)
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"{call.method} {path} timed out: {detail}")
        return APIConnectionError(f"{call.method} {path} failed: {detail}")

    def _snippet(self, text: str) -> str:
        text = self._redact(text.strip())
        if len(text) > _MAX_TEXT_IN_MESSAGE:
            return text[:_MAX_TEXT_IN_MESSAGE] + "…"
        return text


def _error_detail(body: Any) -> str | None:
    """The message of an error body ``{message | error, details?}``, or its text."""
    if isinstance(body, dict):
        for key in ("message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
        return None
    if isinstance(body, str):
        return body
    return None


class AsyncModelRiver(_BaseModelRiver[httpx.AsyncClient], AsyncClosing):
    """Asynchronous client of the ModelRiver HTTP API: ``ModelRiver``'s twin.

    Args:
        api_key: the API key; default ``MODELRIVER_API_KEY``. A missing key raises
            ``AuthenticationError`` when a call needs it, before anything is sent.
        api_base: the API base URL; default ``MODELRIVER_API_BASE`` or
            ``https://api.modelriver.com``.
        timeout: seconds (or an ``httpx.Timeout``) for each attempt; None waits forever.
        max_retries: extra attempts where retrying is safe (module docstring).
        http_client: an ``httpx.AsyncClient`` to send with; it stays open on ``aclose()``.

    Raises:
        ValueError: ``max_retries`` is negative.
        TypeError: ``http_client`` is not an ``httpx.AsyncClient``.
    """

    _http_class = httpx.AsyncClient
    _http_mismatch = "http_client must be an httpx.AsyncClient (ModelRiver takes sync)"

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        return await self._client.send(request)

    async def _open(self, request: AsyncRequest, options: dict[str, Any]) -> Stream:
        channel_id = request.channel_id
        return await connect(request, refresh=lambda: self.reconnect(channel_id), **options)

    # Each method below is ``ModelRiver``'s too: it awaits only ``_run`` and ``_open``.

    async def create_request(
        self,
        workflow: str,
        messages: Messages,
        *,
        events: Sequence[str] | None = None,
        webhook_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        delivery_method: str = "websocket",
    ) -> AsyncRequest:
        """Start an AI request: ``POST {api_base}/v1/ai/async``.

        Retried only when the API surely did not start it: 429, 503, or a connection that
        was never made. A timeout or 5xx after sending is raised, never retried.

        Args:
            workflow: the workflow name.
            messages: chat messages ``[{role, content}]``; a string is one user message.
            events: event names for an event-driven request, e.g. ``["webhook_received"]``.
            webhook_url: where the gateway posts the webhook.
            metadata: free-form metadata sent along.
            delivery_method: how the answer is delivered, ``"websocket"`` by default.

        Returns:
            Where to listen: channel id, one-time ``ws_token``, WebSocket URL and topic.

        Raises:
            AuthenticationError: no API key, or the key was refused (401/403).
            InvalidInputError: text UTF-8 cannot encode (a lone surrogate); nothing was sent.
            RateLimitError: still rate limited after the retries (429).
            APIError: any other error status, or an answer that is not the expected JSON.
            APITimeoutError: the API did not answer in time.
            APIConnectionError: the API could not be reached.
        """
        flow = self._create_request_flow(workflow, messages, events=events, webhook_url=webhook_url,
                                         metadata=metadata, delivery_method=delivery_method)
        return await self._run(flow)

    async def reconnect(self, channel_id: str) -> AsyncRequest:
        """Get a fresh ``ws_token`` for a request still in flight: ``POST /v1/ai/reconnect``.

        Args:
            channel_id: the request's channel id.

        Returns:
            The request's channel, with the fresh token.

        Raises:
            APIError: as for ``create_request`` (after retries): ``AuthenticationError``,
                ``RateLimitError`` or another error answer.
            APIConnectionError: as for ``create_request``; ``APITimeoutError`` when it timed out.
        """
        return await self._run(self._reconnect_flow(channel_id))

    async def callback(
        self,
        channel_id: str,
        data: Mapping[str, Any],
        *,
        task_id: str | None = None,
        callback_url: str | None = None,
    ) -> dict[str, Any]:
        """Send your backend's enriched data for an event-driven request.

        Posts ``{data, task_id?}`` to ``callback_url`` (from the webhook) or to
        ``{api_base}/v1/callback/{channel_id}``. The API key is sent only to the API's own
        origin; another origin must authorize the call by the token in its URL.

        Args:
            channel_id: the request's channel id.
            data: the enriched data.
            task_id: the webhook's task id, when it had one.
            callback_url: the webhook's ``callback_url``.

        Returns:
            The answer's JSON object, or ``{}`` when it had none.

        Raises:
            APIError: as for ``create_request`` (after retries): ``AuthenticationError``,
                ``RateLimitError`` or another error answer.
            APIConnectionError: as for ``create_request``; ``APITimeoutError`` when it timed out.
        """
        return await self._run(
            self._callback_flow(channel_id, data, task_id=task_id, callback_url=callback_url)
        )

    async def cancel(self, channel_id: str) -> dict[str, Any]:
        """Cancel a request in flight: ``POST {api_base}/v1/ai/cancel``.

        Args:
            channel_id: the request's channel id.

        Returns:
            The answer's JSON object.

        Raises:
            APIError: as for ``create_request`` (after retries): ``AuthenticationError``,
                ``RateLimitError`` or another error answer.
            APIConnectionError: as for ``create_request``; ``APITimeoutError`` when it timed out.
        """
        return await self._run(self._cancel_flow(channel_id))

    async def health(self) -> dict[str, Any]:
        """Check the API: ``GET {api_base}/health`` (no API key needed).

        Returns:
            The answer's JSON object.

        Raises:
            APIError, APITimeoutError, APIConnectionError: after retries.
        """
        return await self._run(self._health_flow())

    # --- streaming --------------------------------------------------------------------

    async def stream(
        self,
        workflow: str,
        messages: Messages,
        *,
        request_timeout: float | None = 300.0,
        coalesce: bool = False,
        headers: Mapping[str, str] | None = None,
        origin: str | None = None,
        **request: Unpack[RequestOptions],
    ) -> Stream:
        """Start a request and stream its events: ``create_request`` (with ``request``'s options)
        then ``connect``."""
        handle = await AsyncModelRiver.create_request(self, workflow, messages, **request)  # either twin's
        return await self._open(handle, {"request_timeout": request_timeout, "coalesce": coalesce,
                                         "headers": headers, "origin": origin})

    async def connect(
        self,
        request: AsyncRequest,
        *,
        last_seq: int | None = None,
        request_timeout: float | None = 300.0,
        coalesce: bool = False,
        headers: Mapping[str, str] | None = None,
        origin: str | None = None,
    ) -> Stream:
        """Stream an existing request (e.g. after a reload, from ``last_seq``).

        A refused socket token is renewed through ``reconnect``. ``origin`` and ``headers`` go
        into the WebSocket handshake (``Origin`` and extra headers).
        """
        return await self._open(request, {"last_seq": last_seq, "request_timeout": request_timeout,
                                          "coalesce": coalesce, "headers": headers, "origin": origin})

    async def aclose(self) -> None:
        """Close the HTTP connections, unless the ``http_client`` was supplied."""
        if self._owns_http:
            await self._client.aclose()


def _complete(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """The result of a coroutine that never suspends (``ModelRiver``'s I/O blocks instead)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: _T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a ModelRiver call suspended: its I/O must block")  # pragma: no cover


@overload
def _blocking(
    method: Callable[Concatenate[Any, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[ModelRiver, _P], _T]: ...


@overload
def _blocking(
    method: Callable[Concatenate[Any, _P], Coroutine[Any, Any, Any]], returns: type[_R]
) -> Callable[Concatenate[ModelRiver, _P], _R]: ...


def _blocking(
    method: Callable[Concatenate[Any, _P], Coroutine[Any, Any, Any]], returns: type[Any] | None = None
) -> Callable[Concatenate[ModelRiver, _P], Any]:
    """``name = _blocking(AsyncModelRiver.name)``: ``ModelRiver``'s method, the same coroutine run to
    its end at once (``ModelRiver``'s ``_sleep``, ``_send`` and ``_open`` block, never suspend).

    Signature and docs are the async method's; ``returns`` is the type ``ModelRiver``'s ``_open``
    gives where the async method gives a ``Stream``.
    """

    @functools.wraps(method)
    def call(self: ModelRiver, /, *args: _P.args, **kwargs: _P.kwargs) -> Any:
        return _complete(method(self, *args, **kwargs))

    return call


class ModelRiver(_BaseModelRiver[httpx.Client], Closing):
    """Synchronous client of the ModelRiver HTTP API: ``AsyncModelRiver``'s twin, blocking.

    The arguments, methods (``create_request``, ``reconnect``, ``callback``, ``cancel``, ``health``,
    ``stream``, ``connect``), retries and errors are ``AsyncModelRiver``'s (see there and the module
    docstring), with ``close()`` for ``aclose()``, ``SyncStream`` for ``Stream``, and ``http_client``
    an ``httpx.Client`` (proxies, transports, default headers; else a ``TypeError``) that stays open
    on ``close()``: its owner closes it.
    """

    _http_class = httpx.Client
    _http_mismatch = "http_client must be an httpx.Client (AsyncModelRiver takes async)"

    async def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # noqa: ASYNC251 - blocking is the point: this coroutine never suspends

    async def _send(self, request: httpx.Request) -> httpx.Response:
        return self._client.send(request)

    async def _open(self, request: AsyncRequest, options: dict[str, Any]) -> SyncStream:
        channel_id = request.channel_id
        return connect_sync(request, refresh=lambda: self.reconnect(channel_id), **options)

    create_request = _blocking(AsyncModelRiver.create_request)
    reconnect = _blocking(AsyncModelRiver.reconnect)
    callback = _blocking(AsyncModelRiver.callback)
    cancel = _blocking(AsyncModelRiver.cancel)
    health = _blocking(AsyncModelRiver.health)
    stream = _blocking(AsyncModelRiver.stream, SyncStream)
    connect = _blocking(AsyncModelRiver.connect, SyncStream)

    def close(self) -> None:
        """Close the HTTP connections, unless the ``http_client`` was supplied."""
        if self._owns_http:
            self._client.close()
