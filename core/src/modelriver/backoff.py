"""Every retry and reconnect schedule of the library, as pure endless generators of delays (seconds).

    delays = exponential(initial=0.5, maximum=8.0)    # the API's retries: 0.5, 1, 2 ... 8, jittered
    await asyncio.sleep(next(delays))

``reconnect_backoff`` / ``rejoin_backoff`` are phoenix.js's socket and channel schedules (the stream
client's and the Phoenix client's); ``exponential`` serves the HTTP API's retries (with jitter), the
embedded gateway's webhook retries and the Django relay's upstream reconnects (without). No clock, no
sleep: the caller waits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

__all__ = ["RECONNECT_MS", "REJOIN_MS", "exponential", "reconnect_backoff", "rejoin_backoff", "stepped"]

RECONNECT_MS = (10, 50, 100, 150, 200, 250, 500, 1000, 2000)
RECONNECT_AFTER_MS = 5000
REJOIN_MS = (1000, 2000, 5000)
REJOIN_AFTER_MS = 10000


def exponential(
    *,
    initial: float = 0.5,
    factor: float = 2.0,
    maximum: float = 8.0,
    jitter: float = 0.25,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Exponential delays, capped, with jitter.

    The n-th delay is ``min(initial * factor**n, maximum)``, shortened by up to ``jitter`` of
    itself at random, so clients that failed together do not retry together.

    Args:
        initial: the first delay before jitter.
        factor: the growth factor between delays.
        maximum: the cap before jitter.
        jitter: the largest fraction taken off a delay, in ``[0, 1]`` (0: no randomness).
        rand: a source of floats in ``[0, 1)``; inject a constant for deterministic delays.

    Returns:
        An endless iterator of delays in ``[(1 - jitter) * d, d]`` for each capped step ``d``.
    """
    delay = initial
    while True:
        capped = min(delay, maximum)
        yield capped * (1.0 - jitter * rand()) if jitter else capped
        delay = min(delay * factor, maximum)


def stepped(steps_ms: Sequence[int], then_ms: int) -> Iterator[float]:
    """``steps_ms`` one after the other, then ``then_ms`` forever (phoenix.js's style of schedule).

    Args:
        steps_ms: the first delays, in milliseconds.
        then_ms: every later delay, in milliseconds.

    Returns:
        An endless iterator of delays in seconds.
    """
    for ms in steps_ms:
        yield ms / 1000
    while True:
        yield then_ms / 1000


def reconnect_backoff() -> Iterator[float]:
    """Socket reconnect delays: 10, 50, 100, 150, 200, 250, 500, 1000, 2000 ms, then 5 s forever."""
    return stepped(RECONNECT_MS, RECONNECT_AFTER_MS)


def rejoin_backoff() -> Iterator[float]:
    """Channel rejoin delays: 1, 2, 5 s, then 10 s forever."""
    return stepped(REJOIN_MS, REJOIN_AFTER_MS)
