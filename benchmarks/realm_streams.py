"""Realm tokens/s over one multiplexed socket, at 1, 10 and 50 concurrent generations, against
a plain server and against the ModelRiver path of the same gateway.

    .venv/bin/python benchmarks/realm_streams.py            # 2 000-token answers, 5 rounds
    .venv/bin/python benchmarks/realm_streams.py --quick    # 200-token answers, 3 rounds

For each concurrency N, four runs side by side (rounds alternate between them; the best round of
each counts), each against its server in a subprocess (so server and client get a core each):

* **realm**: ``modelriver.realm.RealmServer`` with a generator that yields T tokens at once, and
  one ``RealmClient`` running N ``generate_stream`` calls together on one WebSocket.
* **plain**: a bare ``websockets`` server that answers each call frame with T pre-encoded
  streaming frames and a ``complete``, and a bare client that ``json.loads`` every frame and
  routes it by ``id`` (the floor for the same wire traffic).
* **gateway realm**: one ``modelriver dev --realm-port`` process running a ``bench`` workflow
  (a scripted provider streaming T tokens unpaced); one ``RealmClient`` on its Realm endpoint
  runs N ``generate_stream`` calls together on one WebSocket.
* **gateway modelriver**: the same gateway process and workflow through the ModelRiver path:
  core ``AsyncModelRiver`` creates N requests over HTTP and streams each over its Phoenix socket
  (``Stream``), all at once.

Every answer is checked whole (no lost or mixed tokens). Reported per N: tokens/s (all streams,
first call sent to last final answer), realm / plain (goal >= 0.5: the Realm layer keeps half
the floor's rate at every N) and gateway realm / gateway modelriver (informative: the same
workflow on the same gateway, Realm's one multiplexed socket against ModelRiver's HTTP create
plus a socket per stream). ``--check`` exits 1 below the goal; ``--json`` prints the numbers as
one JSON object (last line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from _procs import Server, free_port

try:
    import modelriver  # noqa: F401
except ImportError:  # run from a checkout without the workspace installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "src"))

GOAL = 0.5
CONCURRENCY = (1, 10, 50)
API_KEY = "mr_bench_0123456789abcdef"
WORKFLOW = "bench"


def token(i: int) -> str:
    return f"tok{i % 1000} "


# -- servers (subprocess) -------------------------------------------------------------------------


async def serve_realm(port: int, tokens: int) -> None:
    from modelriver.realm import GenerateRequest, serve

    async def fast(request: GenerateRequest) -> AsyncIterator[str]:
        for i in range(tokens):
            yield token(i)

    server = await serve(fast, "127.0.0.1", port, ping_interval=None)
    print("ready", flush=True)
    await server.serve_forever()


async def serve_plain(port: int, tokens: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    from modelriver.realm.protocol import token_record

    records = [json.dumps(token_record(token(i), i)) for i in range(tokens)]
    text = "".join(token(i) for i in range(tokens))

    async def answer(ws: ServerConnection, call_id: Any) -> None:
        prefix = '{"id":' + json.dumps(call_id) + ',"status":"streaming","data":'
        for record in records:
            await ws.send(prefix + record + "}")
            await asyncio.sleep(0)
        await ws.send(json.dumps({"id": call_id, "status": "complete",
                                  "data": {"text": text, "tokens_generated": tokens}}))

    async def handler(ws: ServerConnection) -> None:
        tasks = set()
        async for raw in ws:
            task = asyncio.create_task(answer(ws, json.loads(raw)["id"]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None) as server:
        print("ready", flush=True)
        await server.serve_forever()


def gateway_config(tokens: int) -> str:
    """The gateway's TOML: a ``bench`` workflow whose scripted provider streams ``tokens`` unpaced."""
    text = "".join(token(i) for i in range(tokens)).strip()
    return (f'[providers.{WORKFLOW}]\ntext = "{text}"\ntokens_per_second = 0\nfirst_token_ms = 0\n'
            f'model = "scripted-bench"\n\n[workflows.{WORKFLOW}]\nproviders = ["{WORKFLOW}"]\n')


