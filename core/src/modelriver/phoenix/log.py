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

__all__ = ["BLOCK", "ChannelLog", "Entry", "frame_topic", "on_topic", "payload_of", "relay_entry"]


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


BLOCK = 16
"""Entries whose text a log compresses together once they are all in (``ChannelLog``)."""

_CODEC = ("utf-8", "surrogatepass")  # a frame is Unicode text; any str round-trips
_WBITS = -12
"""Raw deflate with a 4 KiB window and a small state: a block is ~1-2 KB, and zlib's default
state costs ~20x more to set up than compressing one block does."""


def _pack(text: str) -> bytes:
    packer = zlib.compressobj(1, zlib.DEFLATED, _WBITS, 4)
    return packer.compress(text.encode(*_CODEC)) + packer.flush()


def _unpack_text(block: bytes) -> str:
    return zlib.decompress(block, _WBITS).decode(*_CODEC)


class ChannelLog:
    """The bounded, seq-ordered, replayable events of one topic.

    The text of each full run of ``BLOCK`` entries is kept as one zlib block (runs of a stream's
    frames share most of their text): a token costs its seq, an offset, a pointer and a few
    compressed bytes; the newest entries stay as text until their block is full.

    Args:
        topic: the channel topic (None: frames are kept whole, and ``append`` cannot be used).
        max_events: how many events ``after`` replays at most (the newest; older ones dropped).
    """

    __slots__ = ("_blocks", "_ends", "_events", "_head", "_last", "_max", "_sealed", "_seqs", "_tail", "topic")

    def __init__(self, topic: str | None, *, max_events: int = 10_000) -> None:
        self.topic = topic
        self._max = max(1, max_events)
        self._head = _head(topic) if topic is not None else None
        self._seqs = array("q")
        self._events: list[str] = []  # event names, interned: a pointer each
        # An entry's text is a frame minus the head (starts with '"'), or a whole frame ('[').
        self._blocks: list[bytes] = []  # zlib(the joined texts of BLOCK entries), oldest first
        self._ends = array("I")  # per entry in a block: where its text ends in the block's text
        self._tail: list[str] = []  # the texts of the entries after the last block
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
        self._keep(seq, event, frame[len(head):])
        return Entry(seq, event, stamped, frame)

    def add(self, entries: Iterable[Entry]) -> None:
        """Keep ``entries`` (seqs already stamped); those at or below ``last_seq`` are ignored."""
        if self._sealed is not None:
            self._unseal()
        head = self._head
        for entry in entries:
            if entry.seq > self._last:
                frame = entry.frame
                self._keep(entry.seq, entry.event,
                           frame[len(head):] if head is not None and frame.startswith(head) else frame)
                self._last = entry.seq

    def after(self, last_seq: int | None, limit: int | None = None) -> list[Entry]:
        """Entries with a seq above ``last_seq`` (all when None) still kept, oldest first, at most
        ``limit`` of them. They carry their frame only (``payload_of`` reads the payload)."""
        if self._sealed is None:
            seqs, events = self._seqs, self._events
            start, stop = self._window(seqs, last_seq, limit)
            texts = self._texts(start, stop)
        else:
            seqs, all_texts, events = self._unpack()
            start, stop = self._window(seqs, last_seq, limit)
            texts = all_texts[start:stop]
        head = self._head or ""
        return [Entry(seqs[i], events[i], {}, head + text if text[0] != "[" else text)
                for i, text in zip(range(start, stop), texts, strict=True)]

    def seal(self) -> None:
        """Pack the log into one compressed block (the request ended: only replays read it now)."""
        if self._sealed is not None or not self._seqs:
            return
        first = max(0, len(self._seqs) - self._max)
        seqs, texts = self._seqs[first:], self._texts(first, len(self._seqs))
        lengths = array("I", [len(text) for text in texts])
        count = array("I", [len(texts)])
        self._sealed = zlib.compress(count.tobytes() + seqs.tobytes() + lengths.tobytes()
                                     + "".join(texts).encode(*_CODEC), 1)
        self._seqs, self._events, self._blocks, self._ends, self._tail = array("q"), [], [], array("I"), []

    def _keep(self, seq: int, event: str, text: str) -> None:
        self._seqs.append(seq)
        self._events.append(intern(event))
        tail = self._tail
        tail.append(text)
        if len(tail) < BLOCK:
            return
        end, ends = 0, self._ends
        for part in tail:
            end += len(part)
            ends.append(end)
        self._blocks.append(_pack("".join(tail)))
        self._tail = []
        excess = len(self._seqs) - self._max
        if excess > self._max // 4 and excess >= BLOCK:  # drop what ``after`` can no longer reach
            drop = min(excess // BLOCK, len(self._blocks))
            del self._blocks[:drop]
            drop *= BLOCK
            del self._seqs[:drop], self._events[:drop], self._ends[:drop]

    def _window(self, seqs: array[int], last_seq: int | None, limit: int | None) -> tuple[int, int]:
        """The indexes ``after`` hands over: [start, stop)."""
        count = len(seqs)
        first = max(0, count - self._max)
        start = first if last_seq is None else max(first, bisect.bisect_right(seqs, last_seq))
        return start, count if limit is None else min(count, start + limit)

    def _texts(self, start: int, stop: int) -> list[str]:
        """The texts of the entries at indexes [start, stop) (not sealed)."""
        texts: list[str] = []
        blocked = len(self._blocks) * BLOCK
        ends = self._ends
        for block in range(start // BLOCK, min(stop, blocked) // BLOCK + (min(stop, blocked) % BLOCK > 0)):
            text = _unpack_text(self._blocks[block])
            base = block * BLOCK
            for i in range(max(start, base), min(stop, base + BLOCK)):
                texts.append(text[ends[i - 1] if i > base else 0:ends[i]])
        if stop > blocked:
            texts += self._tail[max(0, start - blocked):stop - blocked]
        return texts

    def _unseal(self) -> None:
        seqs, texts, events = self._unpack()
        self._sealed = None
        for seq, event, text in zip(seqs, events, texts, strict=True):
            self._keep(seq, event, text)

    def _unpack(self) -> tuple[array[int], list[str], list[str]]:
        """The sealed block's seqs, texts and event names (read from the texts)."""
        assert self._sealed is not None
        data = zlib.decompress(self._sealed)
        count = array("I", data[:4])[0]
        at = 4 + 8 * count
        seqs, lengths = array("q", data[4:at]), array("I", data[at:at + 4 * count])
        text = data[at + 4 * count:].decode(*_CODEC)
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
