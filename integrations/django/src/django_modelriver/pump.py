"""The upstream pump: exactly one gateway connection per request, across all processes.

The process that starts a request takes its pump lease (an in-process lock with the in-memory
channel layer, a Redis lock with ``channels_redis``) and runs a ``Pump``: it follows the request
through the hub's upstream (``upstream.connect(request, last_seq=...)``; for ModelRiver core's
``modelriver.stream.Stream`` on the gateway's socket: heartbeats, reconnects with ``last_seq``,
token refresh through the reconnect API), relaying every raw channel message (the stream's
``message`` hook), seq kept, to the hub. Browsers coming and going change nothing: the pump runs
until the request's terminal ``response`` or ``error``. If its process dies, the lease lapses
and a process with sockets on that request takes it over: the upstream's ``reconnect`` for a
fresh handle, ``last_seq`` = the last event in the replay stream, so nothing is lost or
repeated. An upstream that no longer knows the request (404) ends it with an ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

from asgiref.sync import sync_to_async

from django_modelriver.signals import stream_finished
from django_modelriver.store import Backend, Lease, RequestRecord
from modelriver.backoff import exponential
from modelriver.exceptions import APIError, JoinError, ModelRiverError
from modelriver.phoenix import ChannelMessage, Entry, relay_entry

if TYPE_CHECKING:
    from modelriver.types import AsyncRequest
    from modelriver.upstream import AsyncUpstream, AsyncUpstreamStream

__all__ = ["Hub", "Pump"]

logger = logging.getLogger("django_modelriver")


class Hub(Protocol):
    """What a pump needs of its hub (``django_modelriver.hub.Hub``, which imports this module)."""

    backend: Backend
    distributed: bool

    def upstream(self) -> AsyncUpstream: ...

    def publish(self, channel_id: str, entries: list[Entry]) -> None: ...

    def flush_soon(self) -> None: ...

    async def flush_dirty(self) -> None: ...

    async def flush_outbox(self) -> None: ...

    def pump_done(self, pump: Pump) -> None: ...

MAX_ATTEMPTS = 6
"""Upstream failures in a row (with the reconnect API in between) before the pump gives up."""

SAFETY_TIMEOUT = 3600.0
"""Seconds a pump waits at most for a terminal event (the gateway has its own timeouts)."""

UNSTORED_ROOM = 1000
"""Seqs skipped before the error that ends a request taken over but unknown upstream: a dead
pump's own sockets may have shown events it never stored (the batch it had not written yet);
a socket that saw them must still take the error, whose seq is then beyond theirs."""


class Pump:
    """Relays one request's upstream channel to the hub. Created by ``Hub.start_pump``."""

    def __init__(self, hub: Hub, record: RequestRecord, upstream: AsyncRequest | None, lease: Lease, *,
                 last_seq: int | None = None) -> None:
        self.hub = hub
        self.record = record
        self.channel_id = record.channel_id
        self.topic = record.topic
        self.upstream = upstream
        self.lease = lease
        self.last_seq = last_seq or 0
        self.task: asyncio.Task[Any] | None = None
        self.final: Entry | None = None
        self._moved = False
        self._stream: AsyncUpstreamStream | None = None
        self._lost = False

    def lost_lease(self) -> None:
        """Another process owns the request now: stop without marking it ended."""
        self._lost = True
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        try:
            ended = await self._pump()
            await self.hub.flush_dirty()
            if self.hub.distributed:
                await self.hub.flush_outbox()
            if ended:
                await self.hub.backend.mark_ended(self.channel_id)
                await self._notify()
        except asyncio.CancelledError:
            if not self._lost:
                raise
        except Exception:
            logger.exception("pump of %s failed", self.channel_id)
        finally:
            self.hub.pump_done(self)
            if not self._lost:
                with contextlib.suppress(Exception):
                    await self.lease.release()

    async def _pump(self) -> bool:
        """Stream until the terminal event; True when the request ended."""
        failures = 0
        delays = exponential(initial=0.5, maximum=5.0, jitter=0.0)
        unknown = "the request is no longer known upstream"
        while True:
            if self.upstream is None:  # taken over, and the upstream lost it with its process
                self.last_seq += UNSTORED_ROOM
                return self._give_up(unknown)
            try:
                stream = self._stream = await self.hub.upstream().connect(
                    self.upstream, last_seq=self.last_seq or None, request_timeout=SAFETY_TIMEOUT)
            except APIError as exc:
                if exc.status == 404:
                    return self._give_up(unknown)
                raise
            stream.on("message", self._on_message)
            self._moved = False
            try:
                await stream.wait()  # the work is in _on_message: no task switch per event
                return True
            except JoinError as exc:
                return self._give_up(f"upstream join refused: {exc.reason}")
            except ModelRiverError as exc:
                if self._moved:  # the stream moved on since the last failure: start over
                    failures, delays = 0, exponential(initial=0.5, maximum=5.0, jitter=0.0)
                failures += 1
                logger.warning("pump of %s: upstream failed (%s), attempt %d",
                               self.channel_id, type(exc).__name__, failures)
                if failures >= MAX_ATTEMPTS:
                    return self._give_up("upstream connection lost")
            finally:
                await stream.close()
            await asyncio.sleep(next(delays))
            try:
                self.upstream = await self.hub.upstream().reconnect(self.channel_id)
            except APIError as exc:
                if exc.status == 404:
                    return self._give_up(unknown)
            except ModelRiverError:
                pass

    def _on_message(self, message: ChannelMessage) -> None:
        """Called by the stream for every raw channel message, in order, seq kept: published at
        once, the sockets written by the hub's next flush (one for all pumps' events of a loop turn)."""
        entry = relay_entry(self.topic, message.event, message.payload, self.last_seq, message.frame)
        if entry is None:
            return
        self._moved = True
        self._publish(entry)
        self.hub.flush_soon()

    def _publish(self, entry: Entry) -> None:
        self.last_seq = entry.seq
        if entry.event in ("response", "error"):
            self.final = entry
        self.hub.publish(self.channel_id, [entry])

    def _give_up(self, message: str) -> bool:
        logger.error("pump of %s gave up: %s", self.channel_id, message)
        entry = relay_entry(self.topic, "error", {"message": message}, self.last_seq)
        if entry is not None:
            self._publish(entry)
        return True

    async def _notify(self) -> None:
        final = self.final
        if final is None:
            return
        results = await sync_to_async(stream_finished.send_robust)(
            sender=type(self), channel_id=self.channel_id, event=final.event, payload=final.payload,
        )
        for receiver, result in results:
            if isinstance(result, Exception):
                logger.error("stream_finished receiver %r failed", receiver, exc_info=result)
