"""N concurrent paced streams through ONE Django relay process, N up to 1000: where it stops scaling.

    .venv/bin/python benchmarks/scale.py            # N = 100, 250, 500, 1000 at 10 tokens/s
    .venv/bin/python benchmarks/scale.py --quick    # N = 10, 40

For each N, a fresh demo under ``daphne`` (``--server uvicorn``: uvicorn; a subprocess, in-memory
layer) starts N requests on ``modelriver dev`` (one upstream pump each) and N raw Phoenix clients
(``django_relay``'s) read them; every answer is T tokens at ``--rate`` tokens/s. Measured:
delivered frames/s at the clients (all frames / first token .. last final), offered = N x rate,
efficiency = the median over streams of the time a paced answer needed over the time it took, the
server's CPU (cores busy), and RSS per stream = (its peak - its idle RSS) / N. It "stops scaling"
at the first N whose efficiency falls below 0.9. Goal: <= 64 KiB RSS per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from _relaybench import dr, progress, running_gateway, sizes_arg, text_of
from _servers import SERVERS, start_django


async def one(n: int, tokens: int, rate: float, gw_url: str, server: str) -> dict[str, Any]:
    script = {"tokens_per_second": rate, "first_token_ms": 1500 + 8 * n, "text": text_of(tokens)}
    port = dr.free_port()
    daphne = start_django(server, port, gw_url, script)
    try:
        site = f"http://127.0.0.1:{port}"
        await dr.warm_up(site)
        await dr.quiescent(daphne.popen.pid)
        with dr.RssSampler(daphne.popen.pid) as rss:
            answers = await dr.create_relay(site, n)
            streams = [dr.Stream(dr.socket_url(a), a["websocket_channel"], origin=site) for a in answers]
            await asyncio.gather(*(dr.listen(s, record=True) for s in streams))
    finally:
        daphne.stop()
    ok = [s for s in streams if not s.error and s.arrivals]
    first = min(min(s.arrivals.values()) for s in ok) if ok else 0.0
    last = max(s.last for s in ok) if ok else 0.0
    span = max(last - first, 1e-6)
    frames = sum(s.frames for s in ok)
    ideal = (tokens - 1) / rate
    # per stream: the time its paced answer needed over the time it took (first token .. final)
    per_stream = sorted(min(1.0, ideal / max(s.last - min(s.arrivals.values()), 1e-6)) for s in ok)
    kib = 1024
    return {"n": n, "errors": len(streams) - len(ok), "frames": frames, "seconds": round(span, 2),
            "frames_per_s": round(frames / span, 1), "offered_per_s": round(n * rate, 1),
            "efficiency": round(per_stream[len(per_stream) // 2], 3) if per_stream else 0.0,
            "daphne_cores": round(rss.cpu / span, 2),
            "rss_idle_mb": round(rss.idle / kib / kib, 1), "rss_peak_mb": round(rss.peak / kib / kib, 1),
            "rss_per_stream_kb": round((rss.peak - rss.idle) / n / kib, 1)}


async def bench(sizes: list[int], tokens: int, rate: float, server: str) -> list[dict[str, Any]]:
    out = []
    with running_gateway() as (_, gw_url), progress(len(sizes), "scale") as bar:
        for n in sizes:
            out.append(await one(n, tokens, rate, gw_url, server))
            bar.update()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size")
    parser.add_argument("--sizes", type=sizes_arg, default=None, help="comma-separated N (default 100,250,500,1000)")
    parser.add_argument("--rate", type=float, default=10.0, help="tokens/s per stream")
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--server", choices=SERVERS, default="daphne", help="the relay's ASGI server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = args.sizes or ([20] if args.quick else [100, 250, 500, 1000])
    tokens = args.tokens or (20 if args.quick else 100)
    result = asyncio.run(bench(sizes, tokens, args.rate, args.server))
    print(f"{'N':>5} {'frames/s':>9} {'offered':>8} {'effic.':>7} {'cores':>6} {'RSS/stream KiB':>15} {'errors':>6}")
    for r in result:
        print(f"{r['n']:>5} {r['frames_per_s']:>9} {r['offered_per_s']:>8} {r['efficiency']:>7} "
              f"{r['daphne_cores']:>6} {r['rss_per_stream_kb']:>15} {r['errors']:>6}")
    knee = next((r["n"] for r in result if r["efficiency"] < 0.9 or r["errors"]), None)
    biggest = result[-1]
    rows = [
        {"metric": f"relay frames/s, {biggest['n']} streams at {args.rate:g} tokens/s (offered "
                   f"{biggest['offered_per_s']:.0f}, {biggest['daphne_cores']} cores busy)",
         "measured": biggest["frames_per_s"], "goal": None, "met": None},
        {"metric": f"relay RSS per stream (KiB), {biggest['n']} streams", "measured": biggest["rss_per_stream_kb"],
         "goal": "<= 64", "met": biggest["rss_per_stream_kb"] <= 64 and not biggest["errors"]},
        {"metric": "streams where one relay process stops scaling (efficiency < 0.9)",
         "measured": knee if knee is not None else f"> {biggest['n']}", "goal": None, "met": None},
    ]
    if args.json:
        print(json.dumps({"name": "scale", "summary": rows, "result": result,
                          "notes": f"one {args.server} process; efficiency = time the paced answers needed / "
                                   "time taken"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
