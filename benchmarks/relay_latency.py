"""The Django relay against what a user would write by hand: CPU per relayed token, added latency, RSS.

    .venv/bin/python benchmarks/relay_latency.py            # N = 100 and 1000 at 50 tokens/s, then 100 pinned
    .venv/bin/python benchmarks/relay_latency.py --quick    # N = 10, every hop at once (a smoke run)

One run; each hop a server process of its own, measured one after the other, each pass on a fresh
``modelriver dev`` gateway (none inherits the requests another left there):

* ``forwarder``: the plain ``websockets`` forwarder (``benchmarks/_relaybench.py``): one upstream
  socket per client, messages copied unparsed; requests created straight on the gateway;
* ``proxy@daphne``, ``proxy@uvicorn``: the per-browser proxy a Channels user writes
  (``benchmarks/_peers_django.py``): a start view creating the request with core's client, and an
  ``AsyncWebsocketConsumer`` opening its own upstream ``websockets`` socket per browser and copying
  frames both ways (no fan-out, no replay);
* ``sse@daphne``, ``sse@uvicorn``: the same start view, then an async ``StreamingHttpResponse`` view
  joining the request with core's client and sending each token as an SSE ``data:`` line;
* ``relay@daphne``, ``relay@uvicorn``: ours, the demo project with django_modelriver (``POST
  /modelriver/start``, one upstream pump per request, the Phoenix socket to the browser).

Daphne and uvicorn (``uvicorn[standard]``: uvloop, httptools, ``--ws websockets-sansio`` as the
Django README serves it; ``--uvicorn-ws``) serve the same ASGI application. Each answer is T
tokens (100, as in ``scale.py``; ``--tokens``) paced at ``--rate`` tokens/s to N raw clients in
this process (Phoenix v2 frames, or SSE lines); two of the N first (the warm-up: imports and
caches are not per-stream), then the rest. Measured per hop:

* CPU per relayed token: the hop process's CPU time from when every client has joined and the
  process went idle (starts and joins excluded; reported apart) to the last final, over the token
  frames the clients received in that window;
* added latency: a token's arrival through the hop minus its arrival at a direct "shadow" client
  on the same channel (same process, same clock), for a sample of channels; the method's floor is
  the same subtraction between two direct clients (in the first relay pass);
* RSS per stream: (peak - idle) / streams after the warm-up.

"Ours" is the better of ``relay@daphne`` and ``relay@uvicorn`` on each figure, a peer likewise
the better of its two servers (the rows say which). Full runs then repeat the first N with each
hop on a CPU core of its own (core 1), the gateway and the clients on core 0 (``--no-pinned-pass``
skips it), write ``benchmarks/relay_latency_<N>[_pinned].png`` and, in separate passes whose
figures are not reported, profile the relay and the proxy on both servers with cProfile
(``profile_<peer>_<server>.prof``, top functions printed and in the notes), and keep the whole
report in ``benchmarks/out/relay_latency.json``. Goals (issue 19):
relay CPU per token <= 1.5x the forwarder's and <= 1.0x the proxy's at 100 and 1000 streams; RSS
per stream <= 64 KiB and <= 0.5x the proxy's at 1000; added p99 (pinned, 100 streams) <= the
forwarder's, p50 <= 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from _relaybench import (
    HERE,
    HOP_CORE,
    REST_CORE,
    _added,
    dr,
    percentiles,
    pin,
    profile_top,
    progress,
    running_gateway,
    sizes_arg,
    start_forwarder,
    text_of,
    via_port,
)
from _servers import DEMO_APP, PEERS_APP, SERVERS, UVICORN_WS, start_django

WARM = 2
"""Streams opened first in every pass, before the measuring starts."""


@dataclass(frozen=True)
class Hop:
    peer: str  # forwarder, proxy, sse, relay
    server: str = "websockets"
    ws: str = UVICORN_WS  # uvicorn's WebSocket implementation

    @property
    def name(self) -> str:
        return self.peer if self.peer == "forwarder" else f"{self.peer}@{self.server}"


HOPS = (Hop("forwarder"), *(Hop(peer, server) for peer in ("proxy", "sse", "relay") for server in SERVERS))
QUICK_HOPS = (Hop("forwarder"), Hop("proxy", "daphne"), Hop("sse", "uvicorn"), Hop("relay", "uvicorn"))
"""The smoke run's: each app, each server, in three Django processes."""
PEER_NAMES = {"forwarder": "plain forwarder", "proxy": "per-browser proxy", "sse": "SSE view", "relay": "relay"}


