"""The Phoenix socket: a Starlette WebSocket endpoint driving ``phoenix.ServerConnection``.

Per socket: a reader (frames in, replies and join/leave bookkeeping) and a writer task that
owns every send. Channel events reach the socket through an outbox that never blocks the
producer; when the socket is slow the outbox grows, and for a join with ``{coalesce: true}``
the writer merges the queued ``tokens`` into one event (``coalesce_tokens``). Closing (a
malformed frame, the ``drop_socket_after`` fault) also goes through the writer, after what is
already queued.
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
    ChannelJoined,
    Entry,
    Left,
    Pushed,
    ServerConnection,
    coalesce_tokens,
    encode_parts,
    payload_of,
    socket_token,
)

if TYPE_CHECKING:
    from modelriver.devserver.gateway import Gateway
    from modelriver.devserver.requests import RequestRun

__all__ = ["ChannelSubscription", "SocketSession", "socket_endpoint"]

logger = logging.getLogger("modelriver.devserver")

CLOSE_DROPPED = 1012  # "service restart": clients reconnect


class ChannelSubscription:
    """One socket's join of one channel topic (the ``Subscriber`` a ``RequestRun`` pushes to)."""

    __slots__ = ("active", "alias", "coalesce", "run", "session", "topic")

    def __init__(self, session: SocketSession, run: RequestRun, topic: str, *, coalesce: bool) -> None:
        self.session = session
        self.run = run
        self.topic = topic
        self.coalesce = coalesce
        self.alias = topic != run.topic  # joined as ai_response:<channel>: frames re-encoded
        self.active = True

    def push(self, entry: Entry) -> None:
        session = self.session
        session.outbox.append((self, entry))
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
        self.conn = ServerConnection(self._authorize, max_frame_size=gateway.config.server.max_frame)
        self.outbox: deque[tuple[ChannelSubscription, Entry]] = deque()
        self.wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._subs: dict[str, ChannelSubscription] = {}
        self._counted: set[str] = set()

    def request_close(self, code: int, reason: str) -> None:
        """Close the socket once what is queued is written; frees its token at once."""
        if self._close is None:
            self._close = (code, reason.encode()[:120].decode("utf-8", "ignore"))
            self.gateway.live.release(self.claims.jti, self)
            self.wake.set()

    async def run(self) -> None:
        """Read frames until the client disconnects (or the socket is closed)."""
        writer = asyncio.create_task(self._write_loop())
        try:
            await self._read_loop()
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            for sub in self._subs.values():
                sub.active = False
                sub.run.unsubscribe(sub)
            self._subs.clear()

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
                sub = ChannelSubscription(self, run, event.topic, coalesce=event.coalesce)
                self._subs[event.topic] = sub
                if run.channel_id not in self._counted:
                    self._counted.add(run.channel_id)
                    run.sockets += 1
                replay = run.subscribe(sub, event.last_seq)
                self.outbox.extend((sub, entry) for entry in replay)
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
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if self.outbox:
                    self._deliver_outbox()
                for frame in self.conn.data_to_send():
                    await send({"type": "websocket.send", "text": frame})
                if self._close is not None:
                    code, reason = self._close
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    return
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client is gone; the reader sees the disconnect

    def _deliver_outbox(self) -> None:
        items, self.outbox = self.outbox, deque()
        batch: list[Entry] = []
        current: ChannelSubscription | None = None
        for sub, entry in items:
            if sub is not current:
                if current is not None:
                    self._deliver(current, batch)
                current, batch = sub, []
            batch.append(entry)
        if current is not None:
            self._deliver(current, batch)

    def _deliver(self, sub: ChannelSubscription, batch: list[Entry]) -> None:
        if not sub.active:
            return
        topic = sub.topic
        if sub.alias:
            batch = [_aliased(e, topic) for e in batch]
        frames = (coalesce_tokens(batch, topic) if sub.coalesce and len(batch) > 1
                  else [e.frame for e in batch])
        self.conn.deliver(topic, frames)


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


def _aliased(entry: Entry, topic: str) -> Entry:
    """``entry`` with its frame encoded for ``topic`` (a join by an alias of the request's topic)."""
    payload = payload_of(entry)
    return Entry(entry.seq, entry.event, payload, encode_parts(None, None, topic, entry.event, payload))
