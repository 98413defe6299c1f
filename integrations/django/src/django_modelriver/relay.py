"""Across processes (``channels_redis``): channel-layer batches, pump leases and takeover.

``ProcessRelay`` is the hub's cross-process half (``Hub`` mixes it in; nothing here runs in
memory mode):

* what a local pump publishes is kept in its ``tail`` (core's ``phoenix.ChannelLog``) until the
  replay stream surely has it, and sent, every ``FANOUT_INTERVAL`` s at most, to the replay
  stream and to the request's channel-layer group: one message per request per batch, to one
  relay channel per process (never one per socket, never one per token);
* a batch from another process is fanned out to this process's sockets, any gap before it
  filled from the replay stream;
* a maintenance task renews the pump leases held here and the live-socket claims, and takes
  over the pump of any request this process has sockets for whose lease lapsed (its process died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from django_modelriver.store import Backend, Lease, RequestRecord
from modelriver.exceptions import APIError, ModelRiverError
from modelriver.phoenix import ChannelLog, Entry, merge_entries

if TYPE_CHECKING:
    from django_modelriver.conf import AppSettings
    from django_modelriver.pump import Pump
    from modelriver.types import AsyncRequest
    from modelriver.upstream import AsyncUpstream

__all__ = ["BATCH_TYPE", "Member", "ProcessRelay", "group_name"]

logger = logging.getLogger("django_modelriver")

BATCH_TYPE = "modelriver.batch"


def group_name(channel_id: str) -> str:
    """The channel-layer group of a request's processes."""
    return f"modelriver.{channel_id}"


class Member(Protocol):
    """What the relay reads of a local socket's join (``hub.Subscription``)."""

    @property
    def sent_seq(self) -> int: ...
    @property
    def ready(self) -> bool: ...
    @property
    def behind(self) -> bool: ...
    @property
    def canonical(self) -> str: ...


class ProcessRelay:
    """The cross-process state and tasks of a hub (``django_modelriver.hub.Hub``)."""

    id: str
    settings: AppSettings
    backend: Backend
    _pumps: dict[str, Pump]
    _live: dict[str, str]

    def _init_relay(self) -> None:
        self._layer: Any = None
        self._relay_channel: str | None = None
        self._tails: dict[str, ChannelLog] = {}
        self._outbox: dict[str, list[Entry]] = {}
        self._outbox_event = asyncio.Event()
        self._outbox_lock = asyncio.Lock()
        self._seen: dict[str, int] = {}
        self._in_group: set[str] = set()
        self._group_locks: dict[str, asyncio.Lock] = {}

    # -- what the hub provides ---------------------------------------------------------------

    def _members(self, channel_id: str) -> Collection[Member]:
        raise NotImplementedError

    def _channels(self) -> list[str]:
        raise NotImplementedError

    def _push_local(self, channel_id: str, entries: list[Entry]) -> None:
        raise NotImplementedError

    async def flush_dirty(self) -> None:
        raise NotImplementedError

    def upstream(self) -> AsyncUpstream:
        raise NotImplementedError

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        raise NotImplementedError

    def start_pump(self, record: RequestRecord, upstream: AsyncRequest | None, lease: Lease, *,
                   last_seq: int | None = None) -> Pump:
        raise NotImplementedError

    # -- batches -----------------------------------------------------------------------------

    async def _start_relay(self) -> None:
        from channels.layers import get_channel_layer

        self._layer = get_channel_layer()
        if self._layer is None:
            raise RuntimeError("django_modelriver: Redis mode needs CHANNEL_LAYERS (see E005)")
        self._relay_channel = await self._layer.new_channel("modelriver")
        self.spawn(self._receiver(), "receiver")
        self.spawn(self._sender(), "sender")
        self.spawn(self._maintenance(), "maintenance")

    def _keep_tail(self, record: RequestRecord) -> None:
        """Keep what the local pump of ``record`` relays until the replay stream has it."""
        self._tails.setdefault(record.channel_id,
                               ChannelLog(record.topic, max_events=self.settings.replay_buffer_size))

    def _relay_out(self, channel_id: str, entries: list[Entry]) -> None:
        """Queue a local pump's entries for the replay stream and the other processes."""
        tail = self._tails.get(channel_id)
        if tail is not None:
            tail.add(entries)
        self._outbox.setdefault(channel_id, []).extend(entries)
        self._outbox_event.set()

    async def _relay_replay(self, channel_id: str, canonical: str, after: int | None) -> list[Entry]:
        """What the replay stream holds after ``after``, with what a local pump has not stored yet."""
        replay = await self.backend.replay(channel_id, canonical, after)
        tail = self._tails.get(channel_id)
        return merge_entries(replay, tail.after(after)) if tail is not None else replay

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
        subs = self._members(channel_id)
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

    # -- groups ------------------------------------------------------------------------------

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
        """Leave the request's group once no local socket is on it."""
        self._seen.pop(channel_id, None)
        if self._layer is None or self._relay_channel is None:
            return
        async with self._group_lock(channel_id):
            if channel_id in self._in_group and not self._members(channel_id):
                self._in_group.discard(channel_id)
                with contextlib.suppress(Exception):
                    await self._layer.group_discard(group_name(channel_id), self._relay_channel)
        if channel_id not in self._in_group and not self._members(channel_id):
            self._group_locks.pop(channel_id, None)

    # -- leases and takeover -----------------------------------------------------------------

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
        for channel_id in self._channels():
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
        subs = self._members(channel_id)
        if subs:
            low = min(sub.sent_seq for sub in subs)
            missing = await self.backend.replay(channel_id, record.topic, low or None)
            if missing:
                self._push_local(channel_id, missing)
                await self.flush_dirty()
        self.start_pump(record, upstream, lease, last_seq=last_seq or None)
        return True