def now() -> float:
    return time.perf_counter()


def cpu_of(pid: int) -> float:
    import psutil

    return float(sum(psutil.Process(pid).cpu_times()[:2]))


async def listen_sse(stream: dr.Stream, http: Any) -> None:
    """Read an SSE answer: ``data:`` lines ``{"seq", "text"}``, then ``event: done`` (or error)."""
    stream.first = now()
    event = "message"
    try:
        async with http.stream("GET", stream.url) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                stream.joined = stream.joined or now()  # the view's first line: it has connected upstream
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    at = now()
                    stream.frames += 1
                    if event != "message":
                        stream.last = at
                        stream.error = None if event == "done" else f"{event}: {line[6:200]}"
                        return
                    stream.arrivals[dr.loads(line[6:])["seq"]] = at
                elif not line:
                    event = "message"
        stream.error = "closed before the end"
    except Exception as exc:  # a failed stream is counted, not fatal
        stream.error = f"{type(exc).__name__}: {exc}"


class Pass:
    """One hop's server and its streams for one N (``await Pass.start(...)``)."""

    def __init__(self, hop: Hop, gw_url: str, script: dict[str, Any], server: dr.Server, site: str) -> None:
        self.hop, self.gw_url, self.script, self.server, self.site = hop, gw_url, script, server, site
        self.pid = server.popen.pid

    @classmethod
    async def start(cls, hop: Hop, gw_url: str, script: dict[str, Any], *, profile: str | None,
                    pinned: bool) -> Pass:
        """The hop's server, started on a thread (servers of concurrent passes start together)."""
        port = dr.free_port()
        if hop.peer == "forwarder":
            server = await asyncio.to_thread(start_forwarder, port, gw_url.split("//", 1)[1])
        else:
            app = DEMO_APP if hop.peer == "relay" else PEERS_APP
            server = await asyncio.to_thread(start_django, hop.server, port, gw_url, script, app=app, profile=profile,
                                             ws=hop.ws)
        if pinned:
            pin(server.popen.pid, HOP_CORE)
        return cls(hop, gw_url, script, server, f"http://127.0.0.1:{port}")

    async def open(self, n: int) -> tuple[list[dr.Stream], list[str | None]]:
        """N requests started the hop's way, and a client stream for each (with its channel id)."""
        if self.hop.peer == "forwarder":
            answers: Sequence[dict[str, Any] | None] = await dr.create_direct(self.gw_url, n, self.script)
        else:
            answers = await dr.create_relay(self.site, n)
        port = int(self.site.rsplit(":", 1)[1])

        def stream(a: dict[str, Any] | None) -> dr.Stream:
            if a is None:
                return dr.Stream(dr.socket_url(None), "")
            if self.hop.peer == "forwarder":
                return dr.Stream(via_port(dr.socket_url(a), port), a["websocket_channel"])
            if self.hop.peer == "sse":
                return dr.Stream(a["sse_url"], a["websocket_channel"])
            return dr.Stream(dr.socket_url(a), a["websocket_channel"], origin=self.site)

        return [stream(a) for a in answers], [a["channel_id"] if a else None for a in answers]

    def listen(self, streams: Sequence[dr.Stream], http: Any) -> list[asyncio.Task[None]]:
        if self.hop.peer == "sse":
            return [asyncio.create_task(listen_sse(s, http)) for s in streams]
        return [asyncio.create_task(dr.listen(s, record=True)) for s in streams]


