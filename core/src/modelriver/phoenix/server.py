"""The server side of Phoenix Channels, without sockets or clocks.

``ServerConnection``, one per socket. Feed it frames with ``receive(text)``; it answers heartbeats
and joins itself (authorizing through your callback) and reports ``Joined`` / ``Left`` /
``Pushed`` events. Hand it broadcast frames with ``deliver(topic, frames)``; it queues them only
for topics this socket has joined. Write ``data_to_send()`` after each call. A topic's events
live in ``phoenix.log.ChannelLog`` (shared by every socket); what one join is handed, and when,
is ``phoenix.relay.Subscription``'s.

Hardening rules it applies for every server built on it: a join of a topic the socket already
joined replaces that join (its ``phx_close`` is sent and its queued frames are dropped), a
socket joins at most ``max_topics`` topics, a frame holding a lone surrogate is a protocol error
(1007), and the outbox is bounded: past ``max_buffer`` the socket is ``paused`` (produce nothing
more for it; catch up from the log once it drains) and ``update_flow`` says when it has stayed
paused with nothing written for ``buffer_grace`` seconds (close it with ``CLOSE_POLICY``).

The ModelRiver rules live here too: ``{last_seq}`` in the join payload asks for a replay after
that seq, ``{}`` for everything buffered, and ``{coalesce: true}`` lets a busy socket merge
queued ``tokens`` (``phoenix.relay.coalesce_tokens``).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelriver.exceptions import ProtocolError
from modelriver.phoenix.frames import (
    CLOSE_INVALID,
    DEFAULT_MAX_FRAME,
    decode,
    encode_parts,
    has_lone_surrogate,
)

__all__ = [
    "AUTH_SUBPROTOCOL_PREFIX",
    "DEFAULT_BUFFER_GRACE",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_TOPICS",
    "Joined",
    "Left",
    "Pushed",
    "ServerConnection",
    "ServerEvent",
    "socket_token",
]

logger = logging.getLogger("modelriver.phoenix")

AUTH_SUBPROTOCOL_PREFIX = "base64url.bearer.phx."
DEFAULT_MAX_TOPICS = 16
DEFAULT_MAX_BUFFER = 1 << 20
DEFAULT_BUFFER_GRACE = 10.0

JoinAuthorizer = Callable[[str, dict[str, Any]], str | None]
"""``authorize(topic, payload)`` returns None to accept, or the refusal reason."""


def socket_token(params: Mapping[str, str], subprotocols: Sequence[str] = ()) -> str | None:
    """The socket's token: the ``token`` param, or phoenix.js's auth subprotocol."""
    token = params.get("token")
    if token:
        return token
    for proto in subprotocols:
        if proto.startswith(AUTH_SUBPROTOCOL_PREFIX):
            encoded = proto[len(AUTH_SUBPROTOCOL_PREFIX):]
            try:
                decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text
                return None
            return decoded or None
    return None


@dataclass(frozen=True, slots=True)
class _ChannelEvent:
    """An event on one of the socket's channels."""

    topic: str


@dataclass(frozen=True, slots=True)
class Joined(_ChannelEvent):
    """A join was accepted and its ok reply queued: subscribe, then ``deliver`` the replay."""

    payload: dict[str, Any]
    last_seq: int | None
    coalesce: bool
    join_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Left(_ChannelEvent):
    """The socket left ``topic`` (its reply queued): unsubscribe."""


@dataclass(frozen=True, slots=True)
class Pushed(_ChannelEvent):
    """The client pushed a custom event on a joined channel; answer with ``reply``."""

    event: str
    payload: Any
    ref: str | None


ServerEvent = Joined | Left | Pushed


