"""A Realm-protocol server: plain WebSocket, JSON frames (PROTOCOL §7).

    server = await serve(my_generate, "127.0.0.1", 8080, api_keys={"sk_1"}, rate_limit_per_minute=60)
    ...
    await server.close()

``generate`` is any ``async`` generator of text chunks for a ``GenerateRequest``: the embedded
gateway plugs its providers in there, and ``echo_generator`` is the offline demo model. Pipelines
are named ``async`` callables of one input (``echo`` and ``uppercase`` are built in).

What it does on the wire is what Realm's own server does (PROTOCOL §7): with auth on, the first
frame must be ``{type: "auth", api_key}`` (anything else, or nothing within ``auth_timeout``, is
``auth_failed`` and a close); then a welcome frame ``{status: "connected", version, tenant_id}``;
``DISPATCH_ERROR`` for a call it cannot run, ``INTERNAL_ERROR`` to id ``"unknown"`` for a frame
that is not a call, ``{"error": "Binary messages not supported"}`` for a binary frame, the rate
limit counted on every call. A streamed ``generate`` ends with a record carrying ``is_final: true``
then ``complete`` with ``{status: "complete", tokens_generated}``.

Ours, beyond Realm's server (*ours* in the docs):

* calls run as their own tasks, so many stream at once on one socket (Realm's server answers them
  one after another); ``{type: "cancel", id}`` stops one, and the welcome frame announces it
  (``capabilities: ["cancel"]``);
* the final streamed record is empty (text ``""``): it is sent once the answer has ended, so no
  token waits for the next one to learn it was the last;
* ``error.retry_after`` (seconds) on rate limits, which Realm's TypeScript SDK reads;
* a call's ``tenant_id`` is not checked against the key's tenant: the key's tenant is billed
  (Realm's server answers ``UNAUTHORIZED`` "Tenant ID mismatch"; its TypeScript SDK sends its own
  tenant id, so it could not call such a server at all with a key);
* ``pipeline`` takes its name from ``params.pipeline`` or ``params.name``;
* an ``auth`` frame after the welcome (or with auth off) is answered ``auth_success`` with the
  connection's tenant (Realm's TypeScript SDK, given a key, waits for one).

``RealmSession`` only needs an async iterable of incoming frames, a ``send`` and a ``close``:
another WebSocket stack (ASGI) can drive it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypedDict, Unpack

import websockets
from websockets.asyncio.server import Server, ServerConnection

from modelriver._version import __version__
from modelriver.ratelimit import RateLimiter
from modelriver.realm.exceptions import (
    DISPATCH_ERROR,
    INTERNAL_ERROR,
    RealmDispatchError,
    RealmError,
    RealmRateLimitError,
)
from modelriver.realm.protocol import (
    AUTH_TIMEOUT,
    BINARY_REFUSED,
    CAPABILITY_CANCEL,
    DEFAULT_MAX_FRAME,
    Answer,
    Auth,
    AuthFailed,
    AuthRequired,
    AuthSuccess,
    Call,
    CallId,
    Cancel,
    ErrorInfo,
    GenerateResult,
    Invalid,
    ServerMessage,
    Welcome,
    encode,
    parse_client_frame,
    stream_frame,
    stream_frame_prefix,
    token_record,
)

__all__ = [
    "CLOSE_AUTH_FAILED",
    "GenerateRequest",
    "Generator",
    "Pipeline",
    "RealmServer",
    "RealmSession",
    "ServeOptions",
    "builtin_pipelines",
    "echo_generator",
    "serve",
]

logger = logging.getLogger("modelriver.realm")

CLOSE_AUTH_FAILED = 1008
"""The close code after ``auth_failed`` (policy violation)."""

FUNCTION_NAMES = ("generate", "pipeline", "health", "metadata")
# Realm's server's texts (PROTOCOL §7), so clients written against it read the same.
INVALID_KEY = "Invalid API key"
NOT_TEXT = "Authentication message must be text"
NOT_AUTH = ('Invalid authentication message format. Expected: '
            '{"type":"auth","api_key":"your-key"}')


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """A validated ``generate`` call, as a generator receives it."""

    prompt: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    model: str | None = None
    stream: bool = False
    tenant_id: str = ""


Generator: TypeAlias = Callable[[GenerateRequest], AsyncIterator[str]]
"""Yields the answer's text chunks; raising a ``RealmError`` answers its code."""

