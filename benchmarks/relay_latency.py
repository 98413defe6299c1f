"""Latency each hop adds to paced tokens: Django relay vs a plain ``websockets`` forwarder.

    .venv/bin/python benchmarks/relay_latency.py            # N = 100 at 50 tokens/s (and 1000)
    .venv/bin/python benchmarks/relay_latency.py --quick    # N = 20, a few seconds

All in one run: ``modelriver dev``, the plain forwarder (``benchmarks/_relaybench.py``) and the
demo under ``daphne`` as subprocesses; N raw Phoenix clients through the hop, plus a direct
"shadow" client on the same channel for a sample of them (same process, same clock): a token's
added latency is its arrival through the hop minus its arrival at the shadow. Goal: <= 2 ms p99
added per hop at 100 streams. The method's floor is measured in the same run: a second direct
client on five of the sampled channels, subtracted the same way (what the measurement itself
adds: the gateway's send order, this process's scheduling). All share the machine's cores; full
runs then repeat the first N with each hop on a CPU core of its own (core 1) and the gateway and
the clients on core 0, as a relay on its own machine would be (``--no-pinned-pass`` skips it).
The full run writes ``benchmarks/relay_latency_<N>[_pinned].png`` (percentiles) and, in a separate
pass whose latencies are not reported, profiles the relay process with cProfile
(``relay_profile_<N>.prof``, top functions printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from _relaybench import (
    HERE,
    REST_CORE,
    latency_paths,
    percentiles,
    pin,
    profile_top,
    progress,
    running_gateway,
    sizes_arg,
)

PATHS = ("forwarder", "relay", "floor")


async def bench(sizes: list[int], tokens: int, rate: float, sample: int, profile: bool,
                pinned_pass: bool) -> list[dict[str, Any]]:
    out = []
    with progress(len(sizes) + pinned_pass, "relay_latency") as bar:
        with running_gateway() as (_, gw_url):
            for n in sizes:
                out.append(await latency_paths(n, tokens, rate, min(n, sample), gw_url))
                bar.update()
            if profile:  # a separate pass: cProfile slows the relay, so its latencies are not reported
                n = sizes[0]
                prof = str(HERE / f"relay_profile_{n}.prof")
                await latency_paths(n, tokens, rate, min(n, sample), gw_url, profile=prof)
                out[0]["profile_top"] = profile_top(prof)
        if pinned_pass:  # last (this process stays on core 0 from here on), with a fresh gateway
            pin(os.getpid(), REST_CORE)
            with running_gateway(core=REST_CORE) as (_, gw_url):
                out.append(await latency_paths(sizes[0], tokens, rate, min(sizes[0], sample), gw_url, pinned=True))
            bar.update()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size")
    parser.add_argument("--sizes", type=sizes_arg, default=None, help="comma-separated N (default 100,1000)")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens/s per stream")
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-profile", action="store_true", help="full runs profile the relay (cProfile)")
    parser.add_argument("--no-pinned-pass", action="store_true",
                        help="full runs repeat the first N with each hop on a core of its own")
    args = parser.parse_args()
    sizes = args.sizes or ([20] if args.quick else [100, 1000])
    tokens = args.tokens or (40 if args.quick else 250)
    pinned_pass = not args.quick and not args.no_pinned_pass and (os.cpu_count() or 1) >= 2
    result = asyncio.run(bench(sizes, tokens, args.rate, 20, not args.quick and not args.no_profile, pinned_pass))
    rows = []
    print(f"{'N':>5} {'hop':>10} {'tokens':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>6} "
          f"{'hop CPU s':>9}")
    for r in result:
        for hop in PATHS:
            x = r[hop]
            pc = percentiles(x["added_ms"])
            x.update(pc, tokens_compared=len(x["added_ms"]))
            print(f"{r['n']:>5} {hop:>10} {len(x['added_ms']):>7} {pc['p50']:>8} {pc['p90']:>8} {pc['p99']:>8} "
                  f"{x['errors']:>6} {x['cpu_s']:>9}")
        goal = r["n"] <= 100
        relay, fwd, floor = r["relay"], r["forwarder"], r["floor"]
        where = ", each hop on a core of its own" if r["pinned"] else ""
        rows.append({"metric": f"relay added latency p99 (ms), {r['n']} streams at {r['rate']:g} tokens/s{where} "
                               f"(forwarder {fwd['p99']}; method floor {floor['p99']})", "measured": relay["p99"],
                     "goal": "<= 2" if goal else None,
                     "met": (relay["p99"] <= 2 and not relay["errors"]) if goal else None})
        rows.append({"metric": f"relay added latency p50 (ms), {r['n']} streams{where} (forwarder {fwd['p50']}; "
                               f"method floor {floor['p50']})", "measured": relay["p50"], "goal": None, "met": None})
    if not args.quick:
        from _plot import latency_percentiles

        for r in result:
            latency_percentiles({"Django relay": r["relay"]["added_ms"], "plain forwarder": r["forwarder"]["added_ms"],
                                 "two direct clients (method floor)": r["floor"]["added_ms"]},
                                f"added latency per hop, {r['n']} streams at {r['rate']:g} tokens/s"
                                + (", hops pinned" if r["pinned"] else ""),
                                f"relay_latency_{r['n']}{'_pinned' if r['pinned'] else ''}.png")
    for r in result:  # the raw samples stay out of the JSON line
        for hop in PATHS:
            r[hop].pop("added_ms")
    notes = ("added latency = arrival through the hop minus at a direct client on the same channel; method floor = "
             "the same between two direct clients; plots: benchmarks/relay_latency_<N>.png")
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
