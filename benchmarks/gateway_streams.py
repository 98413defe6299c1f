"""Concurrent streams from `modelriver dev` to core clients, next to a plain websockets server.

    .venv/bin/python benchmarks/gateway_streams.py            # N = 100 and 1000, 200-token answers
    .venv/bin/python benchmarks/gateway_streams.py --quick    # N = 20 and 100, 40-token answers

For each N, alternating rounds (best of ``--rounds``, 3 by default) of two runs with the same
clients, in this one process:

* **gateway**: `modelriver dev` in a subprocess. N requests (``demo-chat``, ``metadata.scripted``
  text of T words at 100 000 tokens/s) are created over HTTP first (timed apart, "requests s"),
  then all N are streamed at once with ``modelriver.stream.connect`` to the terminal response.
  At that pace the answers are mostly generated before the clients join, so this measures the
  delivery path (handshake, token check, join, replay, frames), as the plain server does.
* **plain**: a bare ``websockets`` server (this file, ``--serve-plain``, in a subprocess) that
  answers the join and pushes the very frames the gateway pushed for one request (topic and
  channel id substituted), to N clients of the same ``modelriver.stream.connect``.

Reported per run: channel frames received per second (all clients, first connect to last
final), time to first token p50/p99 (socket connect to the first ``Token``), server RSS before
the requests exist and peak while streaming, RSS per stream, server CPU per frame. The clients
share one Python process, so at high N they can be the bottleneck for both servers: the CPU
column shows each server's own cost. Goal: the gateway keeps >= 0.5 of the plain server's
frames/s. ``--check`` exits 1 below the goal (or on any failed stream); ``--json`` prints the
numbers as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from _procs import RssSampler, Server, free_port, percentile

try:
    import modelriver  # noqa: F401
except ImportError:  # run from a checkout without the workspace installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "src"))

GOAL = 0.5
API_KEY = "mr_bench_0123456789abcdef"
TOKENS_PER_SECOND = 100_000


# -- the plain server (subprocess) -------------------------------------------------------------


async def serve_plain(port: int, template: dict[str, Any]) -> None:
    """A bare websockets server speaking just enough Phoenix: join → ok + the template frames."""
    from websockets.asyncio.server import ServerConnection, serve

    frames: list[str] = template["frames"]
    topic, channel = template["topic"], template["channel_id"]

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            join_ref, ref, msg_topic, event, _ = json.loads(raw)
            if event == "phx_join":
                await ws.send(json.dumps([join_ref, ref, msg_topic, "phx_reply",
                                          {"status": "ok", "response": {}}]))
                own_channel = msg_topic.rsplit(":", 1)[1]
                for frame in frames:
                    await ws.send(frame.replace(topic, msg_topic).replace(channel, own_channel))
            else:  # heartbeats (socket and channel) and leaves: ok
                await ws.send(json.dumps([join_ref, ref, msg_topic, "phx_reply",
                                          {"status": "ok", "response": {}}]))

    async with serve(handler, "127.0.0.1", port, max_size=1 << 20, compression=None,
                     ping_interval=None, backlog=4096):
        print(f"plain server ready on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


# -- one run ---------------------------------------------------------------------------------------


@dataclass
class RunResult:
    server: str
    streams: int
    frames: int
    setup_s: float
    seconds: float
    frames_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    rss_idle_mb: float
    rss_peak_mb: float
    rss_per_stream_kb: float
    server_cpu_s: float
    server_cpu_us_per_frame: float
    errors: int


async def consume(job: tuple[Any, Any], ttfts: list[float], counts: list[int]) -> None:
    """Stream a ``(request, refresh)`` job to its end with the core client, counting frames.

    ``refresh`` (the reconnect API, or None) renews a token the gateway no longer accepts: a
    request that ended more than a minute before its client joined (creating 1000 requests on a
    loaded machine can take that long) needs a fresh one, as in any real app.
    """
    from modelriver.events import Step, Token
    from modelriver.stream import connect

    request, refresh = job
    started = time.perf_counter()
    stream = await connect(request, request_timeout=300, refresh=refresh)
    frames = 0
    first = None
    async for event in stream:
        if isinstance(event, Step):
            continue
        frames += 1
        if first is None and isinstance(event, Token):
            first = time.perf_counter() - started
    assert stream.response is not None and not stream.response.is_error, stream.response
    if first is not None:
        ttfts.append(first)
    counts.append(frames)


async def run_streams(
    name: str, n: int, pid: int, prepare: Callable[[int], Awaitable[list[Any]]], progress: Any
) -> RunResult:
    """Prepare n requests (``prepare(n)``: the gateway's HTTP calls, outside the timed window),
    then stream them all at once; RSS is sampled from before the requests exist."""
    ttfts: list[float] = []
    counts: list[int] = []
    errors = 0

    async def one(i: int, job: tuple[Any, Any]) -> None:
        nonlocal errors
        try:
            await consume(job, ttfts, counts)
        except Exception as exc:  # a benchmark reports failures, it does not stop at the first
            errors += 1
            if errors <= 3:
                print(f"  {name} stream {i} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            progress.update(1)

    with RssSampler(pid, every=0.02) as rss:
        prepared = time.perf_counter()
        requests = await prepare(n)
        setup = time.perf_counter() - prepared
        rss.mark_cpu()
        started = time.perf_counter()
        await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
        seconds = time.perf_counter() - started
    frames = sum(counts)
    mb = 1 << 20
    return RunResult(
        server=name, streams=n, frames=frames, setup_s=round(setup, 3), seconds=round(seconds, 3),
        frames_per_s=round(frames / seconds, 1),
        ttft_p50_ms=round(percentile(ttfts, 50) * 1000, 1),
        ttft_p99_ms=round(percentile(ttfts, 99) * 1000, 1),
        rss_idle_mb=round(rss.idle / mb, 1), rss_peak_mb=round(rss.peak / mb, 1),
        rss_per_stream_kb=round((rss.peak - rss.idle) / n / 1024, 1),
        server_cpu_s=round(rss.cpu, 2), errors=errors,
        server_cpu_us_per_frame=round(rss.cpu / frames * 1e6, 1) if frames else float("nan"),
    )


# -- the benchmark ---------------------------------------------------------------------------------


def scripted_text(tokens: int) -> str:
    words = ("hello", "world", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Ça",
             "va", "très", "bien", "✓", "42")
    return " ".join(words[i % len(words)] for i in range(tokens))


async def template_frames(api: str, text: str) -> dict[str, Any]:
    """The frames the gateway pushes for one request (joined after it ended: the full replay)."""
    import httpx
    import websockets

    from modelriver.types import AsyncRequest

    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        answer = await http.post("/v1/ai/async", json=body(text))
        answer.raise_for_status()
        request = AsyncRequest.from_payload(answer.json())
        for _ in range(500):
            log = (await http.get(f"/v1/requests/{request.channel_id}")).json()
            if log["status"] == "success":
                break
            await asyncio.sleep(0.01)
    frames: list[str] = []
    async with websockets.connect(request.socket_url, max_size=None) as ws:
        await ws.send(json.dumps(["1", "1", request.topic, "phx_join", {}]))
        while True:
            text_frame = str(await ws.recv())
            frame = json.loads(text_frame)
            if frame[3] == "phx_reply":
                continue
            frames.append(text_frame)
            if frame[3] in ("response", "error"):
                break
    return {"topic": request.topic, "channel_id": request.channel_id, "frames": frames}


def body(text: str) -> dict[str, Any]:
    return {
        "workflow": "demo-chat", "messages": [{"role": "user", "content": "benchmark"}],
        "metadata": {"scripted": {"text": text, "tokens_per_second": TOKENS_PER_SECOND,
                                  "first_token_ms": 0}},
    }


async def bench(sizes: Sequence[int], tokens: int, rounds: int, workdir: Path) -> list[dict[str, Any]]:
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    for n in sizes:
        # Fresh servers for each N: a gateway keeps finished requests (replayable for 10 minutes),
        # so its memory after one N is no baseline for the next.
        async with servers(tokens, workdir) as (gateway, plain, prepare):
            best: dict[str, RunResult] = {}
            first: dict[str, RunResult] = {}
            with tqdm(total=2 * n * rounds, desc=f"N={n}", unit="stream", leave=False,
                      file=sys.stderr) as progress:
                for _ in range(rounds):  # alternating; the best round of each counts
                    for name, server in (("gateway", gateway), ("plain", plain)):
                        progress.set_postfix_str(name)
                        result = await run_streams(name, n, server.popen.pid, prepare[name], progress)
                        first.setdefault(name, result)
                        if name not in best or result.frames_per_s > best[name].frames_per_s:
                            best[name] = result
            # Memory: the first round's (the later ones start with the earlier requests kept).
            results = {name: replace(best[name], rss_idle_mb=first[name].rss_idle_mb,
                                     rss_peak_mb=first[name].rss_peak_mb,
                                     rss_per_stream_kb=first[name].rss_per_stream_kb)
                       for name in best}
        ratio = results["gateway"].frames_per_s / results["plain"].frames_per_s
        rows.append({"n": n, "tokens": tokens, "rounds": rounds, "ratio": round(ratio, 3),
                     "gateway": asdict(results["gateway"]), "plain": asdict(results["plain"])})
    return rows


Prepare = Callable[[int], Awaitable[list[Any]]]


@contextlib.asynccontextmanager
async def servers(tokens: int, workdir: Path) -> AsyncIterator[tuple[Server, Server, dict[str, Prepare]]]:
    """A gateway and a plain server pushing the gateway's frames, with their request makers."""
    import httpx

    from modelriver.api import AsyncModelRiver
    from modelriver.types import AsyncRequest

    text = scripted_text(tokens)
    port = free_port()
    gateway = Server.start(
        [sys.executable, "-m", "modelriver", "dev", "--port", str(port), "--api-key", API_KEY],
        "modelriver dev ready on", url=f"http://127.0.0.1:{port}",
    )
    plain: Server | None = None
    try:
        template = await template_frames(gateway.url, text)
        template_path = workdir / f"gateway_streams_template_{port}.json"
        template_path.write_text(json.dumps(template))
        plain_port = free_port()
        plain = Server.start(
            [sys.executable, __file__, "--serve-plain", str(plain_port), "--template", str(template_path)],
            "plain server ready", url=f"ws://127.0.0.1:{plain_port}",
        )
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        plain_url = plain.url + "/socket"

        api = AsyncModelRiver(api_key=API_KEY, api_base=gateway.url, timeout=120)

        async def gateway_requests(n: int) -> list[tuple[AsyncRequest, Any]]:
            # A fresh HTTP client per round: uvicorn closes idle keep-alive connections meanwhile.
            async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=120,
                                         headers={"Authorization": f"Bearer {API_KEY}"}) as http:
                async def one() -> tuple[AsyncRequest, Any]:
                    for attempt in range(3):
                        try:
                            answer = await http.post("/v1/ai/async", json=body(text))
                            break
                        except httpx.TransportError:  # a keep-alive connection closed under us
                            if attempt == 2:
                                raise
                    answer.raise_for_status()
                    request = AsyncRequest.from_payload(answer.json())
                    return request, functools.partial(api.reconnect, request.channel_id)
                return list(await asyncio.gather(*(one() for _ in range(n))))

        async def plain_requests(n: int) -> list[tuple[AsyncRequest, Any]]:
            project = "00000000-0000-4000-8000-000000000000"
            channels = [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)]
            return [(AsyncRequest(c, "x", plain_url, f"ai_response:{project}:{c}"), None) for c in channels]

        try:
            yield gateway, plain, {"gateway": gateway_requests, "plain": plain_requests}
        finally:
            await api.aclose()
    finally:
        gateway.stop()
        if plain is not None:
            plain.stop()


