"""Shared state of in-flight requests: records, replay buffers, the pump lock, live tokens.

Two backends with one async interface (``make_backend`` picks one from the settings):

* ``MemoryBackend``: dicts in this process (with the in-memory channel layer: one process).
* ``RedisBackend``: Redis, shared by every process (with ``channels_redis``): records as keys,
  the replay buffer as a Redis Stream whose entry ids are the events' ``seq`` (``<seq>-0``, so a
  second writer of the same seq is refused and replays are ``XRANGE (<last_seq>-0 +``), the pump
  lock as a ``redis.asyncio.lock.Lock`` with a TTL its holder renews.

Events keep the upstream gateway's ``seq`` end to end: a process that takes a pump over resumes
the upstream stream at the last stored seq, and browsers' ``last_seq`` stays meaningful across
processes. Each event's broadcast frame is made once, by core (``phoenix.relay_entry``); this
module never parses a frame. In memory, a request's replay log is core's compact
``phoenix.ChannelLog`` (frames only, packed once it ended).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from modelriver.phoenix import ChannelLog, Entry, on_topic, relay_entry

if TYPE_CHECKING:
    from django_modelriver.conf import AppSettings

__all__ = [
    "Backend",
    "EntryBuffer",
    "Lease",
    "MemoryBackend",
    "RedisBackend",
    "RequestRecord",
    "make_backend",
    "make_entry",
]

logger = logging.getLogger("django_modelriver")

TOKEN_LIVE_TTL = 90.0
"""Seconds a live-socket claim survives without renewal (a dead process's sockets free up)."""


make_entry = relay_entry
"""The broadcast ``Entry`` of one upstream message, its seq kept (core's ``phoenix.relay_entry``)."""


class EntryBuffer(ChannelLog):
    """A request's bounded, seq-ordered replay log: core's compact ``phoenix.ChannelLog``.

    Args:
        max_events: how many events it replays at most.
        topic: the request's topic (frames on it are kept without their head).
    """

    __slots__ = ()

    def __init__(self, max_events: int, topic: str | None = None) -> None:
        super().__init__(topic, max_events=max_events)


@dataclass(slots=True)
class RequestRecord:
    """What Django remembers of a request it started (never the API key)."""

    channel_id: str
    project_id: str | None
    topic: str
    owner: str
    user_id: str | None
    workflow: str
    created_at: float = field(default_factory=time.time)

    def owned_by(self, owner: str | None, user_id: str | None) -> bool:
        """True for the starting session, or the starting (authenticated) user anywhere."""
        return (owner is not None and owner == self.owner) or (
            user_id is not None and user_id == self.user_id
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> RequestRecord:
        return cls(**json.loads(text))


class Lease(Protocol):
    """The right to run a request's pump; renew it before its TTL runs out."""

    async def renew(self) -> bool: ...
    async def release(self) -> None: ...


class Backend(Protocol):
    """Where requests, replay buffers, pump leases and live tokens are kept."""

    distributed: bool

    async def save(self, record: RequestRecord) -> None: ...
    async def get(self, channel_id: str) -> RequestRecord | None: ...
    async def latest(self, owner: str | None, user_id: str | None) -> RequestRecord | None: ...
    async def mark_ended(self, channel_id: str) -> None: ...
    async def ended_at(self, channel_id: str) -> float | None: ...
    async def append(self, batches: dict[str, list[Entry]]) -> None: ...
    async def replay(self, channel_id: str, topic: str, after: int | None) -> list[Entry]: ...
    async def last_seq(self, channel_id: str) -> int: ...
    async def acquire_pump(self, channel_id: str) -> Lease | None: ...
    async def claim_token(self, jti: str, holder: str) -> bool: ...
    async def release_token(self, jti: str, holder: str) -> None: ...
    async def refresh_tokens(self, jtis: Sequence[str]) -> None: ...
    async def webhook_begin(self, key: str) -> str: ...
    async def webhook_end(self, key: str, *, ok: bool) -> None: ...
    async def set_callback(self, channel_id: str, info: dict[str, Any]) -> None: ...
    async def get_callback(self, channel_id: str) -> dict[str, Any] | None: ...
    async def close(self) -> None: ...


class _MemoryLease:
    def __init__(self, backend: MemoryBackend, channel_id: str) -> None:
        self._backend, self._channel_id = backend, channel_id

    async def renew(self) -> bool:
        return self._backend._pumps.get(self._channel_id) is self

    async def release(self) -> None:
        if self._backend._pumps.get(self._channel_id) is self:
            del self._backend._pumps[self._channel_id]


class MemoryBackend:
    """Everything in this process. Records and buffers expire ``retention`` s after the end."""

    distributed = False

    def __init__(self, *, buffer_size: int, retention: float, token_lifetime: float) -> None:
        self._buffer_size = buffer_size
        self._retention = retention
        self._token_lifetime = token_lifetime
        self._records: dict[str, RequestRecord] = {}
        self._ended: dict[str, float] = {}
        self._buffers: dict[str, ChannelLog] = {}
        self._latest: dict[str, str] = {}
        self._pumps: dict[str, _MemoryLease] = {}
        self._tokens: dict[str, str] = {}
        self._webhooks: dict[str, tuple[str, float]] = {}
        self._callbacks: dict[str, dict[str, Any]] = {}

    def _expire(self) -> None:
        """Forget what is over; oldest first, stopping at the first that is not (dicts keep
        insertion order: ends, creations and webhooks are added as they happen)."""
        now = time.time()
        while self._ended:
            channel_id, ended = next(iter(self._ended.items()))
            if now - ended <= self._retention:
                break
            self._forget(channel_id)
        cutoff = now - self._token_lifetime - self._retention
        stale = []
        for channel_id, record in self._records.items():
            if record.created_at >= cutoff:
                break
            if channel_id not in self._pumps:
                stale.append(channel_id)
        for channel_id in stale:
            self._forget(channel_id)
        while self._webhooks:
            key, (_state, at) = next(iter(self._webhooks.items()))
            if now - at <= 86_400:
                break
            del self._webhooks[key]

    def _forget(self, channel_id: str) -> None:
        record = self._records.pop(channel_id, None)
        self._ended.pop(channel_id, None)
        self._buffers.pop(channel_id, None)
        self._callbacks.pop(channel_id, None)
        if record is not None:
            for key in (f"s:{record.owner}", f"u:{record.user_id}" if record.user_id is not None else None):
                if key is not None and self._latest.get(key) == channel_id:
                    del self._latest[key]

    def _buffer(self, channel_id: str) -> ChannelLog:
        buffer = self._buffers.get(channel_id)
        if buffer is None:
            record = self._records.get(channel_id)
            buffer = self._buffers[channel_id] = ChannelLog(
                record.topic if record is not None else None, max_events=self._buffer_size)
        return buffer

    async def save(self, record: RequestRecord) -> None:
        self._expire()
        self._records[record.channel_id] = record
        self._buffer(record.channel_id)
        self._latest[f"s:{record.owner}"] = record.channel_id
        if record.user_id is not None:
            self._latest[f"u:{record.user_id}"] = record.channel_id

    async def get(self, channel_id: str) -> RequestRecord | None:
        return self._records.get(channel_id)

    async def latest(self, owner: str | None, user_id: str | None) -> RequestRecord | None:
        for key in (f"s:{owner}" if owner else None, f"u:{user_id}" if user_id else None):
            channel_id = self._latest.get(key) if key else None
            record = self._records.get(channel_id) if channel_id else None
            if record is not None and channel_id not in self._ended:
                return record
        return None

    async def mark_ended(self, channel_id: str) -> None:
        self._ended.setdefault(channel_id, time.time())
        buffer = self._buffers.get(channel_id)
        if buffer is not None:
            buffer.seal()

    async def ended_at(self, channel_id: str) -> float | None:
        return self._ended.get(channel_id)

    async def append(self, batches: dict[str, list[Entry]]) -> None:
        for channel_id, entries in batches.items():
            self._buffer(channel_id).add(entries)

    async def replay(self, channel_id: str, topic: str, after: int | None) -> list[Entry]:
        buffer = self._buffers.get(channel_id)
        return buffer.after(after) if buffer is not None else []

    def add_now(self, channel_id: str, entries: list[Entry]) -> None:
        """``append`` for one request, without awaiting (the pump's hot path)."""
        self._buffer(channel_id).add(entries)

    def replay_now(self, channel_id: str, after: int | None) -> list[Entry]:
        """``replay`` without awaiting (the in-process path has no I/O)."""
        buffer = self._buffers.get(channel_id)
        return buffer.after(after) if buffer is not None else []

    async def last_seq(self, channel_id: str) -> int:
        buffer = self._buffers.get(channel_id)
        return buffer.last_seq if buffer is not None else 0

    async def acquire_pump(self, channel_id: str) -> Lease | None:
        if channel_id in self._pumps:
            return None
        lease = self._pumps[channel_id] = _MemoryLease(self, channel_id)
        return lease

    async def claim_token(self, jti: str, holder: str) -> bool:
        return self._tokens.setdefault(jti, holder) == holder

    async def release_token(self, jti: str, holder: str) -> None:
        if self._tokens.get(jti) == holder:
            del self._tokens[jti]

    async def refresh_tokens(self, jtis: Sequence[str]) -> None:
        return None

    async def webhook_begin(self, key: str) -> str:
        state = self._webhooks.get(key)
        if state is not None:
            return state[0]
        self._webhooks[key] = ("processing", time.time())
        return "new"

    async def webhook_end(self, key: str, *, ok: bool) -> None:
        self._webhooks.pop(key, None)
        if ok:
            self._webhooks[key] = ("done", time.time())  # re-inserted: the dict stays in time order

    async def set_callback(self, channel_id: str, info: dict[str, Any]) -> None:
        self._callbacks[channel_id] = dict(info)

    async def get_callback(self, channel_id: str) -> dict[str, Any] | None:
        return self._callbacks.get(channel_id)

    async def close(self) -> None:
        return None


class _RedisLease:
    def __init__(self, lock: Any) -> None:
        self._lock = lock

    async def renew(self) -> bool:
        try:
            await self._lock.reacquire()
        except Exception:  # LockNotOwnedError, connection errors: the lease is gone
            logger.warning("pump lease %s lost", self._lock.name)
            return False
        return True

    async def release(self) -> None:
        try:
            await self._lock.release()
        except Exception:
            logger.debug("pump lease %s already gone", self._lock.name)


class RedisBackend:
    """Everything in Redis, shared by every process of the site.

    Args:
        url: the Redis URL (``redis://host:port/db``).
        buffer_size, retention, token_lifetime: the ``MODELRIVER`` settings.
        lock_ttl: seconds before an unrenewed pump lease lapses.
        prefix: key prefix.
    """

    distributed = True

    def __init__(self, url: str, *, buffer_size: int, retention: float, token_lifetime: float,
                 lock_ttl: float, prefix: str = "modelriver:") -> None:
        import redis.asyncio as aioredis  # the `redis` extra

        self.redis: Any = aioredis.Redis.from_url(url)  # redis-py's own types are too loose here
        self._buffer_size = buffer_size
        self._retention = int(retention)
        self._record_ttl = int(token_lifetime + retention + 3600)
        self._lock_ttl = lock_ttl
        self._p = prefix

    def _k(self, kind: str, name: str) -> str:
        return f"{self._p}{kind}:{name}"

    async def save(self, record: RequestRecord) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._k("req", record.channel_id), record.to_json(), ex=self._record_ttl)
        pipe.set(self._k("latest", f"s:{record.owner}"), record.channel_id, ex=self._record_ttl)
        if record.user_id is not None:
            pipe.set(self._k("latest", f"u:{record.user_id}"), record.channel_id, ex=self._record_ttl)
        await pipe.execute()

    async def get(self, channel_id: str) -> RequestRecord | None:
        text = await self.redis.get(self._k("req", channel_id))
        return RequestRecord.from_json(text) if text else None

    async def latest(self, owner: str | None, user_id: str | None) -> RequestRecord | None:
        for key in (f"s:{owner}" if owner else None, f"u:{user_id}" if user_id else None):
            if key is None:
                continue
            channel_id = await self.redis.get(self._k("latest", key))
            if channel_id:
                cid = channel_id.decode()
                record = await self.get(cid)
                if record is not None and await self.ended_at(cid) is None:
                    return record
        return None

    async def mark_ended(self, channel_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._k("end", channel_id), str(time.time()), nx=True, ex=self._record_ttl)
        pipe.expire(self._k("ev", channel_id), self._retention)
        await pipe.execute()

    async def ended_at(self, channel_id: str) -> float | None:
        value = await self.redis.get(self._k("end", channel_id))
        return float(value) if value else None

    async def append(self, batches: dict[str, list[Entry]]) -> None:
        if not batches:
            return
        pipe = self.redis.pipeline(transaction=False)
        for channel_id, entries in batches.items():
            key = self._k("ev", channel_id)
            for entry in entries:
                pipe.xadd(key, {"e": entry.event, "f": entry.frame}, id=f"{entry.seq}-0",
                          maxlen=self._buffer_size, approximate=True)
            pipe.expire(key, self._record_ttl)
        # A seq written twice (a takeover racing a dying pump) is refused by Redis: that is fine.
        await pipe.execute(raise_on_error=False)

    async def replay(self, channel_id: str, topic: str, after: int | None) -> list[Entry]:
        start = "-" if not after else f"({after}-0"
        rows = await self.redis.xrange(self._k("ev", channel_id), min=start, max="+")
        entries = []
        for entry_id, fields in rows:
            seq = int(entry_id.split(b"-", 1)[0])
            # payload read from the frame when needed; re-encoded only for another topic
            entries.append(on_topic(Entry(seq, fields[b"e"].decode(), {}, fields[b"f"].decode()), topic))
        return entries

    async def last_seq(self, channel_id: str) -> int:
        rows = await self.redis.xrevrange(self._k("ev", channel_id), count=1)
        return int(rows[0][0].split(b"-", 1)[0]) if rows else 0

    async def acquire_pump(self, channel_id: str) -> Lease | None:
        lock = self.redis.lock(self._k("pump", channel_id), timeout=self._lock_ttl,
                               blocking=False, thread_local=False)
        if await lock.acquire():
            return _RedisLease(lock)
        return None

    async def claim_token(self, jti: str, holder: str) -> bool:
        ttl = int(TOKEN_LIVE_TTL * 1000)
        return bool(await self.redis.set(self._k("live", jti), holder, nx=True, px=ttl))

    async def release_token(self, jti: str, holder: str) -> None:
        key = self._k("live", jti)
        if (await self.redis.get(key)) == holder.encode():
            await self.redis.delete(key)

    async def refresh_tokens(self, jtis: Sequence[str]) -> None:
        if not jtis:
            return
        pipe = self.redis.pipeline(transaction=False)
        for jti in jtis:
            pipe.pexpire(self._k("live", jti), int(TOKEN_LIVE_TTL * 1000))
        await pipe.execute()

    async def webhook_begin(self, key: str) -> str:
        full = self._k("webhook", key)
        if await self.redis.set(full, "processing", nx=True, ex=86_400):
            return "new"
        state = await self.redis.get(full)
        return state.decode() if state else "new"

    async def webhook_end(self, key: str, *, ok: bool) -> None:
        full = self._k("webhook", key)
        if ok:
            await self.redis.set(full, "done", ex=86_400)
        else:
            await self.redis.delete(full)

    async def set_callback(self, channel_id: str, info: dict[str, Any]) -> None:
        await self.redis.set(self._k("callback", channel_id), json.dumps(info), ex=self._record_ttl)

    async def get_callback(self, channel_id: str) -> dict[str, Any] | None:
        text = await self.redis.get(self._k("callback", channel_id))
        return json.loads(text) if text else None

    async def close(self) -> None:
        await self.redis.aclose()


def make_backend(settings: AppSettings) -> Backend:
    """Redis when ``REDIS_URL`` (or a ``channels_redis`` layer) says so, else this process's memory."""
    url = settings.redis_url or _layer_redis_url()
    if url:
        return RedisBackend(url, buffer_size=settings.replay_buffer_size,
                            retention=settings.replay_retention,
                            token_lifetime=settings.token_lifetime, lock_ttl=settings.pump_lock_ttl)
    return MemoryBackend(buffer_size=settings.replay_buffer_size, retention=settings.replay_retention,
                         token_lifetime=settings.token_lifetime)


def _layer_redis_url() -> str | None:
    """The first host of a ``channels_redis`` default layer, as a URL; None otherwise."""
    from django.conf import settings

    config = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {})
    if "channels_redis" not in str(config.get("BACKEND", "")):
        return None
    hosts = config.get("CONFIG", {}).get("hosts") or ["redis://localhost:6379"]
    host = hosts[0]
    if isinstance(host, str):
        return host
    if isinstance(host, list | tuple):
        return f"redis://{host[0]}:{host[1]}"
    if isinstance(host, dict) and isinstance(host.get("address"), str):
        return str(host["address"])
    if isinstance(host, dict):
        return f"redis://{host.get('host', 'localhost')}:{host.get('port', 6379)}/{host.get('db', 0)}"
    return None
