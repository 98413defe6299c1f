"""What one socket's join of a channel is handed, in order and once: the relay's one subscription.

Both servers (the embedded gateway's socket, the Django hub) drive a ``Subscription`` per join;
the I/O around it only moves entries and frames:

* replay, then live: live entries ``push``ed before the join's replay is handed over wait in
  ``pending``; ``start(replay)`` merges the two by seq (``merge_entries``), then goes live;
* seq dedupe: nothing at or below ``sent_seq`` (the last seq handed over) is handed again;
* coalescing: a join with ``{coalesce: true}`` gets runs of ``tokens`` merged into one event
  (``coalesce_tokens``) in its replays (and live batches, with ``coalesce_live``);
* another spelling of the request's topic gets frames encoded for its own (``log.on_topic``);
* flow control: while the socket's ``ServerConnection`` is ``paused`` nothing is produced for
  it; the subscription is ``behind`` and catches up from the log after ``sent_seq`` once the
  socket drained (``catch_up(log)``, or ``resume()`` then ``start(replay)`` when the log is
  read elsewhere), a chunk of ``CATCH_UP_CHUNK`` entries at a time, so a slow reader loses
  nothing and an outbox stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from modelriver.phoenix.frames import encode_parts
from modelriver.phoenix.log import ChannelLog, Entry, on_topic, payload_of

__all__ = ["CATCH_UP_CHUNK", "Outlet", "Subscription", "coalesce_tokens", "merge_entries"]

CATCH_UP_CHUNK = 512
"""Entries handed to a connection at a time while it is not paused (a replay or a catch-up)."""


class Outlet(Protocol):
    """What a subscription needs of its socket: ``phoenix.ServerConnection``."""

    @property
    def paused(self) -> bool: ...

    def deliver(self, topic: str, frames: Iterable[str]) -> bool: ...


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


def merge_entries(first: list[Entry], second: list[Entry]) -> list[Entry]:
    """The entries of both lists, one per seq (``first``'s when both have it), in seq order."""
    if not second:
        return first
    if not first:
        return second
    by_seq = {e.seq: e for e in first}
    for entry in second:
        by_seq.setdefault(entry.seq, entry)
    return [by_seq[s] for s in sorted(by_seq)]


class Subscription:
    """One socket's join of one topic.

    Args:
        connection: the socket's ``ServerConnection`` (its ``paused`` and ``deliver``).
        topic: the topic as joined.
        canonical: the topic the log's frames are on (the request's); a join by another
            spelling gets its frames re-encoded.
        last_seq: the join's ``last_seq`` (None: everything kept).
        coalesce: the join asked ``{coalesce: true}``: replays merge runs of tokens.
        coalesce_live: merge runs of tokens in live batches too (when ``coalesce``).
    """

    __slots__ = ("alias", "behind", "coalesce", "coalesce_live", "connection", "pending", "ready",
                 "sent_seq", "topic")

    def __init__(self, connection: Outlet, topic: str, canonical: str, *, last_seq: int | None,
                 coalesce: bool, coalesce_live: bool = False) -> None:
        self.connection = connection
        self.topic = topic
        self.alias = topic != canonical
        self.coalesce = coalesce
        self.coalesce_live = coalesce and coalesce_live
        self.sent_seq = last_seq or 0
        self.ready = False  # the replay was handed over: live entries go straight out
        self.behind = False  # paused: live entries are dropped here, read from the log later
        self.pending: list[Entry] = []

    def push(self, entries: list[Entry]) -> bool:
        """Hand live entries (in seq order) to the connection; True when frames were queued."""
        if not self.ready:
            self.pending.extend(entries)
            return False
        if self.behind:
            return False  # read from the log once the socket drains
        if len(entries) == 1 and not self.alias:  # the hot path: one live token
            entry = entries[0]
            if entry.seq <= self.sent_seq:
                return False
            connection = self.connection
            if connection.paused:
                self.behind = True
                return False
            self.sent_seq = entry.seq
            return connection.deliver(self.topic, [entry.frame])
        return self.deliver(entries, coalesce=self.coalesce_live)

    def start(self, replay: Iterable[Entry]) -> bool:
        """Hand over the replay and the live entries that arrived meanwhile; live from now on."""
        self.ready = True
        pending, self.pending = self.pending, []
        return self.deliver(merge_entries(list(replay), pending), coalesce=self.coalesce)

    def defer(self) -> None:
        """The socket is paused at the join: hand nothing now, catch up once it drained."""
        self.ready = self.behind = True
        self.pending.clear()

    def resume(self) -> None:
        """Catch up through a replay read elsewhere: live entries wait until ``start``."""
        self.behind = self.ready = False

    def catch_up(self, log: ChannelLog) -> bool:
        """While ``behind`` and not paused, hand over ``log``'s entries after ``sent_seq``, a chunk
        at a time; live again once the log's end is reached. True when frames were queued."""
        queued = False
        while self.behind and not self.connection.paused:
            entries = log.after(self.sent_seq, CATCH_UP_CHUNK)
            if entries:
                queued = self._queue(entries, self.coalesce) or queued
            if len(entries) < CATCH_UP_CHUNK:
                self.behind = False
        return queued

    def deliver(self, entries: list[Entry], *, coalesce: bool) -> bool:
        """Queue ``entries`` above ``sent_seq`` (in seq order) on the connection, a chunk at a time
        while it is not paused; once paused, the subscription is ``behind``. True when queued."""
        if not entries:
            return False
        sent = self.sent_seq
        if entries[0].seq <= sent:
            fresh = []
            for entry in entries:  # strictly increasing: a seq is never delivered twice
                if entry.seq > sent:
                    fresh.append(entry)
                    sent = entry.seq
            if not fresh:
                return False
            entries = fresh
        connection = self.connection
        if connection.paused:
            self.behind = True
            return False
        if len(entries) <= CATCH_UP_CHUNK:
            return self._queue(entries, coalesce)
        queued = False
        for start in range(0, len(entries), CATCH_UP_CHUNK):
            if connection.paused:
                self.behind = True
                break
            queued = self._queue(entries[start:start + CATCH_UP_CHUNK], coalesce) or queued
        return queued

    def _queue(self, entries: list[Entry], coalesce: bool) -> bool:
        self.sent_seq = entries[-1].seq
        topic = self.topic
        if self.alias:
            entries = [on_topic(e, topic) for e in entries]
        frames = coalesce_tokens(entries, topic) if coalesce and len(entries) > 1 else [e.frame for e in entries]
        return self.connection.deliver(topic, frames)
