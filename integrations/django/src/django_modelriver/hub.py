"""The per-process hub: which sockets joined which request, and how events reach them.

One ``Hub`` per event loop (``get_hub()``). It owns the backend (``store``), the upstream (the
``UPSTREAM`` setting's ``AsyncUpstream``: ModelRiver's API client by default), the local pumps,
and the fan-out:

* In-process, a pump hands each event to every local socket directly (``publish`` then
  ``flush_dirty``): no channel-layer hop, no thread hop, one frame per event for every socket.
* Across processes (``channels_redis``), events are written to the Redis replay stream and sent
  to the request's channel-layer group in *batches* (every ``FANOUT_INTERVAL`` s at most), one
  message per request per batch, to one relay channel per process (never one per socket, never
  one per token). The receiving hub fans the batch out to its own sockets directly, fetching any
  gap from the replay stream.
* A maintenance task renews the pump leases held here, the live-socket claims, and takes over
  the pump of any request this process has sockets for whose pump lease lapsed (its process died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_modelriver.conf import AppSettings, modelriver_settings
from django_modelriver.pump import Pump
from django_modelriver.store import (
    Backend,
    Lease,
    MemoryBackend,
    RedisBackend,
    RequestRecord,
)
from modelriver.exceptions import APIError, ModelRiverError
from modelriver.phoenix import ChannelLog, Entry, ServerConnection, merge_entries
from modelriver.phoenix import Subscription as ChannelSubscription
from modelriver.upstream import AsyncUpstream, UpstreamError

if TYPE_CHECKING:
    from modelriver.types import AsyncRequest

__all__ = ["CallbackUpstream", "Hub", "Sink", "Subscription", "get_hub", "reset_hubs"]

logger = logging.getLogger("django_modelriver")

BATCH_TYPE = "modelriver.batch"

_SEAM = ("create_request", "connect", "reconnect", "cancel", "aclose")
"""The ``AsyncUpstream`` methods the relay calls (checked on what ``UPSTREAM`` returns)."""


@runtime_checkable
class CallbackUpstream(Protocol):
    """An upstream with ModelRiver's callback API (event-driven webhooks), like ``AsyncModelRiver``."""

    async def callback(self, channel_id: str, data: Mapping[str, Any], *, task_id: str | None = None,
                       callback_url: str | None = None) -> dict[str, Any]: ...


class Sink(Protocol):
    """A socket the hub can write to (the consumer)."""

    connection: ServerConnection

    async def flush(self) -> None:
        """Write the connection's ``data_to_send()`` to the socket."""


class Subscription(ChannelSubscription):
    """One socket's join of one request: core's ``phoenix.Subscription`` (replay-then-live merge,
    seq dedupe, coalesced replays, flow control) with the socket and request it belongs to.

    While its socket is paused nothing is produced for it: it is ``behind``, and
    ``Hub.catch_up`` replays what came after ``sent_seq`` once it drained.
    """

    __slots__ = ("canonical", "channel_id", "sink")

    def __init__(self, sink: Sink, channel_id: str, topic: str, canonical: str, *,
                 last_seq: int | None, coalesce: bool) -> None:
        super().__init__(sink.connection, topic, canonical, last_seq=last_seq, coalesce=coalesce)
        self.sink = sink
        self.channel_id = channel_id
        self.canonical = canonical


def group_name(channel_id: str) -> str:
    return f"modelriver.{channel_id}"


