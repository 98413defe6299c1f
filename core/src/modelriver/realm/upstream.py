"""The Realm side of the upstream seam: ``RealmUpstream`` / ``SyncRealmUpstream`` over a ``RealmClient``.

    from modelriver.realm.upstream import RealmUpstream

    async with RealmUpstream("ws://localhost:8080", api_key="sk_...") as upstream:
        stream = await upstream.connect(await upstream.create_request("my-model", "Hi"))
        async for event in stream:          # core StreamEvents, as from a ModelRiver request
            ...

Both implement ``modelriver.upstream.AsyncUpstream`` / ``Upstream``, so code written against a
ModelRiver client runs unchanged against a Realm server.

How a request maps onto Realm (``RealmUpstream``):

* the workflow is the ``generate`` call's ``model``; the prompt is the **last user message**
  (``prompt="last_user"``, the default: Realm's ``generate`` takes one prompt, and ModelRiver's
  workflows answer the last user message too, so both upstreams answer the same text), or with
  ``prompt="transcript"`` the whole conversation flattened to ``role: content`` lines ending
  with ``assistant:``;
* ``metadata`` keys ``max_tokens``, ``temperature`` and ``top_p`` become the call's sampling
  params; other metadata is not sent (Realm has none). Event-driven requests (``events``) are
  refused with ``UpstreamError``: Realm has no webhooks or callbacks;
* the call starts at ``create_request`` and runs on its own, like a ModelRiver request: its events
  are kept (channel messages in ModelRiver's wire format, ``seq`` from 1), so ``connect`` may come
  later, several streams may follow one request, and ``connect(request, last_seq=n)`` resumes.
  They are the gateway's plain order: ``status`` queued, started, streaming, ``tokens``...,
  ``response`` (success); or an ``error`` (the server's error, or the socket lost mid-answer);
* ``cancel`` stops the call (``RealmClient`` stops reading it, and sends ``{type: "cancel"}`` to a
  server whose welcome frame announces it, as the gateway's endpoint does; Realm's own server has
  no cancel and finishes the call unread) and ends the request with a ``cancelled`` response, as
  the gateway does; ``reconnect`` returns the request while it is
  kept (``retention`` seconds after its end), else raises ``APIError`` 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

from modelriver._closing import AsyncClosing, Closing
from modelriver._emitter import Callback, Emitter
from modelriver._portal import Portal, forward, forward_property, same_args
from modelriver.events import Error, Response, Step, StreamEvent, Token, event_from_message
from modelriver.exceptions import APIError, RequestTimeoutError, UpstreamError
from modelriver.phoenix import ChannelMessage
from modelriver.realm.client import RealmClient
from modelriver.realm.exceptions import RealmConnectionError, RealmProtocolError
from modelriver.realm.protocol import DEFAULT_URL
from modelriver.state import RequestState
from modelriver.stream import SyncStream
from modelriver.types import AIResponse, AsyncRequest, WorkflowStep

if TYPE_CHECKING:
    from modelriver.api import Messages, RequestOptions

__all__ = ["FollowOptions", "PromptMode", "RealmStream", "RealmUpstream", "SyncRealmUpstream", "realm_prompt"]

logger = logging.getLogger("modelriver.realm.upstream")

PromptMode = Literal["last_user", "transcript"]

STREAM_EVENTS = ("token", "status", "tool_call", "step", "response", "error", "message")


def realm_prompt(messages: Messages, mode: PromptMode = "last_user") -> str:
    """The Realm prompt for chat ``messages`` (see the module docstring).

    Raises:
        UpstreamError: there is no message text to send.
    """
    if isinstance(messages, str):
        return messages
    items = [(str(m.get("role") or "user"), _content(m.get("content"))) for m in messages]
    if not items:
        raise UpstreamError("no messages to send")
    if mode == "transcript":
        return "\n".join([*(f"{role}: {text}" for role, text in items), "assistant:"])
    for role, text in reversed(items):
        if role == "user":
            return text
    return items[-1][1]


def _content(value: Any) -> str:
    if isinstance(value, list):  # OpenAI content parts
        return "".join(str(p.get("text", "")) for p in value if isinstance(p, dict))
    return "" if value is None else str(value)


class _RealmRun:
    """One Realm ``generate`` call as a ModelRiver-style request: its channel messages, kept."""

    def __init__(self, request: AsyncRequest, workflow: str) -> None:
        self.request = request
        self.workflow = workflow
        self.messages: list[ChannelMessage] = []
        self.task: asyncio.Task[None] | None = None
        self.ended_at: float | None = None
        self.cancelled = False
        self._changed = asyncio.Event()
        self._started = time.monotonic()

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def publish(self, event: str, payload: dict[str, Any]) -> None:
        if self.ended:
            return
        payload = {"seq": len(self.messages) + 1, **payload}
        self.messages.append(ChannelMessage(self.request.topic, event, payload))
        if event == "error" or (event == "response" and payload.get("status") != "ai_generated"):
            self.ended_at = time.monotonic()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changed(self, seen: int) -> None:
        """Wait until there are more than ``seen`` messages or the run ended."""
        while len(self.messages) <= seen and not self.ended:
            await self._changed.wait()

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    def meta(self, status: str, **extra: Any) -> dict[str, Any]:
        return {"workflow": self.workflow, "status": status, "duration_ms": self.elapsed_ms(),
                "provider": "realm", "upstream": "realm", **extra}

    async def generate(self, client: RealmClient, prompt: str, params: Mapping[str, Any]) -> None:
        model = self.workflow
        channel_id = self.request.channel_id
        self.publish("status", {"status": "queued", "step": "queue"})
        self.publish("status", {"status": "started", "step": "process", "provider": "realm",
                                "model": model})
        parts: list[str] = []
        try:
            async with contextlib.aclosing(client.generate_events(
                prompt, model=model, max_tokens=params.get("max_tokens"),
                temperature=params.get("temperature"), top_p=params.get("top_p"),
            )) as events:
                async for event in events:
                    if type(event) is Token:
                        if not parts:
                            self.publish("status", {"status": "streaming", "step": "receive",
                                                    "provider": "realm", "model": model})
                        parts.append(event.data)
                        self.publish("tokens", {"data": event.data, "provider": "realm",
                                                "model": model})
                    elif type(event) is Response:
                        raw = event.response.raw
                        meta = raw.get("meta")
                        usage = meta.get("usage", {}) if isinstance(meta, dict) else {}
                        self.publish("response", {
                            "status": "success", "channel_id": channel_id,
                            "content": event.response.content or "".join(parts),
                            "model": event.response.model or model,
                            "meta": self.meta("success", usage=usage),
                        })
                    elif type(event) is Error:
                        self.publish("error", {"message": event.message})
        except (RealmConnectionError, RealmProtocolError) as exc:
            self.publish("error", {"message": f"Realm: {exc.message}",
                                   "details": {"code": exc.code, "at_token": len(parts)}})
        except asyncio.CancelledError:
            if not self.cancelled:
                self.publish("error", {"message": "the Realm call was stopped"})
                raise
        if not self.ended:  # pragma: no cover - generate_events always ends with one of the above
            self.publish("error", {"message": "the Realm call ended without a result"})

    def cancel(self) -> bool:
        """End the request ``cancelled`` and stop the call. False when it had ended otherwise."""
        if self.ended:
            return self.cancelled
        self.cancelled = True
        self.publish("response", {
            "status": "cancelled", "channel_id": self.request.channel_id,
            "error": {"message": "Request cancelled"}, "meta": self.meta("cancelled"),
        })
        if self.task is not None:
            self.task.cancel()
        return True


class FollowOptions(TypedDict, total=False):
    """How ``connect`` follows a request (``RealmStream``'s options).

    Attributes:
        last_seq: resume after this ``seq`` (default: from the start).
        request_timeout: seconds until the terminal response (default 300; None: no limit).
        coalesce: merge queued ``tokens`` into one, as the gateway does (default False).
    """

    last_seq: int | None
    request_timeout: float | None
    coalesce: bool


class RealmStream:
    """A Realm request's events as core ``StreamEvent``s (what ``RealmUpstream.connect`` returns).

    The same events, steps, ``text`` and ``response`` as ``modelriver.stream.Stream`` gives for a
    gateway request; callbacks registered with ``on()`` (``message`` included: each channel
    message, in ModelRiver's wire format) run as the stream is iterated or waited for.
    """

    def __init__(self, run: _RealmRun, *, last_seq: int | None = None,
                 request_timeout: float | None = 300.0, coalesce: bool = False) -> None:
        self.request = run.request
        self._run = run
        self._index = last_seq or 0
        self._request_timeout = request_timeout
        self._coalesce = coalesce
        self._state = RequestState(run.request.channel_id)
        self._emitter = Emitter(STREAM_EVENTS, logger)
        self._last_seq: int | None = last_seq
        self._closed = False
        self.response: AIResponse | None = None

    @property
    def text(self) -> str:
        """The answer streamed so far."""
        return self._state.text

    @property
    def steps(self) -> list[WorkflowStep]:
        return self._state.steps

    @property
    def last_seq(self) -> int | None:
        return self._last_seq

    @property
    def done(self) -> bool:
        return self._closed or self.response is not None

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """See ``Stream.on``; callbacks run as the stream is iterated."""
        return self._emitter.on(event, callback)

    def off(self, event: str | None = None, callback: Callback | None = None) -> None:
        self._emitter.off(event, callback)

    def start(self) -> None:
        """Nothing to start: the request already runs (kept for ``Stream``'s interface)."""

    async def wait(self) -> AIResponse:
        """Run to the end and return the terminal response."""
        async for _ in self:
            pass
        assert self.response is not None
        return self.response

    async def close(self) -> None:
        """Stop following the request (it goes on; ``cancel`` stops it)."""
        self._closed = True

    async def __aenter__(self) -> RealmStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncGenerator[StreamEvent, None]:
        run = self._run
        loop = asyncio.get_running_loop()
        limit = self._request_timeout
        deadline = None if limit is None else loop.time() + limit
        if self._index == 0:
            for step in self._state.joined().steps:
                yield self._emit(Step(step))
        while not self.done:
            if self._index >= len(run.messages):
                if run.ended:
                    break
                try:
                    async with asyncio.timeout_at(deadline):
                        await run.changed(self._index)
                except TimeoutError:
                    raise RequestTimeoutError(f"no terminal response within {limit} s") from None
                continue
            batch = run.messages[self._index:]
            self._index = len(run.messages)
            for message in self._coalesced(batch):
                for event in self._events(message):
                    yield event
                if self.response is not None:
                    break

    def _coalesced(self, batch: list[ChannelMessage]) -> list[ChannelMessage]:
        """Merge runs of queued ``tokens`` into one (``coalesce``), as the gateway does."""
        if not self._coalesce or len(batch) < 2:
            return batch
        out: list[ChannelMessage] = []
        for message in batch:
            last = out[-1] if out else None
            if message.event == "tokens" and last is not None and last.event == "tokens":
                payload = {**message.payload, "data": last.payload["data"] + message.payload["data"],
                           "from_seq": last.payload.get("from_seq", last.payload["seq"])}
                out[-1] = ChannelMessage(message.topic, "tokens", payload)
            else:
                out.append(message)
        return out

    def _events(self, message: ChannelMessage) -> Iterator[StreamEvent]:
        self._last_seq = message.payload.get("seq", self._last_seq)
        self._emitter.fire("message", message)
        event = event_from_message(message.event, message.payload)
        if event is None:
            return
        changes = self._state.feed(event)
        yield self._emit(event)
        for step in changes.steps:
            yield self._emit(Step(step))
        if changes.done:
            self.response = self._state.result

    def _emit(self, event: StreamEvent) -> StreamEvent:
        self._emitter.fire(event.type, event)
        return event


class RealmUpstream(AsyncClosing):
    """``AsyncUpstream`` over a Realm server (see the module docstring for the mapping).

    Args:
        url: the Realm server's WebSocket URL.
        api_key: sent in Realm's auth handshake; None for servers without auth.
        tenant_id: Realm's tenant id (auto-assigned when absent).
        prompt: ``last_user`` (default) or ``transcript``: how chat messages become the prompt.
        timeout: seconds a call waits for each answer frame.
        reconnect_interval: seconds between reconnect attempts after the socket is cut.
        retention: seconds a finished request stays available to ``connect``/``reconnect``.
        client: a ``RealmClient`` to use instead of making one (then the options above that
            configure the client are ignored, and ``aclose`` leaves it connected).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        tenant_id: str | None = None,
        prompt: PromptMode = "last_user",
        timeout: float | None = 30.0,
        reconnect_interval: float = 5.0,
        retention: float = 600.0,
        client: RealmClient | None = None,
    ) -> None:
        if prompt not in ("last_user", "transcript"):
            raise ValueError(f"prompt must be 'last_user' or 'transcript', not {prompt!r}")
        self._owns_client = client is None
        self.client = client or RealmClient(url, api_key=api_key, tenant_id=tenant_id,
                                            timeout=timeout, reconnect_interval=reconnect_interval)
        self.prompt_mode: PromptMode = prompt
        self.retention = retention
        self._runs: dict[str, _RealmRun] = {}
        self._connecting: asyncio.Lock | None = None

    @property
    def api_base(self) -> str:
        """The Realm URL (adapters show it in their errors, as a ModelRiver client's base)."""
        return self.client.url

    def __repr__(self) -> str:
        return f"RealmUpstream(url={self.client.url!r})"

    async def _connected(self) -> RealmClient:
        client = self.client
        if client.is_connected:
            return client
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if not client.is_connected:
                await client.connect()
        return client

    def _sweep(self) -> None:
        now = time.monotonic()
        for channel_id in [c for c, r in self._runs.items()
                           if r.ended_at is not None and now - r.ended_at >= self.retention]:
            del self._runs[channel_id]

    async def create_request(self, workflow: str, messages: Messages,
                             **options: Unpack[RequestOptions]) -> AsyncRequest:
        """Start a Realm ``generate`` call for ``workflow`` (the model) and return its handle.

        ``options`` are the seam's (``RequestOptions``): ``metadata``'s ``max_tokens``,
        ``temperature`` and ``top_p`` are passed on; ``webhook_url`` has no use here.

        Raises:
            UpstreamError: an event-driven request (``events``), or no message text.
            RealmConnectionError: the server could not be reached.
            RealmAuthenticationError: the API key was refused.
        """
        if options.get("events"):
            raise UpstreamError("Realm cannot run event-driven requests (no webhooks or callbacks)")
        prompt = realm_prompt(messages, self.prompt_mode)
        params = {k: v for k, v in (options.get("metadata") or {}).items()
                  if k in ("max_tokens", "temperature", "top_p")}
        client = await self._connected()
        self._sweep()
        channel_id = str(uuid.uuid4())
        request = AsyncRequest(channel_id=channel_id, ws_token="", websocket_url=client.url,
                               websocket_channel=f"ai_response:{channel_id}",
                               raw={"upstream": "realm", "workflow": workflow})
        run = _RealmRun(request, workflow)
        run.task = asyncio.create_task(run.generate(client, prompt, params),
                                       name=f"modelriver-realm-{channel_id}")
        self._runs[channel_id] = run
        logger.info("realm request %s started (model %s)", channel_id, workflow)
        return request

    def _run(self, channel_id: str) -> _RealmRun:
        run = self._runs.get(channel_id)
        if run is None:
            raise APIError(f"unknown request {channel_id!r}", status=404,
                           body={"error": "not_found"})
        return run

    async def connect(self, request: AsyncRequest, **follow: Unpack[FollowOptions]) -> RealmStream:
        """Follow a request's events: a ``RealmStream`` with ``follow``'s options (``last_seq``,
        ``request_timeout``, ``coalesce``: see ``FollowOptions``).

        Raises:
            APIError: 404, the request is not (or no longer) known.
        """
        return RealmStream(self._run(request.channel_id), **follow)

    async def stream(self, workflow: str, messages: Messages, *, request_timeout: float | None = 300.0,
                     coalesce: bool = False, **request: Unpack[RequestOptions]) -> RealmStream:
        """``create_request`` (with ``request``'s options) then ``connect``."""
        handle = await self.create_request(workflow, messages, **request)
        return await self.connect(handle, request_timeout=request_timeout, coalesce=coalesce)

    async def reconnect(self, channel_id: str) -> AsyncRequest:
        """The request's handle again (Realm needs no fresh token).

        Raises:
            APIError: 404, the request is not (or no longer) known.
        """
        return self._run(channel_id).request

    async def cancel(self, channel_id: str) -> dict[str, Any]:
        """Stop the call on the server; the request ends with a ``cancelled`` response.

        Raises:
            APIError: 404 unknown request; 409 it already ended otherwise.
        """
        run = self._run(channel_id)
        if not run.cancel():
            raise APIError("the request already finished", status=409,
                           body={"error": "already_finished"})
        if run.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([run.task])
        return {"status": "cancelled", "channel_id": channel_id}

    async def health(self) -> dict[str, Any]:
        """The Realm server's health."""
        return await (await self._connected()).health()

    async def aclose(self) -> None:
        """Stop every call in flight and disconnect (unless the client was given)."""
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        for run in self._runs.values():
            run.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_client:
            await self.client.disconnect()


class SyncRealmUpstream(Closing):
    """``Upstream`` (sync) over a Realm server: ``RealmUpstream`` on a private loop thread.

    Args: as ``RealmUpstream`` (without ``client``). Thread-safe; ``close()`` when done. Each
    method runs ``RealmUpstream``'s of the same name (same arguments, see there) on that thread.
    """

    @same_args(RealmUpstream)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "client" in kwargs:
            raise TypeError("SyncRealmUpstream makes its own client (RealmUpstream takes one)")
        self._portal = Portal("modelriver-realm-upstream")

        async def make() -> RealmUpstream:
            return RealmUpstream(*args, **kwargs)

        try:
            self._twin = self._portal.call(make())
        except BaseException:
            self._portal.close()
            raise

    api_base = forward_property(RealmUpstream.api_base)

    create_request = forward(RealmUpstream.create_request)
    reconnect = forward(RealmUpstream.reconnect)
    cancel = forward(RealmUpstream.cancel)
    health = forward(RealmUpstream.health)

    def connect(self, request: AsyncRequest, **follow: Unpack[FollowOptions]) -> SyncStream:
        """See ``RealmUpstream.connect``."""
        return SyncStream.over(self._portal, self._portal.call(self._twin.connect(request, **follow)))

    def stream(self, workflow: str, messages: Messages, *, request_timeout: float | None = 300.0,
               coalesce: bool = False, **request: Unpack[RequestOptions]) -> SyncStream:
        """``create_request`` (with ``request``'s options) then ``connect``."""
        handle = self.create_request(workflow, messages, **request)
        return self.connect(handle, request_timeout=request_timeout, coalesce=coalesce)

    def close(self) -> None:
        """Stop every call, disconnect and stop the loop thread. Idempotent."""
        self._portal.close_after(self._twin.aclose)