async def settled(streams: Sequence[dr.Stream], tasks: Sequence[asyncio.Task[None]], pid: int,
                  limit: float = 120.0) -> None:
    """Until every stream has joined (or ended: its listening ``tasks``), then until ``pid`` is idle."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not all(s.joined or s.error or s.last for s in streams):
        await asyncio.wait(tasks, timeout=0.02)
    await dr.quiescent(pid)


async def run_pass(hop: Hop, n: int, tokens: int, rate: float, sample: int, gw_url: str, *, delay_ms: float,
                   pinned: bool = False, profile: str | None = None, floor: bool = False) -> dict[str, Any]:
    """N paced answers through one hop; the figures of the module docstring."""
    import httpx

    script = {"tokens_per_second": rate, "first_token_ms": delay_ms, "text": text_of(tokens)}
    hop_pass = await Pass.start(hop, gw_url, script, profile=profile, pinned=pinned)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as http:
            warm, _ = await hop_pass.open(min(WARM, n - 1))
            tasks = hop_pass.listen(warm, http)
            await settled(warm, tasks, hop_pass.pid)
            if profile:
                os.kill(hop_pass.pid, signal.SIGUSR1)  # profile from now on: not the start-up
            with dr.RssSampler(hop_pass.pid) as rss:
                cpu_start = cpu_of(hop_pass.pid)
                streams, ids = await hop_pass.open(n - len(warm))
                tasks += hop_pass.listen(streams, http)
                sampled = [(s, c) for s, c in zip(streams, ids, strict=True) if c][:sample]
                shadows = [dr.Stream(dr.socket_url(a), a["websocket_channel"])
                           for a in await dr.reconnect_direct(gw_url, [c for _, c in sampled])]
                twins = [dr.Stream(dr.socket_url(a), a["websocket_channel"])  # a few: they add load too
                         for a in await dr.reconnect_direct(gw_url, [c for _, c in sampled[:5]])] if floor else []
                tasks += [asyncio.create_task(dr.listen(s, record=True)) for s in shadows + twins]
                await settled(warm + streams, tasks, hop_pass.pid)
                setup_cpu = cpu_of(hop_pass.pid) - cpu_start
                rss.mark_cpu()
                mark = now()
                await asyncio.gather(*tasks)
    finally:
        await asyncio.to_thread(hop_pass.server.stop)
    everyone = warm + streams
    dr.report_errors(everyone + shadows + twins)
    delivered = sum(1 for s in everyone for at in s.arrivals.values() if at > mark)
    out = {"added_ms": _added([s for s, _ in sampled], shadows), "errors": sum(bool(s.error) for s in everyone),
           "tokens": delivered, "cpu_s": round(rss.cpu, 3), "setup_cpu_s": round(setup_cpu, 3),
           "cpu_us_per_token": round(rss.cpu / max(1, delivered) * 1e6, 1),
           "rss_per_stream_kib": round((rss.peak - rss.idle) / max(1, len(streams)) / 1024, 1),
           "rss_peak_mb": round(rss.peak / 1024 / 1024, 1)}
    if floor:
        out["floor_ms"] = _added(twins, shadows[:5])
    return out


async def scenario(hops: Sequence[Hop], n: int, tokens: int, rate: float, sample: int, *, together: bool,
                   pinned: bool = False) -> dict[str, Any]:
    """Every hop at N streams: one after the other, each on a fresh gateway (none inherits the
    requests another left there), or all at once on one (``together``, the smoke run)."""
    delay_ms = 500 + 20 * n * len(hops) if together else 2000 + 30 * n

    def one(hop: Hop, gw_url: str) -> Any:
        return run_pass(hop, n, tokens, rate, min(n - WARM, sample), gw_url, delay_ms=delay_ms, pinned=pinned,
                        floor=hop == next((h for h in hops if h.peer == "relay"), None))

    if together:
        with running_gateway() as (_, gw_url):
            results = await asyncio.gather(*(one(hop, gw_url) for hop in hops))
    else:
        results = []
        for hop in hops:
            with running_gateway(core=REST_CORE if pinned else None) as (_, gw_url):
                results.append(await one(hop, gw_url))
    by_name = {hop.name: r for hop, r in zip(hops, results, strict=True)}
    floor = next((r.pop("floor_ms") for r in results if "floor_ms" in r), [])
    return {"n": n, "rate": rate, "tokens": tokens, "pinned": pinned, "hops": by_name,
            "floor": {"added_ms": floor, "errors": 0}}


async def profiles(hops: Sequence[Hop], n: int, tokens: int, rate: float) -> dict[str, list[str]]:
    """cProfile of the relay and the proxy hops at N streams (separate passes: cProfile slows the
    server, so their figures are not reported): the top own-time functions of each."""
    out = {}
    for hop in (h for h in hops if h.peer in ("relay", "proxy")):
        prof = str(HERE / f"profile_{hop.peer}_{hop.server}.prof")
        with running_gateway() as (_, gw_url):
            await run_pass(hop, n, tokens, rate, 0, gw_url, delay_ms=2000 + 30 * n, profile=prof)
        out[hop.name] = profile_top(prof)
    return out


async def bench(hops: Sequence[Hop], sizes: list[int], tokens: int, rate: float, sample: int, *, together: bool,
                profile: bool, pinned_pass: bool) -> list[dict[str, Any]]:
    out = []
    with progress(len(sizes) + pinned_pass + profile, "relay_latency") as bar:
        for n in sizes:
            out.append(await scenario(hops, n, tokens, rate, sample, together=together))
            bar.update()
        if profile:
            out[0]["profiles"] = await profiles(hops, sizes[0], tokens, rate)
            bar.update()
        if pinned_pass:  # last: this process stays on core 0 from here on
            pin(os.getpid(), REST_CORE)
            out.append(await scenario(hops, sizes[0], tokens, rate, sample, together=False, pinned=True))
            bar.update()
    for r in out:
        for x in [*r["hops"].values(), r["floor"]]:
            x.update(percentiles(x["added_ms"]), tokens_compared=len(x["added_ms"]))
    return out


# -- the report ---------------------------------------------------------------------------------------


def best(r: dict[str, Any], peer: str, key: str) -> tuple[float, str, str]:
    """A peer's better server on ``key`` (lower is better): (value, which, the other's figure)."""
    mine = [(x[key], name.split("@")[-1]) for name, x in r["hops"].items() if name.split("@")[0] == peer]
    if not mine:
        return float("nan"), "—", ""
    mine.sort()
    others = ", ".join(f"{v} on {s}" for v, s in mine[1:])
    return mine[0][0], mine[0][1], f"; {others}" if others else ""


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


def report(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    unpinned = [r for r in result if not r["pinned"]]
    for r in unpinned:
        n, ok = r["n"], not any(x["errors"] for x in r["hops"].values())
        ours, where, other = best(r, "relay", "cpu_us_per_token")
        for peer, goal in (("forwarder", 1.5), ("proxy", 1.0), ("sse", None)):
            theirs, their_srv, their_other = best(r, peer, "cpu_us_per_token")
            if theirs != theirs:  # nan: the hop was not run
                continue
            x = ratio(ours, theirs)
            on = "" if peer == "forwarder" else f" on {their_srv}{their_other}"
            rows.append({"metric": f"relay CPU per relayed token / {PEER_NAMES[peer]}'s, {n} streams at "
                                   f"{r['rate']:g} tokens/s (µs: relay {ours} on {where}{other}; "
                                   f"{PEER_NAMES[peer]} {theirs}{on})",
                         "measured": x, "goal": f"<= {goal}" if goal else None,
                         "met": (x <= goal and ok) if goal else None})
        lat = "; ".join(f"{PEER_NAMES[name.split('@')[0]]}{'@' + name.split('@')[1] if '@' in name else ''} "
                        f"{x['p50']} / {x['p99']}" for name, x in r["hops"].items() if not name.startswith("relay"))
        rl, rl_srv, _ = best(r, "relay", "p99")
        p50 = r["hops"].get(f"relay@{rl_srv}", {}).get("p50")
        rows.append({"metric": f"relay added latency p50 / p99 (ms), {n} streams, shared cores (relay on {rl_srv}; "
                               f"{lat}; method floor {r['floor']['p50']} / {r['floor']['p99']})",
                     "measured": f"{p50} / {rl}", "goal": None, "met": None})
    big = max(unpinned, key=lambda r: r["n"])
    ours, where, other = best(big, "relay", "rss_per_stream_kib")
    proxy, proxy_srv, proxy_other = best(big, "proxy", "rss_per_stream_kib")
    sse, sse_srv, _ = best(big, "sse", "rss_per_stream_kib")
    fwd = big["hops"].get("forwarder", {}).get("rss_per_stream_kib")
    ok = not big["hops"].get(f"relay@{where}", {}).get("errors")
    rows.append({"metric": f"relay RSS per stream (KiB), {big['n']} streams x {big['tokens']} tokens "
                           f"(on {where}{other})",
                 "measured": ours, "goal": "<= 64", "met": ours <= 64 and ok})
    if proxy == proxy:
        x = ratio(ours, proxy)
        rows.append({"metric": f"relay RSS per stream / per-browser proxy's, {big['n']} streams (KiB: proxy {proxy} "
                               f"on {proxy_srv}{proxy_other}; SSE view {sse} on {sse_srv}; forwarder {fwd})",
                     "measured": x, "goal": "<= 0.5", "met": x <= 0.5 and ok})
    lat_run = next((r for r in result if r["pinned"]), unpinned[0])
    where_pinned = ", each hop on a core of its own" if lat_run["pinned"] else ", shared cores"
    p99, srv, other = best(lat_run, "relay", "p99")
    relay = lat_run["hops"].get(f"relay@{srv}", {})
    fwd_x = lat_run["hops"].get("forwarder")
    if fwd_x:
        proxy99, proxy_srv, _ = best(lat_run, "proxy", "p99")
        sse99, sse_srv, _ = best(lat_run, "sse", "p99")
        rows.append({"metric": f"relay added latency p99 (ms), {lat_run['n']} streams at {lat_run['rate']:g} "
                               f"tokens/s{where_pinned} (on {srv}{other}; forwarder {fwd_x['p99']}, proxy "
                               f"{proxy99} on {proxy_srv}, SSE view {sse99} on {sse_srv}; method floor "
                               f"{lat_run['floor']['p99']})",
                     "measured": p99, "goal": f"<= forwarder's ({fwd_x['p99']})",
                     "met": p99 <= fwd_x["p99"] and not relay.get("errors")})
    rows.append({"metric": f"relay added latency p50 (ms), {lat_run['n']} streams{where_pinned} (on {srv}; "
                           f"forwarder {fwd_x['p50'] if fwd_x else '—'}; method floor {lat_run['floor']['p50']})",
                 "measured": relay.get("p50"), "goal": "<= 1",
                 "met": relay.get("p50", 99) <= 1 and not relay.get("errors")})
    return rows


def print_table(result: list[dict[str, Any]]) -> None:
    print(f"{'N':>5} {'hop':>14} {'tokens':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'err':>4} "
          f"{'CPU s':>7} {'µs/token':>9} {'setup CPU s':>11} {'RSS KiB/stream':>14}")
    for r in result:
        for name, x in [*r["hops"].items(), ("floor", r["floor"])]:
            print(f"{r['n']:>5} {name + ('*' if r['pinned'] else ''):>14} {x.get('tokens', x['tokens_compared']):>7} "
                  f"{x['p50']:>7} {x['p90']:>7} {x['p99']:>7} {x['errors']:>4} {x.get('cpu_s', ''):>7} "
                  f"{x.get('cpu_us_per_token', ''):>9} {x.get('setup_cpu_s', ''):>11} "
                  f"{x.get('rss_per_stream_kib', ''):>14}")
    print("(* each hop on a core of its own; tokens: frames delivered in the measured window, floor: compared)")


def plot(result: list[dict[str, Any]]) -> None:
    from _plot import latency_percentiles

    for r in result:
        series = {name: x["added_ms"] for name, x in r["hops"].items()}
        series["two direct clients (method floor)"] = r["floor"]["added_ms"]
        latency_percentiles(series, f"added latency per hop, {r['n']} streams at {r['rate']:g} tokens/s"
                            + (", hops pinned" if r["pinned"] else ""),
                            f"relay_latency_{r['n']}{'_pinned' if r['pinned'] else ''}.png")


def hops_arg(value: str) -> list[Hop]:
    """``--hops relay@uvicorn,forwarder`` → those hops."""
    known = {hop.name: hop for hop in HOPS}
    return [known[name] for name in value.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: N = 10, every hop at once")
    parser.add_argument("--sizes", type=sizes_arg, default=None, help="comma-separated N (default 100,1000)")
    parser.add_argument("--hops", type=hops_arg, default=None,
                        help=f"comma-separated, of {', '.join(h.name for h in HOPS)} (default all; quick: "
                             f"{', '.join(h.name for h in QUICK_HOPS)})")
    parser.add_argument("--uvicorn-ws", choices=("websockets-sansio", "websockets", "wsproto"), default=UVICORN_WS,
                        help=f"uvicorn's WebSocket implementation (default {UVICORN_WS}, the Django README's)")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens/s per stream")
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-profile", action="store_true",
                        help="full runs profile the relay and the proxy (cProfile)")
    parser.add_argument("--no-pinned-pass", action="store_true",
                        help="full runs repeat the first N with each hop on a core of its own")
    args = parser.parse_args()
    sizes = args.sizes or ([10] if args.quick else [100, 1000])
    tokens = args.tokens or (20 if args.quick else 100)
    pinned_pass = not args.quick and not args.no_pinned_pass and (os.cpu_count() or 1) >= 2
    hops = [replace(hop, ws=args.uvicorn_ws) for hop in args.hops or (QUICK_HOPS if args.quick else HOPS)]
    load_before = os.getloadavg()[0]
    result = asyncio.run(bench(hops, sizes, tokens, args.rate, 20, together=args.quick,
                               profile=not args.quick and not args.no_profile, pinned_pass=pinned_pass))
    load = f"load average (1 min) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print_table(result)
    print(load)
    rows = report(result)
    for row in rows:
        verdict = "" if row["met"] is None else ("  met" if row["met"] else "  MISSED")
        print(f"{row['metric']}: {row['measured']}{verdict}")
    if not args.quick:
        plot(result)
    notes = ("each hop a server process of its own, one at a time, each on a fresh gateway; CPU per token: the hop's "
             "CPU from all clients joined to the last final over the token frames delivered (starts and joins apart, "
             "`setup_cpu_s` in the JSON); added latency = arrival through the hop minus at a direct client on the "
             "same channel; method floor = the same between two direct clients; RSS per stream = (peak - idle) / "
             f"streams; uvicorn: uvloop, httptools, --ws {args.uvicorn_ws}; ours and each peer: the better of Daphne "
             "and uvicorn on each figure (the rows name it); plots: benchmarks/relay_latency_<N>.png; " + load)
    for r in result:
        for hop_name, top in r.pop("profiles", {}).items():
            print(f"{hop_name} profile, {r['n']} streams (own time, calls, function):")
            print("\n".join("  " + line for line in top))
            notes += f"; {hop_name} cProfile at {r['n']} streams, most own time: " + "; ".join(
                line.strip() for line in top[:6])
        for x in [*r["hops"].values(), r["floor"]]:  # the raw samples stay out of the JSON line
            x.pop("added_ms")
    report_json = json.dumps({"name": "relay_latency", "summary": rows, "result": result, "notes": notes})
    if not args.quick:  # the whole report of the last full run, kept (benchmarks/out/ is not committed)
        (HERE / "out").mkdir(exist_ok=True)
        (HERE / "out" / "relay_latency.json").write_text(report_json)
    if args.json:
        print(report_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
