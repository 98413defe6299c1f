"""A topic's replay log, kept compact, and the helpers that make and read its entries.

``ChannelLog`` is the one replay log of both servers: the embedded gateway stamps each event
with the next ``seq`` (``append``); the Django relay keeps the upstream's seqs (``add`` of
``relay_entry`` results). It keeps each event's broadcast frame and seq, nothing else: of a
frame on the log's topic only what follows the topic, seqs in an ``array``, so a token weighs
about its JSON payload and the garbage collector tracks nothing per event. ``seal()`` (the
request ended) packs the log into one zlib block; a late replay unpacks it, an append unseals.

Frames are read here and nowhere above the core: ``payload_of`` (an entry's payload),
``on_topic`` (an entry for another spelling of its topic), ``relay_entry`` (the entry of one
upstream message, its seq kept).
"""

from __future__ import annotations

import bisect
import json
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from sys import intern
from typing import Any

from modelriver.phoenix.frames import as_broadcast, encode_parts

__all__ = ["ChannelLog", "Entry", "frame_topic", "on_topic", "payload_of", "relay_entry"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One event in a channel's log: its seq, name, payload and encoded broadcast frame.

    A replayed entry may carry only its frame (an empty ``payload``): read it with ``payload_of``.
    """

    seq: int
    event: str
    payload: dict[str, Any]
    frame: str


def _head(topic: str) -> str:
    """``[null,null,"<topic>",``: the start every broadcast frame on ``topic`` shares."""
    return encode_parts(None, None, topic, "", None)[:-len('"",null]')]


class ChannelLog:
    """The bounded, seq-ordered, replayable events of one topic.

    Args:
        topic: the channel topic (None: frames are kept whole, and ``append`` cannot be used).
        max_events: how many events ``after`` replays at most (the newest; older ones dropped).
    """

    __slots__ = ("_events", "_head", "_last", "_max", "_parts", "_sealed", "_seqs", "topic")

    def __init__(self, topic: str | None, *, max_events: int = 10_000) -> None:
        self.topic = topic
        self._max = max(1, max_events)
        self._head = _head(topic) if topic is not None else None
        self._seqs = array("q")
        self._parts: list[str] = []  # a frame minus the head (starts with '"'), or a whole frame ('[')
        self._events: list[str] = []  # event names, interned: a pointer each
        self._sealed: bytes | None = None  # zlib(count, seqs, lengths, text) once sealed
        self._last = 0

    def __len__(self) -> int:
        return min(len(self._seqs), self._max) if self._sealed is None else len(self._unpack()[0])

    @property
    def last_seq(self) -> int:
        """The seq of the newest event (0 before the first)."""
        return self._last

    @property
    def sealed(self) -> bool:
        """Packed into one compressed block (``seal``)."""
        return self._sealed is not None

    def append(self, event: str, payload: dict[str, Any]) -> Entry:
        """Stamp ``payload`` with the next seq, encode its frame once and keep it.

        Raises:
            ValueError: the log has no topic.
        """
        head, topic = self._head, self.topic
        if head is None or topic is None:
            raise ValueError("append needs a log with a topic")
        if self._sealed is not None:
            self._unseal()
        seq = self._last = self._last + 1
        stamped = {**payload, "seq": seq}
        frame = encode_parts(None, None, topic, event, stamped)
        self._parts.append(frame[len(head):])
        self._events.append(intern(event))
        self._seqs.append(seq)
        if len(self._seqs) - self._max > self._max // 4:
            self._trim()
        return Entry(seq, event, stamped, frame)

    def add(self, entries: Iterable[Entry]) -> None:
        """Keep ``entries`` (seqs already stamped); those at or below ``last_seq`` are ignored."""
        if self._sealed is not None:
            self._unseal()
        head, seqs, parts, events = self._head, self._seqs, self._parts, self._events
        last = self._last
        for entry in entries:
            if entry.seq > last:
                frame = entry.frame
                parts.append(frame[len(head):] if head is not None and frame.startswith(head) else frame)
                events.append(intern(entry.event))
                seqs.append(entry.seq)
                last = entry.seq
        self._last = last
        if len(seqs) - self._max > self._max // 4:
            self._trim()

    def after(self, last_seq: int | None, limit: int | None = None) -> list[Entry]:
        """Entries with a seq above ``last_seq`` (all when None) still kept, oldest first, at most
        ``limit`` of them. They carry their frame only (``payload_of`` reads the payload)."""
        seqs, parts, events = ((self._seqs, self._parts, self._events) if self._sealed is None
                               else self._unpack())
        count = len(seqs)
        first = max(0, count - self._max)
        start = first if last_seq is None else max(first, bisect.bisect_right(seqs, last_seq))
        stop = count if limit is None else min(count, start + limit)
        head = self._head or ""
        return [Entry(seqs[i], events[i], {}, head + parts[i] if parts[i][0] != "[" else parts[i])
                for i in range(start, stop)]

    def seal(self) -> None:
        """Pack the log into one compressed block (the request ended: only replays read it now)."""
        if self._sealed is not None or not self._parts:
            return
        first = max(0, len(self._seqs) - self._max)
        seqs, parts = self._seqs[first:], self._parts[first:]
        lengths = array("I", [len(part) for part in parts])
        count = array("I", [len(parts)])
        self._sealed = zlib.compress(count.tobytes() + seqs.tobytes() + lengths.tobytes()
                                     + "".join(parts).encode(), 1)
        self._seqs, self._parts, self._events = array("q"), [], []

    def _trim(self) -> None:
        """Drop what ``after`` can no longer reach (in chunks, not per event)."""
        excess = len(self._seqs) - self._max
        del self._seqs[:excess], self._parts[:excess], self._events[:excess]

    def _unseal(self) -> None:
        self._seqs, self._parts, self._events = self._unpack()
        self._sealed = None

    def _unpack(self) -> tuple[array[int], list[str], list[str]]:
        """The sealed block's seqs, parts and event names (read from the parts)."""
        assert self._sealed is not None
        data = zlib.decompress(self._sealed)
        count = array("I", data[:4])[0]
        at = 4 + 8 * count
        seqs, lengths = array("q", data[4:at]), array("I", data[at:at + 4 * count])
        text = data[at + 4 * count:].decode()
        parts: list[str] = []
        events: list[str] = []
        at = 0
        head = self._head or ""
        for length in lengths:
            part = text[at:at + length]
            at += length
            parts.append(part)
            if part[0] == "[":
                events.append(intern(json.loads(part)[3]))
            else:
                end = part.index('"', 1)  # the event name, unless it has escapes
                name = part[1:end] if "\\" not in part[1:end] else json.loads(head + part)[3]
                events.append(intern(name))
        return seqs, parts, events


def payload_of(entry: Entry) -> dict[str, Any]:
    """An entry's payload, decoded from its frame when it carries only the frame (a replay)."""
    if entry.payload:
        return entry.payload
    payload: dict[str, Any] = json.loads(entry.frame)[4]
    return payload


def frame_topic(frame: str) -> str:
    """The topic of a broadcast frame (``[null,null,"<topic>",...``), without parsing it.

    Topics are ASCII without quotes or escapes (``phoenix.topics``).
    """
    start = frame.find('"') + 1
    return frame[start:frame.find('"', start)]


def on_topic(entry: Entry, topic: str) -> Entry:
    """``entry`` as a broadcast on ``topic``: itself when its frame is on ``topic``, otherwise
    its payload encoded for ``topic`` (a join by another spelling of the request's topic)."""
    if frame_topic(entry.frame) == topic:
        return entry
    payload = payload_of(entry)
    return Entry(entry.seq, entry.event, payload, encode_parts(None, None, topic, entry.event, payload))


def relay_entry(topic: str, event: str, payload: Any, last_seq: int, frame: str | None = None) -> Entry | None:
    """The broadcast ``Entry`` of one upstream message, keeping its ``seq``.

    ``frame``, the text the message came in, is forwarded as received when it is a frame on
    ``topic`` whose payload carries its seq (``as_broadcast``); otherwise the payload is encoded.
    A payload without a usable ``seq`` gets ``last_seq + 1``; one at or below ``last_seq`` is a
    duplicate and gives None.
    """
    if not isinstance(payload, dict):
        payload = {"value": payload}
    seq = payload.get("seq")
    if type(seq) is not int:
        seq = last_seq + 1
        payload = {**payload, "seq": seq}
        frame = None
    elif seq <= last_seq:
        return None
    broadcast = as_broadcast(frame, topic) if frame is not None else None
    return Entry(seq, event, payload, broadcast or encode_parts(None, None, topic, event, payload))
