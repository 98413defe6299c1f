"""Issue 18 in real Chromium on the real Gradio demo and gateway: a structured answer streams its
reply as prose in the chat bubble with the card filling in beside it, never the answer's raw JSON;
a failover that continues never shortens the answer, and one that restarts (``failover =
"restart"``) shows the reset.

The page samples itself every 45 ms (``setInterval``: what a user could see) until the run ends.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from modelriver import ModelRiver
from support import CHROMIUM_ARGS, RESTART_LATE_CONFIG, Gateway, Process, chromium_path, start_gateway
from support.upstreams import Upstream

from .conftest import DEFAULT_METADATA, Demo, launch_demo, wait_demo

pytestmark = [pytest.mark.browser, pytest.mark.timeout(200)]

TIMEOUT_MS = 30_000
ANSWER = '[data-testid="bot"]:not(:has(.thought-group))'

SAMPLER = """
(selector) => {
  window.mrSamples = [];
  window.mrTimer = setInterval(() => {
    const bots = document.querySelectorAll(selector);
    const chat = document.querySelector(".message-wrap");
    window.mrSamples.push({
      answer: bots.length ? bots[bots.length - 1].innerText.trim() : "",
      chat: chat ? chat.innerText : "",
      running: !!document.querySelector("button.stop-button"),
    });
  }, 45);
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser: Browser, url: str) -> Page:
    """The demo at ``url`` in a fresh context, its chat box ready (close its context after)."""
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    expect(page.locator('textarea[data-testid="textbox"]').first).to_be_editable()
    return page


@pytest.fixture
def page(browser: Browser, demo: Any) -> Iterator[Page]:
    page = open_page(browser, demo.url)
    yield page
    page.context.close()


def ask(page: Page, workflow: str, tokens_per_second: float, prompt: str) -> list[dict[str, Any]]:
    box = page.get_by_label("Request metadata (JSON)")
    if not box.is_visible():
        page.get_by_text("Additional inputs").click()
    box.fill(json.dumps({"scripted": {"tokens_per_second": tokens_per_second}}))
    page.get_by_label("Workflow").click()
    page.locator(f'li[role="option"][aria-label="{workflow}"]').click()
    expect(page.get_by_label("Workflow")).to_have_value(workflow)
    page.evaluate(SAMPLER, ANSWER)
    chat = page.locator('textarea[data-testid="textbox"]').first
    expect(chat).to_be_editable()
    chat.fill(prompt)
    page.locator("button.submit-button").click()
    expect(page.locator("button.stop-button")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("button.submit-button")).to_be_visible(timeout=60_000)
    page.wait_for_function("(n) => mrSamples.length > n", arg=page.evaluate("mrSamples.length") + 2)
    return list(page.evaluate("clearInterval(mrTimer), mrSamples"))