Pipeline: TypeAlias = Callable[[Any], Awaitable[Any]]
"""Turns a pipeline's input into its output; raising a ``RealmError`` answers its code."""

_WORDS = re.compile(r"\S+\s*|\s+")


async def echo_generator(request: GenerateRequest) -> AsyncIterator[str]:
    """The offline demo model: ``You said: <prompt>``, word by word, at most ``max_tokens`` words."""
    words = _WORDS.findall(f"You said: {request.prompt}")
    for word in words[: request.max_tokens]:
        yield word


async def _echo(value: Any) -> Any:
    return value


async def _uppercase(value: Any) -> Any:
    if not isinstance(value, str):
        raise RealmDispatchError("the uppercase pipeline takes a string input",
                                 details={"param": "input"})
    return value.upper()


def builtin_pipelines() -> dict[str, Pipeline]:
    """The demo pipelines: ``echo`` (input unchanged) and ``uppercase`` (a string, upper-cased)."""
    return {"echo": _echo, "uppercase": _uppercase}


def _param(name: str, type_: str, description: str, *, required: bool = False,
           default: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": type_, "description": description,
                           "required": required}
    if default is not None:
        out["default"] = default
    return out


def _function(name: str, description: str, returns: str, *params: dict[str, Any],
              streaming: bool = False) -> dict[str, Any]:
    return {"name": name, "description": description, "params": list(params), "returns": returns,
            "streaming": streaming}


FUNCTIONS_METADATA: list[dict[str, Any]] = [
    _function(
        "generate", "Generate text for a prompt, streamed token by token when stream is true.",
        "{text, tokens_generated, prompt_tokens, time_ms, model}",
        _param("prompt", "string", "The prompt.", required=True),
        _param("max_tokens", "integer", "The most tokens to generate (none: no limit)."),
        _param("temperature", "number", "Sampling temperature, 0 to 2."),
        _param("top_p", "number", "Nucleus sampling, 0 to 1."),
        _param("stream", "boolean", "Stream token records before the result.", default=False),
        _param("model", "string", "The model to use (an unknown one: the default)."),
        streaming=True,
    ),
    _function(
        "pipeline", "Run a named pipeline on an input.", "{pipeline, output, time_ms}",
        _param("pipeline", "string", "The pipeline's name (ours: `name` too).", required=True),
        _param("input", "any", "The pipeline's input."),
    ),
    _function("health", "The server's health.",
              "{status, version, uptime_seconds, connections, active_calls}"),
    _function("metadata", "The functions this server offers.",
              "{version, functions, pipelines, capabilities}"),
]