class ServerConnection:
    """One client socket's Phoenix server state.

    Args:
        authorize: ``authorize(topic, payload)`` returns None to accept the join, or a
            refusal reason such as ``unauthorized_project_access``.
        max_frame_size: larger incoming frames raise ``ProtocolError`` (close code 1009).
        max_topics: topics one socket may have joined at once; a join past it is refused
            with reason ``too_many_topics``.
        max_buffer: characters (about bytes) of output queued here or reported unsent by the
            I/O layer (``update_flow``) past which the socket is ``paused``.
        buffer_grace: seconds a paused socket may go without any byte written before
            ``update_flow`` says to close it.
    """

    def __init__(
        self, authorize: JoinAuthorizer, *, max_frame_size: int = DEFAULT_MAX_FRAME,
        max_topics: int = DEFAULT_MAX_TOPICS, max_buffer: int = DEFAULT_MAX_BUFFER,
        buffer_grace: float = DEFAULT_BUFFER_GRACE,
    ) -> None:
        self._authorize = authorize
        self.max_frame_size = max_frame_size
        self.max_topics = max_topics
        self.max_buffer = max_buffer
        self.buffer_grace = buffer_grace
        self._joins: dict[str, str | None] = {}  # topic -> join_ref
        self._prefixes: dict[str, str] = {}  # topic -> '["<join_ref>",' for stamping broadcasts
        self._out: list[str] = []
        self._queued = 0  # characters in _out
        self._unsent = 0  # characters handed out by data_to_send() and not known written
        self._stuck_since: float | None = None  # paused, and nothing written since
        self._written = 0
        self._stalled = False
        self._events: list[ServerEvent] = []

    @property
    def topics(self) -> list[str]:
        """The topics this socket has joined."""
        return list(self._joins)

    def data_to_send(self) -> list[str]:
        """Frames to write, in order; clears the buffer.

        They count as unsent until the next ``update_flow`` says what is still unwritten.
        """
        out, self._out = self._out, []
        self._unsent += self._queued
        self._queued = 0
        return out

    @property
    def buffered(self) -> int:
        """Characters queued here plus those reported unsent (``update_flow``)."""
        return self._queued + self._unsent

    @property
    def paused(self) -> bool:
        """Over ``max_buffer``, or the transport stalled: produce no more channel events for this
        socket until it drains (they stay in the channel's log: catch up from there, in order)."""
        return self._stalled or self._queued + self._unsent > self.max_buffer

    def update_flow(self, unsent: int, written: int, now: float, *, waiting: bool = False) -> bool:
        """Say how the transport is doing with what ``data_to_send`` returned, at time ``now``.

        Args:
            unsent: bytes still waiting to be written (what the writer holds, plus the
                transport's write buffer; 0 when all was written or it cannot be known).
            written: bytes the transport has passed on so far, in all (any counter that grows
                when the client reads).
            now: a monotonic clock, seconds.
            waiting: a write is blocked (a server whose writes wait while its buffer is full);
                without progress since the last call the socket counts as stalled (paused).

        Returns:
            True when the socket has been paused without any progress for ``buffer_grace``
            seconds, i.e. the client stopped reading: close it with ``CLOSE_POLICY``
            (``overflow_reason``). A slow client that reads is never closed.
        """
        progressed = written != self._written
        self._written = written
        self._unsent = unsent
        self._stalled = waiting and not progressed
        if progressed or not self.paused:
            self._stuck_since = None
            return False
        if self._stuck_since is None:
            self._stuck_since = now
        return now - self._stuck_since >= self.buffer_grace

    @property
    def flow_tick(self) -> float:
        """Seconds between ``update_flow`` calls while paused: a twentieth of ``buffer_grace``,
        from 10 ms to 100 ms, so a stuck socket is closed close to its grace."""
        return min(max(self.buffer_grace / 20, 0.01), 0.1)

    @property
    def overflow_reason(self) -> str:
        """The close reason for ``update_flow``'s True."""
        return f"not reading: {self.buffered} bytes unsent, none taken for {self.buffer_grace:g} s"

    def events_received(self) -> list[ServerEvent]:
        """Events produced since the last call; clears the buffer."""
        events, self._events = self._events, []
        return events

    def receive(self, data: str | bytes) -> None:
        """Handle one client frame; replies are queued in ``data_to_send()``.

        Raises:
            ProtocolError: malformed or oversized frame; close with its ``close_code``.
        """
        msg = decode(data, max_size=self.max_frame_size)
        escaped = b"\\u" in data if isinstance(data, bytes) else "\\u" in data
        if (escaped or not data.isascii()) and has_lone_surrogate(
                (msg.join_ref, msg.ref, msg.topic, msg.event, msg.payload)):
            raise ProtocolError("frame holds a lone surrogate (not Unicode text)", close_code=CLOSE_INVALID)
        topic, event, ref = msg.topic, msg.event, msg.ref
        if topic == "phoenix" and event == "heartbeat":
            self._reply(None, ref, topic, "ok", {})
        elif event == "phx_join":
            self._join(topic, msg.payload, msg.join_ref, ref)
        elif topic not in self._joins:
            self._reply(msg.join_ref, ref, topic, "error", {"reason": "unmatched topic"})
        elif event == "phx_leave":
            self._reply(msg.join_ref, ref, topic, "ok", {})
            if msg.join_ref is None or msg.join_ref == self._joins[topic]:
                self._end_join(topic, msg.join_ref, ref)
        elif event == "heartbeat":
            self._reply(msg.join_ref, ref, topic, "ok", {})
        else:
            self._events.append(Pushed(topic, event, msg.payload, ref))

    def deliver(self, topic: str, frames: Iterable[str]) -> bool:
        """Queue broadcast frames for ``topic`` if this socket joined it; returns whether.

        Frames encoded once with a null ``join_ref`` (``ChannelLog``'s) are stamped with this
        socket's join ref, as Phoenix stamps channel pushes, by rewriting their prefix: after a
        leave and a new join, a client drops what was still in flight for the old join.
        """
        if topic not in self._joins:
            return False
        if type(frames) is not list:
            frames = list(frames)
        prefix = self._prefixes.get(topic)
        if prefix is not None:
            frames = [prefix + f[6:] if f.startswith("[null,") else f for f in frames]
        self._out.extend(frames)
        self._queued += sum(map(len, frames))
        return True

    def reply(self, topic: str, ref: str | None, status: str, response: Any) -> None:
        """Answer a ``Pushed`` event."""
        self._reply(self._joins.get(topic), ref, topic, status, response)

    def close_channel(self, topic: str) -> None:
        """Close ``topic`` from the server side (``phx_close``)."""
        join_ref = self._joins.pop(topic, None)
        self._prefixes.pop(topic, None)
        self._queue(encode_parts(join_ref, join_ref, topic, "phx_close", {}))

    def _end_join(self, topic: str, join_ref: str | None, ref: str | None) -> None:
        """End the join of ``topic``: drop its queued broadcasts (not replies), queue ``phx_close``,
        report ``Left``."""
        prefix = self._prefixes.pop(topic, None) or "[null,"
        head = f"{prefix}null,{json.dumps(topic, ensure_ascii=False)},"  # its broadcasts' start
        out = self._out
        if out:
            at = len(head)
            kept = [f for f in out if not f.startswith(head) or f.startswith('"phx_', at)]
            if len(kept) != len(out):
                self._out = kept
                self._queued = sum(map(len, kept))
        del self._joins[topic]
        self._queue(encode_parts(join_ref, ref, topic, "phx_close", {}))
        self._events.append(Left(topic))

    def _queue(self, frame: str) -> None:
        self._out.append(frame)
        self._queued += len(frame)

    def _join(self, topic: str, payload: Any, join_ref: str | None, ref: str | None) -> None:
        if type(payload) is not dict:
            payload = {}
        last_seq = payload.get("last_seq")
        if last_seq is not None and (type(last_seq) is not int or last_seq < 0):
            raise ProtocolError("last_seq must be a non-negative integer", close_code=CLOSE_INVALID)
        if topic not in self._joins and len(self._joins) >= self.max_topics:
            self._reply(join_ref, ref, topic, "error", {"reason": "too_many_topics"})
            return
        try:
            reason = self._authorize(topic, payload)
        except Exception:
            logger.exception("join authorizer failed for %s", topic)
            reason = "join crashed"
        if reason is not None:
            self._reply(join_ref, ref, topic, "error", {"reason": reason})
            return
        if topic in self._joins:  # Phoenix's rule: a duplicate join closes the existing one first
            old = self._joins[topic]
            self._end_join(topic, old, old)
        self._joins[topic] = join_ref
        if join_ref is None:
            self._prefixes.pop(topic, None)
        else:
            self._prefixes[topic] = f"[{json.dumps(join_ref, ensure_ascii=False)},"
        self._reply(join_ref, ref, topic, "ok", {})
        self._events.append(Joined(topic, payload, last_seq, payload.get("coalesce") is True, join_ref))

    def _reply(
        self, join_ref: str | None, ref: str | None, topic: str, status: str, response: Any
    ) -> None:
        self._queue(encode_parts(join_ref, ref, topic, "phx_reply", {"status": status, "response": response}))