def norm(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.modelriver_only("structured output: the Realm endpoint answers text")
def test_a_structured_answer_streams_as_prose_and_its_card_fills_in(
    page: Page, upstream: Upstream, oracle: Callable[..., Any],
) -> None:
    prompt = "Tell me about rivers, structured"
    want = oracle("demo-structured", prompt).data
    samples = ask(page, "demo-structured", 12, prompt)
    for sample in samples:  # never the answer's raw JSON: in the bubble nor anywhere in the chat
        assert "{" not in sample["answer"] and '"reply"' not in sample["chat"], sample
    live = [s for s in samples if s["running"]]
    growing = [a for a, _ in itertools.groupby(norm(s["answer"]) for s in live if s["answer"])
               if a != norm(want["reply"]) and norm(want["reply"]).startswith(a)]
    assert len(growing) >= 3, [s["answer"] for s in live]
    last_task = norm(want["action_items"][-1]["task"])
    assert any(norm(want["summary"]) in norm(s["chat"]) and last_task not in norm(s["chat"])
               for s in live), ("the card filled in only with the final answer", samples[-1]["chat"])
    assert norm(samples[-1]["answer"]) == norm(want["reply"])
    log = upstream.gateway.requests()
    assert [r["status"] for r in log if r["prompt"] == prompt] == ["success", "success"]


@pytest.mark.modelriver_only("the Realm tests' gateway restarts demo-failover, which Realm refuses "
                              "(tests/gradio/realm_gateway.toml)")
def test_a_continuing_failover_never_shortens_the_answer(
    page: Page, upstream: Upstream, oracle: Callable[..., Any],
) -> None:
    prompt = "Fail over and continue"
    want = oracle("demo-failover", prompt).content
    samples = ask(page, "demo-failover", 25, prompt)
    answers = [norm(s["answer"]) for s in samples]
    first = next(i for i, a in enumerate(answers) if a)
    for before, after in itertools.pairwise(answers[first:]):
        assert len(after) >= len(before), (before, after)
    assert answers[-1] == norm(want)


PROCESS_LOADING = """
() => {
  for (const group of document.querySelectorAll(".message-wrap .children .thought-group")) {
    const title = group.querySelector(".title");
    if (title && title.innerText.includes("Processing AI request")) {
      return title.innerText.includes("running");
    }
  }
  return null;
}
"""


@pytest.mark.modelriver_only("the per-message pace reaches the scripted provider on ModelRiver only")
def test_process_shows_loading_while_tokens_stream(
    page: Page, upstream: Upstream, oracle: Callable[..., Any],
) -> None:
    prompt = "Show me the process step loading"
    want = oracle("demo-chat", prompt).content
    box = page.get_by_label("Request metadata (JSON)")
    if not box.is_visible():
        page.get_by_text("Additional inputs").click()
    box.fill(json.dumps({"scripted": {"tokens_per_second": 8}}))
    chat = page.locator('textarea[data-testid="textbox"]').first
    expect(chat).to_be_editable()
    chat.fill(prompt)
    page.locator("button.submit-button").click()
    expect(page.locator("button.stop-button")).to_be_visible(timeout=TIMEOUT_MS)
    workflow = page.locator(".message-wrap .thought-group").first
    expect(workflow).to_contain_text("Workflow", timeout=TIMEOUT_MS)
    page.wait_for_function(
        """([sel, probe]) => { const b = document.querySelectorAll(sel);
             return b.length && b[b.length - 1].innerText.trim().length > 5 && eval(probe)() === true; }""",
        arg=[ANSWER, PROCESS_LOADING], timeout=TIMEOUT_MS)
    expect(page.locator(ANSWER).last).to_have_text(want, timeout=TIMEOUT_MS)
    page.wait_for_function(f"() => ({PROCESS_LOADING})() === false", timeout=TIMEOUT_MS)


@pytest.fixture(scope="session")
def restart_launched() -> Iterator[tuple[Gateway, str, Process]]:
    """A gateway whose demo-failover restarts the answer, and the demo starting against it."""
    gateway = start_gateway("--config", str(RESTART_LATE_CONFIG))
    try:
        url, process = launch_demo(Upstream("modelriver", gateway), DEFAULT_METADATA)
        try:
            yield gateway, url, process
        finally:
            process.stop()
    finally:
        gateway.process.stop()


@pytest.fixture(scope="module")
def restart_demo(restart_launched: tuple[Gateway, str, Process]) -> tuple[Gateway, Demo]:
    """The restart gateway and its demo, started."""
    gateway, url, process = restart_launched
    return gateway, wait_demo(url, process)


def _restart_test_runs(request: pytest.FixtureRequest) -> bool:
    return any("restart_demo" in getattr(item, "fixturenames", ()) for item in request.session.items)


@pytest.fixture(scope="session", autouse=True)
def _launch_the_restart_demo_early(request: pytest.FixtureRequest) -> None:
    """Start the restart demo before the session's demos wait for theirs (autouse: set up first),
    when its test runs: Gradio takes tens of seconds to import on a loaded machine."""
    if _restart_test_runs(request):
        request.getfixturevalue("restart_launched")


@pytest.fixture(scope="module", autouse=True)
def _wait_for_the_restart_demo(request: pytest.FixtureRequest) -> Iterator[None]:
    """Have it started before the module's first test streams (its import would load the CPU
    the paced tests sample under), and stopped with the module."""
    if not _restart_test_runs(request):
        yield
        return
    gateway, demo = request.getfixturevalue("restart_demo")
    yield
    demo.process.stop()
    gateway.process.stop()


@pytest.mark.modelriver_only("the Realm tests' gateway restarts demo-failover, which Realm refuses "
                              "(tests/gradio/realm_gateway.toml); this test has a ModelRiver gateway of "
                              "its own")
def test_a_restarting_failover_shows_the_reset(
    browser: Browser, restart_demo: tuple[Gateway, Demo], upstream: Upstream,
) -> None:
    gateway, demo = restart_demo
    prompt = "Fail over and restart"
    with ModelRiver(api_key=gateway.api_key, api_base=gateway.url) as client, client.stream(
        "demo-failover", prompt, metadata={"scripted": {"tokens_per_second": 0}}, request_timeout=30,
    ) as stream:
        want = stream.wait().content
    page = open_page(browser, demo.url)
    try:
        samples = ask(page, "demo-failover", 20, prompt)
    finally:
        page.context.close()
    answers = [norm(s["answer"]) for s in samples]
    first = next(i for i, a in enumerate(answers) if a)
    resets = [(a, b) for a, b in itertools.pairwise(answers[first:]) if len(b) < len(a)]
    assert resets, ("the restart was not shown", [a for a, _ in itertools.groupby(answers)])
    assert answers[-1] == norm(want)
    page_request = next(r for r in gateway.requests() if r["prompt"] == prompt)  # newest first
    log = gateway.request_log(page_request["channel_id"])
    assert log["status"] == "success" and log["failovers"], log