class RealmServer:
    """Serves the Realm protocol over WebSocket.

    Args:
        generate: the model: text chunks for a ``GenerateRequest``.
        api_keys: None for no auth; else the accepted keys (a mapping gives each key's tenant id).
        rate_limit_per_minute: calls per tenant a minute (every function); 0 for no limit.
        pipelines: the pipelines by name; defaults to ``builtin_pipelines()``.
        auth_timeout: seconds a client has to authenticate.
        max_frame_size: the largest frame accepted, in bytes.
        ping_interval: seconds between keepalive pings (None: no pings).
        clock: monotonic seconds (for the rate limit and timings).
    """

    def __init__(
        self,
        generate: Generator = echo_generator,
        *,
        api_keys: Collection[str] | Mapping[str, str] | None = None,
        rate_limit_per_minute: int = 0,
        pipelines: Mapping[str, Pipeline] | None = None,
        auth_timeout: float = AUTH_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        ping_interval: float | None = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.generate = generate
        self.api_keys = api_keys
        self.limiter = RateLimiter(rate_limit_per_minute)
        self.pipelines: dict[str, Pipeline] = dict(
            builtin_pipelines() if pipelines is None else pipelines
        )
        self.auth_timeout = auth_timeout
        self.max_frame_size = max_frame_size
        self.ping_interval = ping_interval
        self.clock = clock
        self.started = clock()
        self.sessions: set[RealmSession] = set()
        self.connections: set[ServerConnection] = set()
        self._server: Server | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def auth_enabled(self) -> bool:
        return self.api_keys is not None

    @property
    def port(self) -> int:
        """The port listened on (after ``start()``)."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("the server has no socket")

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>`` (after ``start()``)."""
        return f"ws://127.0.0.1:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 8080) -> RealmServer:
        """Listen on ``host:port`` (port 0: any free port)."""
        self._server = await websockets.serve(
            self.handler, host, port, max_size=self.max_frame_size, compression=None,
            ping_interval=self.ping_interval,
        )
        logger.info("realm server listening on %s:%s (auth %s)", host, self.port,
                    "on" if self.auth_enabled else "off")
        return self

    async def close(self) -> None:
        """Stop listening and close every connection. Idempotent."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError("the server is not started")
        await self._server.serve_forever()

    async def __aenter__(self) -> RealmServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connections ------------------------------------------------------------------------------

    async def handler(self, ws: ServerConnection) -> None:
        """The ``websockets`` connection handler."""
        self.connections.add(ws)
        try:
            await RealmSession(self, ws.send, ws.close).run(ws)
        finally:
            self.connections.discard(ws)

    def tenant_for_key(self, api_key: str) -> str | None:
        """The tenant of ``api_key``, or None when it is not accepted (constant-time compare)."""
        keys = self.api_keys
        if keys is None:
            return None
        found: str | None = None
        given = api_key.encode("utf-8", "surrogatepass")
        for key in keys:
            if hmac.compare_digest(given, key.encode("utf-8", "surrogatepass")):
                found = key
        if found is None:
            return None
        if isinstance(keys, Mapping):
            return str(keys[found])
        return "tenant_" + hashlib.sha256(found.encode()).hexdigest()[:16]

    def health(self) -> dict[str, Any]:
        """Realm's ``{status: "healthy", version, uptime_seconds}``, and ours after it."""
        return {
            "status": "healthy",
            "version": __version__,
            "uptime_seconds": int(self.clock() - self.started),
            "connections": len(self.sessions),
            "active_calls": sum(len(s.calls) for s in self.sessions),
        }

    def metadata(self) -> dict[str, Any]:
        return {"version": __version__, "functions": FUNCTIONS_METADATA,
                "pipelines": sorted(self.pipelines), "capabilities": [CAPABILITY_CANCEL]}

    def resolve_model(self, model: str | None) -> str | None:
        """The model a ``generate`` call naming ``model`` runs (a subclass maps unknown names)."""
        return model


class _SendFailed(Exception):
    """The connection is gone: stop the call quietly."""


class RealmSession:
    """One client connection: auth, call dispatch, cancellation.

    Args:
        server: the configuration and shared state (rate limits, pipelines, the model).
        send: sends one text frame; any error means the connection is gone.
        close: closes the connection with a code and a reason.
    """

    def __init__(
        self,
        server: RealmServer,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
    ) -> None:
        self.server = server
        self._send_frame = send
        self._close = close
        self.tenant_id: str | None = None
        self.anonymous_tenant = f"anon_{uuid.uuid4().hex[:16]}"
        self.calls: dict[CallId, asyncio.Task[None]] = {}
        self._cancelled: set[CallId] = set()
        self._closed = False

    async def run(self, frames: AsyncIterable[str | bytes]) -> None:
        """Serve until ``frames`` ends (the connection closed) or auth fails."""
        self.server.sessions.add(self)
        incoming = aiter(frames)
        try:
            if self.server.auth_enabled:
                await self._send(AuthRequired())
                if not await self._authenticate(incoming):
                    return
            await self._send(Welcome(__version__, self.tenant_id, (CAPABILITY_CANCEL,)))
            async for frame in incoming:
                try:
                    await self._feed(frame)
                except _SendFailed:
                    break
                except Exception:  # the connection must survive any bug in one frame's handling
                    logger.exception("realm: failed to handle a frame")
        except _SendFailed:
            pass
        except Exception as exc:
            logger.debug("realm: connection ended: %s", exc)
        finally:
            self._closed = True
            self.server.sessions.discard(self)
            tasks = list(self.calls.values())
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _feed(self, frame: str | bytes) -> None:
        """Handle one incoming frame (raises ``_SendFailed`` when the connection is gone)."""
        if not isinstance(frame, str):
            await self._send_text(BINARY_REFUSED)
            return
        message = parse_client_frame(frame, max_size=self.server.max_frame_size)
        if isinstance(message, Call):
            await self._start_call(message)
        elif isinstance(message, Cancel):
            task = self.calls.get(message.id)
            if task is not None and not task.done():
                self._cancelled.add(message.id)
                task.cancel()
        elif isinstance(message, Auth):
            # Auth off, or a second auth: say who the calls are billed to (Realm's server would
            # answer an error; its TypeScript SDK with a key then waits for auth_success).
            await self._send(AuthSuccess(self.tenant_id or self.anonymous_tenant))
        else:
            logger.debug("realm: invalid frame: %s", message.message)
            await self._send(message)

    # -- auth -------------------------------------------------------------------------------------

    async def _authenticate(self, incoming: AsyncIterator[str | bytes]) -> bool:
        """Read the first frame: it must be ``auth`` with an accepted key. False: refused."""
        limit = self.server.auth_timeout
        try:
            async with asyncio.timeout(limit):
                frame = await anext(incoming)
        except TimeoutError:
            logger.info("realm: no authentication within %s s", limit)
            await self._refuse(f"Authentication timeout ({limit:g} seconds)")
            return False
        except StopAsyncIteration:
            return False
        if not isinstance(frame, str):
            await self._refuse(NOT_TEXT)
            return False
        message = parse_client_frame(frame, max_size=self.server.max_frame_size)
        if not isinstance(message, Auth):
            await self._refuse(NOT_AUTH)
            return False
        tenant = self.server.tenant_for_key(message.api_key)
        if tenant is None:
            logger.info("realm: authentication failed")
            await self._refuse(INVALID_KEY)
            return False
        self.tenant_id = tenant
        await self._send(AuthSuccess(tenant))
        return True

    async def _refuse(self, error: str) -> None:
        self._closed = True
        with contextlib.suppress(_SendFailed):
            await self._send(AuthFailed(error))
        with contextlib.suppress(Exception):
            await self._close(CLOSE_AUTH_FAILED, "authentication failed")

    # -- calls ------------------------------------------------------------------------------------

    async def _start_call(self, call: Call) -> None:
        if call.id in self.calls:
            await self._send(Answer(call.id, "error", error=ErrorInfo(
                DISPATCH_ERROR, "a call with this id is already running")))
            return
        task = asyncio.create_task(self._run_call(call), name=f"realm-call-{call.id!r:.40}")
        self.calls[call.id] = task

    def _tenant(self, call: Call) -> str:
        if self.tenant_id is not None:
            return self.tenant_id  # the key's tenant: a call cannot claim another one
        return call.tenant_id or self.anonymous_tenant

    async def _run_call(self, call: Call) -> None:
        try:
            await self._dispatch(call)
        except asyncio.CancelledError:
            if call.id in self._cancelled and not self._closed:
                with contextlib.suppress(_SendFailed):
                    await self._send(Answer(call.id, "cancelled"))
                return
            raise
        except _SendFailed:
            return
        except RealmError as exc:
            with contextlib.suppress(_SendFailed):
                await self._send(Answer(call.id, "error", error=ErrorInfo.from_exception(exc)))
        except Exception as exc:
            logger.exception("realm: %s call failed", call.function)
            with contextlib.suppress(_SendFailed):
                await self._send(Answer(call.id, "error", error=ErrorInfo(
                    INTERNAL_ERROR, f"{call.function} failed: {type(exc).__name__}")))
        finally:
            self.calls.pop(call.id, None)
            self._cancelled.discard(call.id)

    async def _dispatch(self, call: Call) -> None:
        server = self.server
        tenant = self._tenant(call)
        wait = server.limiter.acquire(tenant, server.clock())
        if wait is not None:  # every call counts, health and metadata too (Realm's server)
            seconds = max(1, math.ceil(wait))
            raise RealmRateLimitError(f"Rate limit exceeded. Try again in {seconds} seconds.",
                                      retry_after=seconds)
        function = call.function
        if function == "health":
            await self._send(Answer(call.id, "complete", server.health()))
        elif function == "metadata":
            await self._send(Answer(call.id, "complete", server.metadata()))
        elif function == "generate":
            await self._generate(call.id, _generate_request(call.params, tenant))
        elif function == "pipeline":
            name, fn = self._pipeline(call.params)
            started = server.clock()
            output = await fn(call.params.get("input"))
            await self._send(Answer(call.id, "complete", {
                "pipeline": name, "output": output,
                "time_ms": round((server.clock() - started) * 1000, 3),
            }))
        else:
            raise RealmDispatchError(f"Unknown function: {function[:40]}",
                                     details={"functions": list(FUNCTION_NAMES)})

    def _pipeline(self, params: dict[str, Any]) -> tuple[str, Pipeline]:
        name = params.get("pipeline", params.get("name"))
        if not isinstance(name, str):
            raise RealmDispatchError("Missing 'pipeline' parameter", details={"param": "pipeline"})
        fn = self.server.pipelines.get(name)
        if fn is None:
            raise RealmDispatchError(
                f"Unknown pipeline: {name[:40]}",
                details={"param": "pipeline", "pipelines": sorted(self.server.pipelines)},
            )
        return name, fn

    async def _generate(self, call_id: CallId, request: GenerateRequest) -> None:
        clock = self.server.clock
        started = clock()
        model = self.server.resolve_model(request.model)
        parts: list[str] = []
        chunks = self.server.generate(request)
        prefix = stream_frame_prefix(call_id) if request.stream else None
        try:
            async for chunk in chunks:
                if type(chunk) is not str:
                    raise TypeError(f"the generator yielded {type(chunk).__name__}, not str")
                if prefix is not None:
                    await self._send_text(stream_frame(prefix, chunk, len(parts)))
                    await asyncio.sleep(0)  # let other calls and cancels interleave
                parts.append(chunk)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        result = GenerateResult(
            text="".join(parts), tokens_generated=len(parts),
            prompt_tokens=len(request.prompt.split()),
            time_ms=round((clock() - started) * 1000, 3), model=model,
        ).to_data()
        if prefix is not None:
            # The answer has ended: the last record says so (empty, so no token waited for it),
            # and ``complete`` is Realm's ``{status, tokens_generated}`` (no text: the client
            # joins the tokens), plus ours.
            await self._send(Answer(call_id, "streaming", token_record("", len(parts), is_final=True)))
            del result["text"]
            result = {"status": "complete", **result}
        await self._send(Answer(call_id, "complete", result))

    # -- output -----------------------------------------------------------------------------------

    async def _send(self, message: ServerMessage | Invalid) -> None:
        try:
            frame = encode(message)
        except (TypeError, ValueError):
            if not isinstance(message, Answer):
                raise
            logger.exception("realm: an answer could not be encoded")
            frame = encode(Answer(message.id, "error", error=ErrorInfo(
                INTERNAL_ERROR, "the answer could not be encoded as JSON")))
        await self._send_text(frame)

    async def _send_text(self, frame: str) -> None:
        try:
            await self._send_frame(frame)
        except Exception as exc:
            self._closed = True
            raise _SendFailed from exc


def _generate_request(params: dict[str, Any], tenant: str) -> GenerateRequest:
    """Validate ``generate`` params (unknown ones are ignored).

    Raises:
        RealmDispatchError: a param is missing or out of range (``details.param`` names it).
    """
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("prompt", "prompt must be a non-empty string")
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= 1_000_000
    ):
        raise _bad("max_tokens", "max_tokens must be an integer from 1 to 1000000")
    stream = params.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream", "stream must be a boolean")
    model = params.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("model", "model must be a string")
    return GenerateRequest(
        prompt, max_tokens, _bounded(params, "temperature", 0.0, 2.0),
        _bounded(params, "top_p", 0.0, 1.0), model, stream, tenant,
    )


