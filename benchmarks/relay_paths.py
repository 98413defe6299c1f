"""The relay's per-token paths, timed in one process (no sockets): the A/B of issue 17's relay layer.

    PYTHONPATH=<tree>/pkgs .venv/bin/python benchmarks/relay_paths.py   # prints one JSON object

* ``append_us``: ``ChannelLog.append`` (stamp the seq, encode the frame once, keep it);
* ``replay_us``: a catch-up, ``after(cursor, 512)`` chunk by chunk to the end;
* ``live_us``: one live token handed to a joined ``ServerConnection`` (through
  ``phoenix.Subscription.push``; before it existed, the gateway writer's ``_deliver`` loop).

Each is the best of 25 runs over 10,000 tokens on a 90-character topic, in µs per token.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import modelriver.phoenix as phoenix
from modelriver.phoenix import ServerConnection

TOPIC = "ai_response:3f1c2a9e-0000-4000-8000-000000000001:8b7d6c5e-0000-4000-8000-000000000002"
TOKENS = 10_000


def best(fn: Callable[[], Any], runs: int = 25) -> float:
    """The shortest of ``runs`` timings of ``fn``, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs each instead of 25 (CI smoke run)")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    args = parser.parse_args()
    runs = 3 if args.quick else 25

    def append() -> Any:
        log = phoenix.ChannelLog(TOPIC, max_events=2 * TOKENS)
        for i in range(TOKENS):
            log.append("tokens", {"data": f"w{i} "})
        return log

    log = append()

    def replay() -> None:
        seq = 0
        while chunk := log.after(seq, 512):
            seq = chunk[-1].seq

    conn = ServerConnection(lambda topic, payload: None, max_buffer=1 << 40)
    conn.receive(f'["1","1","{TOPIC}","phx_join",{{}}]')
    conn.data_to_send()
    conn.events_received()
    entries = log.after(None)

    if hasattr(phoenix, "Subscription"):
        def live() -> None:
            sub = phoenix.Subscription(conn, TOPIC, TOPIC, last_seq=None, coalesce=False)
            sub.start([])
            for entry in entries:
                sub.push([entry])
            conn.data_to_send()
    else:
        def deliver(batch: list[Any]) -> None:  # the old SocketSession._deliver, alias and coalesce off
            frames = [e.frame for e in batch]
            conn.deliver(TOPIC, frames)

        def live() -> None:
            for entry in entries:  # the old _deliver_live: a batch of one, paused checked
                batch = [entry]
                if not conn.paused:
                    deliver(batch)
            conn.data_to_send()

    figures = {"append_us": round(best(append, min(runs, 15)) / TOKENS * 1e6, 3),
               "replay_us": round(best(replay, runs) / TOKENS * 1e6, 3),
               "live_us": round(best(live, runs) / TOKENS * 1e6, 3)}
    report = {**figures, "summary": [{"metric": f"{name[:-3]} per token (µs, best of {runs})", "measured": value}
                                     for name, value in figures.items()]}
    if not args.json:
        for row in report["summary"]:
            print(f"{row['metric']}: {row['measured']}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
