"""A sliding-window rate limit per API key (requests per minute)."""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``per_minute`` hits per key in any 60 s window; 0 disables the limit.

    Keys are kept as digests, never as given.
    """

    def __init__(self, per_minute: int, *, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._hits: dict[bytes, deque[float]] = {}

    def hit(self, key: str, now: float | None = None) -> int | None:
        """Count one hit for ``key``.

        Returns:
            None when allowed, else the whole seconds to wait (``Retry-After``, at least 1);
            a refused hit is not counted.
        """
        if self.per_minute <= 0:
            return None
        now = time.monotonic() if now is None else now
        hits = self._hits.setdefault(hashlib.sha256(key.encode()).digest(), deque())
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return max(1, math.ceil(hits[0] + self.window - now))
        hits.append(now)
        return None
