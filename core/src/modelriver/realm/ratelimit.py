"""A per-tenant token bucket, sans-I/O: the caller passes ``now`` in."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RateLimiter"]

_PRUNE_AT = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``per_minute`` calls a minute per tenant, in bursts of up to ``burst`` (default: all of them).

    Args:
        per_minute: calls a tenant may make each minute; 0 or less disables the limit.
        burst: the bucket's size; defaults to ``per_minute``.
    """

    def __init__(self, per_minute: int, *, burst: int | None = None) -> None:
        self.per_minute = per_minute
        self.burst = max(1, burst if burst is not None else per_minute)
        self._rate = per_minute / 60.0
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def acquire(self, tenant: str, now: float) -> float | None:
        """Take one call from ``tenant``'s bucket.

        Returns:
            None when the call may go ahead, else the seconds until it could.
        """
        if not self.enabled:
            return None
        bucket = self._buckets.get(tenant)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            bucket = self._buckets[tenant] = _Bucket(float(self.burst), now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self._rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate

    def _prune(self, now: float) -> None:
        """Forget tenants whose buckets have refilled (they are as good as new)."""
        full = [
            tenant for tenant, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self._rate >= self.burst
        ]
        for tenant in full:
            del self._buckets[tenant]
