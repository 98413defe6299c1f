"""Stream a request's events over the Phoenix socket: asyncio, with a sync facade.

    async with await connect(request) as stream:
        async for event in stream:
            if isinstance(event, Token):
                print(event.data, end="")

Or with callbacks: ``unsubscribe = stream.on("token", fn)``, then ``await stream.wait()``.

The stream heartbeats, reconnects with phoenix.js's backoff, rejoins with ``{last_seq}`` (and drops
any seq it has already seen, for servers that replay from the start), fetches a fresh token through
``refresh`` when the old one is refused, closes after the terminal response and never reconnects
after it. ``SyncStream`` runs the same code on a private loop thread for sync callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.typing import Origin

from modelriver._closing import Closing
from modelriver._emitter import Callback, Emitter
from modelriver._portal import Portal, forward_property
from modelriver.events import Step, StreamEvent, event_from_message
from modelriver.exceptions import JoinError, ProtocolError, RequestTimeoutError, StreamError
from modelriver.phoenix import (
    ChannelClosed,
    ChannelErrored,
    ChannelMessage,
    HeartbeatTimeout,
    Joined,
    JoinRefused,
    PhoenixClient,
    reconnect_backoff,
)
from modelriver.phoenix.frames import DEFAULT_MAX_FRAME
from modelriver.state import RequestState
from modelriver.types import AIResponse, AsyncRequest, WorkflowStep

__all__ = ["AsyncUpstreamStream", "Refresh", "Stream", "SyncStream", "connect", "connect_sync"]

logger = logging.getLogger("modelriver.stream")

Refresh: TypeAlias = Callable[[], "Awaitable[AsyncRequest] | AsyncRequest"]
"""Returns a fresh ``AsyncRequest`` (the reconnect API) when the socket token is refused."""

LIFECYCLE = ("connecting", "connected", "disconnected", "channel_joined", "channel_error")
EVENTS = ("token", "status", "tool_call", "step", "response", "error", "message", *LIFECYCLE)

_END = object()


class _Flag:
    """A flag one task waits on: ``asyncio.Event`` without its deque of waiters (a stream's
    memory counts, and only its session task waits)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class _DirectConnection(ClientConnection):
    """A client connection that hands each complete data message to ``on_data`` in the loop's
    data callback: no queue and no task wake-up per message (``websockets``' ``recv`` has both).

    Messages wait in ``inbox`` (text as ``str``, binary as ``bytes``, fragments joined) until
    ``on_data`` takes them; it is also called once the connection is lost (``lost``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox: list[str | bytes] = []
        self.on_data: Callable[[], None] | None = None
        self.lost = False
        self._fragments: list[bytes] = []
        self._text = False

    def process_event(self, event: Any) -> None:
        if self.response is None or type(event) is not Frame:
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not event.fin:
                self._fragments, self._text = [bytes(event.data)], opcode is Opcode.TEXT
                return
            data, text = bytes(event.data), opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(event.data))
            if not event.fin:
                return
            data, text, self._fragments = b"".join(self._fragments), self._text, []
        else:
            super().process_event(event)
            return
        self.inbox.append(data.decode() if text else data)  # UTF-8 checked by the protocol

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.inbox and self.on_data is not None:
            self.on_data()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost = True
        if self.on_data is not None:
            self.on_data()


class Stream:
    """One request's event stream. Create it with ``connect()``.

    Iterate it for ``StreamEvent``s, or register callbacks with ``on()``. Either way the stream
    runs in a background task from ``connect()`` until the terminal response.

    ``origin`` is sent as the handshake's ``Origin`` header and ``headers`` as extra headers
    (e.g. a relay behind Channels' ``AllowedHostsOriginValidator`` refuses a socket without an
    allowed ``Origin``: ``connect(request, origin="https://example.com")``).
    """

    def __init__(
        self,
        request: AsyncRequest,
        *,
        refresh: Refresh | None = None,
        request_timeout: float | None = 300.0,
        heartbeat_interval: float = 30.0,
        push_timeout: float = 10.0,
        open_timeout: float = 10.0,
        coalesce: bool = False,
        last_seq: int | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        headers: Mapping[str, str] | None = None,
        origin: str | None = None,
    ) -> None:
        self.request = request
        self._headers = dict(headers) if headers else None
        self._origin = Origin(origin) if origin else None
        self._refresh = refresh
        self._request_timeout = request_timeout
        self._open_timeout = open_timeout
        self._phx = PhoenixClient(
            heartbeat_interval=heartbeat_interval, timeout=push_timeout, max_frame_size=max_frame_size
        )
        self._join_params: dict[str, Any] = {"coalesce": True} if coalesce else {}
        self._start_seq = last_seq
        # A structured answer's partial object is parsed when read, at most every 40 ms.
        self._state = RequestState(request.channel_id, clock=time.monotonic)
        self._queue: asyncio.Queue[object] | None = None  # made when an event is queued or read
        self._queueing = True
        self._finished = False
        self._emitter = Emitter(EVENTS, logger)
        self._joined_once = False
        self._done = False
        self._ws: ClientConnection | None = None
        self._ticker: asyncio.TimerHandle | None = None  # the client's next deadline (``_tick``)
        self._signal = _Flag()  # the session task has work (set from the data callback)
        self._outbox: list[str] = []  # frames taken from the client, for the session task to send
        self._backlog: list[object] = []  # events waiting for the session task, in order
        self._draining = False  # the session task is handling the backlog
        self._failure: BaseException | None = None  # raised in the data callback, for the task
        self._task: asyncio.Task[None] | None = None
        self.response: AIResponse | None = None
        self.reconnects = 0

    # -- public ------------------------------------------------------------------------------

    @property
    def steps(self) -> list[WorkflowStep]:
        """The workflow steps as they stand now (PROTOCOL §4)."""
        return self._state.steps

    @property
    def text(self) -> str:
        """The answer streamed so far (restarted on failover)."""
        return self._state.text

    @property
    def partial(self) -> Any:
        """A structured answer's object so far (``RequestState.partial``); None for text."""
        return self._state.partial

    @property
    def prose(self) -> str:
        """The answer's prose so far: ``text``, or a structured answer's prose field."""
        return self._state.prose

    @property
    def last_seq(self) -> int | None:
        """The highest ``seq`` received: pass it to a later ``connect()`` to resume."""
        return self._phx.last_seq(self.request.topic)

    @property
    def done(self) -> bool:
        return self._done

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(arg)`` on each ``event``; returns a function that unsubscribes.

        Events: token, status, tool_call, step, response, error (with the typed event), and
        connecting, connected, disconnected, channel_joined, channel_error (with a reason or None).
        ``message`` gets every channel message as received (a ``phoenix.ChannelMessage``, unknown
        events included, before typing), for relays that forward the raw payload.
        """
        return self._emitter.on(event, callback)

    def off(self, event: str | None = None, callback: Callback | None = None) -> None:
        """Remove one callback, every callback of ``event``, or all of them."""
        self._emitter.off(event, callback)

    def start(self) -> None:
        """Start the background task (``connect()`` does this)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"modelriver-stream-{self.request.channel_id}")

    async def wait(self) -> AIResponse:
        """Run to the end and return the terminal response (``status == "error"`` on failure).

        Callbacks keep running; events are no longer queued for iteration (iterate or wait), so
        a callbacks-only consumer costs no task switch per event.

        Raises:
            JoinError, RequestTimeoutError, StreamError, ProtocolError: the stream failed.
        """
        self.start()
        self._queueing = False
        queue = self._queue
        while queue is not None and not queue.empty():  # what was queued is consumed, as iterating would
            if queue.get_nowait() is _END:
                queue.put_nowait(_END)
                break
        await self._ended()
        if self.response is None:
            raise StreamError("the stream was closed before the terminal response")
        return self.response

    async def close(self) -> None:
        """Stop streaming and close the socket (the request itself goes on upstream)."""
        self._done = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._iterate()

    async def __aenter__(self) -> Stream:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the background task -----------------------------------------------------------------

    async def _iterate(self) -> AsyncIterator[StreamEvent]:
        self.start()
        while True:
            queue = self._events_queue()
            item = await queue.get()
            if item is _END:
                queue.put_nowait(_END)  # later iterators end too
                await self._ended()
                return
            yield item  # type: ignore[misc]

    async def _ended(self) -> None:
        """Wait for the background task to finish; raise what made it fail."""
        task = self._task
        if task is not None:
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._request_timeout if self._request_timeout else None
        try:
            async with asyncio.timeout_at(deadline):
                await self._connect_loop()
        except TimeoutError:
            raise RequestTimeoutError(
                f"no terminal response within {self._request_timeout} s"
            ) from None
        finally:
            self._done = True
            if self._ws is not None:
                with contextlib.suppress(Exception):
                    await self._ws.close()
            self._finished = True
            if self._queue is not None:
                self._queue.put_nowait(_END)

    def _events_queue(self) -> asyncio.Queue[object]:
        """The queue of events for iteration, made on first use (ended when the stream has)."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            if self._finished:
                self._queue.put_nowait(_END)
        return self._queue

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        topic = self.request.topic
        self._phx.join(topic, self._join_params, loop.time(), last_seq=self._start_seq)
        delays = reconnect_backoff()
        renewed = False  # refused again right after a fresh token: the token is not the reason
        while not self._done:
            self._fire("connecting", None)
            try:
                self._ws = await websockets.connect(
                    self.request.socket_url,
                    open_timeout=self._open_timeout,
                    max_size=self._phx.max_frame_size,  # the Phoenix decoder's bound
                    ping_interval=None,  # Phoenix heartbeats instead
                    compression=None,
                    origin=self._origin,
                    additional_headers=self._headers,
                    create_connection=_DirectConnection,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403) and self._refresh is not None and not renewed:
                    logger.info("socket token refused (HTTP %s): fetching a fresh one", status)
                    await self._renew_token()
                    renewed = True
                    continue
                raise StreamError(self._refusal(status)) from exc
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                logger.info("socket connect failed (%s); retrying", exc)
                await asyncio.sleep(next(delays))
                continue
            delays = reconnect_backoff()
            renewed = False
            self._fire("connected", None)
            try:
                await self._session(self._ws)
            except ConnectionClosed as exc:
                logger.info("socket closed (%s)", exc)
            finally:
                self._phx.connection_lost(loop.time())
            if not self._done:
                self.reconnects += 1
                self._fire("disconnected", "connection lost")
                await asyncio.sleep(next(delays))

    def _refusal(self, status: int) -> str:
        """The error message of a refused handshake (the URL without its token)."""
        url = self.request.socket_url.split("?", 1)[0]
        message = f"the WebSocket handshake with {url} was refused with HTTP {status}"
        if status == 403 and self._origin is None:
            message += (" (a server that checks Origin, e.g. Channels' AllowedHostsOriginValidator, "
                        "refuses a socket without one: pass origin=\"https://your.site\")")
        return message

    async def _renew_token(self) -> None:
        assert self._refresh is not None
        fresh = self._refresh()
        if inspect.isawaitable(fresh):
            fresh = await fresh
        self.request = self.request.with_token(fresh)

    async def _session(self, ws: ClientConnection) -> None:
        """Drive one socket until it closes or the request ends.

        Channel messages are handled in the connection's data callback (``_on_data``) as they
        arrive; this task sends frames and handles control events, in order with them.
        """
        assert isinstance(ws, _DirectConnection)
        loop = asyncio.get_running_loop()
        self._phx.connection_opened(loop.time())
        self._failure = None
        await self._flush(ws)
        self._schedule_tick()
        ws.on_data = lambda: self._on_data(ws, loop)
        try:
            self._on_data(ws, loop)  # what arrived meanwhile
            while True:
                await self._signal.wait()
                self._signal.clear()
                if self._failure is not None:
                    raise self._failure
                await self._flush(ws)
                if self._done:
                    await ws.close()
                    return
                if ws.lost:  # after the data callback took what came before the close
                    exc = ws.protocol.close_exc
                    if isinstance(exc, ConnectionClosedOK):
                        return
                    raise exc
        finally:
            ws.on_data = None
            self._backlog.clear()
            self._outbox.clear()
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None

    def _on_data(self, ws: _DirectConnection, loop: asyncio.AbstractEventLoop) -> None:
        """The data callback: feed the messages that arrived to the client, handle the channel
        messages now; wake the session task for anything else (frames to send, control events,
        the end, a failure, the close)."""
        inbox, phx, backlog = ws.inbox, self._phx, self._backlog
        now = loop.time()
        taken = 0
        for raw in inbox:
            if self._done or self._failure is not None:
                break
            taken += 1
            try:
                phx.receive(raw, now)
            except ProtocolError as exc:
                logger.warning("malformed frame from the server; closing")
                self._failure = exc
                break
            backlog += phx.events_received()
            if self._draining:
                continue
            try:
                handled = 0
                for event in backlog:
                    if type(event) is not ChannelMessage:
                        break
                    handled += 1
                    self._on_message(event)
            except Exception as exc:  # as if raised in the task: the stream fails
                self._failure = exc
                break
            finally:
                del backlog[:handled]
        del inbox[:taken]
        self._outbox.extend(phx.data_to_send())
        if self._outbox or self._backlog or self._done or self._failure is not None or ws.lost:
            self._signal.set()

    def _schedule_tick(self) -> None:
        """Heartbeats, join timeouts and rejoins: ``_tick`` at the client's next deadline."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        deadline = self._phx.next_deadline()
        if deadline is not None:
            self._ticker = asyncio.get_running_loop().call_at(deadline, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        self._phx.tick(asyncio.get_running_loop().time())
        self._signal.set()  # the session task sends and handles what the tick made
        self._schedule_tick()

    async def _flush(self, ws: ClientConnection) -> None:
        """Send the client's frames, then handle its events in order (the session task only)."""
        frames, self._outbox = self._outbox, []
        frames += self._phx.data_to_send()
        for frame in frames:
            await ws.send(frame)
        control = False
        backlog = self._backlog
        backlog += self._phx.events_received()
        self._draining = True
        try:
            while backlog:
                event = backlog.pop(0)
                if type(event) is ChannelMessage:
                    self._on_message(event)
                else:
                    control = True
                    await self._on_control(event, ws)
        finally:
            self._draining = False
        if frames or control:
            self._schedule_tick()

    async def _on_control(self, event: object, ws: ClientConnection) -> None:
        if isinstance(event, Joined):
            self._fire("channel_joined", None)
            if not self._joined_once:
                self._joined_once = True
                self._emit_steps(self._state.joined().steps)
        elif isinstance(event, JoinRefused):
            self._fire("channel_error", event.reason)
            raise JoinError(event.reason)
        elif isinstance(event, ChannelErrored):
            self._fire("channel_error", "channel crashed")
        elif isinstance(event, ChannelClosed) and not self._done:
            raise StreamError("the server closed the channel before the request ended")
        elif isinstance(event, HeartbeatTimeout):
            logger.info("heartbeat reply missing: reconnecting")
            await ws.close()

    def _on_message(self, message: ChannelMessage) -> None:
        if self._done:
            return
        if self._emitter.has("message"):
            self._fire("message", message)
        event = event_from_message(message.event, message.payload)
        if event is None:
            logger.debug("ignored channel event %r", message.event)
            return
        changes = self._state.feed(event)  # the state first: callbacks see it updated
        self._emit(event)
        if changes.steps:
            self._emit_steps(changes.steps)
        if changes.done:
            self.response = self._state.result
            self._done = True

    def _emit_steps(self, steps: Sequence[WorkflowStep]) -> None:
        for step in steps:
            self._emit(Step(step))

    def _emit(self, event: StreamEvent) -> None:
        if self._queueing:
            self._events_queue().put_nowait(event)
        self._fire(event.type, event)

    def _fire(self, name: str, arg: Any) -> None:
        self._emitter.fire(name, arg)


async def connect(request: AsyncRequest, **options: Any) -> Stream:
    """Start streaming ``request``'s channel. Options are ``Stream``'s keyword arguments."""
    stream = Stream(request, **options)
    stream.start()
    return stream


class AsyncUpstreamStream(Protocol):
    """One request's events: ``Stream`` is one, a Realm upstream's ``RealmStream`` another.

    What ``SyncStream`` drives, and the stream of ``modelriver.upstream``'s seam.
    """

    request: AsyncRequest
    response: AIResponse | None

    @property
    def text(self) -> str: ...

    @property
    def steps(self) -> list[WorkflowStep]: ...

    @property
    def last_seq(self) -> int | None: ...

    def on(self, event: str, callback: Callback) -> Callable[[], None]: ...

    def off(self, event: str | None = None, callback: Callback | None = None) -> None: ...

    def __aiter__(self) -> AsyncIterator[StreamEvent]: ...

    async def wait(self) -> AIResponse: ...

    async def close(self) -> None: ...


class SyncStream(Closing):
    """``Stream`` for sync code: the same implementation, run on a private loop thread.

    Callbacks registered with ``on()`` run on that thread. ``SyncStream.over`` wraps any async
    stream of this shape (a Realm upstream's too) that lives on a given portal.
    """

    def __init__(self, request: AsyncRequest, **options: Any) -> None:
        portal = Portal(f"modelriver-stream-{request.channel_id}")
        try:
            stream = portal.call(connect(request, **options))
        except BaseException:
            portal.close()
            raise
        self._bind(portal, stream, owns_portal=True)

    @classmethod
    def over(cls, portal: Portal, stream: AsyncUpstreamStream) -> SyncStream:
        """Drive ``stream`` (created on ``portal``'s loop) from sync code; ``close`` keeps the portal."""
        self = cls.__new__(cls)
        self._bind(portal, stream, owns_portal=False)
        return self

    def _bind(self, portal: Portal, stream: AsyncUpstreamStream, *, owns_portal: bool) -> None:
        self._portal = portal
        self._twin = stream
        self._events = stream.__aiter__()
        self._keep_portal = not owns_portal
        self.request: AsyncRequest = stream.request

    steps = forward_property(Stream.steps)
    text = forward_property(Stream.text)
    last_seq = forward_property(Stream.last_seq)

    @property
    def response(self) -> AIResponse | None:
        """The final response, once the stream is done."""
        return self._twin.response

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """See ``Stream.on``; the callback runs on the stream's thread."""
        return self._twin.on(event, callback)

    def off(self, event: str | None = None, callback: Callback | None = None) -> None:
        self._twin.off(event, callback)

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        try:
            return self._portal.call(self._events.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def wait(self) -> AIResponse:
        """Run to the end; see ``Stream.wait`` (one call into the stream's thread, not one per event)."""
        return self._portal.call(self._twin.wait())

    def close(self) -> None:
        """Stop streaming (and release the thread when it is the stream's own). Idempotent."""
        self._portal.close_after(self._twin.close, keep_open=self._keep_portal)


def connect_sync(request: AsyncRequest, **options: Any) -> SyncStream:
    """Start streaming ``request``'s channel from sync code; see ``connect``."""
    return SyncStream(request, **options)
