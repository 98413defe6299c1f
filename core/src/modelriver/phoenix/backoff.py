"""phoenix.js's reconnect and rejoin schedules as pure generators (seconds)."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["RECONNECT_MS", "REJOIN_MS", "reconnect_backoff", "rejoin_backoff"]

RECONNECT_MS = (10, 50, 100, 150, 200, 250, 500, 1000, 2000)
RECONNECT_AFTER_MS = 5000
REJOIN_MS = (1000, 2000, 5000)
REJOIN_AFTER_MS = 10000


def reconnect_backoff() -> Iterator[float]:
    """Socket reconnect delays: 10, 50, 100, 150, 200, 250, 500, 1000, 2000 ms, then 5 s forever."""
    for ms in RECONNECT_MS:
        yield ms / 1000
    while True:
        yield RECONNECT_AFTER_MS / 1000


def rejoin_backoff() -> Iterator[float]:
    """Channel rejoin delays: 1, 2, 5 s, then 10 s forever."""
    for ms in REJOIN_MS:
        yield ms / 1000
    while True:
        yield REJOIN_AFTER_MS / 1000
