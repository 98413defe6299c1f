"""Gradio: the first partial answer, ours next to a plain ``gr.ChatInterface`` peer, in one run.

    .venv/bin/python benchmarks/gradio_ttft.py            # 20 rounds
    .venv/bin/python benchmarks/gradio_ttft.py --quick    # 1 round, no warm-up (the CI smoke run)

Processes: `modelriver dev`, one Python process serving both apps (``_gradio_apps.py``, two
ports), Debian's Chromium (Playwright); all started at once and reused for every sample.

* **ours**: ``gradio_modelriver.chat_interface(workflow="demo-chat")`` (defaults: the workflow's
  steps as a thought, then the answer).
* **peer**: a plain ``gr.ChatInterface`` whose async generator streams from the gateway with
  core's ``AsyncModelRiver`` and yields the text so far: what a user writes without this library.

Two observers, each path in turn (ours, peer, peer, ours, ...: interleaved rounds, one warm-up
round not counted), p50 over the rounds:

* **gradio_client**: ``Client(app).submit(prompt, api_name="/chat")``, from before ``submit`` to
  the first output holding the answer's first word (one ``Client`` per app, a new session per
  sample; ``gradio_client`` checks what it received every 50 ms, alike for both).
* **browser**: a page per app; a page script stamps ``performance.now()`` when Enter is pressed in
  the textbox and, from ``MutationObserver`` callbacks, when a new bot message first holds the
  answer's first word (the moment it is in the DOM).

Every request gets the same scripted answer (``TOKENS`` words at 600 tokens/s, the first after
0 ms, so no provider delay hides the overhead). Goal (issue 19): ours / peer ≤ 1.0 for each
observer. The core client alone (call → first token) is reported beside them. ``--json`` prints
one JSON object as the last line (``summary`` rows for ``run_all.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from _procs import free_port
from _ttft import API_KEY, Proc, core_samples

GOAL_RATIO = 1.0
TOKENS = 40
ANSWER = " ".join(f"ans{i}" for i in range(TOKENS))
SCRIPTED = {"first_token_ms": 0, "tokens_per_second": 600, "text": ANSWER}
PATHS = ("ours", "peer")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                 "--disable-backgrounding-occluded-windows"]

PROBE = r"""
(() => {
  window.__ttft = {submitted: null, first: null, done: false};
  let before = 0;
  const answers = (word) => [...document.querySelectorAll('[data-testid="bot"]')]
    .filter((el) => el.textContent.includes(word)).length;
  new MutationObserver(() => {
    const t = window.__ttft;
    if (t.submitted === null || t.done) return;
    if (t.first === null && answers("ans0") > before) t.first = performance.now();
    if (t.first !== null && answers("ans@LAST@") > before) t.done = true;
  }).observe(document, {childList: true, subtree: true, characterData: true});
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target && e.target.tagName === "TEXTAREA") {
      before = answers("ans0");
      window.__ttft = {submitted: performance.now(), first: null, done: false};
    }
  }, true);
})();
""".replace("@LAST@", str(TOKENS - 1))


def client_sampler(url: str) -> Callable[[int], float]:
    """A ``gradio_client`` sample: submit → first output holding the answer's first word, ms."""
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)

    def sample(i: int) -> float:
        client.reset_session()  # a new conversation: the history does not grow
        started = time.perf_counter()
        first = None
        for output in client.submit(f"client sample {i}", api_name="/chat"):
            if first is None and "ans0" in json.dumps(output):
                first = time.perf_counter()
        assert first is not None, "no partial answer"
        return (first - started) * 1000

    return sample


def sse_sampler(url: str) -> Callable[[int], float]:
    """Gradio's SSE stream read directly (httpx, no ``gradio_client``): the server side alone.

    From before the POST that queues the call to the first ``process_generating`` message
    holding the answer's first word, ms.
    """
    import uuid

    import httpx
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)  # for the endpoint's layout only
    endpoint = next(e for e in client.endpoints.values() if e.api_name == "/chat")
    http = httpx.Client(timeout=30)

    def sample(i: int) -> float:
        session = uuid.uuid4().hex
        data = endpoint.insert_empty_state(f"sse sample {i}")
        started = time.perf_counter()
        http.post(client.sse_data_url, json={"data": list(data), "fn_index": endpoint.fn_index,
                                              "session_hash": session, "event_data": None,
                                              "trigger_id": None}).raise_for_status()
        first = None
        with http.stream("GET", client.sse_url, params={"session_hash": session}) as resp:
            for line in resp.iter_lines():
                if first is None and line.startswith("data:") and "ans0" in line:
                    first = time.perf_counter()
                if '"process_completed"' in line:
                    break
        assert first is not None, "no partial answer"
        return (first - started) * 1000

    return sample


