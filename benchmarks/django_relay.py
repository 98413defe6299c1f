"""Browser-protocol clients through the Django relay (Daphne) versus straight to the gateway.

    .venv/bin/python benchmarks/django_relay.py            # N = 100 and 1000
    .venv/bin/python benchmarks/django_relay.py --quick    # N = 20, short answers

Everything runs on this machine, side by side in one run: `modelriver dev` (subprocess), the
demo project `demo_projects/django_chat` under plain ``daphne`` (subprocess, in-memory channel
layer, one process), and N raw Phoenix v2 clients in this process (``websockets``; the frames a
browser would exchange, nothing parsed beyond the JSON array).

For each N:

* **throughput** (answers generated flat out, T tokens each): *direct*: N requests created over
  the API, then N clients join the gateway's channels; *relay*: N ``POST /modelriver/start`` (one
  upstream pump each), Daphne left to go idle (its pumps hold the whole answers, as the gateway
  does), then N clients join Django's socket. Frames/s = channel frames received by
  all clients / (first connect .. last final). ``--rounds`` (3) pairs of runs, a fresh Daphne
  each; the ratio reported is the median round's. Goal: relay >= 0.5 of direct.
* **latency** (paced at ``--rate`` tokens/s): N relay clients, plus a direct "shadow" client on
  the same channel for a sample of them; the added latency of a token is its arrival time at the
  relay client minus at the shadow (same process, same clock). p50/p99; goal p99 <= 2 ms at
  N = 100. RSS per stream: Daphne's (peak - idle) / N while the N streams run, next to the
  gateway's for the direct run. Daphne's CPU per relayed token (everything it did in the run,
  starts included, over the tokens) shows how close to saturation the one process was: at
  N x rate tokens/s, beyond ~1 s of CPU per second the added latency is queueing.

``--json`` prints one JSON object as the last line (``summary``: rows ``{metric, measured,
goal, met}``) for ``benchmarks/run_all.py``; ``--check`` exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from _procs import ROOT, RssSampler, Server, free_port, percentile

DEMO = ROOT / "demo_projects" / "django_chat"
API_KEY = "mr_bench_0123456789abcdef"
SECRET = "whsec_bench"
FLAT_OUT = 100_000

try:
    import orjson

    loads: Any = orjson.loads
except ImportError:  # pragma: no cover
    loads = json.loads


@dataclass
class Stream:
    """One channel to listen to: where, with which token, and what arrived when."""

    url: str
    topic: str
    origin: str | None = None
    frames: int = 0
    joined: float = 0.0
    arrivals: dict[int, float] = field(default_factory=dict)
    first: float = 0.0
    last: float = 0.0
    error: str | None = None


SESSION_COOKIES: dict[str, str] = {}
"""The relay session's cookies by the ws_token it issued: a socket sends them, as a browser does
(the relay opens a token's socket only with the session it was issued to)."""


def keep_cookies(answer: dict[str, Any], response: Any) -> None:
    """Remember the session cookies of the start ``response`` (httpx) for ``answer``'s token: those
    the request sent, updated by those it set (concurrent first starts each make a session)."""
    sent = response.request.headers.get("cookie", "")
    cookies = dict(pair.split("=", 1) for pair in sent.split("; ") if "=" in pair)
    cookies.update(response.cookies.items())
    SESSION_COOKIES[answer["ws_token"]] = "; ".join(f"{k}={v}" for k, v in cookies.items())


async def listen(stream: Stream, *, record: bool) -> None:
    """Join with {} and read frames until the terminal response (or error)."""
    from urllib.parse import parse_qs, urlsplit

    import websockets

    stream.first = time.perf_counter()
    token = parse_qs(urlsplit(stream.url).query).get("token", [""])[0]
    cookie = SESSION_COOKIES.get(token)
    try:
        async with websockets.connect(stream.url, origin=stream.origin, compression=None,  # type: ignore[arg-type]
                                      max_size=None, ping_interval=None, open_timeout=60,
                                      close_timeout=1,
                                      additional_headers={"Cookie": cookie} if cookie else None) as ws:
            await ws.send(json.dumps(["1", "1", stream.topic, "phx_join", {}]))
            async for raw in ws:
                now = time.perf_counter()
                _, _, _, event, payload = loads(raw)
                if event == "phx_reply":
                    stream.joined = now
                    continue
                stream.frames += 1
                if record and event == "tokens":
                    stream.arrivals[payload["seq"]] = now
                if event == "error" or (event == "response" and payload.get("status") != "ai_generated"):
                    stream.last = now
                    return
    except Exception as exc:  # a failed stream is reported, not fatal
        stream.error = f"{type(exc).__name__}: {exc}"


def socket_url(answer: dict[str, Any] | None) -> str:
    if answer is None:  # a request that could not be started: its stream fails at once
        return "ws://127.0.0.1:9/never"
    base = answer["websocket_url"].rstrip("/")
    return f"{base}/websocket?token={answer['ws_token']}&vsn=2.0.0"


async def gather_limited(coros: Sequence[Any], limit: int = 50) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def create_direct(api: str, n: int, script: dict[str, Any]) -> list[dict[str, Any]]:
    import httpx

    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        async def create(i: int) -> dict[str, Any]:
            r = await http.post(f"{api}/v1/ai/async", json={
                "workflow": "demo-chat", "messages": [{"role": "user", "content": f"bench {i}"}],
                "metadata": {"scripted": script}})
            r.raise_for_status()
            answer: dict[str, Any] = r.json()
            return answer

        return await gather_limited([create(i) for i in range(n)])


async def create_relay(site: str, n: int) -> list[dict[str, Any] | None]:
    import httpx

    async with httpx.AsyncClient(timeout=60) as http:
        await http.get(site + "/")
        csrf = http.cookies["csrftoken"]

        async def start(i: int) -> dict[str, Any] | None:
            r = await http.post(f"{site}/modelriver/start", json={"message": f"bench {i}"},
                                headers={"X-CSRFToken": csrf})
            if r.status_code != 200:  # counted as a failed stream, not fatal
                print(f"start {i}: HTTP {r.status_code} {r.text[:200]}", file=sys.stderr)
                return None
            answer: dict[str, Any] = r.json()
            keep_cookies(answer, r)
            return answer

        return await gather_limited([start(i) for i in range(n)])


async def reconnect_direct(api: str, channel_ids: Sequence[str]) -> list[dict[str, Any]]:
    import httpx

    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        async def one(cid: str) -> dict[str, Any]:
            r = await http.post(f"{api}/v1/ai/reconnect", json={"channel_id": cid})
            r.raise_for_status()
            answer: dict[str, Any] = r.json()
            return answer

        return await gather_limited([one(c) for c in channel_ids])


async def quiescent(pid: int, *, below: float = 0.1, window: float = 0.25, limit: float = 60.0) -> None:
    """Wait until the process uses less than ``below`` of a core over ``window`` seconds."""
    import psutil

    proc = psutil.Process(pid)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(proc.cpu_times()[:2])
        await asyncio.sleep(window)
        if sum(proc.cpu_times()[:2]) - before < below * window:
            return


async def warm_up(site: str) -> None:
    """One request through a fresh Daphne first: imports and caches are not per-stream memory."""
    answers = [a for a in await create_relay(site, 2) if a is not None]
    await asyncio.gather(*(listen(Stream(socket_url(a), a["websocket_channel"], origin=site), record=False)
                           for a in answers))


# -- the runs ----------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    n: int
    frames: int
    seconds: float
    frames_per_s: float
    errors: int
    rss_idle_mb: float
    rss_peak_mb: float
    rss_per_stream_kb: float


def report_errors(streams: list[Stream]) -> None:
    """Print the distinct errors of failed streams (stderr), so a failed run says why."""
    seen: dict[str, int] = {}
    for stream in streams:
        if stream.error:
            seen[stream.error] = seen.get(stream.error, 0) + 1
    for error, count in list(seen.items())[:5]:
        print(f"{count} stream(s) failed: {error}", file=sys.stderr)


def summarize(name: str, streams: list[Stream], rss: RssSampler) -> Run:
    report_errors(streams)
    ok = [s for s in streams if s.error is None and s.last]
    frames = sum(s.frames for s in ok)
    seconds = (max(s.last for s in ok) - min(s.first for s in ok)) if ok else float("nan")
    mb = 1024 * 1024
    return Run(name, len(streams), frames, round(seconds, 3), round(frames / seconds, 1) if ok else 0.0,
               len(streams) - len(ok), round(rss.idle / mb, 1), round(rss.peak / mb, 1),
               round((rss.peak - rss.idle) / max(1, len(streams)) / 1024, 1))


def start_gateway(port: int, env: dict[str, str] | None = None) -> Server:
    return Server.start([sys.executable, "-m", "modelriver", "dev", "--port", str(port), "--api-key", API_KEY,
                         "--webhook-secret", SECRET], "modelriver dev ready on", env=env or {})


UNLIMITED_STARTS = {"MODELRIVER_START_RATE": "0", "MODELRIVER_MAX_IN_FLIGHT": "0"}
"""The demo's knobs turning the start limits off: one session starts all N requests here."""


def start_daphne(port: int, api: str, script: dict[str, Any]) -> Server:
    env = {"MODELRIVER_API_BASE": api, "MODELRIVER_API_KEY": API_KEY, "MODELRIVER_WEBHOOK_SECRET": SECRET,
           "DJANGO_DEBUG": "0", "DJANGO_CHAT_SCRIPTED": json.dumps(script), "PYTHONPATH": str(DEMO),
           "DJANGO_SETTINGS_MODULE": "chatsite.settings", **UNLIMITED_STARTS}
    return Server.start([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                         "chatsite.asgi:application"], "Listening on TCP address", env=env, cwd=DEMO)


async def throughput(n: int, tokens: int, gateway: Server, gw_url: str) -> dict[str, Run]:
    text = " ".join(f"w{i}" for i in range(tokens))
    script = {"tokens_per_second": FLAT_OUT, "first_token_ms": 0, "text": text}
    results: dict[str, Run] = {}
    answers = await create_direct(gw_url, n, script)
    streams = [Stream(socket_url(a), a["websocket_channel"]) for a in answers]
    with RssSampler(gateway.popen.pid) as rss:
        await asyncio.gather(*(listen(s, record=False) for s in streams))
    results["direct"] = summarize("direct", streams, rss)
    port = free_port()
    daphne = start_daphne(port, gw_url, script)
    try:
        site = f"http://127.0.0.1:{port}"
        await warm_up(site)
        with RssSampler(daphne.popen.pid) as rss:
            answers = await create_relay(site, n)
            # Like the gateway's answers, the pumps' copies are complete before the clients join.
            await quiescent(daphne.popen.pid)
            streams = [Stream(socket_url(a), a["websocket_channel"] if a else "", origin=site) for a in answers]
            await asyncio.gather(*(listen(s, record=False) for s in streams))
        results["relay"] = summarize("relay", streams, rss)
    finally:
        daphne.stop()
    return results


async def latency(n: int, tokens: int, rate: float, sample: int, gw_url: str) -> dict[str, Any]:
    text = " ".join(f"w{i}" for i in range(tokens))
    # The first token waits until the clients have had time to join (slower with more of them).
    script = {"tokens_per_second": rate, "first_token_ms": 2000 + 30 * n, "text": text}
    port = free_port()
    daphne = start_daphne(port, gw_url, script)
    try:
        site = f"http://127.0.0.1:{port}"
        await warm_up(site)
        with RssSampler(daphne.popen.pid) as rss:
            answers = await create_relay(site, n)
            relay = [Stream(socket_url(a), a["websocket_channel"] if a else "", origin=site) for a in answers]
            picked = [a for a in answers if a is not None][:sample]
            shadows_answers = await reconnect_direct(gw_url, [a["channel_id"] for a in picked])
            shadows = [Stream(socket_url(a), a["websocket_channel"]) for a in shadows_answers]
            await asyncio.gather(*(listen(s, record=True) for s in relay + shadows))
    finally:
        daphne.stop()
    report_errors(relay + shadows)
    added = []
    followed = [s for s, a in zip(relay, answers, strict=True) if a is not None][:sample]
    for via_relay, direct in zip(followed, shadows, strict=True):
        # Only tokens both clients got live: not the replay a join starts with.
        live_from = max(via_relay.joined, direct.joined) + 0.05
        for seq, at in direct.arrivals.items():
            if seq in via_relay.arrivals and min(at, via_relay.arrivals[seq]) > live_from:
                added.append((via_relay.arrivals[seq] - at) * 1000)
    mb = 1024 * 1024
    return {
        "n": n, "sampled_streams": len(shadows), "tokens_compared": len(added),
        "added_ms_p50": round(percentile(added, 50), 2), "added_ms_p99": round(percentile(added, 99), 2),
        "errors": sum(1 for s in relay + shadows if s.error),
        "rss_idle_mb": round(rss.idle / mb, 1), "rss_peak_mb": round(rss.peak / mb, 1),
        "rss_per_stream_kb": round((rss.peak - rss.idle) / n / 1024, 1),
        "daphne_cpu_s": round(rss.cpu, 2),
        "daphne_cpu_us_per_token": round(rss.cpu / max(1, n * tokens) * 1e6, 1),
    }


def ratio_of(runs: dict[str, Run]) -> float:
    return runs["relay"].frames_per_s / runs["direct"].frames_per_s if runs["direct"].frames_per_s else 0.0


async def bench(sizes: Sequence[int], tokens: int, rate: float, latency_tokens: int,
                rounds: int = 1) -> dict[str, Any]:
    port = free_port()
    gateway = start_gateway(port)
    gw_url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"throughput": [], "latency": []}
    try:
        for n in sizes:
            # A direct run at N = 100 lasts a quarter of a second: one round is at the mercy of
            # this machine's noise, so the ratio is the median round's (its runs are shown).
            tries = sorted([await throughput(n, tokens, gateway, gw_url) for _ in range(rounds)], key=ratio_of)
            runs = tries[len(tries) // 2]
            out["throughput"].append({"n": n, "ratio": round(ratio_of(runs), 3),
                                      "round_ratios": [round(ratio_of(r), 3) for r in tries],
                                      **{k: asdict(v) for k, v in runs.items()}})
            out["latency"].append(await latency(n, latency_tokens, rate, min(n, 20), gw_url))
    finally:
        gateway.stop()
    return out


def report(result: dict[str, Any], sizes: Sequence[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for tp, lat in zip(result["throughput"], result["latency"], strict=True):
        n = tp["n"]
        rows.append({"metric": f"django relay frames/s vs direct, {n} streams (median of {len(tp['round_ratios'])} "
                               f"rounds: {', '.join(map(str, tp['round_ratios']))})", "measured": tp["ratio"],
                     "goal": ">= 0.5", "met": tp["ratio"] >= 0.5 and not tp["relay"]["errors"]})
        rows.append({"metric": f"django relay added latency p50 (ms), {n} streams",
                     "measured": lat["added_ms_p50"], "goal": None, "met": None})
        goal_p99 = n <= 100
        rows.append({"metric": f"django relay added latency p99 (ms), {n} streams", "measured": lat["added_ms_p99"],
                     "goal": "<= 2" if goal_p99 else None,
                     "met": (lat["added_ms_p99"] <= 2 and not lat["errors"]) if goal_p99 else None})
        rows.append({"metric": f"django relay RSS per stream (KiB), {n} streams",
                     "measured": lat["rss_per_stream_kb"], "goal": None, "met": None})
    return rows


def print_table(result: dict[str, Any]) -> None:
    print(f"{'N':>5} {'path':>7} {'frames':>8} {'s':>7} {'frames/s':>10} {'err':>4} {'RSS/stream KiB':>15}")
    for tp in result["throughput"]:
        for name in ("direct", "relay"):
            r = tp[name]
            print(f"{r['n']:>5} {name:>7} {r['frames']:>8} {r['seconds']:>7} {r['frames_per_s']:>10} "
                  f"{r['errors']:>4} {r['rss_per_stream_kb']:>15}")
        rounds = ", ".join(map(str, tp["round_ratios"]))
        print(f"{'':>5} {'ratio':>7} relay/direct frames/s = {tp['ratio']} (median of rounds: {rounds})")
    print()
    print(f"{'N':>5} {'sampled':>8} {'tokens':>7} {'added p50 ms':>13} {'added p99 ms':>13} {'err':>4} "
          f"{'Daphne RSS/stream KiB':>22} {'Daphne CPU us/token':>20}")
    for lat in result["latency"]:
        print(f"{lat['n']:>5} {lat['sampled_streams']:>8} {lat['tokens_compared']:>7} {lat['added_ms_p50']:>13} "
              f"{lat['added_ms_p99']:>13} {lat['errors']:>4} {lat['rss_per_stream_kb']:>22} "
              f"{lat['daphne_cpu_us_per_token']:>20}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 20, short answers")
    parser.add_argument("--sizes", default=None, help="comma-separated N (default 100,1000)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens per answer, throughput runs")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens/s of the latency runs")
    parser.add_argument("--rounds", type=int, default=None, help="throughput rounds per N, median kept "
                        "(default 3; quick 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([20] if args.quick else [100, 1000])
    tokens = args.tokens or (40 if args.quick else 200)
    latency_tokens = 40 if args.quick else 150
    rounds = args.rounds or (1 if args.quick else 3)
    result = asyncio.run(bench(sizes, tokens, args.rate, latency_tokens, rounds))
    rows = report(result, sizes)
    print_table(result)
    for row in rows:
        verdict = "" if row["met"] is None else ("  met" if row["met"] else "  MISSED")
        print(f"{row['metric']}: {row['measured']}{verdict}")
    if args.json:
        print(json.dumps({"name": "django_relay", "summary": rows, "result": result}))
    return 1 if args.check and any(row["met"] is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
