"""Frames/s to N clients: Django relay vs a plain ``websockets`` forwarder vs the gateway direct.

    .venv/bin/python benchmarks/relay_throughput.py            # N = 100 and 1000, 200 tokens each
    .venv/bin/python benchmarks/relay_throughput.py --quick    # N = 20, 40 tokens

All in one run on this machine: ``modelriver dev`` (subprocess); the plain forwarder written in
``benchmarks/_relaybench.py`` (subprocess: one upstream socket per client, messages copied
unparsed); the demo project under ``daphne`` (subprocess, in-memory layer, one process); N raw
Phoenix v2 clients in this process (``benchmarks/django_relay.py``'s). Each answer is generated
flat out and complete before the clients read it through the hop, so the figure is the hop's
own rate. Frames/s = channel frames received by all clients / (first connect .. last final).
Goal: relay >= 0.5 of the forwarder's frames/s at 100 and at 1000 streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from typing import Any

from _relaybench import progress, running_gateway, sizes_arg, throughput_paths


async def bench(sizes: list[int], tokens: int) -> list[dict[str, Any]]:
    out = []
    with running_gateway() as (gateway, gw_url), progress(len(sizes), "relay_throughput") as bar:
        for n in sizes:
            runs = await throughput_paths(n, tokens, gateway, gw_url)
            fwd, relay, direct = runs["forwarder"], runs["relay"], runs["direct"]
            out.append({"n": n, "tokens": tokens, **{k: asdict(v) for k, v in runs.items()},
                        "relay_vs_forwarder": round(relay.frames_per_s / fwd.frames_per_s, 3)
                        if fwd.frames_per_s else 0.0,
                        "relay_vs_direct": round(relay.frames_per_s / direct.frames_per_s, 3)
                        if direct.frames_per_s else 0.0})
            bar.update()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size")
    parser.add_argument("--sizes", type=sizes_arg, default=None, help="comma-separated N (default 100,1000)")
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = args.sizes or ([20] if args.quick else [100, 1000])
    tokens = args.tokens or (40 if args.quick else 200)
    result = asyncio.run(bench(sizes, tokens))
    rows = []
    print(f"{'N':>5} {'path':>10} {'frames':>8} {'s':>7} {'frames/s':>10} {'errors':>6}")
    for r in result:
        for path in ("direct", "forwarder", "relay"):
            x = r[path]
            print(f"{r['n']:>5} {path:>10} {x['frames']:>8} {x['seconds']:>7} {x['frames_per_s']:>10} {x['errors']:>6}")
        print(f"{'':>5} relay / forwarder = {r['relay_vs_forwarder']}   relay / direct = {r['relay_vs_direct']}")
        errors = r["relay"]["errors"] + r["forwarder"]["errors"]
        rows.append({"metric": f"relay frames/s vs plain forwarder, {r['n']} streams",
                     "measured": r["relay_vs_forwarder"], "goal": ">= 0.5",
                     "met": r["relay_vs_forwarder"] >= 0.5 and not errors})
        rows.append({"metric": f"relay frames/s, {r['n']} streams (forwarder {r['forwarder']['frames_per_s']:.0f},"
                               f" direct {r['direct']['frames_per_s']:.0f})",
                     "measured": r["relay"]["frames_per_s"], "goal": None, "met": None})
    notes = ("one Daphne process, in-memory layer; answers complete before the clients read them; "
             "the forwarder opens one gateway socket per client")
    if args.json:
        print(json.dumps({"name": "relay_throughput", "summary": rows, "notes": notes, "result": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
