"""Issue 18 in real Chromium on a real `streamlit run` of the demo and a real gateway: a structured
answer streams as prose with its card filling in (never raw JSON), in both modes; a failover that
continues never shortens the answer; ``process`` shows loading while tokens stream.

The page samples itself every 45 ms, each time in the next animation frame (what a user could see:
the page as it is painted), from the first token to the value the demo shows once ``st_modelriver``
returned.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from modelriver import AIResponse, ModelRiver
from support import RESTART_LATE_CONFIG, ROOT, Gateway, Process, free_port, start_gateway
from support.upstreams import Upstream

pytestmark = pytest.mark.browser

MODELRIVER = pytest.mark.parametrize("upstream", ["modelriver"], indirect=True)
DEMO = ROOT / "demo_projects" / "streamlit_chat" / "app.py"

# Samples the answer's text, its card and the steps every 45 ms until the demo shows the value.
SAMPLER = r"""
window.mrSamples = [];
window.mrSample = () => {
  // The mount whose text is drawn (a rerun may hold a second, not yet laid-out mount a moment:
  // the user sees the drawn one), else the last.
  let root = null, hosts = 0, hidden = "";
  for (const host of document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')) {
    const r = host.shadowRoot && host.shadowRoot.querySelector('[data-testid="modelriver-stream"]');
    if (!r) continue;
    hosts += 1;
    const drawn = (x) => x.querySelector('[data-testid="modelriver-text"]').getBoundingClientRect().height > 0;
    if (!root || !drawn(root) || drawn(r)) root = r;
  }
  // Why a mount is not drawn: its first ancestor without a box.
  for (let el = root && root.getRootNode().host; el; el = el.parentElement) {
    if (el.getBoundingClientRect().height === 0) {
      hidden = `${el.tagName}[${el.dataset.testid || el.className}] display=${getComputedStyle(el).display}`;
      break;
    }
  }
  const pick = (sel) => { const all = document.querySelectorAll(sel); return all[all.length - 1] || null; };
  let text = null, card = "", steps = {}, top = null, height = 0;
  // Where the answer's text is drawn: its top within its chat message, and its height (0: not drawn).
  const place = (el) => {
    const box = el.getBoundingClientRect();
    const message = (el.getRootNode().host || el).closest('[data-testid="stChatMessage"]');  // out of a shadow root
    [top, height] = [box.top - (message ? message.getBoundingClientRect().top : 0), box.height];
  };
  if (root) {
    const t = root.querySelector('[data-testid="modelriver-text"]');
    text = t.textContent;
    place(t);
    const c = root.querySelector('[data-testid="modelriver-card"]');
    card = c && !c.hidden ? c.innerText : "";
    for (const li of root.querySelectorAll("li[data-step]")) steps[li.dataset.step] = li.dataset.status;
  } else {
    const md = pick('[class*="st-key-modelriver-text-"] [data-testid="stMarkdownContainer"]');
    text = md ? md.innerText.replace(/\s*▌$/, "") : null;
    if (md) place(md);
    const c = pick('[class*="st-key-modelriver-card-"]');
    card = c ? c.innerText : "";
    const messages = document.querySelectorAll('[data-testid="stChatMessage"]');
    const last = messages[messages.length - 1];
    // The live steps, below the text (a collapsed status shows none).
    const shownText = last ? last.innerText : "";
    if (shownText.includes("Processing AI request")) {
      const icon = /(check_circle|radio_button_unchecked|progress_activity|cancel)\s*Processing AI request/;
      const m = shownText.match(icon);
      if (m) steps.process = {check_circle: "success", radio_button_unchecked: "pending",
                              progress_activity: "loading", cancel: "error"}[m[1]];
    }
  }
  const returned = !!document.querySelector('[class*="st-key-returned-"]');
  return {text, card, steps, returned, top, height, hosts, hidden};
};
// Each sample in the next animation frame, just before it is painted: the page as the user sees it,
// never a state between two of React's commits that one frame paints as one.
setInterval(() => requestAnimationFrame(() => {
  const s = window.mrSample();
  if (window.mrSamples.length < 20000) window.mrSamples.push(s);
}), 45);
"""


def oracle(gateway: Gateway, workflow: str, prompt: str) -> AIResponse:
    """The gateway's own answer to the prompt, unpaced (the scripted answer depends on the prompt)."""
    with ModelRiver(gateway.api_key, api_base=gateway.url) as client, \
            client.stream(workflow, [{"role": "user", "content": prompt}],
                          metadata={"scripted": {"tokens_per_second": 0}}) as stream:
        response = stream.wait()
    assert response.status == "success", response
    return response


