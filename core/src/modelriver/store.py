"""Where an in-flight request is remembered, so a process or a page can resume it.

The official SDK keeps ``{channelId, wsToken, timestamp, websocketUrl?, websocketChannel?}``
under ``<prefix>active_request`` and ignores it once older than 5 minutes (PROTOCOL §5): the
token lives about that long. This module keeps the same record, plus the last ``seq`` seen so a
resumed stream can join with ``{last_seq}``, behind one small :class:`RequestStore` protocol:

- :class:`MemoryStore`: a dict, for one process;
- :class:`SQLiteStore`: a SQLite file (WAL), shared by threads and processes, surviving restarts.

Both take ``max_age`` (seconds, default 300) and a ``clock`` callable returning Unix seconds
(default ``time.time``; inject your own in tests). An entry older than ``max_age`` is never
returned and is dropped when seen. ``update_seq`` does not refresh the age: the age is the
token's, and a reconnect that fetches a fresh token ``put``\\ s a new record.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from modelriver.types import AsyncRequest

__all__ = [
    "DEFAULT_MAX_AGE",
    "MemoryStore",
    "RequestStore",
    "SQLiteStore",
    "StoredRequest",
]

DEFAULT_MAX_AGE = 300.0
"""Seconds after which a stored request is ignored (the SDK's 5 minutes)."""

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """An in-flight request, as remembered.

    Attributes:
        channel_id: the request's channel.
        ws_token: its WebSocket token (short-lived, bound to the channel).
        websocket_url: the socket URL from the async answer.
        websocket_channel: the topic, when the answer gave one.
        last_seq: the last event ``seq`` seen, or None before any.
        timestamp: when the request (or its token) was stored, Unix seconds.
    """

    channel_id: str
    ws_token: str
    websocket_url: str
    websocket_channel: str | None = None
    last_seq: int | None = None
    timestamp: float = 0.0

    @classmethod
    def from_request(cls, request: AsyncRequest, *, timestamp: float) -> StoredRequest:
        """The record for an async (or reconnect) answer, stored at ``timestamp``."""
        return cls(
            channel_id=request.channel_id,
            ws_token=request.ws_token,
            websocket_url=request.websocket_url,
            websocket_channel=request.websocket_channel,
            timestamp=timestamp,
        )

    def to_request(self) -> AsyncRequest:
        """The :class:`~modelriver.types.AsyncRequest` to reconnect with."""
        return AsyncRequest(
            channel_id=self.channel_id,
            ws_token=self.ws_token,
            websocket_url=self.websocket_url,
            websocket_channel=self.websocket_channel,
        )


@runtime_checkable
class RequestStore(Protocol):
    """Remembers in-flight requests by key (a session id, a user id, ...)."""

    def get(self, key: str) -> StoredRequest | None:
        """The live record under ``key``, or None (absent or expired; an expired one is dropped)."""
        ...

    def put(self, key: str, record: StoredRequest) -> None:
        """Store ``record`` under ``key``, replacing any previous one."""
        ...

    def update_seq(self, key: str, seq: int) -> bool:
        """Raise the record's ``last_seq`` to ``seq`` (never lowers it).

        Returns:
            False when there is no live record under ``key``.
        """
        ...

    def delete(self, key: str) -> None:
        """Forget ``key`` (no error when absent)."""
        ...


class MemoryStore:
    """A :class:`RequestStore` in a dict: one process, thread-safe.

    Args:
        max_age: seconds after which a record is ignored.
        clock: returns the current Unix time.
    """

    def __init__(self, *, max_age: float = DEFAULT_MAX_AGE, clock: Clock = time.time) -> None:
        self.max_age = max_age
        self._clock = clock
        self._records: dict[str, StoredRequest] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> StoredRequest | None:
        cutoff = self._clock() - self.max_age
        with self._lock:
            record = self._records.get(key)
            if record is None:
                return None
            if record.timestamp < cutoff:
                del self._records[key]
                return None
            return record

    def put(self, key: str, record: StoredRequest) -> None:
        cutoff = self._clock() - self.max_age
        with self._lock:
            for stale in [k for k, r in self._records.items() if r.timestamp < cutoff]:
                del self._records[stale]
            self._records[key] = record

    def update_seq(self, key: str, seq: int) -> bool:
        cutoff = self._clock() - self.max_age
        with self._lock:
            record = self._records.get(key)
            if record is None or record.timestamp < cutoff:
                return False
            if record.last_seq is None or seq > record.last_seq:
                self._records[key] = replace(record, last_seq=seq)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def __len__(self) -> int:
        return len(self._records)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS modelriver_requests (
    key TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    ws_token TEXT NOT NULL,
    websocket_url TEXT NOT NULL,
    websocket_channel TEXT,
    last_seq INTEGER,
    timestamp REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS modelriver_requests_timestamp ON modelriver_requests (timestamp);
"""


class SQLiteStore:
    """A :class:`RequestStore` in a SQLite file (WAL), shared by threads and processes.

    One connection per instance, guarded by a lock; several instances (or processes) on the same
    file coordinate through SQLite's own locking. Call :meth:`close` when done (or use ``with``).

    Args:
        path: the database file (created if missing), or ``":memory:"``.
        max_age: seconds after which a record is ignored.
        clock: returns the current Unix time.
        timeout: seconds to wait for another writer's lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Clock = time.time,
        timeout: float = 5.0,
    ) -> None:
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            os.fspath(path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    def get(self, key: str) -> StoredRequest | None:
        cutoff = self._clock() - self.max_age
        with self._lock:
            row = self._conn.execute(
                "SELECT channel_id, ws_token, websocket_url, websocket_channel, last_seq, timestamp"
                " FROM modelriver_requests WHERE key = ?",
                (key,),
            ).fetchone()
            if row is None:
                return None
            if row[5] < cutoff:
                self._conn.execute(
                    "DELETE FROM modelriver_requests WHERE key = ? AND timestamp < ?", (key, cutoff)
                )
                return None
        return StoredRequest(
            channel_id=row[0],
            ws_token=row[1],
            websocket_url=row[2],
            websocket_channel=row[3],
            last_seq=row[4],
            timestamp=row[5],
        )

    def put(self, key: str, record: StoredRequest) -> None:
        cutoff = self._clock() - self.max_age
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("DELETE FROM modelriver_requests WHERE timestamp < ?", (cutoff,))
                self._conn.execute(
                    "INSERT OR REPLACE INTO modelriver_requests (key, channel_id, ws_token,"
                    " websocket_url, websocket_channel, last_seq, timestamp)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        record.channel_id,
                        record.ws_token,
                        record.websocket_url,
                        record.websocket_channel,
                        record.last_seq,
                        record.timestamp,
                    ),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def update_seq(self, key: str, seq: int) -> bool:
        cutoff = self._clock() - self.max_age
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE modelriver_requests"
                " SET last_seq = CASE WHEN last_seq IS NULL OR last_seq < ? THEN ? ELSE last_seq END"
                " WHERE key = ? AND timestamp >= ?",
                (seq, seq, key, cutoff),
            )
            return cursor.rowcount > 0

    def delete(self, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM modelriver_requests WHERE key = ?", (key,))

    def close(self) -> None:
        """Close the connection; the instance is unusable afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