def browser_sampler(browser: Any, url: str) -> tuple[Any, Callable[[int], float]]:
    """A browser sample: Enter → a new bot message holding the answer's first word, ms."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.add_init_script(PROBE)
    page.goto(url, wait_until="commit")

    def sample(i: int) -> float:
        page.bring_to_front()
        box = page.locator('textarea[data-testid="textbox"]').first
        box.fill(f"browser sample {i}")
        page.keyboard.press("Enter")
        page.wait_for_function("() => window.__ttft.done")
        page.locator("button.submit-button").wait_for()  # the turn is over
        return float(page.evaluate("() => window.__ttft.first - window.__ttft.submitted"))

    return page, sample


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": round(statistics.median(ordered), 1),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
            "min": round(ordered[0], 1), "n": len(ordered)}


def interleave(samplers: dict[str, Callable[[int], float]], rounds: int, warmup: bool) -> dict[str, list[float]]:
    """Rounds of every path (the order alternates), the first round not counted with ``warmup``."""
    out: dict[str, list[float]] = {name: [] for name in samplers}
    names = list(samplers)
    for r in range(rounds + warmup):
        for name in names if r % 2 == 0 else names[::-1]:
            ms = samplers[name](r)
            if not (warmup and r == 0):
                out[name].append(ms)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, no warm-up")
    parser.add_argument("--rounds", type=int, help="rounds (default 20; quick 1)")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    rounds = args.rounds or (1 if args.quick else 20)
    warmup = not args.quick
    started = time.perf_counter()
    gw_port, ours_port, peer_port = free_port(), free_port(), free_port()
    api_base = f"http://127.0.0.1:{gw_port}"
    gateway = Proc([sys.executable, "-m", "modelriver", "dev", "--port", str(gw_port), "--api-key", API_KEY], {})
    apps = Proc([sys.executable, "benchmarks/_gradio_apps.py", str(ours_port), str(peer_port)],
                {"MODELRIVER_API_BASE": api_base, "MODELRIVER_API_KEY": API_KEY,
                 "BENCH_SCRIPTED": json.dumps(SCRIPTED), "GRADIO_ANALYTICS_ENABLED": "False"})
    urls = {"ours": f"http://127.0.0.1:{ours_port}/", "peer": f"http://127.0.0.1:{peer_port}/"}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        args=CHROMIUM_ARGS)
            try:
                gateway.wait_for("modelriver dev ready on")
                apps.wait_for("apps ready")
                pages = {name: browser_sampler(browser, url) for name, url in urls.items()}
                by_client = interleave({name: client_sampler(url) for name, url in urls.items()}, rounds, warmup)
                by_sse = interleave({name: sse_sampler(url) for name, url in urls.items()}, rounds, warmup)
                for page, _ in pages.values():
                    page.locator('textarea[data-testid="textbox"]').first.wait_for()
                by_browser = interleave({name: sample for name, (_, sample) in pages.items()}, rounds, warmup)
            finally:
                browser.close()
        core_total, _ = core_samples(api_base, max(2, rounds // 2), SCRIPTED)
    finally:
        apps.stop()
        gateway.stop()
    elapsed = time.perf_counter() - started

    result: dict[str, Any] = {"gradio_client": {n: stats(v) for n, v in by_client.items()},
                              "browser": {n: stats(v) for n, v in by_browser.items()},
                              "sse": {n: stats(v) for n, v in by_sse.items()},
                              "core": stats(core_total)}
    ratios = {observer: round(result[observer]["ours"]["p50"] / result[observer]["peer"]["p50"], 2)
              for observer in ("gradio_client", "browser")}
    label = {"gradio_client": "gradio_client: submit → first partial seen",
             "browser": "browser: Enter → first partial shown"}
    summary = []
    for observer, r in ratios.items():
        got = result[observer]
        summary.append({"metric": f"{label[observer]} p50, ours / plain ChatInterface peer "
                                  f"({got['ours']['p50']:g} / {got['peer']['p50']:g} ms)",
                        "measured": f"{r:.2f}", "goal": f"<= {GOAL_RATIO:.1f}", "met": r <= GOAL_RATIO})
    sse = result["sse"]
    summary.append({"metric": "Gradio's SSE read directly (the server side, no gradio_client): POST → first partial "
                              "p50, ours / peer", "measured": f"{sse['ours']['p50']:g} / {sse['peer']['p50']:g} ms "
                              f"= {sse['ours']['p50'] / sse['peer']['p50']:.2f}", "goal": None, "met": None})
    summary.append({"metric": "core client alone: call → first token p50 (creating the request included)",
                    "measured": f"{result['core']['p50']:g} ms", "goal": None, "met": None})
    if args.json:
        print(json.dumps({"name": "gradio_ttft", "seconds": round(elapsed, 1), "rounds": rounds, **result,
                          "ratios": ratios, "raw": {"gradio_client": by_client, "browser": by_browser, "sse": by_sse},
                          "summary": summary,
                          "notes": f"p50 of {rounds} interleaved rounds per observer; ours is "
                                   "chat_interface(workflow=...), the peer a plain gr.ChatInterface streaming "
                                   "with core's AsyncModelRiver (benchmarks/_gradio_apps.py, one process, two "
                                   f"ports); scripted answer {TOKENS} tokens at 600/s, first after 0 ms; "
                                   "browser times from MutationObserver callbacks"}))
        return 0
    print(f"gradio_ttft: {rounds} rounds ({elapsed:.0f} s)\n")
    print("| observer | ours p50 ms | p90 | peer p50 ms | p90 | ours / peer |")
    print("|---|---|---|---|---|---|")
    for observer, r in ratios.items():
        got = result[observer]
        print(f"| {observer} | {got['ours']['p50']} | {got['ours']['p90']} | {got['peer']['p50']} | "
              f"{got['peer']['p90']} | {r:.2f} ({'met' if r <= GOAL_RATIO else 'MISSED'}) |")
    print(f"\nGradio's SSE read directly, POST → first partial p50: ours {result['sse']['ours']['p50']} ms, "
          f"peer {result['sse']['peer']['p50']} ms")
    print(f"core client alone, call → first token p50: {result['core']['p50']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
