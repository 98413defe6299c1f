"""The client side of Phoenix Channels, without sockets or clocks.

Drive it from an I/O layer:

* call ``connection_opened(now)`` when the socket opens and ``connection_lost(now)`` when it drops;
* feed every text frame to ``receive(text, now)``;
* call ``tick(now)`` whenever ``next_deadline()`` passes;
* after each call, send ``data_to_send()`` and handle ``events_received()``.

Channels remember the highest ``seq`` seen in their messages: a rejoin carries ``{last_seq}`` and
messages at or below it are dropped, so a server that replays from the start still delivers
each event once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from modelriver.backoff import rejoin_backoff
from modelriver.phoenix.frames import DEFAULT_MAX_FRAME, decode_parts, encode_parts

__all__ = [
    "ChannelClosed",
    "ChannelErrored",
    "ChannelMessage",
    "ClientEvent",
    "HeartbeatTimeout",
    "JoinRefused",
    "Joined",
    "PhoenixClient",
    "PushTimeout",
    "Reply",
]

logger = logging.getLogger("modelriver.phoenix")

ChannelState = Literal["joining", "joined", "errored", "leaving", "closed"]


@dataclass(frozen=True, slots=True)
class _ChannelEvent:
    """An event on one channel: every event but ``HeartbeatTimeout`` names its topic."""

    topic: str


@dataclass(frozen=True, slots=True)
class Joined(_ChannelEvent):
    """The server accepted the join."""

    response: Any


@dataclass(frozen=True, slots=True)
class JoinRefused(_ChannelEvent):
    """The server refused the join with ``reason``. The channel is closed."""

    reason: str
    response: Any


@dataclass(frozen=True, slots=True)
class ChannelMessage(_ChannelEvent):
    """A message pushed by the server on a joined channel.

    ``frame`` is the text frame it came in (None for a binary frame or a message made elsewhere):
    a relay can forward it instead of encoding the payload again (``frames.as_broadcast``).
    """

    event: str
    payload: Any
    frame: str | None = field(default=None, compare=False, repr=False)


def _message_factory() -> Callable[[str, str, Any, str | None], ChannelMessage]:
    """``ChannelMessage(topic, event, payload, frame)`` for the hot path, same object, about 1.5x faster.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; the slot
    descriptors set them directly.
    """
    new = object.__new__
    set_topic, set_event, set_payload, set_frame = (  # slot descriptors, ``topic``'s inherited
        getattr(ChannelMessage, name).__set__ for name in ("topic", "event", "payload", "frame"))

    def channel_message(topic: str, event: str, payload: Any, frame: str | None) -> ChannelMessage:
        message = new(ChannelMessage)
        set_topic(message, topic)
        set_event(message, event)
        set_payload(message, payload)
        set_frame(message, frame)
        return message

    return channel_message


_channel_message = _message_factory()


@dataclass(frozen=True, slots=True)
class Reply(_ChannelEvent):
    """The server's reply to one of our pushes."""

    ref: str
    status: str
    response: Any


@dataclass(frozen=True, slots=True)
class PushTimeout(_ChannelEvent):
    """No reply within the timeout. For a join, a rejoin is scheduled."""

    ref: str
    event: str


@dataclass(frozen=True, slots=True)
class ChannelErrored(_ChannelEvent):
    """The server's channel crashed (``phx_error``); a rejoin is scheduled."""


@dataclass(frozen=True, slots=True)
class ChannelClosed(_ChannelEvent):
    """The channel closed (``phx_close`` or our leave was acknowledged)."""


@dataclass(frozen=True, slots=True)
class HeartbeatTimeout:
    """No heartbeat reply within one interval: close the socket and reconnect."""


ClientEvent = (
    Joined | JoinRefused | ChannelMessage | Reply | PushTimeout | ChannelErrored | ChannelClosed
    | HeartbeatTimeout
)


@dataclass(slots=True)
class _Channel:
    topic: str
    params: dict[str, Any]
    state: ChannelState = "joining"
    join_ref: str | None = None
    last_seq: int | None = None
    rejoin_at: float | None = None
    rejoin_delays: Iterator[float] = field(default_factory=rejoin_backoff)


@dataclass(slots=True)
class _Pending:
    topic: str
    event: str
    deadline: float