def run(page: Any, app: Any, *, mode: str, workflow: str, tps: float, prompt: str,
        during: Callable[[Any], None] | None = None) -> list[dict[str, Any]]:
    """Ask the demo, return the page's samples from before the question to the returned value
    (``during``: done with the page once the question is asked)."""
    page.add_init_script(SAMPLER)
    page.goto(f"{app.url}/?mode={mode}&tps={tps}&workflow={workflow}")
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)
    page.evaluate("window.mrSamples.length = 0")
    page.get_by_test_id("stChatInputTextArea").fill(prompt)
    page.keyboard.press("Enter")
    if during is not None:
        during(page)
    page.wait_for_function("() => mrSample().returned", timeout=60_000, polling=100)
    page.wait_for_function("(n) => mrSamples.length > n", arg=len(page.evaluate("mrSamples")) + 2)
    return list(page.evaluate("mrSamples"))


def norm(text: str) -> str:
    return " ".join(text.split())


@MODELRIVER
@pytest.mark.parametrize("mode", ["component", "server"])
def test_a_structured_answer_streams_as_prose_and_its_card_fills_in(
        mode: str, upstream: Upstream, demo_app: Any, page: tuple[Any, Any]) -> None:
    browser_page, _ = page
    prompt = f"Tell me about rivers in {mode} mode"
    want = oracle(upstream.gateway, "demo-structured", prompt).data
    assert isinstance(want, dict)
    samples = run(browser_page, demo_app, mode=mode, workflow="demo-structured", tps=12, prompt=prompt)
    live = [s for s in samples if not s["returned"]]
    for sample in samples:  # never the answer's JSON, in the text nor the card
        shown = (sample["text"] or "") + sample["card"]
        assert '{"' not in shown and '"reply"' not in shown and '"summary"' not in shown, sample
    texts = [norm(s["text"]) for s in live if s["text"]]
    growing = [t for t, _ in itertools.groupby(texts) if t != norm(want["reply"])]
    assert len(growing) >= 3, texts
    assert all(norm(want["reply"]).startswith(t) for t in growing), texts
    assert any(str(want["summary"]) in norm(s["card"]) for s in live), "the card filled in only at the end"
    assert any(s["text"] and s["steps"].get("process") == "loading" for s in live), \
        "process was not loading while tokens streamed"
    final = samples[-1]
    assert norm(final["text"]) == norm(want["reply"])
    assert norm(str(want["summary"])) in norm(final["card"])
    for topic in want["topics"]:
        assert topic in final["card"]
    log = [r for r in upstream.gateway.requests() if r["prompt"] == prompt and r["status"] == "success"]
    assert len(log) == 2  # the oracle's and the page's: the page's answer is the gateway's


@MODELRIVER
@pytest.mark.parametrize("mode", ["component", "server"])
def test_a_continuing_failover_never_shortens_the_answer(
        mode: str, upstream: Upstream, demo_app: Any, page: tuple[Any, Any]) -> None:
    browser_page, _ = page
    prompt = f"Fail over in {mode} mode"
    want = oracle(upstream.gateway, "demo-failover", prompt).content
    samples = run(browser_page, demo_app, mode=mode, workflow="demo-failover", tps=25, prompt=prompt)
    texts = [norm(s["text"] or "") for s in samples]
    first = next(i for i, t in enumerate(texts) if t)
    for before, after in itertools.pairwise(texts[first:]):
        assert len(after) >= len(before), (before, after)
    assert texts[-1] == norm(want)


