"""The Gradio demo in Debian's Chromium (Playwright): acceptance 2.

Tokens appear progressively, the step thoughts appear pending and settle to done, stop halts the
answer and the gateway logs the cancel, an error workflow shows Gradio's error toast. Every wait
is on a DOM state or on the gateway's request log. Each test runs on both upstreams (conftest):
ModelRiver, and Realm through the gateway's Realm endpoint (paced by the gateway's config there,
since a Realm call carries no per-message metadata).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from support import CHROMIUM_ARGS, chromium_path
from support.upstreams import Upstream

# The first test also waits for the demo to start (see conftest.wait_demo).
pytestmark = [pytest.mark.browser, pytest.mark.timeout(200)]

CHANNEL = re.compile(r"request ([0-9a-f-]{36})")
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)  # a loaded 2-core machine: bounded, not tight

ANSWER = '[data-testid="bot"]:not(:has(.thought-group))'
"""A bot message that is not a thought: the answer's bubble."""

# Records every distinct text of the newest answer bubble, as it changes.
RECORD_ANSWERS = """
(selector) => {
  window.__answers = [];
  const record = () => {
    const bots = document.querySelectorAll(selector);
    if (!bots.length) return;
    const text = bots[bots.length - 1].innerText.trim();
    const seen = window.__answers;
    if (text && seen[seen.length - 1] !== text) seen.push(text);
  };
  new MutationObserver(record).observe(document.body,
    {subtree: true, childList: true, characterData: true});
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, demo: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(demo.url)
    expect(chat_box(page)).to_be_editable()
    yield page
    context.close()


def set_inputs(page: Page, *, workflow: str | None = None, tokens_per_second: float | None = None) -> None:
    """Fill the "Additional inputs" accordion: the workflow and the request metadata."""
    box = page.get_by_label("Request metadata (JSON)")
    if not box.is_visible():
        page.get_by_text("Additional inputs").click()
    expect(box).to_be_visible()
    if tokens_per_second is not None:
        box.fill(json.dumps({"scripted": {"tokens_per_second": tokens_per_second}}))
    if workflow is not None:
        page.get_by_label("Workflow").click()
        page.locator(f'li[role="option"][aria-label="{workflow}"]').click()
        expect(page.get_by_label("Workflow")).to_have_value(workflow)


def chat_box(page: Page) -> Locator:
    """The message box (the first textbox; Gradio clears its placeholder after a message)."""
    return page.locator('textarea[data-testid="textbox"]').first


def send(page: Page, text: str) -> None:
    box = chat_box(page)
    expect(box).to_be_editable()
    box.fill(text)
    box.press("Enter")


def last_answer(page: Page) -> str:
    return str(page.locator(ANSWER).last.inner_text()).strip()


def test_tokens_appear_progressively_and_steps_settle_to_done(
    page: Page, upstream: Upstream, oracle: Callable[..., Any],
) -> None:
    prompt = "How do rivers find the sea?"
    expected = oracle("demo-chat", prompt).content
    set_inputs(page, workflow="demo-chat", tokens_per_second=25)
    page.evaluate(RECORD_ANSWERS, ANSWER)
    send(page, prompt)

    chat = page.locator(".message-wrap")
    # The workflow thought appears with a spinner while the request runs...
    expect(chat.locator(".thought-group").first).to_contain_text("Workflow demo-chat")
    expect(chat.locator(".loading-spinner").first).to_be_visible()
    # ...the answer grows to the gateway's full text, and every step settles to done.
    expect(page.locator(ANSWER).last).to_have_text(expected)
    expect(chat.locator(".loading-spinner")).to_have_count(0)
    expect(page.locator("button.submit-button")).to_be_visible()

    answers: list[str] = page.evaluate("window.__answers")
    growing = [a for a in answers if expected.startswith(a) and a != expected]
    assert len(growing) >= 5, answers  # seen token by token, not in one piece
    assert all(len(a) < len(b) for a, b in itertools.pairwise(growing))
    workflow = chat.locator(".thought-group").first
    expect(workflow.locator(".duration").first).to_have_text(re.compile(r"\(\d+(\.\d+)?m?s\)"))
    workflow.locator(".title").first.click()  # expand: the nested steps, each done with a duration
    steps = workflow.locator(".children .thought-group")
    expect(steps).to_have_count(4)
    expect(steps.locator(".duration")).to_have_count(4)
    expect(steps.first).to_contain_text("Queueing request")


def test_stop_mid_stream_stops_the_answer_and_cancels_at_the_gateway(
    page: Page, upstream: Upstream, oracle: Callable[..., Any], wait_until: Callable[..., Any],
) -> None:
    prompt = "Write me a very long story please"
    full = oracle("demo-chat", prompt).content
    set_inputs(page, workflow="demo-chat", tokens_per_second=6)
    send(page, prompt)
    page.wait_for_function(
        """(sel) => { const b = document.querySelectorAll(sel);
                      return b.length && b[b.length - 1].innerText.trim().length > 25; }""",
        arg=ANSWER)
    channel = CHANNEL.search(page.locator(".message-wrap").inner_text())
    assert channel, page.locator(".message-wrap").inner_text()
    page.locator("button.stop-button").click()
    expect(page.locator("button.submit-button")).to_be_visible()

    log = wait_until(lambda: (lg := upstream.log(channel.group(1), prompt))["status"] == "cancelled"
                     and lg, 15, "the gateway to log the cancel")
    assert log["cancelled"] is True
    assert log["content_length"] < len(full)
    shown = last_answer(page)
    assert full.startswith(shown) and 25 < len(shown) < len(full)
    expect(page.locator(".message-wrap .loading-spinner")).to_have_count(0)


def test_error_workflow_shows_gradios_error_and_the_app_keeps_serving(
    page: Page, upstream: Upstream, oracle: Callable[..., Any],
) -> None:
    set_inputs(page, workflow="demo-error")
    send(page, "hello")
    toast = page.locator('[data-testid="toast-body"]')
    expect(toast.first).to_contain_text("upstream unavailable (scripted)")
    expect(page.locator("button.submit-button")).to_be_visible()
    expect(page.locator(".message-wrap .loading-spinner")).to_have_count(0)
    expect(page.locator(".message-wrap .thought-group").first).to_contain_text("failed")

    set_inputs(page, workflow="demo-chat")
    send(page, "are you still there?")
    expect(page.locator(ANSWER).last).to_have_text(
        oracle("demo-chat", "are you still there?").content)
