"""The Phoenix socket: a Starlette WebSocket endpoint driving ``phoenix.ServerConnection``.

Per socket: a reader (frames in, replies and join/leave bookkeeping) and a writer task that
owns every send. Live channel events reach the socket through an outbox that never blocks the
producer; a join's replay, and whatever a socket missed while it was paused, is read from the
channel's log by the writer, a chunk at a time. Which entries a join is handed, once each and in
order (and coalesced for ``{coalesce: true}``), is core's ``phoenix.Subscription``'s.

Flow control: the connection counts what is queued, what the writer still holds and the
transport's write buffer (uvicorn's, reached through its protocol). Past ``max_buffer`` the
socket is paused: nothing more is produced for it, and it catches up from the log once it
drains, so a slow reader loses nothing. Over the limit for ``buffer_grace`` seconds, it is
closed with 1008 (the close frame if it can still be written, else the connection is aborted).
Closing (a malformed frame, the ``drop_socket_after`` fault) also goes through the writer,
after what is already queued; a frame that cannot be sent (not encodable) closes with 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from modelriver.devserver.tokens import TokenClaims, join_refusal, token_usable
from modelriver.exceptions import ProtocolError
from modelriver.phoenix import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    ChannelJoined,
    Entry,
    Left,
    Pushed,
    ServerConnection,
    Subscription,
    socket_token,
)

if TYPE_CHECKING:
    from modelriver.devserver.gateway import Gateway
    from modelriver.devserver.requests import RequestRun

__all__ = ["ChannelSubscription", "SocketSession", "socket_endpoint"]

logger = logging.getLogger("modelriver.devserver")

CLOSE_DROPPED = 1012  # "service restart": clients reconnect
OUTBOX_ENTRIES = 4096  # live entries queued for the writer at most; past it, read from the log
CLOSE_WRITE_TIMEOUT = 1.0  # seconds to get a close frame out before the connection is aborted


class ChannelSubscription:
    """One socket's join of one channel topic (the ``Subscriber`` a ``RequestRun`` pushes to).

    ``relay`` (core's ``phoenix.Subscription``) decides what the connection is handed: its
    replay, then live entries from the outbox; while ``relay.behind`` (its replay, or a pause)
    live entries are not queued: the writer reads them from the log after ``relay.sent_seq``.
    """

    __slots__ = ("active", "relay", "run", "session")

    def __init__(self, session: SocketSession, run: RequestRun, topic: str, *, coalesce: bool,
                 last_seq: int | None) -> None:
        self.session = session
        self.run = run
        self.active = True
        self.relay = Subscription(session.conn, topic, run.topic, last_seq=last_seq, coalesce=coalesce,
                                  coalesce_live=True)
        self.relay.defer()  # the writer reads the replay from the log

    def push(self, entry: Entry) -> None:
        if self.relay.behind:
            return  # the writer reads it from the log
        session = self.session
        outbox = session.outbox
        if len(outbox) >= OUTBOX_ENTRIES:  # the writer is not draining: stop producing
            self.relay.behind = True
            session.watch_flow()
            return
        outbox.append((self, entry))
        session.wake.set()

    def drop(self, reason: str) -> None:
        self.session.request_close(CLOSE_DROPPED, reason)


class SocketSession:
    """One accepted socket.

    Args:
        gateway: the gateway (its store and live-socket registry).
        websocket: the accepted Starlette WebSocket.
        claims: the socket token's claims.
    """

    def __init__(self, gateway: Gateway, websocket: WebSocket, claims: TokenClaims) -> None:
        self.gateway = gateway
        self.websocket = websocket
        self.claims = claims
        server = gateway.config.server
        self.conn = ServerConnection(self._authorize, max_frame_size=server.max_frame,
                                     max_topics=server.max_topics, max_buffer=server.max_buffer,
                                     buffer_grace=server.buffer_grace)
        self.outbox: deque[tuple[ChannelSubscription, Entry]] = deque()
        self.wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._subs: dict[str, ChannelSubscription] = {}
        self._counted: set[str] = set()
        self._transport = _transport_of(websocket)
        self._holding = 0  # characters of the batch the writer is sending
        self._taken = 0  # characters of every batch the writer took, in all
        self._flow_timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def request_close(self, code: int, reason: str) -> None:
        """Close the socket once what is queued is written; frees its token at once."""
        if self._close is None:
            self._close = (code, reason.encode()[:120].decode("utf-8", "ignore"))
            self.gateway.live.release(self.claims.jti, self)
            self.wake.set()

    async def run(self) -> None:
        """Read frames until the client disconnects (or the socket is closed)."""
        writer = self._writer = asyncio.create_task(self._write_loop())
        try:
            await self._read_loop()
        finally:
            if self._flow_timer is not None:
                self._flow_timer.cancel()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._unsubscribe_all()

    def _unsubscribe_all(self) -> None:
        for sub in self._subs.values():
            sub.active = False
            sub.run.unsubscribe(sub)
        self._subs.clear()
        self.outbox.clear()

    async def _read_loop(self) -> None:
        receive = self.websocket.receive
        while True:
            try:
                message = await receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            if self._close is not None:
                continue  # closing: ignore input until the disconnect
            data: str | bytes | None = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            try:
                self.conn.receive(data)
            except ProtocolError as exc:
                logger.info("socket for %s: closing with %d: %s", self.claims.channel_id,
                            exc.close_code, exc)
                self.request_close(exc.close_code, str(exc))
                continue
            self._handle_events()
            self.wake.set()
            if self._holding or self.conn.paused:
                self.watch_flow()

    def _authorize(self, topic: str, payload: dict[str, Any]) -> str | None:
        reason = join_refusal(self.claims, topic)
        if reason is None and self.gateway.store.get(self.claims.channel_id) is None:
            reason = "unknown_channel"
        return reason

    def _handle_events(self) -> None:
        for event in self.conn.events_received():
            if type(event) is ChannelJoined:
                run = self.gateway.store.get(self.claims.channel_id)
                if run is None:
                    continue
                self._unsubscribe(event.topic)
                # ServerConnection.deliver stamps frames with this join's ref, so a client that
                # left and joined again drops what was in flight for the old join.
                sub = ChannelSubscription(self, run, event.topic, coalesce=event.coalesce,
                                          last_seq=event.last_seq)
                self._subs[event.topic] = sub
                if run.channel_id not in self._counted:
                    self._counted.add(run.channel_id)
                    run.sockets += 1
                run.subscribe(sub, run.log.last_seq)  # the replay is read by the writer (behind)
            elif type(event) is Left:
                self._unsubscribe(event.topic)
            elif type(event) is Pushed:
                self.conn.reply(event.topic, event.ref, "error",
                                {"reason": f"unsupported event {event.event!r}"})

    def _unsubscribe(self, topic: str) -> None:
        sub = self._subs.pop(topic, None)
        if sub is not None:
            sub.active = False
            sub.run.unsubscribe(sub)

    async def _write_loop(self) -> None:
        send = self.websocket.send
        conn = self.conn
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if self.outbox:
                    self._deliver_outbox()
                self._catch_up()
                frames = conn.data_to_send()
                if frames:
                    self._holding = size = sum(map(len, frames))
                    self._taken += size
                    if conn.paused:
                        self.watch_flow()  # the sends below may block: the timer decides
                    for frame in frames:
                        await send({"type": "websocket.send", "text": frame})
                        self._holding -= len(frame)
                    if self._update_flow():
                        self._overflow()
                        return
                if self._close is not None:
                    code, reason = self._close
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                if conn.paused:
                    self.watch_flow()
                elif any(sub.relay.behind for sub in self._subs.values()):
                    self.wake.set()  # catching up: next chunk
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client is gone; the reader sees the disconnect
        except Exception:  # e.g. UnicodeEncodeError: never die silently with the socket open
            logger.exception("socket for %s: a frame could not be sent; closing with %d",
                             self.claims.channel_id, CLOSE_INTERNAL)
            self.request_close(CLOSE_INTERNAL, "server error: a frame could not be sent")
            with contextlib.suppress(Exception):
                code, reason = self._close or (CLOSE_INTERNAL, "")
                await send({"type": "websocket.close", "code": code, "reason": reason})

    def _update_flow(self) -> bool:
        """Tell the connection what is unsent and written; True: close it (``update_flow``)."""
        buffered = 0
        transport = self._transport
        if transport is not None:
            with contextlib.suppress(Exception):
                buffered = int(transport.get_write_buffer_size())
        holding = self._holding
        return self.conn.update_flow(holding + buffered, self._taken - holding - buffered,
                                     time.monotonic(), waiting=holding > 0)

    def watch_flow(self) -> None:
        """Look at the flow every tick while paused or writing: close the socket once nothing
        was written for the grace, wake the writer to catch up once it drained."""
        if self._flow_timer is None and self._close is None:
            self._flow_timer = asyncio.get_running_loop().call_later(self.conn.flow_tick,
                                                                     self._check_flow)

    def _check_flow(self) -> None:
        self._flow_timer = None
        if self._close is not None:
            return
        if self._update_flow():
            self._overflow()
        elif self.conn.paused or self._holding:
            self.watch_flow()  # over the limit, or a write still waits: look again
        else:
            self.wake.set()

    def _overflow(self) -> None:
        """The client has not read for the grace: close it (1008) and free what it holds."""
        conn = self.conn
        logger.warning("socket for %s: closing with %d: %s", self.claims.channel_id, CLOSE_POLICY,
                       conn.overflow_reason)
        self.request_close(CLOSE_POLICY, conn.overflow_reason)
        self._unsubscribe_all()
        conn.data_to_send()  # dropped: nothing more is written to it
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()  # blocked in send, most likely: the transport is full
        self._closer = asyncio.get_running_loop().create_task(self._close_or_abort())

    async def _close_or_abort(self) -> None:
        """Write the close frame, or abort the connection when it cannot be written in time."""
        code, reason = self._close or (CLOSE_POLICY, "")
        try:
            async with asyncio.timeout(CLOSE_WRITE_TIMEOUT):
                await self.websocket.send({"type": "websocket.close", "code": code, "reason": reason})
            return
        except Exception:
            pass
        transport = self._transport
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.abort()  # the reader then sees the disconnect

    def _deliver_outbox(self) -> None:
        items, self.outbox = self.outbox, deque()
        batch: list[Entry] = []
        current: ChannelSubscription | None = None
        for sub, entry in items:
            if sub is not current:
                if current is not None:
                    self._deliver_live(current, batch)
                current, batch = sub, []
            batch.append(entry)
        if current is not None:
            self._deliver_live(current, batch)

    def _deliver_live(self, sub: ChannelSubscription, batch: list[Entry]) -> None:
        if sub.active:
            sub.relay.push(batch)  # once paused: behind, read from the log after its cursor later

    def _catch_up(self) -> None:
        """Read behind subscriptions' events from the log, a chunk at a time, while not paused."""
        for sub in self._subs.values():
            if sub.relay.behind:
                sub.relay.catch_up(sub.run.log)


async def socket_endpoint(websocket: WebSocket) -> None:
    """``/socket/websocket``: check the token at the handshake (HTTP 403 if refused), then serve."""
    gateway: Gateway = websocket.app.state.gateway
    subprotocols: list[str] = list(websocket.scope.get("subprotocols") or ())
    claims = gateway.tokens.verify(socket_token(websocket.query_params, subprotocols))
    run = gateway.store.get(claims.channel_id) if claims is not None else None
    refusal: str | None = None
    if claims is None:
        refusal = "missing, forged or expired token"
    elif run is None:
        refusal = "unknown channel"
    elif not token_usable(claims, run.ended_at, time.time(), gateway.config.server.token_grace):
        refusal = "token no longer accepted (request ended)"
    if refusal is not None or claims is None:
        logger.info("socket refused: %s", refusal)
        await websocket.close()  # before accept: HTTP 403
        return
    session = SocketSession(gateway, websocket, claims)
    if not gateway.live.acquire(claims.jti, session):
        logger.info("socket refused for %s: its token already has a live socket", claims.channel_id)
        await websocket.close()
        return
    try:
        await websocket.accept(subprotocol="phoenix" if "phoenix" in subprotocols else None)
        await session.run()
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        gateway.live.release(claims.jti, session)


def _transport_of(websocket: WebSocket) -> Any:
    """The asyncio transport under ``websocket`` (uvicorn's protocols keep it as ``transport``),
    for its write buffer size and ``abort()``; None when the server does not expose one."""
    receive = getattr(websocket, "_receive", None)
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if callable(getattr(transport, "get_write_buffer_size", None)) and callable(
            getattr(transport, "abort", None)):
        return transport
    return None
