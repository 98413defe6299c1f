"""The per-process hub: the registry of local sockets' joins and the fan-out to them.

One ``Hub`` per event loop (``get_hub()``). It owns the backend (``store``), the upstream (the
``UPSTREAM`` setting's ``AsyncUpstream``: ModelRiver's API client by default), the local pumps
(``pump``), and which socket joined which request: a pump hands each event to every local
socket directly (``publish`` then ``flush_dirty``): no channel-layer hop, no thread hop, one
frame per event for every socket. What each join is handed, once and in order, is core's
``phoenix.Subscription``'s. Across processes (``channels_redis``) the hub is also a
``relay.ProcessRelay``: channel-layer batches, pump leases and takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import weakref
from collections.abc import Collection, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_modelriver.conf import AppSettings, modelriver_settings
from django_modelriver.pump import Pump
from django_modelriver.relay import BATCH_TYPE, ProcessRelay
from django_modelriver.store import Backend, Lease, MemoryBackend, RequestRecord, make_backend
from modelriver.phoenix import Entry, ServerConnection
from modelriver.phoenix import Subscription as ChannelSubscription
from modelriver.upstream import AsyncUpstream, UpstreamError

if TYPE_CHECKING:
    from modelriver.types import AsyncRequest

__all__ = ["BATCH_TYPE", "CallbackUpstream", "Hub", "Sink", "Subscription", "get_hub", "reset_hubs"]

logger = logging.getLogger("django_modelriver")

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


class Hub(ProcessRelay):
    """This process's relay state for one event loop. Use ``get_hub()``."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.id = secrets.token_hex(8)
        self.backend: Backend = make_backend(settings)
        self.distributed = self.backend.distributed
        self.closed = False
        self._upstream: AsyncUpstream | None = None
        self._subs: dict[str, set[Subscription]] = {}
        self._pumps: dict[str, Pump] = {}
        self._dirty: dict[Sink, None] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._live: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._init_relay()
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
                await self._start_relay()
            self._started = True

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
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
            self._keep_tail(record)
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
            self._relay_out(channel_id, entries)
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
            replay = await self._relay_replay(channel_id, sub.canonical, after)
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
            await self._leave_group(sub.channel_id)

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

    # -- what the relay reads -----------------------------------------------------------------

    def _members(self, channel_id: str) -> Collection[Subscription]:
        return self._subs.get(channel_id, ())

    def _channels(self) -> list[str]:
        return list(self._subs)


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
