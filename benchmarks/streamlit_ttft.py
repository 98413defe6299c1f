"""Streamlit: Enter → first token shown, and tokens shown per second, ours next to a hand-written peer.

    .venv/bin/python benchmarks/streamlit_ttft.py            # 20 rounds, first token after 0 and 300 ms
    .venv/bin/python benchmarks/streamlit_ttft.py --quick    # 1 round after the warm-up, 0 ms (the CI smoke run)

Processes: `modelriver dev`, two `streamlit run` apps and Debian's Chromium (Playwright), all
started at once and reused for every sample:

* **peer** (``_peer_streamlit_app.py``): what a competent user writes without this library: core's
  sync client streams the answer inside the script run and ``st.write_stream`` shows it.
* **component** / **server** (``_ours_streamlit_app.py``, ``?mode=``): the same page with
  ``st_modelriver(...)`` (defaults otherwise) in each mode; component mode: the browser streams
  from the gateway's socket; server mode: this process streams into native elements.

Each path has its own page (browser context). Rounds are interleaved (peer, component, server;
the order rotates each round) so that all see the same machine load; p50s over the rounds, one
warm-up round not counted. A page script stamps ``performance.now()`` when Enter is pressed in
the chat input and, from ``MutationObserver`` callbacks (shadow roots included), when the new
answer's text first appears and when all of it is there; so **Enter → first token shown** is what
a user waits for (Streamlit's rerun, the request's creation, the stream), and **tokens shown per
second** is the answer's tokens over the time from its first to its last shown. Every request
gets the same scripted answer (600 short words at ``TOKENS_PER_SECOND``), its first token after
0 ms (nothing hides the overhead) and, in full runs, 300 ms (a hosted model).

Goal (issue 19): each mode's Enter → first token shown p50 at most 1.0 times the peer's. Also reported:
request created (the gateway's ``created_at``) → first token shown for each path and the core
client alone, and component mode's stages (browser clock, from the request's creation: the
Streamlit frame carrying the component's data, the element added, the gateway socket created,
open, joined, its first ``tokens`` frame), observed from outside the component (a ``WebSocket``
subclass, a ``MutationObserver``). ``--json`` prints one JSON object as the last line
(``summary`` rows for ``run_all.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _procs import free_port
from _ttft import API_KEY, Proc, core_samples, created_at

HERE = Path(__file__).resolve().parent
PEER_APP = HERE / "_peer_streamlit_app.py"
OURS_APP = HERE / "_ours_streamlit_app.py"
GOAL_RATIO = 1.0
TOKENS_PER_SECOND = 600


def answer(tokens: int) -> str:
    """The scripted answer: ``tokens`` short words."""
    return " ".join(f"w{i}" for i in range(tokens))

PATHS = ("peer", "component", "server")
STAGES = ("delta_arrived", "element_added", "socket_created", "socket_open", "join_reply",
          "first_tokens_frame")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                 "--disable-backgrounding-occluded-windows"]

PROBE = r"""
((expect) => {
  const fresh = () => ({submitted: null, first: null, half: null, halfLength: 0, complete: null, marks: {}});
  window.__ttft = fresh();
  let before = new Set();
  const roots = new Set();  // shadow roots (components v2 isolate their DOM in one)
  // The answers' text holders: the component's text, server mode's keyed container, the peer's.
  const text = (el) => el.textContent.replace(/\s*▌$/, "").length;
  // [identity, element]: the identity outlives Streamlit re-creating an element (a rerun may), so
  // an answer already on the page at Enter is never taken for the new one.
  const holders = () => {
    const out = [];
    for (const root of roots) {
      if (!root.host.isConnected) { roots.delete(root); continue; }
      for (const el of root.querySelectorAll('[data-testid="modelriver-text"]')) {
        out.push(["channel:" + (el.closest("[data-channel]")?.dataset.channel || ""), el]);
      }
    }
    for (const box of document.querySelectorAll('[class*="st-key-modelriver-text-"], [class*="st-key-peer-text-"]')) {
      const key = [...box.classList].find((c) => c.startsWith("st-key-"));
      const md = box.querySelector('[data-testid="stMarkdownContainer"]');
      if (md) out.push([key, md]);
    }
    return out;
  };
  const check = () => {
    const t = window.__ttft;
    if (t.submitted === null || t.complete !== null) return;
    for (const [id, el] of holders()) {
      if (before.has(id)) continue;
      const length = text(el);
      if (length === 0) continue;
      const now = performance.now();
      if (t.first === null) t.first = now;
      if (t.half === null && length >= expect / 2) { t.half = now; t.halfLength = length; }
      if (length >= expect) t.complete = now;
    }
  };
  const observer = new MutationObserver(check);
  const options = {childList: true, subtree: true, characterData: true};
  observer.observe(document, options);
  const attachShadow = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) {
    const root = attachShadow.call(this, init);
    roots.add(root);
    observer.observe(root, options);
    return root;
  };
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target && e.target.tagName === "TEXTAREA") {
      before = new Set(holders().map(([id]) => id));  // the answers already on the page
      window.__ttft = {...fresh(), submitted: performance.now()};
    }
  }, true);
  // Stage marks (first of each per sample): the Streamlit frame carrying the component's data,
  // the component's element added, the gateway socket created / open, the join reply, the
  // first tokens frame. Sockets are observed through a WebSocket subclass.
  const mark = (name) => {
    const t = window.__ttft;
    if (t.submitted !== null && !(name in t.marks)) t.marks[name] = performance.now();
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
        } else if (data.includes("stream.js") || data.includes("modelriver-link")) {
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
})
"""


class Page:
    """One path's page; ``sample()`` sends a prompt and times the answer."""

    def __init__(self, browser: Any, name: str, url: str, text: str) -> None:
        self.name, self.url, self.length = name, url, len(text)
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.page.add_init_script(f"{PROBE}({len(text)})")
        self.sent = 0

    def open(self, scripted: dict[str, Any]) -> None:
        """(Re)load the page for a scenario (a new session, an empty history); ``ready()`` waits."""
        self.page.goto(f"{self.url}&scripted={urllib.parse.quote(json.dumps(scripted))}", wait_until="commit")
        self.sent = 0

    def ready(self) -> None:
        self.page.get_by_test_id("stChatInputTextArea").wait_for()

    def send(self) -> None:
        """Type a prompt and press Enter (``collect()`` waits for the answer)."""
        page = self.page
        page.bring_to_front()
        box = page.get_by_test_id("stChatInputTextArea")
        box.wait_for()
        box.fill(f"{self.name} sample {self.sent}")
        page.keyboard.press("Enter")

    def sample(self, api_base: str) -> dict[str, Any]:
        """One turn (``send()`` then ``collect()``)."""
        self.send()
        return self.collect(api_base)

    def collect(self, api_base: str) -> dict[str, Any]:
        """The turn's Enter → first token shown (ms), the answer's second half (ms, share of the
        text), request created → first token shown (ms), stage marks (ms from created)."""
        page = self.page
        page.wait_for_function("() => window.__ttft.complete !== null")
        first, half_ms, half_share, first_at, marks = page.evaluate(
            "(length) => { const t = window.__ttft; return [t.first - t.submitted, t.complete - t.half,"
            " 1 - t.halfLength / length, (performance.timeOrigin + t.first) / 1000,"
            " Object.fromEntries(Object.entries(t.marks).map(([k, v]) => [k, (performance.timeOrigin + v) / 1000]))];"
            " }", self.length)
        # The turn's caption (both apps key it by the history's length: 2 messages a turn).
        caption = page.locator(f".st-key-returned-{2 * self.sent + 1}").inner_text()
        self.sent += 1
        created = created_at(api_base, str(caption).rsplit("channel ", 1)[1].strip())
        return {"enter_to_first": float(first), "half_ms": float(half_ms), "half_share": float(half_share),
                "created_to_first": (first_at - created) * 1000,
                "stages": {k: (v - created) * 1000 for k, v in marks.items()}}


