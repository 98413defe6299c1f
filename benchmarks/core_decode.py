"""Phoenix client decode + dispatch throughput against a bare ``json.loads`` loop.

    .venv/bin/python benchmarks/core_decode.py            # 200 000 frames, 7 rounds
    .venv/bin/python benchmarks/core_decode.py --quick    # 20 000 frames, 3 rounds (CI smoke run)

The frames are what a streaming channel carries: ``tokens`` events with a ``seq`` and a short text
delta (``[null,null,"ai_response:<project>:<channel>","tokens",{"data":"hello ","seq":42}]``), a
``status`` now and then, and a final ``response``, encoded by the server core's ``ChannelLog``.

Each round times both loops over the same frames, alternating, and the best round of each counts:

* ``json.loads``: the floor, parsing only;
* ``PhoenixClient``: ``receive(frame, now)`` then ``events_received()`` per frame, as an I/O
  layer does (decode, membership and join_ref checks, seq dedupe, one ``ChannelMessage``).

Goal: the client keeps at least half the frames/s of the bare loop (ratio >= 0.5). ``--check``
exits 1 below the goal; ``--json`` prints the numbers as one JSON object instead.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:
    import modelriver.phoenix  # noqa: F401
except ImportError:  # run from a checkout without the workspace installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "src"))

from modelriver.phoenix import ChannelLog, ChannelMessage, PhoenixClient

GOAL = 0.5
TOPIC = "ai_response:0b0c6f6e-3c8e-4f53-9d35-5d7b3f0a1c11:5e0f9d2a-8b8d-4a3c-a4a1-2f2c6d8e9b10"
WORDS = ("hello ", "world", ", ", "the ", "quick ", "brown ", "fox", " jumps", " over", " the lazy dog.",
         "\n", "Ça ", "va ", "très ", "bien", " ✓", "42", " tokens", " per", " second")


def build_frames(count: int) -> list[str]:
    """``count`` broadcast frames of one channel: tokens, a status every 500, a final response."""
    log = ChannelLog(TOPIC, max_events=count)
    for i in range(count - 1):
        if i % 500 == 250:
            log.append("status", {"status": "generating", "step": "process", "provider": "openai"})
        else:
            log.append("tokens", {"data": WORDS[i % len(WORDS)]})
    log.append("response", {"status": "success", "content": "...", "meta": {"duration_ms": 1234}})
    return [entry.frame for entry in log.after(None)]


def joined_client() -> PhoenixClient:
    phx = PhoenixClient()
    phx.connection_opened(0.0)
    phx.join(TOPIC, {}, 0.0)
    phx.data_to_send()
    phx.receive(json.dumps(["1", "1", TOPIC, "phx_reply", {"status": "ok", "response": {}}]), 0.0)
    phx.events_received()
    return phx


def time_bare(frames: Sequence[str]) -> float:
    loads = json.loads
    start = time.perf_counter()
    for frame in frames:
        loads(frame)
    return time.perf_counter() - start


def time_client(frames: Sequence[str]) -> float:
    phx = joined_client()
    receive, drain = phx.receive, phx.events_received
    delivered = 0
    start = time.perf_counter()
    for frame in frames:
        receive(frame, 1.0)
        delivered += len(drain())
    elapsed = time.perf_counter() - start
    if delivered != len(frames):
        raise AssertionError(f"the client delivered {delivered} of {len(frames)} events")
    return elapsed


def check_dispatch(frames: Sequence[str]) -> None:
    """The timed loop must do the real work: every frame becomes one ChannelMessage, in order."""
    phx = joined_client()
    for frame in frames[:100]:
        phx.receive(frame, 1.0)
    events = [e for e in phx.events_received() if isinstance(e, ChannelMessage)]
    assert [e.payload["seq"] for e in events] == list(range(1, min(100, len(frames)) + 1))


def run(count: int, rounds: int) -> dict[str, Any]:
    frames = build_frames(count)
    check_dispatch(frames)
    timers: dict[str, Callable[[Sequence[str]], float]] = {
        "json.loads": time_bare,
        "PhoenixClient": time_client,
    }
    best = dict.fromkeys(timers, float("inf"))
    enabled = gc.isenabled()
    try:
        for _ in range(rounds):
            for name, timer in timers.items():
                gc.collect()
                gc.disable()
                best[name] = min(best[name], timer(frames))
                if enabled:
                    gc.enable()
    finally:
        if enabled:
            gc.enable()
    bare = count / best["json.loads"]
    client = count / best["PhoenixClient"]
    return {
        "frames": count,
        "rounds": rounds,
        "frame_bytes": sum(map(len, frames)) // count,
        "json_loads_fps": round(bare),
        "client_fps": round(client),
        "ratio": round(client / bare, 3),
        "goal": GOAL,
        "python": sys.version.split()[0],
        "summary": [
            {"metric": "decode+dispatch frames/s", "measured": f"{round(client):,}", "goal": None, "met": None},
            {"metric": "json.loads frames/s (same frames)", "measured": f"{round(bare):,}", "goal": None,
             "met": None},
            {"metric": "ratio to bare json.loads", "measured": f"{client / bare:.2f}", "goal": f">= {GOAL}",
             "met": client / bare >= GOAL},
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20 000 frames, 3 rounds")
    parser.add_argument("--frames", type=int, help="frames per round")
    parser.add_argument("--rounds", type=int, help="alternating rounds (best counts)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when the ratio is under {GOAL}")
    args = parser.parse_args(argv)
    count = args.frames or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (3 if args.quick else 7)
    result = run(count, rounds)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"frames: {count} x {rounds} rounds, ~{result['frame_bytes']} bytes each, "
              f"Python {result['python']}")
        print(f"json.loads loop           {result['json_loads_fps']:>12,} frames/s")
        print(f"PhoenixClient decode+dispatch {result['client_fps']:>8,} frames/s")
        verdict = "ok" if result["ratio"] >= GOAL else "UNDER GOAL"
        print(f"ratio {result['ratio']:.3f} (goal >= {GOAL}): {verdict}")
    return 1 if args.check and result["ratio"] < GOAL else 0


if __name__ == "__main__":
    sys.exit(main())