class Gateway:
    """``modelriver dev --realm-port`` with the ``bench`` workflow, in a subprocess."""

    def __init__(self, tokens: int) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="realm-streams-")
        config = Path(self._dir.name) / "bench.toml"
        config.write_text(gateway_config(tokens))
        port, self.realm_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = Server.start(
            [sys.executable, "-m", "modelriver", "dev", "--port", str(port), "--api-key", API_KEY,
             "--realm-port", str(self.realm_port), "--config", str(config), "--log-level", "warning"],
            "modelriver dev ready on", url=self.url)

    def stop(self) -> None:
        self.server.stop()
        self._dir.cleanup()


class Subprocess:
    """This file's ``--serve realm|plain`` in a subprocess, once it printed ``ready``."""

    def __init__(self, kind: str, tokens: int) -> None:
        self.port = free_port()
        self.server = Server.start(
            [sys.executable, __file__, "--serve", kind, "--port", str(self.port), "--tokens", str(tokens)],
            "ready")

    def stop(self) -> None:
        self.server.stop()


# -- clients --------------------------------------------------------------------------------------


async def timed(one: Callable[[], Awaitable[str]], n: int, expected: str, what: str) -> float:
    """Seconds for ``n`` concurrent ``one()`` answers; each must equal ``expected`` whole."""
    start = time.perf_counter()
    texts = await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - start
    if any(text != expected for text in texts):
        raise AssertionError(f"a {what} stream lost or mixed tokens")
    return elapsed


class RealmRunner:
    """N ``generate_stream`` calls at once on one ``RealmClient`` (``model``: the gateway's workflow)."""

    def __init__(self, port: int, tokens: int, model: str | None = None, expected: str | None = None,
                 api_key: str | None = None) -> None:
        from modelriver.realm import RealmClient

        self.client = RealmClient(f"ws://127.0.0.1:{port}", api_key=api_key, ping_interval=None,
                                  timeout=60)
        self.model = model
        self.expected = expected if expected is not None else "".join(token(i) for i in range(tokens))

    async def round(self, n: int) -> float:
        async def one() -> str:
            parts = [t async for t in self.client.generate_stream(
                "go", model=self.model, max_tokens=None, temperature=None)]
            return "".join(parts)

        return await timed(one, n, self.expected, "realm")


class ModelRiverRunner:
    """N requests at once through the ModelRiver path: HTTP create, then a Phoenix socket each."""

    def __init__(self, api_base: str, expected: str) -> None:
        from modelriver import AsyncModelRiver

        self.client = AsyncModelRiver(API_KEY, api_base=api_base, timeout=60)
        self.expected = expected

    async def round(self, n: int) -> float:
        async def one() -> str:
            stream = await self.client.stream(WORKFLOW, "go", request_timeout=120)
            try:
                async for _ in stream:
                    pass
            finally:
                await stream.close()
            if stream.response is None or stream.response.is_error:
                raise AssertionError(f"a ModelRiver request failed: {stream.response}")
            return stream.text

        return await timed(one, n, self.expected, "ModelRiver")


class PlainRunner:
    """N calls at once on a bare websockets connection: ``json.loads`` and route by ``id``."""

    def __init__(self, port: int, tokens: int) -> None:
        self.url = f"ws://127.0.0.1:{port}"
        self.tokens = tokens
        self.rounds = 0

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, compression=None, ping_interval=None, max_size=None)

    async def round(self, n: int) -> float:
        ws = self.ws
        self.rounds += 1
        counts: dict[str, int] = {}
        done = 0
        start = time.perf_counter()
        for i in range(n):
            call_id = f"{self.rounds}-{i}"
            counts[call_id] = 0
            await ws.send(json.dumps({"id": call_id, "function": "generate",
                                      "params": {"prompt": "go", "stream": True}}))
        while done < n:
            answer = json.loads(await ws.recv())
            if answer["status"] == "streaming":
                counts[answer["id"]] += len(answer["data"]["text"]) > 0
            else:
                done += 1
        elapsed = time.perf_counter() - start
        if any(count != self.tokens for count in counts.values()):
            raise AssertionError("a plain stream lost tokens")
        return elapsed


