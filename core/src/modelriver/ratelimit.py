"""The one rate limit of the library: a token bucket per key, sans-I/O (the caller passes ``now`` in).

It serves the embedded gateway (async requests per minute per API key), the Realm endpoint (calls
per minute per tenant) and, through ``take`` (the bucket's arithmetic alone, for state kept
elsewhere), the Django relay's start limits, kept in Django's cache and shared by its processes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["RateLimiter", "take"]

_PRUNE_AT = 10_000


def take(tokens: float, updated: float, now: float, *, per_second: float,
         burst: float) -> tuple[float, float | None]:
    """Refill a bucket of ``tokens`` last updated at ``updated`` up to ``now``, then take one.

    Returns:
        ``(tokens left, None)`` when one was taken, else ``(tokens now, seconds until one is
        there)``; ``updated`` becomes ``now`` either way.
    """
    tokens = min(burst, tokens + max(0.0, now - updated) * per_second)
    if tokens >= 1.0:
        return tokens - 1.0, None
    return tokens, (1.0 - tokens) / per_second


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``per_minute`` calls a minute per key, in bursts of up to ``burst`` (default: all of them).

    Keys (API keys, tenant ids) are kept as digests, never as given.

    Args:
        per_minute: calls a tenant may make each minute; 0 or less disables the limit.
        burst: the bucket's size; defaults to ``per_minute``.
    """

    def __init__(self, per_minute: int, *, burst: int | None = None) -> None:
        self.per_minute = per_minute
        self.burst = max(1, burst if burst is not None else per_minute)
        self._rate = per_minute / 60.0
        self._buckets: dict[bytes, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def acquire(self, key: str, now: float) -> float | None:
        """Take one call from ``key``'s bucket.

        Returns:
            None when the call may go ahead, else the seconds until it could (a refused call
            takes nothing).
        """
        if not self.enabled:
            return None
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        bucket = self._buckets.get(digest)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            bucket = self._buckets[digest] = _Bucket(float(self.burst), now)
        bucket.tokens, wait = take(bucket.tokens, bucket.updated, now, per_second=self._rate,
                                   burst=float(self.burst))
        bucket.updated = now
        return wait

    def _prune(self, now: float) -> None:
        """Forget keys whose buckets have refilled (they are as good as new)."""
        full = [
            digest for digest, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self._rate >= self.burst
        ]
        for digest in full:
            del self._buckets[digest]
