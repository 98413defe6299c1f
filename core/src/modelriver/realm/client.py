"""``RealmClient``: Realm's client SDK in asyncio form, over one multiplexed WebSocket.

    async with RealmClient("ws://localhost:8080", api_key="sk_...") as realm:
        result = await realm.generate("Hello")
        async for text in realm.generate_stream("Tell me a story"):
            print(text, end="")
        async for event in realm.generate_events("Hi"):     # core StreamEvents
            ...

Connecting follows Realm's server (PROTOCOL §7): it waits for the server's first frame,
answers ``auth_required`` with ``{type: "auth", api_key}``, and is connected on the welcome frame
``{status: "connected", version, tenant_id}``. Every call then carries the authenticated tenant
(Realm's server answers ``UNAUTHORIZED`` "Tenant ID mismatch" otherwise).

Every call gets an id and its answers are routed by it, so any number of calls share the socket
(Realm's own server answers them one after another, in order; ours concurrently). Cancelling the
task that awaits a call (or leaving a stream's ``async for`` early) stops reading that call: its
later frames are discarded. Realm's server has no cancel message, so ``{type: "cancel", id}`` is
sent only to a server whose welcome frame announces ``capabilities: ["cancel"]`` *(ours)*. When the
socket is cut, calls in flight fail with ``RealmConnectionError``; with ``reconnect`` the client
opens a new socket every ``reconnect_interval`` seconds until it succeeds, and new calls wait for
it (within their timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, TypedDict, Unpack

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.protocol import State

from modelriver._emitter import Callback, Emitter
from modelriver.events import Error, Response, StreamEvent, Token
from modelriver.realm import protocol as wire
from modelriver.realm.exceptions import (
    RealmAuthenticationError,
    RealmCancelledError,
    RealmConnectionError,
    RealmError,
    RealmProtocolError,
    RealmTimeoutError,
)

__all__ = ["EVENTS", "Callback", "GenerateOptions", "RealmClient"]

logger = logging.getLogger("modelriver.realm")

_ABANDONED_MAX = 4096
"""Ids of calls stopped early whose late frames are still discarded quietly (the oldest forgotten)."""


EVENTS = ("connected", "disconnected", "error")
"""``connected`` (tenant id), ``disconnected`` (reason), ``error`` (a ``RealmError``)."""


class GenerateOptions(TypedDict, total=False):
    """The keyword options of ``generate``, ``generate_stream`` and ``generate_events``.

    Attributes:
        model: the model (default: the client's ``model``).
        max_tokens: sampling: the most tokens to generate (None leaves it out; the default 100
            is what Realm's Python client sends).
        temperature: sampling temperature (None leaves it out; the default 0.7 is what Realm's
            Python client sends).
        top_p: nucleus sampling (None leaves it out).
        params: further params sent as they are.
        call_timeout: seconds to wait for the answer (default: the client's ``timeout``).
    """

    model: str | None
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    params: Mapping[str, Any] | None
    call_timeout: float | None


class _Call:
    """One call's inbox: answers (or the error that ends it) in arrival order."""

    __slots__ = ("id", "items", "waiter")

    def __init__(self, call_id: str) -> None:
        self.id = call_id
        self.items: deque[wire.Answer | RealmError] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def deliver(self, item: wire.Answer | RealmError) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self, limit: float | None) -> wire.Answer | RealmError:
        """The next item, waiting at most ``limit`` seconds for it.

        Raises:
            TimeoutError: nothing arrived in time.
        """
        if not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(limit):
                    await self.waiter
            finally:
                self.waiter = None
        return self.items.popleft()


class RealmClient:
    """An asyncio client for a Realm server.

    Args:
        url: the server's WebSocket URL.
        model: the model sent with ``generate`` calls that do not name one.
        api_key: sent as ``{type: "auth"}`` when the server asks (``auth_required``); None for
            servers without auth.
        tenant_id: sent with every call when the server has no auth; auto-assigned (uuid4) when
            absent. With auth, every call carries the tenant the server names in ``auth_success``.
        reconnect: open a new socket after the connection is lost.
        reconnect_interval: seconds between reconnect attempts.
        timeout: seconds a call may wait for each answer frame (None: forever).
        auth_timeout: seconds to wait for ``auth_success``.
        open_timeout: seconds to open the socket.
        max_frame_size: the largest frame accepted, in bytes.
        ping_interval: seconds between keepalive pings (None: no pings).
    """

    def __init__(
        self,
        url: str = wire.DEFAULT_URL,
        *,
        model: str | None = None,
        api_key: str | None = None,
        tenant_id: str | None = None,
        reconnect: bool = True,
        reconnect_interval: float = 5.0,
        timeout: float | None = 30.0,
        auth_timeout: float = wire.AUTH_TIMEOUT,
        open_timeout: float = 10.0,
        max_frame_size: int = wire.DEFAULT_MAX_FRAME,
        ping_interval: float | None = 20.0,
    ) -> None:
        self.url = url
        self.model = model
        self.api_key = api_key
        self.reconnect = reconnect
        self.reconnect_interval = reconnect_interval
        self.timeout = timeout
        self.auth_timeout = auth_timeout
        self.open_timeout = open_timeout
        self.max_frame_size = max_frame_size
        self.ping_interval = ping_interval
        self._own_tenant = tenant_id or str(uuid.uuid4())
        self._tenant_id = self._own_tenant
        self._capabilities: tuple[str, ...] = ()
        self._ids = itertools.count(1)
        self._calls: dict[str, _Call] = {}
        self._abandoned: OrderedDict[str, None] = OrderedDict()
        self._emitter = Emitter(EVENTS, logger)
        self._ws: ClientConnection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._failure: RealmError | None = None
        self._closing = False
        self._background: set[asyncio.Task[Any]] = set()
        self.reconnects = 0

    # -- state ------------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True while a socket is open and authenticated."""
        return self._ws is not None and self._ws.state is State.OPEN

    @property
    def tenant_id(self) -> str:
        """The tenant every call carries: the authenticated one, else this client's own."""
        return self._tenant_id

    @property
    def capabilities(self) -> tuple[str, ...]:
        """*(ours)* What the server's welcome frame announced, e.g. ``("cancel",)``."""
        return self._capabilities

    @property
    def pending_calls(self) -> int:
        """Calls waiting for their answers."""
        return len(self._calls)

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(arg)`` on each ``event``; returns a function that unsubscribes.

        Events: ``connected`` (the tenant id), ``disconnected`` (a reason), ``error`` (a
        ``RealmError`` not tied to a call: a refused reconnect, a malformed frame).

        Raises:
            ValueError: ``event`` is not one of ``EVENTS``.
        """
        return self._emitter.on(event, callback)

    def off(self, event: str | None = None, callback: Callback | None = None) -> None:
        """Remove one callback, every callback of ``event``, or all of them."""
        self._emitter.off(event, callback)

    # -- connection -------------------------------------------------------------------------------

    async def connect(self) -> RealmClient:
        """Open the socket and authenticate; returns once calls can be made (the welcome frame).

        Raises:
            RealmConnectionError: the server could not be reached.
            RealmAuthenticationError: the API key was refused, or the server wants one and the
                client has none.
            RealmTimeoutError: no welcome frame within ``auth_timeout``.
            RealmProtocolError: the server sent something else first.
        """
        if self._supervisor is not None and not self._supervisor.done():
            await self._connection(self.timeout)
            return self
        self._closing = False
        self._failure = None
        ws = await self._open()
        self._attach(ws)
        self._supervisor = asyncio.create_task(self._supervise(ws), name="modelriver-realm")
        return self

    async def disconnect(self) -> None:
        """Close the socket for good (no reconnect); calls in flight fail. Idempotent."""
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and not supervisor.done():
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
            self._detach("client disconnected")
        background = list(self._background)
        if background:
            await asyncio.gather(*background, return_exceptions=True)

    async def __aenter__(self) -> RealmClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def _open(self) -> ClientConnection:
        try:
            ws = await websockets.connect(
                self.url, open_timeout=self.open_timeout, max_size=self.max_frame_size,
                compression=None, ping_interval=self.ping_interval,
            )
        except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
            raise RealmConnectionError(f"cannot connect to {self.url}: {exc}") from exc
        try:
            async with asyncio.timeout(self.auth_timeout):
                await self._handshake(ws)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await ws.close()
            if isinstance(exc, TimeoutError):
                raise RealmTimeoutError(
                    f"no welcome from the server within {self.auth_timeout} s"
                ) from None
            raise
        return ws

    async def _handshake(self, ws: ClientConnection) -> None:
        """Read up to the welcome frame, authenticating when the server asks to."""
        tenant: str | None = None
        try:
            while True:
                message = wire.parse_server_frame(await ws.recv(), max_size=self.max_frame_size)
                if isinstance(message, wire.AuthRequired):
                    if self.api_key is None:
                        raise RealmAuthenticationError("the server requires an API key")
                    await ws.send(wire.encode(wire.Auth(self.api_key)))
                elif isinstance(message, wire.AuthSuccess):
                    tenant = message.tenant_id
                elif isinstance(message, wire.AuthFailed):
                    raise RealmAuthenticationError(message.error)
                elif isinstance(message, wire.Welcome):
                    self._tenant_id = tenant or message.tenant_id or self._own_tenant
                    self._capabilities = message.capabilities
                    return
                elif message.error is not None:
                    raise message.error.to_exception()
                else:
                    raise RealmProtocolError(f"a {message.status!r} answer before the welcome frame")
        except ConnectionClosed as exc:
            raise RealmConnectionError(f"the server closed the socket during auth: {exc}") from exc

    def _attach(self, ws: ClientConnection) -> None:
        self._ws = ws
        logger.info("realm: connected to %s", self.url)
        self._notify()
        self._fire("connected", self._tenant_id)

    def _detach(self, reason: str) -> None:
        """Forget the socket and fail every call in flight."""
        if self._ws is None:
            return
        self._ws = None
        self._abandoned.clear()
        logger.info("realm: disconnected (%s)", reason)
        for call in self._calls.values():
            call.deliver(self._lost_error(reason, call.id))
        self._notify()
        self._fire("disconnected", reason)

    def _lost_error(self, reason: str, call_id: str) -> RealmError:
        failure = self._failure
        if failure is not None:
            return type(failure)(failure.message, code=failure.code, details=failure.details,
                                 call_id=call_id)
        return RealmConnectionError(f"connection lost while the call was in flight ({reason})",
                                    call_id=call_id)

    def _notify(self) -> None:
        """Wake every caller waiting for the connection state to change."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _supervise(self, ws: ClientConnection) -> None:
        """Read the socket; after a loss, reconnect every ``reconnect_interval`` if asked to."""
        current: ClientConnection | None = ws
        while current is not None:
            reason = await self._read(current)
            self._detach(reason)
            if self._closing or self._failure is not None or not self.reconnect:
                return
            current = await self._reconnect()

    async def _reconnect(self) -> ClientConnection | None:
        while not self._closing:
            await asyncio.sleep(self.reconnect_interval)
            try:
                ws = await self._open()
            except RealmAuthenticationError as exc:
                self._failure = exc
                self._notify()
                self._fire("error", exc)
                return None
            except RealmError as exc:
                logger.info("realm: reconnect failed (%s); retrying in %s s", exc,
                            self.reconnect_interval)
                self._fire("error", exc)
                continue
            self.reconnects += 1
            self._attach(ws)
            return ws
        return None

    async def _read(self, ws: ClientConnection) -> str:
        """Route frames until the socket closes; returns why it closed."""
        try:
            async for raw in ws:
                self._on_frame(ws, raw)
        except ConnectionClosed as exc:
            return f"connection lost: {exc}"
        return f"closed by the server: {ws.close_code} {ws.close_reason or ''}".rstrip()

    def _on_frame(self, ws: ClientConnection, raw: str | bytes) -> None:
        try:
            message = wire.parse_server_frame(raw, max_size=self.max_frame_size)
        except RealmProtocolError as exc:
            call = self._calls.get(exc.call_id) if exc.call_id is not None else None
            if call is not None:
                call.deliver(exc)
            else:
                logger.warning("realm: %s", exc)
                self._fire("error", exc)
            return
        if isinstance(message, wire.Answer):
            key = None if message.id is None else str(message.id)
            call = self._calls.get(key) if key is not None else None
            if call is not None:
                call.deliver(message)
            elif key is not None and key in self._abandoned:
                if message.is_terminal:  # a stopped call's frames: dropped, quietly
                    del self._abandoned[key]
            elif message.error is not None:
                error = message.error.to_exception()
                logger.warning("realm: server error not tied to a call: %s", error)
                self._fire("error", error)
            else:
                logger.debug("realm: answer for unknown call %r", message.id)
        elif isinstance(message, wire.AuthFailed):
            error = RealmAuthenticationError(message.error)
            self._failure = error
            self._fire("error", error)
            self._spawn(ws.close())
        else:  # a repeated welcome, auth_success or auth_required: nothing to do
            logger.debug("realm: ignored %s after the welcome", type(message).__name__)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _connection(self, limit: float | None) -> ClientConnection:
        """The live socket, waiting for a reconnect (within ``limit`` s) if one is under way.

        Raises:
            RealmConnectionError: not connected, and not about to be.
            RealmTimeoutError: the reconnect did not happen in time.
        """
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        while True:
            failure = self._failure
            if failure is not None:  # e.g. the key was refused: say so, typed
                raise type(failure)(failure.message, code=failure.code, details=failure.details)
            ws = self._ws
            if ws is not None:
                return ws
            if self._supervisor is None or self._supervisor.done():
                raise RealmConnectionError("not connected: call connect() first")
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._changed.wait()
            except TimeoutError:
                raise RealmTimeoutError(f"not reconnected within {limit} s") from None

    # -- calls ------------------------------------------------------------------------------------

    async def _answers(
        self, function: str, params: dict[str, Any], call_timeout: float | None
    ) -> AsyncGenerator[wire.Answer, None]:
        """Send a call and yield its answers; the last one yielded is ``complete``.

        Raises:
            RealmError: the server answered an error (typed by code) or ``cancelled``.
            RealmConnectionError: the socket was lost; RealmTimeoutError: an answer was late.
            RealmProtocolError: an answer was malformed.
        """
        limit = self.timeout if call_timeout is None else call_timeout
        ws = await self._connection(limit)
        call = _Call(str(next(self._ids)))
        self._calls[call.id] = call
        finished = False
        try:
            try:
                await ws.send(wire.encode(wire.Call(call.id, function, params, self._tenant_id)))
            except ConnectionClosed as exc:
                finished = True
                raise RealmConnectionError(f"connection lost: {exc}", call_id=call.id) from exc
            while True:
                try:
                    item = await call.next(limit)
                except TimeoutError:
                    raise RealmTimeoutError(
                        f"{function}: no answer within {limit} s", call_id=call.id
                    ) from None
                if isinstance(item, RealmError):
                    finished = True
                    raise item
                if item.status == "streaming":
                    yield item
                    continue
                finished = True
                if item.status == "complete":
                    yield item
                    return
                if item.error is not None:
                    raise item.error.to_exception(call.id)
                raise RealmCancelledError("the server cancelled the call", call_id=call.id)
        finally:
            self._calls.pop(call.id, None)
            if not finished:
                self._abandon(ws, call.id)

    def _abandon(self, ws: ClientConnection, call_id: str) -> None:
        """Stop reading ``call_id``: discard its later frames, and tell a server that can stop it
        (the welcome announced ``cancel``; Realm's own server cannot: it finishes the call)."""
        if ws is not self._ws:
            return
        self._abandoned[call_id] = None
        if len(self._abandoned) > _ABANDONED_MAX:
            self._abandoned.popitem(last=False)
        if wire.CAPABILITY_CANCEL not in self._capabilities:
            return
        try:
            self._spawn(self._send_quietly(ws, wire.encode(wire.Cancel(call_id))))
        except RuntimeError:  # no running loop: the generator is being finalized late
            return
        logger.debug("realm: cancelling call %s", call_id)

    @staticmethod
    async def _send_quietly(ws: ClientConnection, frame: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(frame)

    async def call(
        self, function: str, params: Mapping[str, Any] | None = None, *, call_timeout: float | None = None
    ) -> Any:
        """Call any ``function`` and return its complete ``data`` (streaming records skipped).

        Raises:
            RealmError: see ``generate``.
        """
        data: Any = None
        async with contextlib.aclosing(self._answers(function, dict(params or {}), call_timeout)) as answers:
            async for answer in answers:
                if answer.status == "complete":
                    data = answer.data
        return data

    def _generate_call(
        self,
        prompt: str,
        stream: bool,
        *,
        model: str | None = None,
        max_tokens: int | None = 100,
        temperature: float | None = 0.7,
        top_p: float | None = None,
        params: Mapping[str, Any] | None = None,
        call_timeout: float | None = None,
    ) -> tuple[dict[str, Any], str | None, float | None]:
        """A ``generate`` call's params, its model and its timeout (``GenerateOptions``' defaults)."""
        model = model or self.model
        body: dict[str, Any] = {"prompt": prompt}
        for key, value in (("model", model), ("max_tokens", max_tokens), ("temperature", temperature),
                           ("top_p", top_p)):
            if value is not None:
                body[key] = value
        body.update(params or {})
        body["stream"] = stream
        return body, model, call_timeout

    async def generate(self, prompt: str, **options: Unpack[GenerateOptions]) -> wire.GenerateResult:
        """Generate text for ``prompt`` and return the whole result.

        Args:
            prompt: the prompt.
            **options: ``GenerateOptions``: ``model``, the sampling ``max_tokens`` (default 100),
                ``temperature`` (default 0.7) and ``top_p``, further ``params``, ``call_timeout``.

        Returns:
            The ``GenerateResult``.

        Raises:
            RealmError: the server's error, by code: ``RealmAuthenticationError``,
                ``RealmRateLimitError`` (``.retry_after``), ``RealmDispatchError``,
                ``RealmInternalError``.
            RealmConnectionError: no answer (``RealmTimeoutError`` when it timed out).
        """
        body, model, call_timeout = self._generate_call(prompt, False, **options)
        parts: list[str] = []
        async with contextlib.aclosing(self._answers("generate", body, call_timeout)) as answers:
            async for answer in answers:
                if answer.status == "streaming":
                    parts.append(wire.token_text(answer.data))
                else:
                    return wire.GenerateResult.from_data(answer.data, streamed=parts, model=model)
        raise RealmProtocolError("generate ended without a result")  # pragma: no cover

    async def generate_stream(self, prompt: str, **options: Unpack[GenerateOptions]) -> AsyncGenerator[str, None]:
        """Generate with ``stream: true``, yielding each token's text as it arrives.

        Args and Raises: as ``generate``; ``call_timeout`` bounds the wait for each token.
        Leaving the loop early cancels the call on the server.
        """
        body, _, call_timeout = self._generate_call(prompt, True, **options)
        async with contextlib.aclosing(self._answers("generate", body, call_timeout)) as answers:
            async for answer in answers:
                if answer.status == "streaming":
                    text = wire.token_text(answer.data)
                    if text or not _is_final(answer.data):
                        yield text

    async def generate_events(
        self, prompt: str, **options: Unpack[GenerateOptions]
    ) -> AsyncGenerator[StreamEvent, None]:
        """Generate as core ``StreamEvent``s: a ``Token`` per record (``seq`` = its index), then a
        ``Response`` (``AIResponse`` status success, usage in ``meta``), or an ``Error``.

        Args: as ``generate``.

        Raises:
            RealmConnectionError, RealmTimeoutError, RealmProtocolError: the call could not
                finish (the server's own error answers become ``Error`` events instead).
        """
        body, model, call_timeout = self._generate_call(prompt, True, **options)
        loop = asyncio.get_running_loop()
        started = loop.time()
        parts: list[str] = []
        try:
            async with contextlib.aclosing(self._answers("generate", body, call_timeout)) as answers:
                async for answer in answers:
                    if answer.status == "streaming":
                        record = wire.TokenRecord.from_data(answer.data)
                        if record.is_final and not record.text:
                            continue  # the end marker of a stream, not a token
                        seq = record.index if record.index is not None else len(parts)
                        parts.append(record.text)
                        yield Token(record.text, seq=seq, model=model)
                    else:
                        result = wire.GenerateResult.from_data(answer.data, streamed=parts, model=model)
                        duration = int((loop.time() - started) * 1000)
                        yield Response(result.to_response(duration_ms=duration))
        except (RealmConnectionError, RealmProtocolError):
            raise
        except RealmError as exc:
            yield Error(exc.message)

    async def execute_pipeline(
        self, name: str, input: Any = None, *, call_timeout: float | None = None
    ) -> Any:
        """Run pipeline ``name`` on ``input``; returns the complete ``data``.

        Sent as ``params.pipeline`` (Realm's server's key).

        Raises:
            RealmDispatchError: no such pipeline, or a bad input; see ``generate``.
        """
        return await self.call("pipeline", {"pipeline": name, "input": input},
                               call_timeout=call_timeout)

    async def health(self, *, call_timeout: float | None = None) -> dict[str, Any]:
        """The server's health (``{status: "healthy", version, uptime_seconds, ...}``).

        Raises:
            RealmProtocolError: the answer is not an object; see ``generate``.
        """
        return _object(await self.call("health", call_timeout=call_timeout), "health")

    async def metadata(self, *, call_timeout: float | None = None) -> dict[str, Any]:
        """The server's ``{version, functions: [{name, description, params, returns, streaming}]}``.

        Raises:
            RealmProtocolError: the answer is not an object; see ``generate``.
        """
        return _object(await self.call("metadata", call_timeout=call_timeout), "metadata")

    def _fire(self, name: str, arg: Any) -> None:
        self._emitter.fire(name, arg)


def _is_final(data: Any) -> bool:
    return isinstance(data, dict) and data.get("is_final") is True


def _object(data: Any, function: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RealmProtocolError(f"{function} answered data that is not an object")
    return data
