"""The browser-facing socket: Phoenix v2 through core's sans-I/O ``ServerConnection``.

Routed at ``<mount>/socket/websocket`` (``routing.websocket_urlpatterns``), so the start view's
``websocket_url`` (``ws(s)://host<mount>/socket``) works with the official ModelRiver SDK,
phoenix.js, or the app's ``modelriver.js`` unchanged. It follows PROTOCOL §3 "What the official
JS SDK does":

* connect: the Django-issued token (``token`` param, or phoenix.js's auth subprotocol) must be
  genuine, unexpired, come with the session it was issued to (``BIND_TOKEN_TO_SESSION``), for a
  known request that has not ended more than a minute ago, and not in
  use by another live socket; ``PERMISSION(scope)`` must allow. Otherwise the handshake is
  refused (HTTP 403). The Origin check is ``AllowedHostsOriginValidator`` (``routing``).
* join: only the token's own channel, topic ``ai_response:<project>:<channel>`` or
  ``ai_response:<channel>`` spelled as issued (core's ``topic_refusal``, the gateway's rule and
  reasons; another spelling is ``noncanonical_topic``); at most ``MAX_TOPICS`` topics; a join of a
  joined topic replaces it. ``{last_seq: n}`` replays what came after n, ``{}`` everything
  buffered, ``{coalesce: true}`` merges replayed tokens.
* heartbeats (socket and channel) are answered; ``phx_leave`` never cancels the request; the
  server never closes the socket after the final response; malformed frames (a lone surrogate
  included) close it with 1007 (1009 when too big; 4007 and 4009 under Daphne, which refuses
  those codes from applications).
* flow control: Daphne's writes never wait, so the consumer measures what it queued plus the
  Twisted transport's write buffer. Past ``MAX_BUFFER`` the socket is paused (nothing produced
  for it; it catches up from the replay once it drains: a slow reader loses nothing); paused with
  nothing read for ``BUFFER_GRACE`` seconds it is closed with 1008 (4008 under Daphne). A frame
  that cannot be sent (not encodable) closes it with 1011 (4011) and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

from asgiref.sync import iscoroutinefunction, sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

if TYPE_CHECKING:
    from asgiref.typing import WebSocketReceiveEvent

from django_modelriver.conf import modelriver_settings
from django_modelriver.hub import Hub, Subscription, get_hub
from django_modelriver.tokens import END_GRACE, SocketClaims, session_owner, verify_token
from modelriver.exceptions import ProtocolError
from modelriver.phoenix import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    ChannelJoined,
    Left,
    Pushed,
    ServerConnection,
    channel_topics,
    socket_token,
    topic_refusal,
)

__all__ = ["ModelRiverConsumer", "check_permission"]

logger = logging.getLogger("django_modelriver")


async def check_permission(request_or_scope: Any) -> bool:
    """Run ``MODELRIVER["PERMISSION"]``; a crash or an import error denies."""
    try:
        func = modelriver_settings().permission()
        if iscoroutinefunction(func):
            result = await func(request_or_scope)
        else:
            result = await sync_to_async(func)(request_or_scope)
        return bool(result)
    except Exception:
        logger.exception("PERMISSION callable failed: denying")
        return False


class ModelRiverConsumer(AsyncWebsocketConsumer):
    """One browser socket. Subclass and override ``authorize_join`` for extra join rules."""

    # Sockets never read the channel layer themselves: the hub does, once per process.
    channel_layer_alias = "django_modelriver.no-layer"

    connection: ServerConnection
    claims: SocketClaims | None = None
    hub: Hub
    project_id: str | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Frames touch no database: skip Channels' per-message close_old_connections thread hop.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(cast("WebSocketReceiveEvent", message))
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        self.holder = secrets.token_hex(8)
        self.subscriptions: dict[str, Subscription] = {}
        self._send_lock = asyncio.Lock()
        params = {k: v for k, v in parse_qsl(self.scope.get("query_string", b"").decode("latin-1"))}
        subprotocols = list(self.scope.get("subprotocols") or [])
        settings = modelriver_settings()
        claims = verify_token(socket_token(params, subprotocols), max_age=settings.token_lifetime)
        if claims is None:
            logger.info("socket refused: missing, forged or expired token")
            await self.close()
            return
        if settings.bind_token_to_session and await session_owner(self.scope) != claims.owner:
            logger.info("socket refused: its token was issued to another session (or the socket "
                        "came without the session cookie; see BIND_TOKEN_TO_SESSION)")
            await self.close()
            return
        self.hub = get_hub()
        record = await self.hub.backend.get(claims.channel_id)
        ended = await self.hub.backend.ended_at(claims.channel_id)
        if record is None or (ended is not None and time.time() - ended > END_GRACE):
            logger.info("socket refused: request %s unknown or long over", claims.channel_id)
            await self.close()
            return
        if not await check_permission(self.scope):
            logger.info("socket refused by PERMISSION")
            await self.close()
            return
        if not await self.hub.claim_token(claims.jti, self.holder):
            logger.info("socket refused: its token is in use by another live socket")
            await self.close()
            return
        self.claims = claims
        self.project_id = record.project_id
        self.canonical_topic = record.topic
        self.connection = ServerConnection(self.authorize_join, max_topics=settings.max_topics,
                                           max_buffer=settings.max_buffer,
                                           buffer_grace=settings.buffer_grace)
        self._own_topics = channel_topics(claims.channel_id, record.topic)
        await self.accept("phoenix" if "phoenix" in subprotocols else None)
        # Frames go straight to the server when websocket_application() recorded its send.
        self._frame_send = cast("Callable[[dict[str, Any]], Awaitable[None]]",
                                self.scope.get("django_modelriver.send") or self.base_send)
        self._buffer_size = _write_buffer_probe(self._frame_send)
        self._write_batch = _daphne_batch_writer(self._frame_send)
        self._flushed = 0  # characters written to the server, in all
        self._holding = 0  # characters of the batch being written
        self._watcher: asyncio.Task[None] | None = None

    def authorize_join(self, topic: str, payload: dict[str, Any]) -> str | None:
        """None to accept a join of ``topic``, else the refusal reason (the gateway's rule)."""
        return topic_refusal(topic, self._own_topics)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data = text_data if text_data is not None else bytes_data
        if data is None or self.claims is None:
            return  # closing: input is ignored
        try:
            self.connection.receive(data)
        except ProtocolError as exc:
            logger.info("closing a socket after a malformed frame (%s)", exc)
            await self.flush()
            await self._release()  # at once: its token may reconnect before the close completes
            await self._close_with(exc.close_code, str(exc)[:100])
            return
        for event in self.connection.events_received():
            if type(event) is ChannelJoined:
                await self._joined(event)
            elif type(event) is Left:
                sub = self.subscriptions.pop(event.topic, None)
                if sub is not None:
                    await self.hub.unsubscribe(sub)
            elif type(event) is Pushed:
                self.connection.reply(event.topic, event.ref, "error", {"reason": "unsupported event"})
        await self.flush()

    async def _close_with(self, code: int, reason: str) -> None:
        """Close with ``code`` (1007, 1009); Daphne (autobahn) lets an application send only 1000
        and 3000-4999, so there the code goes out as ``4000 + code % 1000`` (4007, 4009)."""
        try:
            await self.close(code=code, reason=reason)
        except Exception:
            await self.close(code=4000 + code % 1000, reason=reason)

    async def _joined(self, event: ChannelJoined) -> None:
        assert self.claims is not None
        old = self.subscriptions.pop(event.topic, None)
        if old is not None:
            await self.hub.unsubscribe(old)
        sub = Subscription(self, self.claims.channel_id, event.topic, self.canonical_topic,
                           last_seq=event.last_seq, coalesce=event.coalesce)
        self.subscriptions[event.topic] = sub
        await self.hub.subscribe(sub)

    async def flush(self) -> None:
        """Write what the connection queued, in order. Never raises (a dead socket drops frames).

        The pump's task and this socket's own task both flush; a server whose ``send`` awaits
        (uvicorn) must not interleave them, hence the lock (uncontended under Daphne).
        """
        async with self._send_lock:
            frames = self.connection.data_to_send()
            if frames and self._write_batch is not None and self._write_batch(frames):
                self._flushed += sum(map(len, frames))
            elif frames:
                self._holding = size = sum(map(len, frames))
                try:
                    send = self._frame_send
                    for frame in frames:
                        await send({"type": "websocket.send", "text": frame})
                        self._holding -= len(frame)
                except UnicodeEncodeError:
                    logger.exception("a frame could not be encoded: closing the socket with %d",
                                     CLOSE_INTERNAL)
                    self._holding = 0
                    self.connection.data_to_send()
                    await self._release()
                    await self._close_with(CLOSE_INTERNAL, "server error: a frame could not be sent")
                    return
                except Exception:
                    logger.debug("socket write failed", exc_info=True)
                self._flushed += size - self._holding
                self._holding = 0
        if self._update_flow():
            await self._overflow()
        elif self.connection.paused or any(sub.behind for sub in self.subscriptions.values()):
            self._watch_flow()

    def _update_flow(self) -> bool:
        buffered = self._buffer_size()
        return self.connection.update_flow(self._holding + buffered, self._flushed - buffered,
                                           time.monotonic(), waiting=self._holding > 0)

    def _watch_flow(self) -> None:
        if self.claims is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """While paused: close once nothing was read for the grace; catch up once drained."""
        connection = self.connection
        tick = connection.flow_tick
        while self.claims is not None:
            if self._update_flow():
                await self._overflow()
                return
            if not connection.paused:
                behind = [sub for sub in self.subscriptions.values() if sub.behind]
                if not behind:
                    return
                for sub in behind:
                    await self.hub.catch_up(sub)
                await self.flush()  # starts no other watcher: this one is running
                await asyncio.sleep(0)
                continue
            await asyncio.sleep(tick)

    async def _overflow(self) -> None:
        """The client read nothing for the grace while paused: close it, free what it holds."""
        reason = self.connection.overflow_reason
        logger.warning("closing a socket with %d: %s", CLOSE_POLICY, reason)
        self.connection.data_to_send()
        await self._release()
        await self._close_with(CLOSE_POLICY, reason)

    async def disconnect(self, code: int) -> None:
        await self._release()

    async def _release(self) -> None:
        claims, self.claims = self.claims, None
        if claims is None:
            return
        for sub in self.subscriptions.values():
            await self.hub.unsubscribe(sub)
        self.subscriptions.clear()
        await self.hub.release_token(claims.jti, self.holder)


_SHORT_HEADS = [bytes((0x81, n)) for n in range(126)]
"""The head of an unmasked, final text frame of 0-125 bytes (RFC 6455 5.2)."""


def _daphne_batch_writer(send: Any) -> Callable[[list[str]], bool] | None:
    """Under Daphne: a function writing text frames to the socket in one transport write.

    Each frame is framed as autobahn's ``sendMessage`` frames it on this socket (one final,
    unmasked, uncompressed text frame per message: RFC 6455 5.2), so the client reads the same
    bytes; what goes is only Daphne's and autobahn's per-frame Python and Twisted's per-write
    bookkeeping. The function returns False, having written nothing, whenever that framing is
    not what autobahn would do (not open, compression or fragmentation on, its own queue busy,
    a frame over its size limit or not encodable): then send frame by frame as before. None when
    ``send`` is not Daphne's.
    """
    if not isinstance(send, functools.partial) or not send.args:
        return None
    protocol: Any = send.args[0]
    connections: Any = getattr(getattr(send.func, "__self__", None), "connections", None)
    open_state = getattr(protocol, "STATE_OPEN", None)
    if (not isinstance(connections, dict) or open_state is None
            or not all(hasattr(protocol, name) for name in _AUTOBAHN_STATE)):
        return None
    heads = _SHORT_HEADS

    def write(frames: list[str]) -> bool:
        limit = protocol.maxMessagePayloadSize
        if (protocol.state != open_state or protocol._perMessageCompress is not None or protocol.send_queue
                or protocol.autoFragmentSize or protocol.maskServerFrames):
            return False
        try:
            payloads = [frame.encode() for frame in frames]
        except UnicodeEncodeError:
            return False
        parts: list[bytes] = []
        for payload in payloads:
            size = len(payload)
            if size < 126:
                parts.append(heads[size])
            elif 0 < limit < size:
                return False
            elif size < 65536:
                parts.append(b"\x81\x7e" + size.to_bytes(2, "big"))
            else:
                parts.append(b"\x81\x7f" + size.to_bytes(8, "big"))
            parts.append(payload)
        info = connections.get(protocol)
        if info is not None and not info.get("disconnected"):  # else Daphne drops them too
            protocol.transport.write(b"".join(parts))
        return True

    return write


_AUTOBAHN_STATE = ("state", "maxMessagePayloadSize", "_perMessageCompress", "send_queue", "autoFragmentSize",
                   "maskServerFrames", "transport")
"""The autobahn ``WebSocketServerProtocol`` attributes ``_daphne_batch_writer`` reads."""


def _write_buffer_probe(send: Any) -> Callable[[], int]:
    """A function returning the bytes waiting in the server's transport for ``send``'s socket
    (0 when it cannot be reached): Daphne's Twisted transport, or an asyncio transport (uvicorn).

    An asyncio transport's high-water mark is lifted: uvicorn's ``send`` waits while its transport
    holds more than 64 KiB, and a write stuck on a client that reads nothing would hold this
    socket's flush, the hub's flush of every socket after it, and the close after ``BUFFER_GRACE``.
    The relay bounds what a socket holds itself (``MAX_BUFFER``, ``BUFFER_GRACE``), as under Daphne.
    """
    owner = send.args[0] if isinstance(send, functools.partial) and send.args else getattr(send, "__self__", None)
    transport: Any = getattr(owner, "transport", None)
    if callable(getattr(transport, "get_write_buffer_size", None)):
        with contextlib.suppress(Exception):
            transport.set_write_buffer_limits(high=(1 << 31) - 1)  # uvloop takes a C int
        def asyncio_buffer() -> int:
            try:
                return int(transport.get_write_buffer_size())
            except Exception:
                return 0
        return asyncio_buffer
    if transport is not None and hasattr(transport, "dataBuffer") and hasattr(transport, "_tempDataLen"):
        def twisted_buffer() -> int:  # what Twisted's own _isSendBufferFull counts
            try:
                return len(transport.dataBuffer) - int(transport.offset) + int(transport._tempDataLen)
            except Exception:
                return 0
        return twisted_buffer
    return lambda: 0