def assert_steady(samples: list[dict[str, Any]], want: str) -> None:
    """From the first token drawn to the returned value: the text never blanks nor shortens, ends as
    ``want``, and stays in one place (its top within its chat message moves 4 px at most)."""
    texts = [norm(s["text"] or "") for s in samples]
    first = next(i for i, t in enumerate(texts) if t)
    for index, (before, after) in enumerate(itertools.pairwise(texts[first:])):
        assert after and len(after) >= len(before), (index, before, after)
    assert texts[-1] == norm(want)
    # Drawn, and in one place, from the first token drawn to the final rendering: the text neither
    # vanishes (a laid-out box) nor moves when the status appears or collapses.
    shown = next(i for i, s in enumerate(samples) if s["text"] and s["height"])
    assert samples[-1]["returned"] and not samples[shown]["returned"]
    tops = [round(top) for top, _ in itertools.groupby(s["top"] for s in samples[shown:])]  # for the message
    for index, sample in enumerate(samples[shown:], start=shown):
        assert sample["height"] > 0 and abs(sample["top"] - samples[shown]["top"]) <= 4, \
            (index - shown, len(samples) - shown, tops, samples[index - 2:index + 3])


@MODELRIVER
def test_component_mode_never_blanks_shortens_nor_moves_the_answer_at_the_end(
        upstream: Upstream, demo_app: Any, page: tuple[Any, Any]) -> None:
    browser_page, _ = page
    prompt = "Hand the answer over without a blank frame"
    want = oracle(upstream.gateway, "demo-chat", prompt).content
    samples = run(browser_page, demo_app, mode="component", workflow="demo-chat", tps=25, prompt=prompt)
    assert_steady(samples, want)


@MODELRIVER
def test_server_mode_never_blanks_shortens_nor_moves_the_answer(
        upstream: Upstream, demo_app: Any, page: tuple[Any, Any]) -> None:
    """Server mode's status comes after the first text, or 100 ms without one; its steps collapse at
    the end; a rerun mid-answer (an unrelated widget) draws the text so far before its status: the
    text stays put through all of it."""
    browser_page, _ = page
    prompt = "Stream the answer in place on the server"
    want = oracle(upstream.gateway, "demo-chat", prompt).content

    def rerun(page: Any) -> None:
        page.wait_for_function("() => (mrSample().text || '').length > 40", polling=20)
        page.get_by_role("button", name="Ping").click()

    samples = run(browser_page, demo_app, mode="server", workflow="demo-chat", tps=25, prompt=prompt,
                  during=rerun)
    assert_steady(samples, want)


@pytest.fixture(scope="module")
def restart_app() -> Iterator[tuple[Gateway, Any]]:
    """A gateway whose demo-failover restarts the answer, and the demo against it (server mode)."""
    gateway = start_gateway("--config", str(RESTART_LATE_CONFIG))
    try:
        port = free_port()
        process = Process.start(
            [sys.executable, "-m", "streamlit", "run", str(DEMO), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
             "--global.developmentMode", "false"],
            env={**gateway.env, "MODELRIVER_WEBHOOK_SECRET": gateway.webhook_secret})
        try:
            process.wait_for(f"127.0.0.1:{port}", timeout=60)
            yield gateway, SimpleNamespace(url=f"http://127.0.0.1:{port}")
        finally:
            process.stop()
    finally:
        gateway.process.stop()


@pytest.mark.parametrize("mode", ["component", "server"])
def test_a_restarting_failover_shows_the_reset(
        mode: str, restart_app: tuple[Gateway, Any], page: tuple[Any, Any]) -> None:
    gateway, app = restart_app
    browser_page, _ = page
    prompt = f"Restart in {mode} mode"
    want = oracle(gateway, "demo-failover", prompt).content
    samples = run(browser_page, app, mode=mode, workflow="demo-failover", tps=20, prompt=prompt)
    texts = [norm(s["text"] or "") for s in samples]
    first = next(i for i, t in enumerate(texts) if t)
    resets = [(a, b) for a, b in itertools.pairwise(texts[first:]) if len(b) < len(a)]
    assert resets, "the restart was not shown"
    assert texts[-1] == norm(want)
    log = gateway.request_log(next(r["channel_id"] for r in gateway.requests()  # newest first: the page's
                                   if r["prompt"] == prompt))
    assert log["status"] == "success" and log["failovers"]