def report(rows: list[dict[str, Any]]) -> str:
    head = ("| N | server | requests s | stream s | frames/s | TTFT p50 ms | TTFT p99 ms | RSS idle MB "
            "| RSS peak MB | RSS/stream KB | server CPU µs/frame | errors |")
    lines = [head, "|" + "---|" * 12]
    for row in rows:
        for name in ("gateway", "plain"):
            r = row[name]
            lines.append(
                f"| {row['n']} | {name} | {r['setup_s']} | {r['seconds']} | {r['frames_per_s']:,.0f} | "
                f"{r['ttft_p50_ms']} | "
                f"{r['ttft_p99_ms']} | {r['rss_idle_mb']} | {r['rss_peak_mb']} | "
                f"{r['rss_per_stream_kb']} | {r['server_cpu_us_per_frame']} | {r['errors']} |"
            )
    lines.append("")
    for row in rows:
        verdict = "ok" if row["ratio"] >= GOAL else "BELOW GOAL"
        lines.append(f"N={row['n']}: gateway/plain frames/s = {row['ratio']:.2f} "
                     f"(goal >= {GOAL}): {verdict}")
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows ``benchmarks/run_all.py`` tabulates: ``{metric, measured, goal, met}``."""
    out: list[dict[str, Any]] = []
    for row in rows:
        n, g, p = row["n"], row["gateway"], row["plain"]
        out += [
            {"metric": f"N={n} gateway frames/s (plain websockets server)",
             "measured": f"{g['frames_per_s']:,.0f} ({p['frames_per_s']:,.0f})", "goal": None, "met": None},
            {"metric": f"N={n} gateway/plain frames/s", "measured": f"{row['ratio']:.2f}",
             "goal": f">= {GOAL}", "met": row["ratio"] >= GOAL and not g["errors"] and not p["errors"]},
            {"metric": f"N={n} time to first token p50 / p99", "measured":
             f"{g['ttft_p50_ms']:.0f} / {g['ttft_p99_ms']:.0f} ms", "goal": None, "met": None},
            {"metric": f"N={n} gateway RSS per stream", "measured": f"{g['rss_per_stream_kb']:.0f} KB",
             "goal": None, "met": None},
        ]
    return out


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 20 and 100, short answers")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        help="comma-separated N values (default 100,1000; quick 20,100)")
    parser.add_argument("--tokens", type=int, help="tokens per answer (default 200; quick 40)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per N, best counts (default 3)")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    parser.add_argument("--check", action="store_true", help="exit 1 when a ratio is below the goal")
    parser.add_argument("--serve-plain", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--template", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.serve_plain:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_plain(args.serve_plain, json.loads(Path(args.template).read_text())))
        return 0
    sizes = args.sizes or ([20, 100] if args.quick else [100, 1000])
    tokens = args.tokens or (40 if args.quick else 200)
    workdir = Path(os.environ.get("TMPDIR", "/tmp"))
    started = time.perf_counter()
    rows = asyncio.run(bench(sizes, tokens, args.rounds, workdir))
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"goal": GOAL, "seconds": round(elapsed, 1), "runs": rows,
                          "summary": summary(rows)}))
    else:
        print(f"gateway_streams: {tokens}-token answers at {TOKENS_PER_SECOND} tokens/s, "
              f"best of {args.rounds} rounds ({elapsed:.0f} s)\n")
        print(report(rows))
    below = [row for row in rows if row["ratio"] < GOAL]
    failed = any(row[name]["errors"] for row in rows for name in ("gateway", "plain"))
    return 1 if args.check and (below or failed) else 0


if __name__ == "__main__":
    sys.exit(main())
