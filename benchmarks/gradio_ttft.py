"""Time to first partial answer seen by ``gradio_client``, next to the bare core client, one run.

    .venv/bin/python benchmarks/gradio_ttft.py            # 20 samples per path
    .venv/bin/python benchmarks/gradio_ttft.py --quick    # 5 samples per path (~30 s)

Processes: `modelriver dev` and the Gradio demo (`demo_projects/gradio_chat/app.py`), each a
subprocess; this process is the client of both.

* **core**: ``ModelRiver.stream("demo-chat", prompt)``: from before the HTTP request that creates
  the request to the first ``Token`` event.
* **gradio**: ``gradio_client.Client(demo).submit(prompt, "demo-chat", metadata, api_name="/chat")``
  and iterate the job: from before ``submit`` to the first output whose answer text is not empty.
  It includes Gradio's queue, the chat function (request creation, socket join), the yield, and
  Gradio's SSE to the client, and ``gradio_client``'s own polling of what it received (it
  checks every 50 ms, so 25 ms on average of any number it reports is its own). One ``Client``
  sends every sample, each in a new session (``reset_session()``: a new conversation, so the
  history does not grow); a fresh ``Client`` per message adds about 100 ms more of
  ``gradio_client``'s own stream setup.
* **gradio_sse**: the same request, with Gradio's SSE stream read directly (httpx), to show the
  server side alone.

Both are also measured from the moment the gateway created the request (its request log's
``created_at``), which takes out what comes before (Gradio's queue on one side, nothing on the
other) and leaves what each path adds between the gateway's first token and the reader. The goal
is on that difference: gradio p50 within 50 ms of core p50. Every path uses the same scripted
settings (``first_token_ms`` 0 by default, so no provider delay hides the overhead). One warm-up
request per path is not counted. ``--json`` prints one JSON object as the last line (``summary``
rows for ``run_all.py``).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _ttft import API_KEY, Proc, core_samples, created_at, free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_projects" / "gradio_chat" / "app.py"
GOAL_MS = 50.0
CHANNEL = re.compile(r"request `([0-9a-f-]{36})`")




def _answer(messages: list[dict[str, Any]]) -> str:
    return "".join(str(m.get("content") or "") for m in messages
                   if not (m.get("metadata") or {}).get("title"))


def _channel(messages: list[dict[str, Any]]) -> str | None:
    for message in messages:
        found = CHANNEL.search(str(message.get("content") or ""))
        if found:
            return found.group(1)
    return None


def gradio_samples(url: str, api_base: str, n: int, scripted: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(submit → first partial seen, request created → first partial seen) in ms, per sample."""
    from gradio_client import Client

    total, from_created = [], []
    metadata = json.dumps({"scripted": scripted})
    client = Client(url, verbose=False, download_files=False)
    for i in range(n + 1):
        client.reset_session()  # a new conversation: the history does not grow across samples
        started = time.time()
        job = client.submit(f"gradio sample {i}", "demo-chat", metadata, api_name="/chat")
        first = None
        channel_id = None
        for output in job:
            messages = output[0] if isinstance(output, tuple | list) and output and isinstance(
                output[0], list) else output
            channel_id = channel_id or _channel(messages)
            if first is None and _answer(messages):
                first = time.time()
        assert first is not None and channel_id is not None, "no partial answer"
        if i:
            total.append((first - started) * 1000)
            from_created.append((first - created_at(api_base, channel_id)) * 1000)
    return total, from_created


