"""Time to first token in a Streamlit page, both modes, next to the bare core client, one run.

    .venv/bin/python benchmarks/streamlit_ttft.py            # 20 samples per path
    .venv/bin/python benchmarks/streamlit_ttft.py --quick    # 5 samples, 0 ms scenario only (~30 s)

Processes: `modelriver dev` and the Streamlit demo (`demo_projects/streamlit_chat/app.py` under
`streamlit run`), each a subprocess; Debian's Chromium driven by Playwright.

* **core**: this process, ``ModelRiver.stream("demo-chat", prompt)``, to the first ``Token``
  event (wall clock, next to the gateway's ``created_at``).
* **component** / **server**: the demo in that mode. A page script stamps ``performance.now()``
  when Enter is pressed in the chat input, then checks the page every animation frame and stamps
  the first frame in which the new answer's text is shown (the component's text in its shadow
  root, or server mode's streamed Markdown), on the browser's clock. It includes what a user
  waits for: the component mount and its socket join (component) or the pump and the element
  deltas (server); the "from Enter" figure adds the Streamlit rerun and the request creation.

Component mode is measured twice, in two demo processes, in alternating halves (same machine
load): as shipped (the demo calls ``freeze_startup_objects()``) and with Streamlit's default
end-of-run GC (``MODELRIVER_DEMO_GC_FREEZE=0``), whose full collection holds the GIL for 70-200 ms
right after the run that mounts the component and so holds its delta back. Stage marks (browser
clock, from the request's creation; component mode as shipped): the Streamlit frame carrying the
component's data arrives, the component's element is added, the component's socket is created,
opens, gets its join reply, gets its first ``tokens`` frame; then the first frame showing text.
They are observed from outside the component (a ``WebSocket`` subclass and a ``MutationObserver``
installed by the page script), so the component runs unmodified.

Every path uses the same workflow and scripted provider settings. Two scenarios, each with its
own demo processes: the provider's first token after 0 ms (nothing hides the adapter's overhead)
and after 300 ms (a typical hosted model; ``--first-token-ms 0,300`` by default). One warm-up
request per path is not counted. Reported per path: time from the gateway creating the request
(its request log's ``created_at``) to the first token shown, next to the core client's, and the
user-perceived time from Enter (which adds Streamlit's rerun). Goal: component mode's p50 within
50 ms of core's. ``--json`` prints one JSON object as the last line (``summary`` rows for
``run_all.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _ttft import API_KEY, Proc, core_samples, created_at, free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_projects" / "streamlit_chat" / "app.py"
GOAL_MS = 50.0
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PROBE = r"""
(() => {
  window.__ttft = {submitted: null, shown: null};
  let before = new Set();
  // Elements that hold an answer's text: the component's text node, server mode's keyed container.
  const holders = () => {
    const out = [];
    for (const host of document.querySelectorAll('[data-testid^="stBidiComponent"]')) {
      const el = (host.shadowRoot || host).querySelector('[data-testid="modelriver-text"]');
      if (el) out.push([el, el.textContent.length]);
    }
    for (const el of document.querySelectorAll('[class*="st-key-modelriver-text-"]')) {
      const md = el.querySelector('[data-testid="stMarkdownContainer"]');
      out.push([el, md ? md.innerText.replace(/\s*▌$/, "").length : 0]);
    }
    return out;
  };
  const tick = () => {
    const t = window.__ttft;
    if (t.submitted !== null && t.shown === null
        && holders().some(([el, length]) => length > 0 && !before.has(el))) {
      t.shown = performance.now();
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target && e.target.tagName === "TEXTAREA") {
      before = new Set(holders().map(([el]) => el));  // the answers already on the page
      window.__ttft = {submitted: performance.now(), shown: null, marks: {}};
    }
  }, true);
  // Stage marks (first of each per sample, browser clock): the Streamlit frame carrying the
  // component's data, the component's element added, the gateway socket created / open, the join
  // reply, the first tokens frame. Observed from outside: sockets through a WebSocket subclass.
  const mark = (name) => {
    const t = window.__ttft;
    if (t.submitted !== null && t.marks && !(name in t.marks)) t.marks[name] = performance.now();
  };
  const Native = window.WebSocket;
  const decoder = new TextDecoder("latin1");
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const gateway = String(url).includes("/socket/websocket");
      if (gateway) {
        mark("socket_created");
        this.addEventListener("open", () => mark("socket_open"));
      }
      this.addEventListener("message", (event) => {
        const data = typeof event.data === "string" ? event.data
          : event.data instanceof ArrayBuffer ? decoder.decode(event.data) : "";
        if (gateway) {
          if (data.includes('"phx_reply"')) mark("join_reply");
          if (data.includes('"tokens"')) mark("first_tokens_frame");
        } else if (data.includes('"ws_token"')) {
          mark("delta_arrived");
        }
      });
    }
  };
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) {
      if (n.nodeType === 1 && (n.matches('[data-testid^="stBidiComponent"]')
          || n.querySelector('[data-testid^="stBidiComponent"]'))) mark("element_added");
    }
  }).observe(document, {childList: true, subtree: true});
})();
"""

DEFAULT_GC = "component (Streamlit's default GC)"
PAGE_PATHS = ("component", DEFAULT_GC, "server")
STAGES = ("delta_arrived", "element_added", "socket_created", "socket_open", "join_reply",
          "first_tokens_frame")




def page_samples(browser: Any, url: str, api_base: str, mode: str, n: int,
                 stages: dict[str, list[float]]) -> tuple[list[float], list[float]]:
    """(Enter → first token shown, request created → first token shown) in ms, per sample.

    ``stages`` gets each stage mark's time from the request's creation (ms), per sample.
    """
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.add_init_script(PROBE)
    page.goto(f"{url}/?mode={mode}&workflow=demo-chat")
    box = page.get_by_test_id("stChatInputTextArea")
    total, from_created = [], []
    try:
        for i in range(n + 1):
            box.wait_for()
            box.fill(f"{mode} sample {i}")
            page.keyboard.press("Enter")
            page.wait_for_function("() => window.__ttft.shown !== null")
            ttft, shown_at, marks = page.evaluate(
                "() => [window.__ttft.shown - window.__ttft.submitted,"
                " (performance.timeOrigin + window.__ttft.shown) / 1000,"
                " Object.fromEntries(Object.entries(window.__ttft.marks).map("
                "   ([k, v]) => [k, (performance.timeOrigin + v) / 1000]))]")
            caption = page.wait_for_function(
                "(i) => { const all = document.querySelectorAll('[class*=\"st-key-returned-\"]');"
                " return all.length > i && all[all.length - 1].innerText; }", arg=i).json_value()
            channel_id = str(caption).rsplit("channel ", 1)[1].strip()
            if i:
                created = created_at(api_base, channel_id)
                total.append(float(ttft))
                from_created.append((shown_at - created) * 1000)
                for name, at in marks.items():
                    stages.setdefault(name, []).append((at - created) * 1000)
    finally:
        context.close()
    return total, from_created


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": round(statistics.median(ordered), 1),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
            "min": round(ordered[0], 1), "n": len(ordered)}


def start_demo(api_base: str, scripted: dict[str, Any], **env: str) -> tuple[Proc, str]:
    st_port = free_port()
    app = Proc([sys.executable, "-m", "streamlit", "run", str(DEMO), "--server.port", str(st_port),
                "--server.address", "127.0.0.1", "--server.headless", "true",
                "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
               {"MODELRIVER_API_BASE": api_base, "MODELRIVER_API_KEY": API_KEY,
                "MODELRIVER_DEMO_METADATA": json.dumps({"scripted": scripted}),
                "MODELRIVER_DEMO_LOG_LEVEL": "WARNING", **env})
    app.wait_for(f"127.0.0.1:{st_port}")
    return app, f"http://127.0.0.1:{st_port}"


def run_scenario(first_token_ms: float, n: int, api_base: str, chromium: str) -> dict[str, Any]:
    """Core, component and server samples with the provider's first token after ``first_token_ms``.

    Component mode is measured twice, in two demo processes: as shipped (``freeze_startup_objects``)
    and with Streamlit's default end-of-run GC (``MODELRIVER_DEMO_GC_FREEZE=0``), their samples
    taken in alternating halves so that both see the same machine load.
    """
    from playwright.sync_api import sync_playwright

    scripted = {"first_token_ms": first_token_ms, "tokens_per_second": 200}
    total: dict[str, list[float]] = {}
    created: dict[str, list[float]] = {}
    stages: dict[str, list[float]] = {}
    apps: list[Proc] = []
    try:
        app, url = start_demo(api_base, scripted)
        apps.append(app)
        default_gc, default_gc_url = start_demo(api_base, scripted, MODELRIVER_DEMO_GC_FREEZE="0")
        apps.append(default_gc)
        total["core"], created["core"] = core_samples(api_base, n, scripted)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                halves = [n - n // 2, n // 2]
                for half in halves:
                    for name, page_url, mode in (("component", url, "component"),
                                                 (DEFAULT_GC, default_gc_url, "component")):
                        t, c = page_samples(browser, page_url, api_base, mode, half,
                                            stages if name == "component" else {})
                        total.setdefault(name, []).extend(t)
                        created.setdefault(name, []).extend(c)
                total["server"], created["server"] = page_samples(browser, url, api_base, "server", n, {})
            finally:
                browser.close()
    finally:
        for app in apps:
            app.stop()
    by_created = {name: stats(samples) for name, samples in created.items()}
    by_total = {name: stats(samples) for name, samples in total.items()}
    core = by_created["core"]["p50"]
    stage_p50 = {name: round(statistics.median(stages[name]), 1) for name in STAGES if stages.get(name)}
    stage_p50["first_token_shown"] = by_created["component"]["p50"]
    return {"first_token_ms": first_token_ms, "from_created": by_created, "from_enter": by_total,
            "component_stages": stage_p50,
            "over_core": {mode: round(by_created[mode]["p50"] - core, 1) for mode in PAGE_PATHS},
            "raw": {"from_created": created, "from_enter": total}}


def summary_rows(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    delay = f"first token after {scenario['first_token_ms']:g} ms"
    core = scenario["from_created"]["core"]["p50"]
    over = scenario["over_core"]
    enter = scenario["from_enter"]
    return [
        {"metric": f"{delay}: core client TTFT p50 (request created → first token)",
         "measured": f"{core} ms", "goal": None, "met": None},
        {"metric": f"{delay}: component mode, first token shown, p50 minus core",
         "measured": f"{over['component']:+} ms", "goal": f"<= {GOAL_MS:.0f} ms",
         "met": over["component"] <= GOAL_MS},
        {"metric": f"{delay}: component mode without freeze_startup_objects() (Streamlit's default GC), "
                   "p50 minus core", "measured": f"{over[DEFAULT_GC]:+} ms", "goal": None, "met": None},
        {"metric": f"{delay}: server mode, first token shown, p50 minus core",
         "measured": f"{over['server']:+} ms", "goal": None, "met": None},
        {"metric": f"{delay}: component mode stages, p50 ms from request created: Streamlit delta arrives / "
                   "element added / socket created / open / join reply / first tokens frame / first token shown",
         "measured": " / ".join(f"{v:g}" for v in scenario["component_stages"].values()), "goal": None,
         "met": None},
        {"metric": f"{delay}: Enter → first token shown p50, component / server (with the rerun)",
         "measured": f"{enter['component']['p50']} / {enter['server']['p50']} ms", "goal": None, "met": None},
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 samples per path")
    parser.add_argument("--samples", type=int, help="samples per path (default 20; quick 5)")
    parser.add_argument("--first-token-ms", type=lambda v: [float(x) for x in v.split(",")],
                        default=None, help="provider delays to run, comma-separated (default 0,300; quick 0)")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    args = parser.parse_args(argv)
    n = args.samples or (5 if args.quick else 20)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    gw_port = free_port()
    api_base = f"http://127.0.0.1:{gw_port}"
    gateway = Proc([sys.executable, "-m", "modelriver", "dev", "--port", str(gw_port), "--api-key", API_KEY],
                   {})
    started = time.perf_counter()
    try:
        gateway.wait_for("modelriver dev ready on")
        delays = args.first_token_ms or ([0.0] if args.quick else [0.0, 300.0])
        scenarios = [run_scenario(delay, n, api_base, chromium) for delay in delays]
    finally:
        gateway.stop()
    elapsed = time.perf_counter() - started
    summary = [row for scenario in scenarios for row in summary_rows(scenario)]
    if args.json:
        print(json.dumps({"name": "streamlit_ttft", "seconds": round(elapsed, 1), "samples": n,
                          "scenarios": scenarios, "summary": summary,
                          "notes": f"p50 of {n} samples per path; page times on the browser's clock to the "
                                   "first frame showing text; 'request created' is the gateway's created_at. "
                                   "Streamlit's end-of-run gc.collect(2) held the component's delta back by "
                                   "70-200 ms (the default-GC row); freeze_startup_objects() makes it ~2 ms. "
                                   "What remains is in component_stages: Streamlit's frontend (delta dispatch "
                                   "behind the rerun's other deltas, element mount, module call) and a second "
                                   "socket's handshake; a real model's first-token delay hides it."}))
        return 0
    print(f"streamlit_ttft: {n} samples per path ({elapsed:.0f} s)")
    for scenario in scenarios:
        core = scenario["from_created"]["core"]["p50"]
        print(f"\nprovider's first token after {scenario['first_token_ms']:g} ms\n")
        print("| path | created → shown p50 ms | p90 ms | over core p50 | Enter → shown p50 ms | p90 ms |")
        print("|---|---|---|---|---|---|")
        for name, row in scenario["from_created"].items():
            extra = "—" if name == "core" else f"{row['p50'] - core:+.1f} ms"
            tot = scenario["from_enter"][name]
            print(f"| {name} | {row['p50']} | {row['p90']} | {extra} | {tot['p50']} | {tot['p90']} |")
        verdict = "met" if scenario["over_core"]["component"] <= GOAL_MS else "MISSED"
        print(f"\ncomponent mode within {GOAL_MS:.0f} ms of core: {verdict}")
        print("component mode stages, p50 ms after the request was created: " + ", ".join(
            f"{name} {at}" for name, at in scenario["component_stages"].items()))
    return 0

if __name__ == "__main__":
    sys.exit(main())