def _bad(param: str, message: str) -> RealmDispatchError:
    return RealmDispatchError(message, details={"param": param})


def _bounded(params: dict[str, Any], name: str, low: float, high: float) -> float | None:
    """``params[name]`` as a float in ``[low, high]``, or None when absent.

    Raises:
        RealmDispatchError: it is not such a number.
    """
    value = params.get(name)
    if value is None:
        return None
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):
            number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise _bad(name, f"{name} must be a number from {low:g} to {high:g}")
    return number


class ServeOptions(TypedDict, total=False):
    """``serve``'s keyword options: ``RealmServer``'s (see there), its ``clock`` excepted."""

    api_keys: Collection[str] | Mapping[str, str] | None
    rate_limit_per_minute: int
    pipelines: Mapping[str, Pipeline] | None
    auth_timeout: float
    max_frame_size: int
    ping_interval: float | None


async def serve(
    generate: Generator = echo_generator, host: str = "127.0.0.1", port: int = 8080,
    **options: Unpack[ServeOptions],
) -> RealmServer:
    """Start a ``RealmServer`` on ``host:port`` and return it (``await server.close()`` to stop).

    Args: see ``RealmServer``; ``port`` 0 picks a free port (read ``server.port``).
    """
    server = RealmServer(generate, **options)
    return await server.start(host, port)
