"""Latency each hop adds to paced tokens: Django relay vs a plain ``websockets`` forwarder.

    .venv/bin/python benchmarks/relay_latency.py            # N = 100 at 50 tokens/s (and 1000)
    .venv/bin/python benchmarks/relay_latency.py --quick    # N = 20, a few seconds

All in one run: ``modelriver dev``, the plain forwarder (``benchmarks/_relaybench.py``) and the
demo under ``daphne`` as subprocesses; N raw Phoenix clients through the hop, plus a direct
"shadow" client on the same channel for a sample of them (same process, same clock): a token's
added latency is its arrival through the hop minus its arrival at the shadow. Goal: <= 2 ms p99
added per hop at 100 streams. The full run writes ``benchmarks/relay_latency_<N>.png`` (percentiles)
and, in a separate pass whose latencies are not reported, profiles the relay process with cProfile
(``relay_profile_<N>.prof``, top functions printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from _relaybench import HERE, latency_paths, percentiles, profile_top, progress, running_gateway, sizes_arg


async def bench(sizes: list[int], tokens: int, rate: float, sample: int, profile: bool) -> list[dict[str, Any]]:
    out = []
    with running_gateway() as (_, gw_url), progress(len(sizes), "relay_latency") as bar:
        for n in sizes:
            out.append(await latency_paths(n, tokens, rate, min(n, sample), gw_url))
            bar.update()
        if profile:  # a separate pass: cProfile slows the relay, so its latencies are not reported
            n = sizes[0]
            prof = str(HERE / f"relay_profile_{n}.prof")
            await latency_paths(n, tokens, rate, min(n, sample), gw_url, profile=prof)
            out[0]["profile_top"] = profile_top(prof)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size")
    parser.add_argument("--sizes", type=sizes_arg, default=None, help="comma-separated N (default 100,1000)")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens/s per stream")
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-profile", action="store_true", help="full runs profile the relay (cProfile)")
    args = parser.parse_args()
    sizes = args.sizes or ([20] if args.quick else [100, 1000])
    tokens = args.tokens or (40 if args.quick else 250)
    result = asyncio.run(bench(sizes, tokens, args.rate, 20, not args.quick and not args.no_profile))
    rows = []
    print(f"{'N':>5} {'hop':>10} {'tokens':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>6} "
          f"{'hop CPU s':>9}")
    for r in result:
        for hop in ("forwarder", "relay"):
            x = r[hop]
            pc = percentiles(x["added_ms"])
            x.update(pc, tokens_compared=len(x["added_ms"]))
            print(f"{r['n']:>5} {hop:>10} {len(x['added_ms']):>7} {pc['p50']:>8} {pc['p90']:>8} {pc['p99']:>8} "
                  f"{x['errors']:>6} {x['cpu_s']:>9}")
        goal = r["n"] <= 100
        relay, fwd = r["relay"], r["forwarder"]
        rows.append({"metric": f"relay added latency p99 (ms), {r['n']} streams at {r['rate']:g} tokens/s "
                               f"(forwarder {fwd['p99']})", "measured": relay["p99"],
                     "goal": "<= 2" if goal else None,
                     "met": (relay["p99"] <= 2 and not relay["errors"]) if goal else None})
        rows.append({"metric": f"relay added latency p50 (ms), {r['n']} streams (forwarder {fwd['p50']})",
                     "measured": relay["p50"], "goal": None, "met": None})
    if not args.quick:
        from _plot import latency_percentiles

        for r in result:
            latency_percentiles({"Django relay": r["relay"]["added_ms"], "plain forwarder": r["forwarder"]["added_ms"]},
                                f"added latency per hop, {r['n']} streams at {r['rate']:g} tokens/s",
                                f"relay_latency_{r['n']}.png")
    for r in result:  # the raw samples stay out of the JSON line
        for hop in ("forwarder", "relay"):
            r[hop].pop("added_ms")
    notes = ("added latency = arrival through the hop minus at a direct client on the same channel; plots: "
             "benchmarks/relay_latency_<N>.png")
    for r in result:
        if r.get("profile_top"):
            print(f"relay profile, {r['n']} streams (own time, calls, function):")
            print("\n".join("  " + line for line in r["profile_top"]))
            notes += (f"; relay cProfile at {r['n']} streams, most own time: "
                      + "; ".join(line.strip() for line in r["profile_top"][:6]))
    if args.json:
        print(json.dumps({"name": "relay_latency", "summary": rows, "result": result, "notes": notes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