class Hub:
    """This process's relay state for one event loop. Use ``get_hub()``."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.id = secrets.token_hex(8)
        self.backend: Backend = _make_backend(settings)
        self.distributed = self.backend.distributed
        self.closed = False
        self._upstream: AsyncUpstream | None = None
        self._subs: dict[str, set[Subscription]] = {}
        self._pumps: dict[str, Pump] = {}
        self._dirty: dict[Sink, None] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._tails: dict[str, ChannelLog] = {}
        self._outbox: dict[str, list[Entry]] = {}
        self._outbox_event = asyncio.Event()
        self._outbox_lock = asyncio.Lock()
        self._seen: dict[str, int] = {}
        self._in_group: set[str] = set()
        self._group_locks: dict[str, asyncio.Lock] = {}
        self._live: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._layer: Any = None
        self._relay_channel: str | None = None
        self._started = False
        self._start_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def upstream(self) -> AsyncUpstream:
        """Where this loop's requests go: the ``UPSTREAM`` factory's result (keys stay here).

        Raises:
            ImproperlyConfigured: the factory cannot be imported, or returned no ``AsyncUpstream``.
        """
        if self._upstream is None:
            path = self.settings.upstream_path
            try:
                upstream = self.settings.upstream_factory()()
            except ImportError as exc:
                raise ImproperlyConfigured(f"MODELRIVER['UPSTREAM'] {path!r}: {exc} (see E009)") from exc
            missing = [name for name in _SEAM if not callable(getattr(upstream, name, None))]
            if missing:
                raise ImproperlyConfigured(
                    f"MODELRIVER['UPSTREAM'] {path!r} returned {type(upstream).__name__}, which is "
                    f"not an AsyncUpstream (no {', '.join(missing)})")
            self._upstream = upstream
            logger.info("upstream: %r", upstream)
        return self._upstream

    def callback_upstream(self) -> CallbackUpstream:
        """The upstream, for a callback (event-driven requests: ModelRiver's API only).

        Raises:
            modelriver.upstream.UpstreamError: the upstream has no callback API.
        """
        upstream = self.upstream()
        if not isinstance(upstream, CallbackUpstream):
            raise UpstreamError(f"callbacks need an upstream with ModelRiver's callback API; "
                                f"{type(upstream).__name__} has none (event-driven workflows need ModelRiver)")
        return upstream

    async def ensure_started(self) -> None:
        """Start the cross-process machinery on first use (nothing to start in memory mode)."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            if self.distributed:
                from channels.layers import get_channel_layer

                self._layer = get_channel_layer()
                if self._layer is None:
                    raise RuntimeError("django_modelriver: Redis mode needs CHANNEL_LAYERS (see E005)")
                self._relay_channel = await self._layer.new_channel("modelriver")
                self.spawn(self._receiver(), "receiver")
                self.spawn(self._sender(), "sender")
                self.spawn(self._maintenance(), "maintenance")
            self._started = True

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task this hub keeps (and cancels on ``close``)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"django_modelriver-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        """Cancel every task (pumps included) and close the clients."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._upstream is not None:
            with contextlib.suppress(Exception):
                await self._upstream.aclose()
        with contextlib.suppress(Exception):
            await self.backend.close()

    # -- pumps -------------------------------------------------------------------------------

    def start_pump(self, record: RequestRecord, upstream: AsyncRequest | None, lease: Lease, *,
                   last_seq: int | None = None) -> Pump:
        """Run the upstream pump of ``record`` in this process (the caller holds ``lease``).

        ``upstream`` is the request's handle, or None when the upstream no longer knows it (the
        pump then ends the request with an error).
        """
        pump = Pump(self, record, upstream, lease, last_seq=last_seq)
        self._pumps[record.channel_id] = pump
        if self.distributed:  # what this pump relays, until the replay stream has it for sure
            self._tails.setdefault(record.channel_id,
                                   ChannelLog(record.topic, max_events=self.settings.replay_buffer_size))
        pump.task = self.spawn(pump.run(), f"pump-{record.channel_id}")
        return pump

    def pump_done(self, pump: Pump) -> None:
        if self._pumps.get(pump.channel_id) is pump:
            del self._pumps[pump.channel_id]
        self._tails.pop(pump.channel_id, None)

    # -- fan-out -----------------------------------------------------------------------------

    def publish(self, channel_id: str, entries: list[Entry]) -> None:
        """Record ``entries`` and queue them on every local socket; then ``flush_dirty()``."""
        if self.distributed:
            tail = self._tails.get(channel_id)
            if tail is not None:
                tail.add(entries)
            self._outbox.setdefault(channel_id, []).extend(entries)
            self._outbox_event.set()
        else:
            assert isinstance(self.backend, MemoryBackend)
            self.backend.add_now(channel_id, entries)
        self._push_local(channel_id, entries)

    def _push_local(self, channel_id: str, entries: list[Entry]) -> None:
        subs = self._subs.get(channel_id)
        if subs:
            for sub in subs:
                if sub.push(entries):
                    self._dirty[sub.sink] = None

    def flush_soon(self) -> None:
        """``flush_dirty()`` in a task of its own, one for whatever is published meanwhile."""
        if self._dirty and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self.flush_dirty())

    async def flush_dirty(self) -> None:
        """Write out every socket that has queued frames."""
        while self._dirty:
            sink = next(iter(self._dirty))
            del self._dirty[sink]
            await sink.flush()

    async def subscribe(self, sub: Subscription) -> None:
        """Register a join, then replay what it missed (live events wait behind the replay)."""
        await self.ensure_started()
        self._subs.setdefault(sub.channel_id, set()).add(sub)
        if self.distributed:
            # Every join waits until this process is in the request's group, then reads the
            # replay: whatever is sent from then on reaches it live, the rest is in the replay.
            await self._join_group(sub.channel_id)
        await self._replay(sub)

    async def catch_up(self, sub: Subscription) -> None:
        """Replay what ``sub`` missed while its socket was paused (after its ``sent_seq``)."""
        if sub.behind and sub in self._subs.get(sub.channel_id, ()):
            sub.resume()  # live events wait in pending meanwhile
            await self._replay(sub)

    async def _replay(self, sub: Subscription) -> None:
        channel_id = sub.channel_id
        if sub.connection.paused:  # produce nothing for it now: catch_up once it drains
            sub.defer()
            return
        after = sub.sent_seq or None
        if not self.distributed:
            assert isinstance(self.backend, MemoryBackend)
            replay = self.backend.replay_now(channel_id, after)
        else:
            replay = await self.backend.replay(channel_id, sub.canonical, after)
            tail = self._tails.get(channel_id)
            if tail is not None:
                replay = merge_entries(replay, tail.after(after))
            if sub not in self._subs.get(channel_id, ()):
                return  # left meanwhile
        if sub.start(replay):
            self._dirty[sub.sink] = None

    async def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.channel_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.channel_id]
            self._seen.pop(sub.channel_id, None)
            await self._leave_group(sub.channel_id)

    def _group_lock(self, channel_id: str) -> asyncio.Lock:
        lock = self._group_locks.get(channel_id)
        if lock is None:
            lock = self._group_locks[channel_id] = asyncio.Lock()
        return lock

    async def _join_group(self, channel_id: str) -> None:
        """Join the request's channel-layer group (once per process; joins and leaves in order)."""
        if self._layer is None or self._relay_channel is None or channel_id in self._in_group:
            return
        async with self._group_lock(channel_id):
            if channel_id not in self._in_group:
                await self._layer.group_add(group_name(channel_id), self._relay_channel)
                self._in_group.add(channel_id)

    async def _leave_group(self, channel_id: str) -> None:
        if self._layer is None or self._relay_channel is None:
            return
        async with self._group_lock(channel_id):
            if channel_id in self._in_group and not self._subs.get(channel_id):
                self._in_group.discard(channel_id)
                with contextlib.suppress(Exception):
                    await self._layer.group_discard(group_name(channel_id), self._relay_channel)
        if channel_id not in self._in_group and not self._subs.get(channel_id):
            self._group_locks.pop(channel_id, None)

    # -- live-socket claims ------------------------------------------------------------------

    async def claim_token(self, jti: str, holder: str) -> bool:
        if await self.backend.claim_token(jti, holder):
            self._live[jti] = holder
            return True
        return False

    async def release_token(self, jti: str, holder: str) -> None:
        if self._live.get(jti) == holder:
            del self._live[jti]
        with contextlib.suppress(Exception):
            await self.backend.release_token(jti, holder)

    # -- across processes --------------------------------------------------------------------

    async def flush_outbox(self) -> None:
        """Write queued entries to the replay stream, then send them to other processes."""
        async with self._outbox_lock:
            self._outbox_event.clear()
            batches, self._outbox = self._outbox, {}
            if not batches:
                return
            try:
                await self.backend.append(batches)
            except Exception:
                logger.exception("could not write %d requests' events to the replay stream", len(batches))
            for channel_id, entries in batches.items():
                message = {"type": BATCH_TYPE, "c": channel_id, "o": self.id,
                           "e": [[e.seq, e.event, e.frame] for e in entries]}
                try:
                    await self._layer.group_send(group_name(channel_id), message)
                except Exception:
                    logger.exception("group_send failed for %s", channel_id)

    async def _sender(self) -> None:
        interval = self.settings.fanout_interval
        while True:
            await self._outbox_event.wait()
            if interval:
                await asyncio.sleep(interval)  # gather a batch: one layer message per request
            await self.flush_outbox()

    async def _receiver(self) -> None:
        assert self._relay_channel is not None
        while True:
            try:
                message = await self._layer.receive(self._relay_channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("channel layer receive failed; retrying")
                await asyncio.sleep(1.0)
                continue
            try:
                await self._on_batch(message)
            except Exception:
                logger.exception("could not relay a batch")

    async def _on_batch(self, message: dict[str, Any]) -> None:
        if message.get("type") != BATCH_TYPE or message.get("o") == self.id:
            return
        channel_id = message["c"]
        subs = self._subs.get(channel_id)
        if not subs:
            return
        entries = [Entry(seq, event, {}, frame) for seq, event, frame in message["e"]]
        if not entries:
            return
        # Fill a gap before this batch from the replay stream: one this process missed, or one a
        # socket missed (a second socket whose replay was read before the process had joined the
        # request's group, and so before the batches it could not receive yet).
        seen = self._seen.get(channel_id, 0)
        ready = [sub.sent_seq for sub in subs if sub.ready and not sub.behind]
        floor = min(ready) if ready else seen
        if (ready or seen) and entries[0].seq > floor + 1:
            canonical = next(iter(subs)).canonical
            missing = await self.backend.replay(channel_id, canonical, floor or None)
            entries = merge_entries(missing, entries)
        self._seen[channel_id] = max(seen, entries[-1].seq)
        self._push_local(channel_id, entries)
        await self.flush_dirty()

    async def _maintenance(self) -> None:
        period = max(0.2, self.settings.pump_lock_ttl / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await self._maintain()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("maintenance failed")

    async def _maintain(self) -> None:
        for pump in list(self._pumps.values()):
            if not await pump.lease.renew():
                pump.lost_lease()
        if self._live:
            await self.backend.refresh_tokens(list(self._live))
        for channel_id in list(self._subs):
            if channel_id not in self._pumps:
                await self.take_over(channel_id)

    async def take_over(self, channel_id: str) -> bool:
        """Run the pump of ``channel_id`` here if nobody holds its lease and it has not ended."""
        if await self.backend.ended_at(channel_id) is not None:
            return False
        lease = await self.backend.acquire_pump(channel_id)
        if lease is None:
            return False
        record = await self.backend.get(channel_id)
        if record is None or await self.backend.ended_at(channel_id) is not None:
            await lease.release()
            return False
        last_seq = await self.backend.last_seq(channel_id)
        upstream: AsyncRequest | None
        try:
            upstream = await self.upstream().reconnect(channel_id)
        except APIError as exc:
            if exc.status != 404:
                logger.warning("takeover of %s: reconnect failed (HTTP %s)", channel_id, exc.status)
                await lease.release()
                return False
            upstream = None  # unknown upstream (e.g. a Realm request lives in its process): the pump ends it
        except ModelRiverError as exc:
            logger.warning("takeover of %s: reconnect failed (%s)", channel_id, type(exc).__name__)
            await lease.release()
            return False
        logger.info("taking over the pump of %s after seq %d", channel_id, last_seq)
        # The dead pump may have stored events whose batch never reached us: hand our sockets
        # what the replay stream holds beyond what they got, before the new pump's first event.
        subs = self._subs.get(channel_id)
        if subs:
            low = min(sub.sent_seq for sub in subs)
            missing = await self.backend.replay(channel_id, record.topic, low or None)
            if missing:
                self._push_local(channel_id, missing)
                await self.flush_dirty()
        self.start_pump(record, upstream, lease, last_seq=last_seq or None)
        return True


def _make_backend(settings: AppSettings) -> Backend:
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


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.closed:
        hub = _hubs[loop] = Hub(modelriver_settings())
    return hub


def reset_hubs() -> None:
    """Forget every hub (settings changed); hubs on a running loop are closed there."""
    for loop, hub in list(_hubs.items()):
        hub.closed = True
        if not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                loop.create_task(hub.close())
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(hub.close(), loop)
    _hubs.clear()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """New settings, new hubs (as Channels' layers do): ``conf`` imports nothing of the relay."""
    if setting in ("MODELRIVER", "CHANNEL_LAYERS"):
        reset_hubs()
