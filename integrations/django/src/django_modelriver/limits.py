"""Limits on starts per session, and per user when logged in: a rate and a number in flight.

``MODELRIVER["START_RATE"]`` starts a minute (a token bucket of that size: core's
``modelriver.ratelimit.take``) and ``MODELRIVER["MAX_IN_FLIGHT"]`` requests not yet ended,
for each of the session and the user; 0 or None turns one off. The state lives in Django's cache
(``MODELRIVER["LIMIT_CACHE"]``, an alias of ``CACHES``), so processes sharing a cache (Redis,
Memcached) share the limits; the default ``LocMemCache`` limits each process on its own. An update
is a read and a write of one cache entry per identity under a lock of this process: processes that
start for the same session at the very same moment may each let one more through.

The view reserves a slot before it creates the upstream request, binds the slot to the channel once
created, and releases it when creating failed; a slot frees itself once its request has ended
(``ended`` of ``reserve``) or after ``FLIGHT_MAX_AGE`` seconds.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches

from modelriver.ratelimit import take

__all__ = ["FLIGHT_MAX_AGE", "IN_FLIGHT_RETRY", "Refusal", "StartLimits"]

FLIGHT_MAX_AGE = 900.0
"""Seconds after which a slot in flight is freed even if its end was never seen."""
IN_FLIGHT_RETRY = 5
"""``Retry-After`` seconds for a start refused because too many requests are in flight."""

_LOCK = threading.Lock()  # one read-modify-write of the cache at a time in this process


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a start was refused: ``"rate"`` or ``"in_flight"``, the wait, and the channels in flight."""

    reason: str
    retry_after: int
    in_flight: tuple[str, ...] = ()


class StartLimits:
    """The start limits of one settings object (cheap to make; the state is in the cache).

    Args:
        per_minute: starts a minute per identity (0: no rate limit).
        in_flight: requests not yet ended per identity (0: no limit).
        cache_alias: the ``CACHES`` alias holding the counters.
    """

    def __init__(self, per_minute: int, in_flight: int, cache_alias: str) -> None:
        self.per_minute = per_minute
        self.in_flight = in_flight
        self.cache_alias = cache_alias

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0 or self.in_flight > 0

    def _keys(self, identities: Iterable[str]) -> list[str]:
        return ["django_modelriver:starts:" + hashlib.sha256(i.encode()).hexdigest()[:32]
                for i in identities]

    def reserve(self, identities: Sequence[str], now: float,
                ended: Iterable[str] = ()) -> str | Refusal:
        """Take a start for each identity (``"session:<owner>"``, ``"user:<id>"``), all or none.

        Args:
            identities: who starts.
            now: wall-clock seconds (``time.time()``: processes share it).
            ended: channels known to have ended (their slots are freed first).

        Returns:
            A reservation id for ``bind``/``release``, or the ``Refusal``.
        """
        cache = caches[self.cache_alias]
        keys = self._keys(identities)
        over = set(ended)
        rate = self.per_minute / 60.0
        with _LOCK:
            states = cache.get_many(keys)
            updated: dict[str, dict[str, Any]] = {}
            wait = 0.0
            for key in keys:
                state = dict(states.get(key) or {"tokens": float(self.per_minute), "at": now, "flight": {}})
                state["flight"] = {rid: (started, cid) for rid, (started, cid) in state["flight"].items()
                                   if cid not in over and now - started < FLIGHT_MAX_AGE}
                if self.in_flight > 0 and len(state["flight"]) >= self.in_flight:
                    busy = tuple(cid for _, cid in state["flight"].values() if cid)
                    return Refusal("in_flight", IN_FLIGHT_RETRY, busy)
                if self.per_minute > 0:
                    state["tokens"], key_wait = take(state["tokens"], state["at"], now, per_second=rate,
                                                     burst=float(self.per_minute))
                    state["at"] = now
                    wait = max(wait, key_wait or 0.0)
                updated[key] = state
            if wait > 0:
                return Refusal("rate", max(1, math.ceil(wait)))
            reservation = secrets.token_hex(8)
            for state in updated.values():
                state["flight"][reservation] = (now, None)
            cache.set_many(updated, timeout=FLIGHT_MAX_AGE)
        return reservation

    def bind(self, identities: Sequence[str], reservation: str, channel_id: str) -> None:
        """The reserved slot is now ``channel_id``'s (freed once it has ended)."""
        self._update(identities, reservation, channel_id)

    def release(self, identities: Sequence[str], reservation: str) -> None:
        """Free a reserved slot (creating the request failed). The start still counts for the rate."""
        self._update(identities, reservation, None)

    def _update(self, identities: Sequence[str], reservation: str, channel_id: str | None) -> None:
        cache = caches[self.cache_alias]
        keys = self._keys(identities)
        with _LOCK:
            states = cache.get_many(keys)
            for state in states.values():
                slot = state["flight"].pop(reservation, None)
                if slot is not None and channel_id is not None:
                    state["flight"][reservation] = (slot[0], channel_id)
            cache.set_many(states, timeout=FLIGHT_MAX_AGE)
