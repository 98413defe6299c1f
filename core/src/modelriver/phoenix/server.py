"""The server side of Phoenix Channels, without sockets or clocks.

Two pieces:

* ``ChannelLog``: one per topic, shared by every socket. ``append(event, payload)`` stamps the
  next ``seq``, encodes the broadcast frame once and keeps it in a bounded buffer;
  ``after(last_seq)`` returns what a (re)joining client missed.
* ``ServerConnection``: one per socket. Feed it frames with ``receive(text)``; it answers
  heartbeats and joins itself (authorizing through your callback) and reports ``Joined`` /
  ``Left`` / ``Pushed`` events. Hand it broadcast frames with ``deliver(topic, frames)``; it
  queues them only for topics this socket has joined. Write ``data_to_send()`` after each call.

The ModelRiver rules live here too: ``{last_seq}`` in the join payload asks for a replay after
that seq, ``{}`` for everything buffered, and ``{coalesce: true}`` lets a busy socket merge
queued ``tokens`` (``coalesce_tokens``).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelriver.exceptions import ProtocolError
from modelriver.phoenix.frames import CLOSE_INVALID, DEFAULT_MAX_FRAME, decode, encode_parts

__all__ = [
    "AUTH_SUBPROTOCOL_PREFIX",
    "ChannelLog",
    "Entry",
    "Joined",
    "Left",
    "Pushed",
    "ServerConnection",
    "ServerEvent",
    "coalesce_tokens",
    "socket_token",
]

logger = logging.getLogger("modelriver.phoenix")

AUTH_SUBPROTOCOL_PREFIX = "base64url.bearer.phx."

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
class Entry:
    """One event in a channel's log: its seq, name, payload and encoded broadcast frame.

    A replayed entry may carry only its frame (an empty ``payload``): read it with ``payload_of``.
    """

    seq: int
    event: str
    payload: dict[str, Any]
    frame: str


class ChannelLog:
    """The ordered, replayable events of one topic.

    The buffer keeps ``(seq, event, frame)`` per event, ints and strings only, which the garbage
    collector stops tracking: a process holding many answers for replay (the gateway) does not
    walk every token in each full collection (which paused it for ~100 ms in the relay
    benchmarks). Replayed entries carry their frame only; ``payload_of`` decodes one when needed.

    Args:
        topic: the channel topic.
        max_events: how many events the replay buffer keeps (oldest dropped first).
    """

    def __init__(self, topic: str, *, max_events: int = 10_000) -> None:
        self.topic = topic
        self._seq = 0
        self._entries: deque[tuple[int, str, str]] = deque(maxlen=max_events)

    @property
    def last_seq(self) -> int:
        """The seq of the newest event (0 before the first)."""
        return self._seq

    def append(self, event: str, payload: dict[str, Any]) -> Entry:
        """Stamp ``payload`` with the next seq, encode its frame once and keep it."""
        self._seq += 1
        stamped = {**payload, "seq": self._seq}
        entry = Entry(self._seq, event, stamped,
                      encode_parts(None, None, self.topic, event, stamped))
        self._entries.append((entry.seq, event, entry.frame))
        return entry

    def after(self, last_seq: int | None) -> list[Entry]:
        """Events with a seq above ``last_seq`` still in the buffer (all when None)."""
        entries = self._entries
        if not entries:
            return []
        first = entries[0][0]
        start = 0 if last_seq is None or last_seq < first else last_seq - first + 1
        return [Entry(seq, event, {}, frame) for seq, event, frame in itertools.islice(entries, start, None)]


def payload_of(entry: Entry) -> dict[str, Any]:
    """An entry's payload, decoded from its frame when it carries only the frame (a replay)."""
    if entry.payload:
        return entry.payload
    payload: dict[str, Any] = json.loads(entry.frame)[4]
    return payload


def coalesce_tokens(entries: Iterable[Entry], topic: str) -> list[str]:
    """Frames for ``entries`` with runs of consecutive ``tokens`` merged into one event.

    A merged event carries ``seq`` (the last), ``from_seq`` (the first) and the joined ``data``.
    """
    frames: list[str] = []
    run: list[Entry] = []

    def flush() -> None:
        if len(run) == 1:
            frames.append(run[0].frame)
        elif run:
            payload = {**payload_of(run[-1]), "from_seq": run[0].seq,
                       "data": "".join(payload_of(e).get("data", "") for e in run)}
            frames.append(encode_parts(None, None, topic, "tokens", payload))
        run.clear()

    for entry in entries:
        if entry.event == "tokens":
            run.append(entry)
        else:
            flush()
            frames.append(entry.frame)
    flush()
    return frames


@dataclass(frozen=True, slots=True)
class Joined:
    """A join was accepted and its ok reply queued: subscribe, then ``deliver`` the replay."""

    topic: str
    payload: dict[str, Any]
    last_seq: int | None
    coalesce: bool
    join_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Left:
    """The socket left ``topic`` (its reply queued): unsubscribe."""

    topic: str


@dataclass(frozen=True, slots=True)
class Pushed:
    """The client pushed a custom event on a joined channel; answer with ``reply``."""

    topic: str
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
    """

    def __init__(
        self, authorize: JoinAuthorizer, *, max_frame_size: int = DEFAULT_MAX_FRAME
    ) -> None:
        self._authorize = authorize
        self.max_frame_size = max_frame_size
        self._joins: dict[str, str | None] = {}  # topic -> join_ref
        self._prefixes: dict[str, str] = {}  # topic -> '["<join_ref>",' for stamping broadcasts
        self._out: list[str] = []
        self._events: list[ServerEvent] = []

    @property
    def topics(self) -> list[str]:
        """The topics this socket has joined."""
        return list(self._joins)

    def data_to_send(self) -> list[str]:
        """Frames to write, in order; clears the buffer."""
        out, self._out = self._out, []
        return out

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
                del self._joins[topic]
                self._prefixes.pop(topic, None)
                self._out.append(encode_parts(msg.join_ref, ref, topic, "phx_close", {}))
                self._events.append(Left(topic))
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
        prefix = self._prefixes.get(topic)
        if prefix is None:
            self._out.extend(frames)
        else:
            self._out.extend(prefix + f[6:] if f.startswith("[null,") else f for f in frames)
        return True

    def reply(self, topic: str, ref: str | None, status: str, response: Any) -> None:
        """Answer a ``Pushed`` event."""
        self._reply(self._joins.get(topic), ref, topic, status, response)

    def close_channel(self, topic: str) -> None:
        """Close ``topic`` from the server side (``phx_close``)."""
        join_ref = self._joins.pop(topic, None)
        self._prefixes.pop(topic, None)
        self._out.append(encode_parts(join_ref, join_ref, topic, "phx_close", {}))

    def _join(self, topic: str, payload: Any, join_ref: str | None, ref: str | None) -> None:
        if type(payload) is not dict:
            payload = {}
        last_seq = payload.get("last_seq")
        if last_seq is not None and (type(last_seq) is not int or last_seq < 0):
            raise ProtocolError("last_seq must be a non-negative integer", close_code=CLOSE_INVALID)
        try:
            reason = self._authorize(topic, payload)
        except Exception:
            logger.exception("join authorizer failed for %s", topic)
            reason = "join crashed"
        if reason is not None:
            self._reply(join_ref, ref, topic, "error", {"reason": reason})
            return
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
        self._out.append(
            encode_parts(join_ref, ref, topic, "phx_reply", {"status": status, "response": response})
        )