class PhoenixClient:
    """One socket's worth of Phoenix client state.

    Args:
        heartbeat_interval: seconds between socket heartbeats (phoenix.js: 30).
        timeout: seconds to wait for a reply to a push or join (phoenix.js: 10).
        max_frame_size: larger incoming frames raise ``ProtocolError``.
    """

    def __init__(
        self,
        *,
        heartbeat_interval: float = 30.0,
        timeout: float = 10.0,
        max_frame_size: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.timeout = timeout
        self.max_frame_size = max_frame_size
        self.is_open = False
        self.duplicates_dropped = 0
        self._ref = 0
        self._channels: dict[str, _Channel] = {}
        self._pending: dict[str, _Pending] = {}
        self._heartbeat_at: float | None = None
        self._heartbeat_ref: str | None = None
        self._out: list[str] = []
        self._events: list[ClientEvent] = []

    # -- outputs -----------------------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        """Frames to write to the socket, in order; clears the buffer."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[ClientEvent]:
        """Events produced since the last call; clears the buffer."""
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        """The earliest time at which ``tick`` has work to do, or None."""
        times = [p.deadline for p in self._pending.values()]
        times += [c.rejoin_at for c in self._channels.values() if c.rejoin_at is not None]
        if self._heartbeat_at is not None:
            times.append(self._heartbeat_at)
        return min(times, default=None)

    def last_seq(self, topic: str) -> int | None:
        """The highest ``seq`` seen on ``topic``."""
        channel = self._channels.get(topic)
        return channel.last_seq if channel else None

    def channel_state(self, topic: str) -> ChannelState:
        channel = self._channels.get(topic)
        return channel.state if channel else "closed"

    # -- socket lifecycle --------------------------------------------------------------------

    def connection_opened(self, now: float) -> None:
        """The socket is open: start heartbeats and (re)join every channel. Then send."""
        self.is_open = True
        self._heartbeat_at = now + self.heartbeat_interval
        self._heartbeat_ref = None
        for channel in self._channels.values():
            channel.rejoin_delays = rejoin_backoff()  # phoenix.js resets the rejoin timer on open
            if channel.state in ("joining", "errored"):
                self._send_join(channel, now)

    def connection_lost(self, now: float) -> None:
        """The socket dropped: joined channels wait to rejoin when it reopens."""
        self.is_open = False
        self._heartbeat_at = self._heartbeat_ref = None
        self._pending.clear()
        for channel in list(self._channels.values()):
            if channel.state == "leaving":  # its leave reply will never come
                del self._channels[channel.topic]
                self._events.append(ChannelClosed(channel.topic))
            elif channel.state != "closed":
                channel.state, channel.rejoin_at = "errored", None

    # -- intents -----------------------------------------------------------------------------

    def join(
        self, topic: str, params: dict[str, Any] | None, now: float, *, last_seq: int | None = None
    ) -> None:
        """Join ``topic`` with ``params`` (sent now if open, else on ``connection_opened``).

        ``last_seq`` resumes after that seq: it is sent in the join and older events are dropped.
        """
        channel = _Channel(topic, dict(params or {}), last_seq=last_seq)
        self._channels[topic] = channel
        if self.is_open:
            self._send_join(channel, now)

    def leave(self, topic: str, now: float) -> str | None:
        """Leave ``topic``; ``ChannelClosed`` follows the server's reply."""
        channel = self._channels.get(topic)
        if channel is None:
            return None
        if not self.is_open or channel.state != "joined":
            del self._channels[topic]
            if channel.join_ref is not None:
                self._pending.pop(channel.join_ref, None)  # no PushTimeout for a dropped join
            self._events.append(ChannelClosed(topic))
            return None
        channel.state = "leaving"
        return self._push(channel, "phx_leave", {}, now)

    def push(self, topic: str, event: str, payload: Any, now: float) -> str:
        """Push ``event`` on a joined channel; returns its ref (``Reply`` matches it).

        Raises:
            RuntimeError: the channel is not joined.
        """
        channel = self._channels.get(topic)
        if channel is None or channel.state != "joined" or not self.is_open:
            raise RuntimeError(f"cannot push on {topic!r}: channel not joined")
        return self._push(channel, event, payload, now)

    # -- inputs ------------------------------------------------------------------------------

    def receive(self, data: str | bytes, now: float) -> None:
        """Handle one incoming frame.

        Raises:
            ProtocolError: the frame is malformed or oversized; close the socket.
        """
        join_ref, ref, topic, event, payload = decode_parts(data, max_size=self.max_frame_size)
        if event == "phx_reply":
            if ref is None:
                return
            if ref == self._heartbeat_ref:
                self._heartbeat_ref = None
                return
            pending = self._pending.get(ref)
            if pending is not None and pending.topic == topic:  # phoenix.js: replies are per topic
                del self._pending[ref]
                self._handle_reply(topic, ref, pending, payload, now)
            return
        channel = self._channels.get(topic)
        if channel is None or (join_ref is not None and join_ref != channel.join_ref):
            logger.debug("dropped %s for %s: not a member", event, topic)
            return
        if event == "phx_error":
            if channel.state in ("joined", "joining"):
                if channel.state == "joining" and channel.join_ref is not None:
                    self._pending.pop(channel.join_ref, None)  # the rejoin replaces that join
                channel.state = "errored"
                self._schedule_rejoin(channel, now)
                self._events.append(ChannelErrored(channel.topic))
            return
        if event == "phx_close":
            del self._channels[channel.topic]
            self._events.append(ChannelClosed(channel.topic))
            return
        if type(payload) is dict:
            seq = payload.get("seq")
            if type(seq) is int:
                last = channel.last_seq
                if last is not None and seq <= last:
                    self.duplicates_dropped += 1
                    return
                channel.last_seq = seq
        self._events.append(_channel_message(topic, event, payload, data if type(data) is str else None))

    def tick(self, now: float) -> None:
        """Fire heartbeats, push timeouts and rejoins that are due at ``now``."""
        if self._heartbeat_at is not None and now >= self._heartbeat_at:
            if self._heartbeat_ref is not None:
                self._heartbeat_at = None
                self._events.append(HeartbeatTimeout())
                return
            self._heartbeat_ref = self._next_ref()
            self._out.append(encode_parts(None, self._heartbeat_ref, "phoenix", "heartbeat", {}))
            self._heartbeat_at = now + self.heartbeat_interval
        for ref, pending in list(self._pending.items()):
            if now >= pending.deadline:
                del self._pending[ref]
                channel = self._channels.get(pending.topic)
                if pending.event == "phx_join" and channel is not None:
                    channel.state = "errored"
                    self._schedule_rejoin(channel, now)
                elif pending.event == "phx_leave" and channel is not None:
                    del self._channels[pending.topic]
                    self._events.append(ChannelClosed(pending.topic))
                self._events.append(PushTimeout(pending.topic, ref, pending.event))
        if self.is_open:
            for channel in self._channels.values():
                if channel.rejoin_at is not None and now >= channel.rejoin_at:
                    self._send_join(channel, now)

    # -- internals ---------------------------------------------------------------------------

    def _next_ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    def _push(self, channel: _Channel, event: str, payload: Any, now: float) -> str:
        ref = self._next_ref()
        self._pending[ref] = _Pending(channel.topic, event, now + self.timeout)
        self._out.append(encode_parts(channel.join_ref, ref, channel.topic, event, payload))
        return ref

    def _send_join(self, channel: _Channel, now: float) -> None:
        params = dict(channel.params)
        if channel.last_seq is not None:
            params["last_seq"] = channel.last_seq
        channel.state, channel.rejoin_at = "joining", None
        if channel.join_ref is not None:
            self._pending.pop(channel.join_ref, None)  # one join in flight per channel
        ref = self._next_ref()
        channel.join_ref = ref
        self._pending[ref] = _Pending(channel.topic, "phx_join", now + self.timeout)
        self._out.append(encode_parts(ref, ref, channel.topic, "phx_join", params))

    def _schedule_rejoin(self, channel: _Channel, now: float) -> None:
        channel.rejoin_at = now + next(channel.rejoin_delays)

    def _handle_reply(
        self, topic: str, ref: str, pending: _Pending, payload: Any, now: float
    ) -> None:
        status, response = "error", None
        if type(payload) is dict:
            status = str(payload.get("status", "error"))
            response = payload.get("response")
        channel = self._channels.get(topic)
        if pending.event == "phx_join":
            if channel is None or channel.join_ref != ref:
                return
            if status == "ok":
                channel.state, channel.rejoin_delays = "joined", rejoin_backoff()
                self._events.append(Joined(topic, response))
            else:
                reason = response.get("reason") if isinstance(response, dict) else None
                del self._channels[topic]
                self._events.append(JoinRefused(topic, str(reason or "join failed"), response))
            return
        if pending.event == "phx_leave":
            if channel is not None and channel.state == "leaving":
                del self._channels[topic]
            self._events.append(ChannelClosed(topic))
            return
        self._events.append(Reply(topic, ref, status, response))