def sse_samples(url: str, api_base: str, n: int, scripted: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The same request read from Gradio's SSE stream directly (no ``gradio_client``).

    ``gradio_client`` polls its message queue every 50 ms (``stream_sse_v1plus``), so it adds
    0-50 ms to anything it sees; this path shows the server side alone: our chat function plus
    Gradio's queue, postprocessing and SSE. The first token is the first ``process_generating``
    message carrying the answer's first word (``You``, of the scripted ``You said: ...``).
    """
    import uuid

    import httpx
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)  # for the endpoint's layout only
    endpoint = next(e for e in client.endpoints.values() if e.api_name == "/chat")
    metadata = json.dumps({"scripted": scripted})
    total, from_created = [], []
    with httpx.Client(timeout=30) as http:
        for i in range(n + 1):
            session = uuid.uuid4().hex
            data = endpoint.insert_empty_state(f"sse sample {i}", "demo-chat", metadata)
            started = time.time()
            http.post(client.sse_data_url, json={"data": list(data), "fn_index": endpoint.fn_index,
                                                  "session_hash": session, "event_data": None,
                                                  "trigger_id": None}).raise_for_status()
            first = None
            channel_id = None
            with http.stream("GET", client.sse_url, params={"session_hash": session}) as resp:
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    found = CHANNEL.search(line)
                    channel_id = channel_id or (found.group(1) if found else None)
                    msg = json.loads(line[5:])
                    if first is None and msg.get("msg") == "process_generating" and '"You' in line:
                        first = time.time()
                    if msg.get("msg") == "process_completed":
                        break
            assert first is not None and channel_id is not None, "no partial answer"
            if i:
                total.append((first - started) * 1000)
                from_created.append((first - created_at(api_base, channel_id)) * 1000)
    return total, from_created


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": round(statistics.median(ordered), 1),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
            "min": round(ordered[0], 1), "n": len(ordered)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 samples per path")
    parser.add_argument("--samples", type=int, help="samples per path (default 20; quick 5)")
    parser.add_argument("--first-token-ms", type=float, default=0.0, help="scripted provider delay")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    args = parser.parse_args(argv)
    n = args.samples or (5 if args.quick else 20)
    scripted = {"first_token_ms": args.first_token_ms, "tokens_per_second": 200}

    gw_port, ui_port = free_port(), free_port()
    api_base = f"http://127.0.0.1:{gw_port}"
    gateway = Proc([sys.executable, "-m", "modelriver", "dev", "--port", str(gw_port), "--api-key", API_KEY],
                   {})
    app: Proc | None = None
    started = time.perf_counter()
    try:
        gateway.wait_for("modelriver dev ready on")
        app = Proc([sys.executable, str(DEMO)],
                   {"MODELRIVER_API_BASE": api_base, "MODELRIVER_API_KEY": API_KEY,
                    "GRADIO_SERVER_PORT": str(ui_port), "GRADIO_SERVER_NAME": "127.0.0.1",
                    "GRADIO_ANALYTICS_ENABLED": "False"})
        app.wait_for("Running on local URL")
        total: dict[str, list[float]] = {}
        created: dict[str, list[float]] = {}
        total["core"], created["core"] = core_samples(api_base, n, scripted)
        total["gradio"], created["gradio"] = gradio_samples(
            f"http://127.0.0.1:{ui_port}/", api_base, n, scripted)
        total["gradio_sse"], created["gradio_sse"] = sse_samples(
            f"http://127.0.0.1:{ui_port}/", api_base, n, scripted)
    finally:
        if app is not None:
            app.stop()
        gateway.stop()
    elapsed = time.perf_counter() - started

    by_created = {name: stats(samples) for name, samples in created.items()}
    by_total = {name: stats(samples) for name, samples in total.items()}
    core = by_created["core"]["p50"]
    over = round(by_created["gradio"]["p50"] - core, 1)
    over_sse = round(by_created["gradio_sse"]["p50"] - core, 1)
    summary = [
        {"metric": "TTFT p50, core client (request created → first token)", "measured": f"{core} ms",
         "goal": None, "met": None},
        {"metric": "gradio_client: request created → first partial seen, p50 minus core",
         "measured": f"{over:+} ms", "goal": f"<= {GOAL_MS:.0f} ms", "met": over <= GOAL_MS},
        {"metric": "Gradio's SSE read directly: request created → first partial, p50 minus core "
                   "(the server side, without gradio_client's 50 ms polling)",
         "measured": f"{over_sse:+} ms", "goal": None, "met": None},
        {"metric": "gradio_client: submit → first partial seen, p50 (includes Gradio's queue)",
         "measured": f"{by_total['gradio']['p50']} ms", "goal": None, "met": None},
        {"metric": "core client: call → first token, p50 (includes creating the request)",
         "measured": f"{by_total['core']['p50']} ms", "goal": None, "met": None},
    ]
    if args.json:
        print(json.dumps({"name": "gradio_ttft", "seconds": round(elapsed, 1), "samples": n,
                          "first_token_ms": args.first_token_ms, "from_created": by_created,
                          "from_start": by_total, "raw": {"from_created": created, "from_start": total},
                          "summary": summary,
                          "notes": f"p50 of {n} samples per path, first_token_ms={args.first_token_ms:g}; "
                                   "'request created' is the gateway's created_at; one warm-up each"}))
    else:
        print(f"gradio_ttft: {n} samples per path, first_token_ms={args.first_token_ms:g} "
              f"({elapsed:.0f} s)\n")
        print("| path | created → seen p50 ms | p90 ms | over core p50 | start → seen p50 ms | p90 ms |")
        print("|---|---|---|---|---|---|")
        for name, row in by_created.items():
            extra = "—" if name == "core" else f"{row['p50'] - core:+.1f} ms"
            tot = by_total[name]
            print(f"| {name} | {row['p50']} | {row['p90']} | {extra} | {tot['p50']} | {tot['p90']} |")
        verdict = "met" if over <= GOAL_MS else "MISSED"
        print(f"\ngradio within {GOAL_MS:.0f} ms of core (from request creation): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
