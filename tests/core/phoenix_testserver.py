"""A small Phoenix Channels server on asyncio ``websockets``, built on the sans-I/O core.

Real Phoenix clients (phoenix.js, our own stream) can talk to it: it routes ``/socket/websocket``,
takes the socket token from the ``token`` param or phoenix.js's auth subprotocol, refuses unknown
tokens with HTTP 403 at the handshake, gives each socket a ``ServerConnection`` and fans events
out from one ``ChannelLog`` per topic (so a join with ``{}`` replays from the start, one with
``{last_seq}`` after it, and ``{coalesce: true}`` merges replayed ``tokens``)::

    async with PhoenixTestServer({"tok": {"ai_response:p:c"}}) as server:
        ...                                   # point a client at server.url
        await server.wait_joined("ai_response:p:c")
        await server.publish("ai_response:p:c", "tokens", {"data": "Hel"})

Test hooks: ``publish`` (push an event to every joined socket, and keep it for replays),
``wait_for(predicate)`` / ``wait_joined`` (wait on what the server saw, never sleep),
``events`` (every ``ChannelJoined`` / ``Left`` / ``Pushed`` by socket id), ``refused`` (handshakes
answered with an HTTP error), ``sockets`` (the live ones), ``accepted`` (every socket ever opened),
``disconnect_all`` (a network cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from modelriver.exceptions import ProtocolError
from modelriver.phoenix import (
    ChannelJoined,
    ChannelLog,
    Entry,
    Left,
    Pushed,
    ServerEvent,
    coalesce_tokens,
    socket_token,
)
from modelriver.phoenix import ServerConnection as PhoenixConnection

__all__ = ["Authorizer", "PhoenixTestServer", "PushHandler", "Socket", "topic_authorizer"]

logger = logging.getLogger("modelriver.tests.phoenix_server")

Authorizer = Callable[[str, str, dict[str, Any]], "str | None"]
"""``authorize(token, topic, join_payload)``: None to accept the join, else the refusal reason."""

PushHandler = Callable[[str, str, Any], "tuple[str, Any]"]
"""``on_push(topic, event, payload)`` returns the reply's ``(status, response)``."""


def topic_authorizer(tokens: Mapping[str, Collection[str]]) -> Authorizer:
    """PROTOCOL §2's join rules for tokens that each open a set of topics.

    ``ai_response:<id>`` or ``ai_response:<project>:<channel>``, else ``invalid_channel_format``;
    a well-formed topic the token was not issued for: ``unauthorized_project_access``.
    """

    def authorize(token: str, topic: str, payload: dict[str, Any]) -> str | None:
        parts = topic.split(":")
        if parts[0] != "ai_response" or len(parts) not in (2, 3) or not all(parts[1:]):
            return "invalid_channel_format"
        if topic not in tokens.get(token, ()):
            return "unauthorized_project_access"
        return None

    return authorize


