"""Soak: one Django relay process under a steady 200 streams for 30 minutes; is it flat?

    .venv/bin/python benchmarks/soak.py                 # 30 minutes, 200 streams, a sample a minute
    .venv/bin/python benchmarks/soak.py --minutes 5
    .venv/bin/python benchmarks/soak.py --quick         # a few seconds, 20 streams, a sample a second

``modelriver dev`` and the demo under ``daphne`` run as subprocesses; Daphne carries a probe
(``benchmarks/_relaybench.py``) that prints its asyncio task count and RSS every second. Each of
the N lanes starts a request through the relay (its own browser session), reads it to the end
with a raw Phoenix client, and starts the next one: N streams are always open. Each interval the
relay's RSS and open tasks are sampled. Flat means the last sample is within 10 % of the first
one after the warm-up sample (for RSS and for tasks). The full run writes ``benchmarks/soak.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import httpx
from _relaybench import dr, last_probe, progress, start_daphne_probed, text_of


async def lane(site: str, stop: asyncio.Event, counts: dict[str, int], ready: asyncio.Queue[None],
               reasons: dict[str, int]) -> None:
    async with httpx.AsyncClient(base_url=site, timeout=60) as http:
        await http.get("/")
        csrf = http.cookies["csrftoken"]
        first = True
        while not stop.is_set():
            answer = await http.post("/modelriver/start", json={"message": "soak"}, headers={"X-CSRFToken": csrf})
            if answer.status_code != 200:
                counts["errors"] += 1
                why = f"start HTTP {answer.status_code}: {answer.text[:80]}"
                reasons[why] = reasons.get(why, 0) + 1
                continue
            a = answer.json()
            dr.keep_cookies(a, answer)
            stream = dr.Stream(dr.socket_url(a), a["websocket_channel"], origin=site)
            if first:
                first = False
                ready.put_nowait(None)
            await dr.listen(stream, record=False)
            counts["streams"] += 1
            counts["frames"] += stream.frames
            if stream.error or not stream.last:
                counts["errors"] += 1
                why = stream.error or "socket closed before the terminal event"
                reasons[why] = reasons.get(why, 0) + 1


async def soak(streams: int, minutes: float, interval: float, rate: float, tokens: int,
               retention: float | None = None) -> dict[str, Any]:
    gport, port = dr.free_port(), dr.free_port()
    gateway = dr.start_gateway(gport)
    script = {"tokens_per_second": rate, "first_token_ms": 0, "text": text_of(tokens)}
    env = {"MODELRIVER_REPLAY_RETENTION": str(retention)} if retention is not None else {}
    daphne = start_daphne_probed(port, f"http://127.0.0.1:{gport}", script, env=env)
    site = f"http://127.0.0.1:{port}"
    counts = {"streams": 0, "frames": 0, "errors": 0}
    reasons: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    stop = asyncio.Event()
    try:
        await dr.warm_up(site)
        ready: asyncio.Queue[None] = asyncio.Queue()
        lanes = [asyncio.create_task(lane(site, stop, counts, ready, reasons)) for _ in range(streams)]
        async with asyncio.timeout(300):  # every lane has started its first stream
            for _ in range(streams):
                await ready.get()
        started = time.monotonic()
        total = max(1, round(minutes * 60 / interval))
        with progress(total, "soak") as bar:
            for i in range(total + 1):
                await asyncio.sleep(max(0.0, started + i * interval - time.monotonic()))
                probe = last_probe(daphne)
                samples.append({"minute": round((time.monotonic() - started) / 60, 3), "rss_mb":
                                round(probe.get("rss", 0) / 2**20, 1), "tasks": probe.get("tasks", 0),
                                "streams_done": counts["streams"]})
                if i:
                    bar.update()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*lanes, return_exceptions=True), 120)
    finally:
        daphne.stop()
        gateway.stop()
    return {"streams": streams, "minutes": minutes, "interval_s": interval, "samples": samples, **counts,
            "error_reasons": reasons}


def drift(samples: list[dict[str, Any]], key: str) -> float:
    base = samples[1][key] if len(samples) > 2 else samples[0][key]
    return round(abs(samples[-1][key] - base) / base * 100, 1) if base else 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds at CI size")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--streams", type=int, default=None)
    parser.add_argument("--rate", type=float, default=10.0, help="tokens/s per stream")
    parser.add_argument("--interval", type=float, default=None, help="seconds between samples (default 60)")
    parser.add_argument("--retention", type=float, default=None,
                        help="the relay's REPLAY_RETENTION in seconds (default: the app's, 600)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    streams = args.streams or (20 if args.quick else 200)
    minutes = 0.08 if args.quick else args.minutes
    interval = args.interval or (1.0 if args.quick else 60.0)
    tokens = 20 if args.quick else 100
    result = asyncio.run(soak(streams, minutes, interval, args.rate, tokens, args.retention))
    samples = result["samples"]
    print(f"{'minute':>7} {'RSS MB':>7} {'tasks':>6} {'streams done':>13}")
    for s in samples:
        print(f"{s['minute']:>7} {s['rss_mb']:>7} {s['tasks']:>6} {s['streams_done']:>13}")
    for why, count in sorted(result["error_reasons"].items(), key=lambda kv: -kv[1]):
        print(f"{count} stream(s) failed: {why}", file=sys.stderr)
    rss_drift, task_drift = drift(samples, "rss_mb"), drift(samples, "tasks")
    label = f"{streams} streams, {minutes:g} min"
    rows = [
        {"metric": f"soak RSS drift (%), {label}", "measured": rss_drift, "goal": "<= 10",
         "met": rss_drift <= 10 and not result["errors"]},
        {"metric": f"soak open-task drift (%), {label}", "measured": task_drift, "goal": "<= 10",
         "met": task_drift <= 10 and not result["errors"]},
        {"metric": f"soak streams completed, {label} (errors {result['errors']})",
         "measured": samples[-1]["streams_done"], "goal": None, "met": None},
    ]
    if not args.quick:
        from _plot import over_time

        minutes_axis = [s["minute"] for s in samples]
        over_time(minutes_axis, {"RSS (MB)": [s["rss_mb"] for s in samples],
                                 "open asyncio tasks": [s["tasks"] for s in samples]},
                  f"Django relay soak: {label}", "RSS MB / tasks", "soak.png")
    if args.json:
        print(json.dumps({"name": "soak", "summary": rows, "result": result,
                          "notes": "drift = |last - first sample after warm-up| / first; plot benchmarks/soak.png"
                                   + "".join(f"; {n} failed: {why}" for why, n in result["error_reasons"].items())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
