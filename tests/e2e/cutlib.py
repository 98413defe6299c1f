"""The cut runner shared by the fault tests: streams through a ``FaultProxy`` that cuts them.

``run_cuts(open_stream, proxy, ...)`` keeps ``slots`` streams running back to back while a cutter
resets every live connection of the proxy at random moments, until ``cuts`` cuts have hit at
least one live connection; then the streams in flight finish. Each stream is checked by the
caller's ``open_stream`` result: the tokens it delivered (with their ``seq``), the final
response's content and the text the gateway produced. ``Ledger`` adds up the figures.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from support.faultproxy import FaultProxy

__all__ = ["Ledger", "StreamResult", "run_cuts", "unique_text"]


@dataclass
class StreamResult:
    """What one stream delivered, and what it should have."""

    channel_id: str
    token_seqs: list[int]
    text: str
    final_content: str | None
    expected_text: str
    expected_tokens: int
    reconnects: int = 0


@dataclass
class Ledger:
    """Figures over a run: cuts, streams, tokens checked, lost, duplicated, mismatched texts."""

    cuts: int = 0
    connections_cut: int = 0
    streams: int = 0
    tokens_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    text_mismatches: list[str] = field(default_factory=list)
    reconnects: int = 0
    seconds: float = 0.0

    def add(self, result: StreamResult) -> None:
        self.streams += 1
        unique = set(result.token_seqs)
        self.tokens_checked += len(result.token_seqs)
        self.duplicated += len(result.token_seqs) - len(unique)
        self.lost += max(0, result.expected_tokens - len(unique))
        self.reconnects += result.reconnects
        if not (result.text == result.final_content == result.expected_text):
            self.text_mismatches.append(result.channel_id)

    def figures(self) -> dict[str, object]:
        return {"cuts": self.cuts, "connections_cut": self.connections_cut, "streams": self.streams,
                "tokens_checked": self.tokens_checked, "lost": self.lost, "duplicated": self.duplicated,
                "texts_differing": len(self.text_mismatches), "reconnects": self.reconnects,
                "seconds": round(self.seconds, 1)}


def unique_text(index: int, words: int) -> str:
    """A text of ``words`` word-tokens, distinct per ``index``, with multi-byte characters."""
    marks = ["é", "雨", "🌊", "ß", "→", "ü"]
    return " ".join(f"s{index}w{j}{marks[j % len(marks)]}" for j in range(words))


async def run_cuts(
    open_stream: Callable[[int], Awaitable[StreamResult]],
    proxy: FaultProxy,
    *,
    cuts: int,
    slots: int,
    gap: tuple[float, float],
    within: float,
    seed: int = 8,
) -> Ledger:
    """Run streams in ``slots`` parallel lanes while cutting; returns the ledger.

    Args:
        open_stream: runs stream number ``n`` to its end and returns what it delivered.
        proxy: the proxy the streams go through.
        cuts: how many cuts (each hitting at least one live connection) to make.
        slots: streams running at once.
        gap: the random pause between two cuts, seconds (min, max): the fault schedule.
        within: the whole run's bound, seconds (raises TimeoutError past it).
        seed: the schedule's random seed (a run is reproducible up to thread timing).
    """
    ledger = Ledger()
    rng = random.Random(seed)
    cutting = asyncio.Event()
    cutting.set()
    counter = iter(range(1_000_000))
    started = time.monotonic()

    async def lane() -> None:
        while cutting.is_set():
            ledger.add(await open_stream(next(counter)))

    async def cutter() -> None:
        while ledger.cuts < cuts:
            # A random moment, whatever the connections are doing then (never "as soon as one
            # opens": that would cut every reconnect in its handshake). A cut that finds no live
            # connection does not count.
            await asyncio.sleep(rng.uniform(*gap))
            hit = await proxy.cut_all()
            if hit:
                ledger.cuts += 1
                ledger.connections_cut += hit
        cutting.clear()

    async with asyncio.timeout(within):
        await asyncio.gather(cutter(), *(lane() for _ in range(slots)))
    ledger.seconds = time.monotonic() - started
    return ledger