def stats(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    if not ordered:
        return {"p50": None, "p90": None, "min": None, "n": 0}
    return {"p50": round(statistics.median(ordered), 1),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
            "min": round(ordered[0], 1), "n": len(ordered)}


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def ratio(ours: dict[str, Any] | None, peer: dict[str, Any] | None) -> float | None:
    """p50 over p50 (None when either has no samples)."""
    if not ours or not peer or ours["p50"] is None or not peer["p50"]:
        return None
    return round(float(ours["p50"]) / float(peer["p50"]), 2)


def run_scenario(pages: dict[str, Page], api_base: str, first_token_ms: float, rounds: int,
                 tokens: int) -> dict[str, Any]:
    """Interleaved rounds of every path (the order rotates), a warm-up round first (not counted)."""
    scripted = {"first_token_ms": first_token_ms, "tokens_per_second": TOKENS_PER_SECOND, "text": answer(tokens)}
    for page in pages.values():
        page.open(scripted)
    for page in pages.values():
        page.ready()
    raw: dict[str, dict[str, list[float]]] = {
        name: {"enter_to_first": [], "created_to_first": [], "tokens_per_second": []} for name in pages}
    stages: dict[str, list[float]] = {}
    names = list(pages)
    for page in pages.values():  # the warm-up round, all pages at once (cold starts overlap)
        page.send()
    for page in pages.values():
        page.collect(api_base)
    for r in range(1, rounds + 1):
        for name in names[r % len(names):] + names[:r % len(names)]:
            got = pages[name].sample(api_base)
            into = raw[name]
            into["enter_to_first"].append(got["enter_to_first"])
            into["created_to_first"].append(got["created_to_first"])
            # tokens shown per second over the answer's second half (the first may be a catch-up;
            # none when the whole second half came in one frame)
            if got["half_ms"] >= 1.0 and got["half_share"] > 0:
                into["tokens_per_second"].append(tokens * got["half_share"] / got["half_ms"] * 1000)
            if name == "component":
                for stage, at in got["stages"].items():
                    stages.setdefault(stage, []).append(at)
    _, core_created = core_samples(api_base, max(2, rounds // 2), scripted)
    out: dict[str, Any] = {"first_token_ms": first_token_ms, "rounds": rounds, "tokens": tokens,
                           "paths": {name: {k: stats(v) for k, v in by.items()} for name, by in raw.items()},
                           "core_created_to_first": stats(core_created),
                           "component_stages": {s: round(statistics.median(stages[s]), 1)
                                                for s in STAGES if stages.get(s)},
                           "raw": raw}
    peer = out["paths"]["peer"]
    out["ratios"] = {name: {key: ratio(p.get(key), peer.get(key)) for key in ("enter_to_first", "tokens_per_second")}
                     for name, p in out["paths"].items() if name != "peer"}
    return out


def summary_rows(s: dict[str, Any]) -> list[dict[str, Any]]:
    delay = f"first token after {s['first_token_ms']:g} ms"
    p, ratios = s["paths"], s["ratios"]
    rows = [{"metric": f"{delay}: Enter → first token shown p50, `st.write_stream` peer",
             "measured": f"{p['peer']['enter_to_first']['p50']} ms", "goal": None, "met": None}]
    for mode in ("component", "server"):
        r = ratios[mode]["enter_to_first"]
        rows.append({"metric": f"{delay}: Enter → first token shown p50, {mode} mode / peer "
                               f"({p[mode]['enter_to_first']['p50']} / {p['peer']['enter_to_first']['p50']} ms)",
                     "measured": fmt(r, ".2f"), "goal": f"<= {GOAL_RATIO:.1f}",
                     "met": None if r is None else r <= GOAL_RATIO})
    rows.append({"metric": f"{delay}: tokens shown per second p50, peer / component / server "
                           f"(2nd half of {s['tokens']} tokens offered at {TOKENS_PER_SECOND}/s; ratios to the peer)",
                 "measured": " / ".join(fmt(p[n]["tokens_per_second"]["p50"], ",.0f") for n in PATHS)
                 + f" ({fmt(ratios['component']['tokens_per_second'], '.2f')}, "
                   f"{fmt(ratios['server']['tokens_per_second'], '.2f')})",
                 "goal": None, "met": None})
    rows.append({"metric": f"{delay}: request created → first token shown p50, peer / component / server "
                           "(core client alone: request created → first token)",
                 "measured": " / ".join(f"{p[n]['created_to_first']['p50']:g}" for n in PATHS)
                 + f" ms ({s['core_created_to_first']['p50']:g} ms)", "goal": None, "met": None})
    if s["component_stages"]:
        rows.append({"metric": f"{delay}: component mode stages, p50 ms from request created: "
                               + " / ".join(s["component_stages"]),
                     "measured": " / ".join(f"{v:g}" for v in s["component_stages"].values()),
                     "goal": None, "met": None})
    return rows


def start_app(app: Path, api_base: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
                 "--server.address", "127.0.0.1", "--server.headless", "true",
                 "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
                 "--global.developmentMode", "false"],
                {"MODELRIVER_API_BASE": api_base, "MODELRIVER_API_KEY": API_KEY})
    return proc, f"http://127.0.0.1:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round after the warm-up, 0 ms, 30 tokens")
    parser.add_argument("--rounds", type=int, help="rounds (default 20; quick 1)")
    parser.add_argument("--first-token-ms", type=lambda v: [float(x) for x in v.split(",")],
                        default=None, help="provider delays to run, comma-separated (default 0,300; quick 0)")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    rounds = args.rounds or (1 if args.quick else 20)
    tokens = 30 if args.quick else 600
    delays = args.first_token_ms or ([0.0] if args.quick else [0.0, 300.0])
    started = time.perf_counter()
    gw_port = free_port()
    api_base = f"http://127.0.0.1:{gw_port}"
    procs = [Proc([sys.executable, "-m", "modelriver", "dev", "--port", str(gw_port), "--api-key", API_KEY], {})]
    try:
        peer, peer_url = start_app(PEER_APP, api_base)
        procs.append(peer)
        ours, ours_url = start_app(OURS_APP, api_base)
        procs.append(ours)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        args=CHROMIUM_ARGS)
            try:
                procs[0].wait_for("modelriver dev ready on")
                peer.wait_for(peer_url.rsplit("/", 1)[1])
                ours.wait_for(ours_url.rsplit("/", 1)[1])
                text = answer(tokens)
                pages = {"peer": Page(browser, "peer", f"{peer_url}/?x=1", text),
                         "component": Page(browser, "component", f"{ours_url}/?mode=component", text),
                         "server": Page(browser, "server", f"{ours_url}/?mode=server", text)}
                scenarios = [run_scenario(pages, api_base, delay, rounds, tokens) for delay in delays]
            finally:
                browser.close()
    finally:
        for proc in reversed(procs):
            proc.stop()
    elapsed = time.perf_counter() - started
    summary = [row for s in scenarios for row in summary_rows(s)]
    if args.json:
        print(json.dumps({"name": "streamlit_ttft", "seconds": round(elapsed, 1), "rounds": rounds,
                          "scenarios": scenarios, "summary": summary,
                          "notes": f"p50 of {rounds} interleaved rounds (peer, component, server; a page each, "
                                   "one Streamlit process for the peer and one for ours); the peer is "
                                   "benchmarks/_peer_streamlit_app.py (core's sync client + st.write_stream), "
                                   "ours benchmarks/_ours_streamlit_app.py (st_modelriver, default options); "
                                   "times on the browser's clock from MutationObserver callbacks; "
                                   "'request created' is the gateway's created_at."}))
        return 0
    print(f"streamlit_ttft: {rounds} rounds ({elapsed:.0f} s)")
    for s in scenarios:
        print(f"\nprovider's first token after {s['first_token_ms']:g} ms\n")
        print("| path | Enter → first shown p50 ms | p90 | / peer | tokens shown/s p50 | / peer "
              "| created → shown p50 ms |")
        print("|---|---|---|---|---|---|---|")
        for name, p in s["paths"].items():
            r = s["ratios"].get(name, {"enter_to_first": 1.0, "tokens_per_second": 1.0})
            print(f"| {name} | {p['enter_to_first']['p50']} | {p['enter_to_first']['p90']} | "
                  f"{fmt(r['enter_to_first'], '.2f')} | {fmt(p['tokens_per_second']['p50'], ',.0f')} | "
                  f"{fmt(r['tokens_per_second'], '.2f')} | {p['created_to_first']['p50']} |")
        print(f"core client, created → first token p50: {s['core_created_to_first']['p50']} ms")
        for mode in ("component", "server"):
            r = s["ratios"][mode]["enter_to_first"]
            print(f"{mode} mode / peer, Enter → first token shown: {fmt(r, '.2f')} "
                  f"({'met' if r is not None and r <= GOAL_RATIO else 'MISSED'}, goal <= {GOAL_RATIO:.1f})")
        print("component mode stages, p50 ms after the request was created: " + ", ".join(
            f"{name} {at}" for name, at in s["component_stages"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
