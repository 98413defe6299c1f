"""Realm tokens/s over one multiplexed socket, at 1, 10 and 50 concurrent generations.

    .venv/bin/python benchmarks/realm_streams.py            # 2 000-token answers, 5 rounds
    .venv/bin/python benchmarks/realm_streams.py --quick    # 200-token answers, 3 rounds

For each concurrency N, two runs side by side, each against its server in a subprocess (so
server and client get a core each), over one WebSocket:

* **realm**: ``modelriver.realm.RealmServer`` with a generator that yields T tokens at once, and
  one ``RealmClient`` running N ``generate_stream`` calls together (ids, routing, records).
* **plain**: a bare ``websockets`` server that answers each call frame with T pre-encoded
  streaming frames and a ``complete``, and a bare client that ``json.loads`` every frame and
  routes it by ``id`` (the floor for the same wire traffic).

Reported per N: tokens/s of each (all streams, first call sent to last ``complete``; rounds
alternate between the two and the best of each counts), and their ratio. Goal: realm keeps
>= 0.5 of plain's tokens/s at every N. ``--check`` exits 1 below the goal; ``--json`` prints
the numbers as one JSON object (last line).

Not yet here: the ModelRiver path (gateway + Phoenix) in the same run, for issue 9's comparison;
it needs the gateway's Realm endpoint (``modelriver dev --realm-port``) to compare like for like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

try:
    import modelriver  # noqa: F401
except ImportError:  # run from a checkout without the workspace installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "src"))

GOAL = 0.5
CONCURRENCY = (1, 10, 50)


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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Subprocess:
    def __init__(self, kind: str, tokens: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--port", str(self.port), "--tokens", str(tokens)],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"{kind} server did not start: {line!r}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- clients --------------------------------------------------------------------------------------


class RealmRunner:
    """N ``generate_stream`` calls at once on one ``RealmClient``."""

    def __init__(self, port: int, tokens: int) -> None:
        from modelriver.realm import RealmClient

        self.client = RealmClient(f"ws://127.0.0.1:{port}", ping_interval=None, timeout=60)
        self.expected = "".join(token(i) for i in range(tokens))

    async def round(self, n: int) -> float:
        async def one() -> str:
            parts = [t async for t in self.client.generate_stream("go", max_tokens=None, temperature=None)]
            return "".join(parts)

        start = time.perf_counter()
        texts = await asyncio.gather(*(one() for _ in range(n)))
        elapsed = time.perf_counter() - start
        if any(text != self.expected for text in texts):
            raise AssertionError("a realm stream lost or mixed tokens")
        return elapsed


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


async def measure(realm_port: int, plain_port: int, tokens: int, rounds: int) -> list[dict[str, Any]]:
    """Alternate plain and realm rounds at each concurrency; the best round of each counts."""
    realm = RealmRunner(realm_port, tokens)
    plain = PlainRunner(plain_port, tokens)
    await realm.client.connect()
    await plain.open()
    rows = []
    try:
        for n in CONCURRENCY:
            await realm.round(n)  # warm up both
            await plain.round(n)
            best_realm = best_plain = float("inf")
            for _ in range(rounds):
                best_plain = min(best_plain, await plain.round(n))
                best_realm = min(best_realm, await realm.round(n))
            realm_tps, plain_tps = n * tokens / best_realm, n * tokens / best_plain
            rows.append({"concurrency": n, "realm_tps": round(realm_tps), "plain_tps": round(plain_tps),
                         "ratio": round(realm_tps / plain_tps, 3)})
    finally:
        await realm.client.disconnect()
        await plain.ws.close()
    return rows


def run(tokens: int, rounds: int) -> dict[str, Any]:
    realm = Subprocess("realm", tokens)
    plain = Subprocess("plain", tokens)
    try:
        rows = asyncio.run(measure(realm.port, plain.port, tokens, rounds))
    finally:
        realm.stop()
        plain.stop()
    summary = [
        {
            "metric": f"tokens/s, {row['concurrency']} concurrent on one socket (realm / plain)",
            "measured": f"{row['realm_tps']:,} / {row['plain_tps']:,} = {row['ratio']}",
            "goal": f">= {GOAL}",
            "met": row["ratio"] >= GOAL,
        }
        for row in rows
    ]
    return {
        "name": "realm_streams",
        "tokens_per_generation": tokens,
        "rounds": rounds,
        "rows": rows,
        "summary": summary,
        "notes": "server and client in separate processes on loopback, plain and realm rounds "
                 "alternating; the ModelRiver path is not compared yet (needs the gateway's Realm "
                 "endpoint).",
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
        print(f"{tokens} tokens per generation, best of {rounds} rounds, one socket")
        print(f"{'concurrent':>10} {'realm tok/s':>14} {'plain tok/s':>14} {'ratio':>7}")
        for row in result["rows"]:
            print(f"{row['concurrency']:>10} {row['realm_tps']:>14,} {row['plain_tps']:>14,} "
                  f"{row['ratio']:>7.3f}")
        print(f"goal: ratio >= {GOAL} at every concurrency")
    ok = all(row["ratio"] >= GOAL for row in result["rows"])
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
