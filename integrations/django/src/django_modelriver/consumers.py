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
  ``ai_response:<channel>``; refusals use the gateway's reasons. ``{last_seq: n}`` replays what
  came after n, ``{}`` everything buffered, ``{coalesce: true}`` merges replayed tokens.
* heartbeats (socket and channel) are answered; ``phx_leave`` never cancels the request; the
  server never closes the socket after the final response; malformed frames close it with 1007
  (1009 when too big; 4007 and 4009 under Daphne, which refuses those codes from applications).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from asgiref.sync import iscoroutinefunction, sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from django_modelriver.conf import modelriver_settings
from django_modelriver.hub import Hub, Subscription, get_hub
from django_modelriver.tokens import END_GRACE, SocketClaims, session_owner, verify_token
from modelriver.exceptions import ProtocolError
from modelriver.phoenix import (
    ChannelJoined,
    Left,
    Pushed,
    ServerConnection,
    socket_token,
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
            await self.websocket_receive(message)
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
        self.connection = ServerConnection(self.authorize_join)
        await self.accept("phoenix" if "phoenix" in subprotocols else None)
        # Frames go straight to the server when websocket_application() recorded its send.
        self._frame_send = self.scope.get("django_modelriver.send") or self.base_send

    def authorize_join(self, topic: str, payload: dict[str, Any]) -> str | None:
        """None to accept a join of ``topic``, else the refusal reason (the gateway's)."""
        parts = topic.split(":")
        if parts[0] != "ai_response" or len(parts) not in (2, 3):
            return "invalid_channel_format"
        if len(parts) == 3 and not _is_uuid(parts[1]):
            return "invalid_project_uuid"
        if not _is_uuid(parts[-1]):
            return "invalid_channel_uuid"
        assert self.claims is not None
        if parts[-1] != self.claims.channel_id:
            return "unauthorized_project_access"
        if len(parts) == 3 and self.project_id and parts[1] != self.project_id:
            return "unauthorized_project_access"
        return None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data = text_data if text_data is not None else bytes_data
        if data is None:
            return
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
            try:
                send = self._frame_send
                for frame in self.connection.data_to_send():
                    await send({"type": "websocket.send", "text": frame})
            except Exception:
                logger.debug("socket write failed", exc_info=True)

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


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