@dataclass(eq=False)
class Socket:
    """One connected client: its token, negotiated subprotocol and Phoenix state."""

    id: int
    token: str
    subprotocol: str | None
    websocket: ServerConnection
    phoenix: PhoenixConnection
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class PhoenixTestServer:
    """Phoenix Channels over ``websockets`` on a loopback port (0: the OS picks a free one).

    Args:
        tokens: token -> topics it may join; ``accept_token`` and ``authorize`` default to it.
        accept_token: ``accept_token(token)``; False (or no token) answers the handshake with 403.
        authorize: join rule, see ``Authorizer``; defaults to ``topic_authorizer(tokens)``.
        on_push: answers clients' custom pushes; default ``("ok", {})``.
        max_events: replay buffer per topic.
        host, port: where to listen.
    """

    path = "/socket/websocket"

    def __init__(
        self,
        tokens: Mapping[str, Collection[str]] | None = None,
        *,
        accept_token: Callable[[str], bool] | None = None,
        authorize: Authorizer | None = None,
        on_push: PushHandler | None = None,
        max_events: int = 10_000,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.tokens: Mapping[str, Collection[str]] = tokens or {}
        self.accept_token = accept_token or (lambda token: token in self.tokens)
        self.authorize = authorize or topic_authorizer(self.tokens)
        self.on_push = on_push or (lambda topic, event, payload: ("ok", {}))
        self.max_events = max_events
        self.host, self.port = host, port
        self.logs: dict[str, ChannelLog] = {}
        self.sockets: dict[int, Socket] = {}
        self.accepted: list[Socket] = []
        self.events: list[tuple[int, ServerEvent]] = []
        self.refused: list[tuple[str, int]] = []  # (path, HTTP status)
        self.protocol_errors: list[ProtocolError] = []
        self.closed: list[int] = []  # ids of sockets that went away
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._changed = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> PhoenixTestServer:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> PhoenixTestServer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The socket URL a client is given (``websocket_url``): it appends ``/websocket`` itself."""
        return f"ws://{self.host}:{self.port}/socket"

    def websocket_url(self, token: str) -> str:
        """The full URL phoenix.js would open for ``token``."""
        return f"{self.url}/websocket?token={token}&vsn=2.0.0"

    # -- test hooks --------------------------------------------------------------------------------

    def log(self, topic: str) -> ChannelLog:
        """The topic's log (created on first use)."""
        log = self.logs.get(topic)
        if log is None:
            log = self.logs[topic] = ChannelLog(topic, max_events=self.max_events)
        return log

    async def publish(self, topic: str, event: str, payload: dict[str, Any]) -> Entry:
        """Append an event to the topic's log and send it to every socket that joined the topic."""
        entry = self.log(topic).append(event, payload)
        targets = [s for s in self.sockets.values() if s.phoenix.deliver(topic, (entry.frame,))]
        for sock in targets:
            await self._flush(sock)
        return entry

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; it is checked after every change the server sees.

        Raises:
            TimeoutError: it did not hold within ``within`` seconds.
        """
        async with asyncio.timeout(within):
            while not predicate():
                changed = self._changed
                await changed.wait()

    def joins(self, topic: str | None = None) -> list[tuple[int, ChannelJoined]]:
        """The accepted joins so far (of ``topic``, or all)."""
        return [(sid, e) for sid, e in self.events
                if isinstance(e, ChannelJoined) and (topic is None or e.topic == topic)]

    async def wait_joined(self, topic: str, count: int = 1, within: float = 10.0) -> ChannelJoined:
        """Wait for the ``count``-th accepted join of ``topic``; returns it."""
        await self.wait_for(lambda: len(self.joins(topic)) >= count, within)
        return self.joins(topic)[count - 1][1]

    async def disconnect_all(self, code: int = 1012, reason: str = "restart") -> None:
        """Close every client socket (what a server restart looks like to clients)."""
        for sock in list(self.sockets.values()):
            await sock.websocket.close(code, reason)

    # -- internals ---------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path.rstrip("/") != self.path:
            self.refused.append((request.path, HTTPStatus.NOT_FOUND))
            self._notify()
            return connection.respond(HTTPStatus.NOT_FOUND, "no such socket\n")
        token = _token_of(request)
        if token is None or not self.accept_token(token):
            self.refused.append((request.path, HTTPStatus.FORBIDDEN))
            self._notify()
            return connection.respond(HTTPStatus.FORBIDDEN, "unknown token\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        token = _token_of(websocket.request)
        assert token is not None

        def authorize(topic: str, payload: dict[str, Any]) -> str | None:
            return self.authorize(token, topic, payload)

        sock = Socket(next(self._ids), token, websocket.subprotocol, websocket, PhoenixConnection(authorize))
        self.sockets[sock.id] = sock
        self.accepted.append(sock)
        self._notify()
        try:
            async for data in websocket:
                try:
                    sock.phoenix.receive(data)
                except ProtocolError as exc:
                    self.protocol_errors.append(exc)
                    await websocket.close(exc.close_code, str(exc)[:100])
                    break
                for event in sock.phoenix.events_received():
                    self._on_event(sock, event)
                await self._flush(sock)
                self._notify()
        except ConnectionClosed:
            pass
        finally:
            del self.sockets[sock.id]
            self.closed.append(sock.id)
            self._notify()

    def _on_event(self, sock: Socket, event: ServerEvent) -> None:
        if isinstance(event, ChannelJoined):
            entries = self.log(event.topic).after(event.last_seq)
            frames: Iterable[str] = (
                coalesce_tokens(entries, event.topic) if event.coalesce else [e.frame for e in entries]
            )
            sock.phoenix.deliver(event.topic, frames)
        elif isinstance(event, Pushed):
            status, response = self.on_push(event.topic, event.event, event.payload)
            sock.phoenix.reply(event.topic, event.ref, status, response)
        else:
            assert isinstance(event, Left)
        self.events.append((sock.id, event))

    async def _flush(self, sock: Socket) -> None:
        async with sock.lock:  # one writer at a time keeps each socket's frames in order
            frames = sock.phoenix.data_to_send()
            with contextlib.suppress(ConnectionClosed):
                for frame in frames:
                    await sock.websocket.send(frame)


def _token_of(request: Request) -> str | None:
    params = dict(parse_qsl(urlsplit(request.path).query))
    protocols = [p.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol")
                 for p in value.split(",")]
    return socket_token(params, protocols)


def _select_subprotocol(connection: ServerConnection, subprotocols: Any) -> Any:
    """Speak ``phoenix`` when offered (phoenix.js's token subprotocol needs it), never require it."""
    return "phoenix" if "phoenix" in subprotocols else None