async def measure(realm_port: int, plain_port: int, gateway: Gateway, tokens: int,
                  rounds: int) -> list[dict[str, Any]]:
    """Alternate the four runs' rounds at each concurrency; the best round of each counts."""
    realm = RealmRunner(realm_port, tokens)
    plain = PlainRunner(plain_port, tokens)
    expected = "".join(token(i) for i in range(tokens)).strip()  # the scripted text, tokenized
    gw_realm = RealmRunner(gateway.realm_port, tokens, model=WORKFLOW, expected=expected,
                           api_key=API_KEY)  # the endpoint takes the gateway's key
    gw_modelriver = ModelRiverRunner(gateway.url, expected)
    await realm.client.connect()
    await gw_realm.client.connect()
    await plain.open()
    runs = {"realm": realm.round, "plain": plain.round, "gateway_realm": gw_realm.round,
            "gateway_modelriver": gw_modelriver.round}
    rows = []
    try:
        for n in CONCURRENCY:
            for round_ in runs.values():  # warm up each
                await round_(n)
            best = dict.fromkeys(runs, float("inf"))
            for _ in range(rounds):
                for name, round_ in runs.items():
                    best[name] = min(best[name], await round_(n))
            tps = {name: n * tokens / elapsed for name, elapsed in best.items()}
            rows.append({"concurrency": n, **{f"{name}_tps": round(v) for name, v in tps.items()},
                         "ratio": round(tps["realm"] / tps["plain"], 3),
                         "gateway_ratio": round(tps["gateway_realm"] / tps["gateway_modelriver"], 3)})
    finally:
        await realm.client.disconnect()
        await gw_realm.client.disconnect()
        await gw_modelriver.client.aclose()
        await plain.ws.close()
    return rows


def run(tokens: int, rounds: int) -> dict[str, Any]:
    realm = Subprocess("realm", tokens)
    plain = Subprocess("plain", tokens)
    gateway = Gateway(tokens)
    try:
        rows = asyncio.run(measure(realm.port, plain.port, gateway, tokens, rounds))
    finally:
        realm.stop()
        plain.stop()
        gateway.stop()
    summary = []
    for row in rows:
        n = row["concurrency"]
        summary.append({
            "metric": f"tokens/s, {n} concurrent on one socket (realm / plain)",
            "measured": f"{row['realm_tps']:,} / {row['plain_tps']:,} = {row['ratio']}",
            "goal": f">= {GOAL}",
            "met": row["ratio"] >= GOAL,
        })
        summary.append({
            "metric": f"tokens/s, {n} concurrent, same gateway: Realm endpoint (one socket) / "
                      "ModelRiver path (HTTP + a Phoenix socket each)",
            "measured": f"{row['gateway_realm_tps']:,} / {row['gateway_modelriver_tps']:,} = "
                        f"{row['gateway_ratio']}",
            "goal": None,
            "met": None,
        })
    return {
        "name": "realm_streams",
        "tokens_per_generation": tokens,
        "rounds": rounds,
        "rows": rows,
        "summary": summary,
        "notes": "servers and client in separate processes on loopback, rounds of the four runs "
                 "alternating; the gateway rows are one `modelriver dev --realm-port` process "
                 "running the same unpaced scripted workflow for both paths (its generation cost "
                 "is in both), Realm calls multiplexed on one socket, ModelRiver requests created "
                 "over HTTP and streamed on a Phoenix socket each.",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="200-token answers, 3 rounds")
    parser.add_argument("--tokens", type=int, help="tokens per generation")
    parser.add_argument("--rounds", type=int, help="rounds per concurrency (best counts)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when a ratio is under {GOAL}")
    parser.add_argument("--serve", choices=["realm", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    tokens = args.tokens or (200 if args.quick else 2000)
    if args.serve:
        serve = serve_realm if args.serve == "realm" else serve_plain
        asyncio.run(serve(args.port, tokens))
        return 0
    rounds = args.rounds or (3 if args.quick else 5)
    result = run(tokens, rounds)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{tokens} tokens per generation, best of {rounds} rounds")
        print(f"{'concurrent':>10} {'realm tok/s':>12} {'plain tok/s':>12} {'ratio':>6} "
              f"{'gw realm tok/s':>15} {'gw modelriver tok/s':>20} {'ratio':>6}")
        for row in result["rows"]:
            print(f"{row['concurrency']:>10} {row['realm_tps']:>12,} {row['plain_tps']:>12,} "
                  f"{row['ratio']:>6.3f} {row['gateway_realm_tps']:>15,} "
                  f"{row['gateway_modelriver_tps']:>20,} {row['gateway_ratio']:>6.3f}")
        print(f"goal: realm / plain >= {GOAL} at every concurrency (gateway ratio: informative)")
    ok = all(row["ratio"] >= GOAL for row in result["rows"])
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
