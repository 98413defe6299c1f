"""The stream client's CPU per token on a structured answer against a text answer of the same length
and pace (issue 18: partial structured output must not make streaming costly).

    .venv/bin/python benchmarks/structured_stream.py            # ~4 KB answers at 300 tokens/s, 5 rounds
    .venv/bin/python benchmarks/structured_stream.py --quick    # ~1 KB answers at 1000 tokens/s, 1 round

``modelriver dev`` runs in a subprocess; this process is the client: core's ``Stream`` over the
Phoenix socket, consumed as a chat view would: on **every** event the view reads the answer
(``stream.prose``, and for the structured answer ``stream.partial`` too), the worst case of a
view that repaints per token. The structured answer is ``demo-structured`` scripted with a valid
``chatbot_response`` JSON text; the text answer is ``demo-chat`` scripted with that very text
(same length, same tokens, same pace). Each round streams one of each, alternating; the CPU time
of this process (``time.process_time``: the client and its threads, not the gateway) from the
socket's connect to the final response, divided by the tokens, is the measure; the median round
counts. Each round also checks the work was real: the structured stream's final partial equals
the response's ``data`` and its prose the reply; the text stream's prose equals the content.

Goal: structured CPU per token <= 1.2 x text. ``--check`` exits 1 above it; ``--json`` prints
one JSON object (its ``summary`` rows for run_all.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    import modelriver  # noqa: F401
except ImportError:  # run from a checkout without the workspace installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _procs import Server, free_port

from modelriver.api import AsyncModelRiver
from modelriver.stream import connect

GOAL = 1.2
API_KEY = "mr_bench_structured_stream"
SENTENCE = ('Rivers carry "sediment" to the sea — from the Rhône to the 長江 — and a delta forms '
            "where the current slows.\n")


def answer(size: int) -> dict[str, Any]:
    """A valid ``chatbot_response`` whose JSON text is about ``size`` characters."""
    reply = ""
    while len(reply) < size * 0.82:
        reply += SENTENCE
    return {
        "reply": reply,
        "summary": "How rivers build deltas, with escapes and Unicode along the way.",
        "sentiment": "neutral",
        "confidence": 0.87,
        "topics": ["rivers", "deltas", "sediment"],
        "action_items": [{"task": f"Read about delta number {i}", "priority": "medium"} for i in range(4)],
    }


async def one(client: AsyncModelRiver, workflow: str, text: str, pace: float,
              data: dict[str, Any] | None) -> tuple[float, int]:
    """Stream one answer, reading it on every event; returns (client CPU seconds, tokens)."""
    metadata = {"scripted": {"text": text, "tokens_per_second": pace, "first_token_ms": 0}}
    request = await client.create_request(workflow, [{"role": "user", "content": "rivers"}], metadata=metadata)
    tokens = 0
    start = time.process_time()
    async with await connect(request) as stream:
        async for event in stream:
            if event.type == "token":
                tokens += 1
            _view = (stream.prose, stream.partial) if data is not None else stream.prose
        response = await stream.wait()
    cpu = time.process_time() - start
    if response.status != "success":
        raise RuntimeError(f"{workflow}: {response}")
    if data is not None:
        if stream.partial != data or response.data != data or stream.prose != data["reply"]:
            raise AssertionError("the structured stream's final partial differs from its data")
    elif stream.prose != text or response.content != text:
        raise AssertionError("the text stream's prose differs from its content")
    return cpu, tokens


async def measure(size: int, pace: float, rounds: int) -> dict[str, Any]:
    data = answer(size)
    text = json.dumps(data, ensure_ascii=False)
    port = free_port()
    gateway = Server.start([sys.executable, "-m", "modelriver", "dev", "--port", str(port), "--api-key", API_KEY],
                           "modelriver dev ready on", url=f"http://127.0.0.1:{port}")
    per_token: dict[str, list[float]] = {"structured": [], "text": []}
    counts: dict[str, int] = {}
    try:
        async with AsyncModelRiver(api_key=API_KEY, api_base=gateway.url, timeout=60) as client:
            await one(client, "demo-chat", text[:200], 0, None)  # warm up (imports, first connect)
            for _ in range(rounds):
                for kind in ("structured", "text"):
                    workflow = "demo-structured" if kind == "structured" else "demo-chat"
                    cpu, tokens = await one(client, workflow, text, pace, data if kind == "structured" else None)
                    per_token[kind].append(cpu / tokens)
                    counts[kind] = tokens
    finally:
        gateway.stop()
    structured = statistics.median(per_token["structured"])
    plain = statistics.median(per_token["text"])
    ratio = structured / plain
    return {
        "answer_chars": len(text),
        "tokens": counts,
        "tokens_per_second": pace,
        "rounds": rounds,
        "structured_us_per_token": round(structured * 1e6, 1),
        "text_us_per_token": round(plain * 1e6, 1),
        "ratio": round(ratio, 3),
        "rounds_us_per_token": {k: [round(v * 1e6, 1) for v in vs] for k, vs in per_token.items()},
        "goal": GOAL,
        "python": sys.version.split()[0],
        "summary": [
            {"metric": f"client CPU per token, structured answer ({len(text)} chars, {pace:g} tokens/s)",
             "measured": f"{structured * 1e6:.1f} µs", "goal": None, "met": None},
            {"metric": "client CPU per token, text answer (same length and pace)",
             "measured": f"{plain * 1e6:.1f} µs", "goal": None, "met": None},
            {"metric": "structured / text CPU per token", "measured": f"{ratio:.2f}", "goal": f"<= {GOAL}",
             "met": ratio <= GOAL},
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="~1 KB answers at 1000 tokens/s, 1 round")
    parser.add_argument("--size", type=int, help="answer size, characters")
    parser.add_argument("--pace", type=float, help="tokens per second")
    parser.add_argument("--rounds", type=int, help="rounds (one answer of each kind per round)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when the ratio is over {GOAL}")
    args = parser.parse_args(argv)
    size = args.size or (1024 if args.quick else 4096)
    pace = args.pace or (1000.0 if args.quick else 300.0)
    rounds = args.rounds or (1 if args.quick else 5)
    result = asyncio.run(measure(size, pace, rounds))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"answer: {result['answer_chars']} chars, {result['tokens']['text']} tokens at {pace:g} tokens/s, "
              f"{rounds} round(s), Python {result['python']}")
        print(f"structured  {result['structured_us_per_token']:>8.1f} µs CPU per token")
        print(f"text        {result['text_us_per_token']:>8.1f} µs CPU per token")
        verdict = "ok" if result["ratio"] <= GOAL else "OVER GOAL"
        print(f"ratio {result['ratio']:.3f} (goal <= {GOAL}): {verdict}")
    return 1 if args.check and result["ratio"] > GOAL else 0


if __name__ == "__main__":
    sys.exit(main())
