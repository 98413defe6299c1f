"""Model output is untrusted (issue 14, finding 4): a real Gradio server in Chromium.

The gateway's scripted workflows answer hostile Markdown (``support.leakserver``): remote images
inline, by reference and inside a link, ``<img>``, ``<script>``, ``<video>``, and put
``:red[...]``, images and HTML into an error message, a failover reason and a tool name with
backticks. Every URL points at a local leak server: the chat fetches none of them (links stay
links), injects no element, and a tool name stays inside its code span.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from support import CHROMIUM_ARGS, Gateway, Process, chromium_path, free_port
from support.leakserver import ANSWER_MARKERS, LeakServer, error_text, hostile_gateway, reason_text, tool_name

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

APP = Path(__file__).resolve().parent / "apps" / "untrusted_app.py"
ANSWER = '[data-testid="bot"]:not(:has(.thought-group))'
TIMEOUT_MS = 30_000

# Everything on the page that loads, or loaded, a leak URL; what the answer bubble holds.
PAGE_STATE = r"""
([leakBase, answerSelector]) => {
  const loads = [...document.querySelectorAll("*")].filter((el) => ["src", "srcset", "poster", "data"]
    .some((name) => (el.getAttribute(name) || "").includes(leakBase)));
  const fetched = performance.getEntriesByType("resource").map((e) => e.name)
    .filter((name) => name.startsWith(leakBase));
  const bots = document.querySelectorAll(answerSelector);
  const answer = bots.length ? bots[bots.length - 1] : null;
  return {
    loads: loads.map((el) => el.outerHTML.slice(0, 200)),
    fetched,
    media: answer ? [...answer.querySelectorAll("img, video, audio, iframe, script, object, embed")]
      .map((el) => el.outerHTML.slice(0, 200)) : null,
    answerText: answer ? answer.innerText : null,
    answerLinks: answer ? [...answer.querySelectorAll("a")].map((a) => a.href) : [],
    title: document.title,
  };
}
"""


@pytest.fixture(scope="module")
def leak() -> Iterator[LeakServer]:
    with LeakServer() as server:
        yield server


@pytest.fixture(scope="module")
def hostile(leak: LeakServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with hostile_gateway(leak, tmp_path_factory.mktemp("hostile")) as gateway:
        yield gateway


def start_app(gateway: Gateway, **env: str) -> tuple[str, Process]:
    port = free_port()
    process = Process.start([sys.executable, str(APP)], env={
        **gateway.env, "MODELRIVER_API_BASE": gateway.url, "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", **env,
    })
    return f"http://127.0.0.1:{port}/", process


@pytest.fixture(scope="module")
def apps(hostile: Gateway) -> Iterator[dict[str, str]]:
    """Two servers of the app, started together: the default, and ``allow_remote_media=True``."""
    started = {"safe": start_app(hostile), "media": start_app(hostile, MODELRIVER_ALLOW_REMOTE_MEDIA="1")}
    try:
        for _, process in started.values():
            process.wait_for("Running on local URL", timeout=100)  # importing gradio is slow
        yield {name: url for name, (url, _) in started.items()}
    finally:
        for _, process in started.values():
            process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, apps: dict[str, str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(apps["safe"])
    yield page
    context.close()


def send(page: Page, text: str) -> None:
    box = page.locator('textarea[data-testid="textbox"]').first
    expect(box).to_be_editable(timeout=TIMEOUT_MS)
    box.fill(text)
    box.press("Enter")


def settled(page: Page) -> None:
    """The turn ended: the submit button is back and no thought spins."""
    expect(page.locator("button.submit-button")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator(".message-wrap .loading-spinner")).to_have_count(0, timeout=TIMEOUT_MS)


@pytest.fixture
def since(leak: LeakServer) -> int:
    """How many hits the leak server had when the test began."""
    return len(leak.hits)


def assert_nothing_loaded(page: Page, leak: LeakServer, since: int) -> dict[str, Any]:
    """No element loads a leak URL, none was fetched, the leak server saw nothing since ``since``."""
    seen = dict(page.evaluate(PAGE_STATE, [leak.base, ANSWER]))
    assert seen["loads"] == [], seen["loads"]
    assert seen["fetched"] == [], seen["fetched"]
    assert [hit for hit in leak.hits[since:] if "/leak/" in hit] == []
    assert seen["title"] != "pwned"
    return seen


def test_an_answer_with_remote_images_and_html_loads_nothing(page: Page, leak: LeakServer, since: int) -> None:
    send(page, "demo-chat: hello")
    expect(page.locator(ANSWER).last).to_contain_text("the end", timeout=TIMEOUT_MS)
    settled(page)
    seen = assert_nothing_loaded(page, leak, since)
    assert seen["media"] == []
    for marker in ANSWER_MARKERS:
        assert marker in seen["answerText"]
    assert any("/leak/answer-inline" in href for href in seen["answerLinks"])  # a link, not an image
    assert "<img src=" in seen["answerText"] and "<script>" in seen["answerText"]  # HTML as text


def test_a_tool_name_stays_in_its_code_span(page: Page, leak: LeakServer, since: int) -> None:
    send(page, "demo-tools: hello")
    expect(page.locator(ANSWER).last).to_contain_text("the end", timeout=TIMEOUT_MS)
    settled(page)
    assert_nothing_loaded(page, leak, since)
    title = page.locator(".thought-group .title", has_text="Used tool").first
    codes = title.locator("code")
    expect(codes).to_have_count(1)
    assert " ".join(codes.first.inner_text().split()) == tool_name(leak)  # backticks and all
    title.click()  # the arguments: a JSON block, nothing loads
    expect(page.locator(".thought-group", has_text="Used tool").first.locator("pre")).to_contain_text("tool-args")
    assert_nothing_loaded(page, leak, since)


def test_a_failover_reason_and_an_error_show_as_typed(page: Page, leak: LeakServer, since: int) -> None:
    send(page, "demo-failover: hello")
    settled(page)
    workflow = page.locator(".message-wrap .thought-group").last
    if not workflow.get_by_text("Failover: demo-flaky").count():  # a settled thought may fold
        workflow.locator(".title").first.click()
    failover = page.locator(".thought-group", has_text="Failover: demo-flaky → demo-backup").first
    expect(failover).to_contain_text(reason_text(leak))  # the log: plain text
    assert_nothing_loaded(page, leak, since)

    send(page, "demo-error: hello")
    toast = page.locator('[data-testid="toast-body"]').first
    expect(toast).to_contain_text(error_text(leak))  # Gradio renders HTML here: escaped, shown as typed
    settled(page)
    assert toast.locator("img").count() == 0
    assert_nothing_loaded(page, leak, since)


def test_allow_remote_media_shows_the_images(browser: Browser, apps: dict[str, str], leak: LeakServer,
                                            since: int) -> None:
    """The opt-in, and the proof that these tests would see a fetch: the leak server gets one."""
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(apps["media"])
        send(page, "demo-chat: hello")
        expect(page.locator(ANSWER).last.locator("img").first).to_be_attached(timeout=TIMEOUT_MS)
        settled(page)
        shown = page.locator(ANSWER).last.locator("img").first.get_attribute("src") or ""
        assert "/leak/answer-inline" in shown
        page.wait_for_function(
            "(base) => performance.getEntriesByType('resource').some((e) => e.name.startsWith(base))",
            arg=leak.base)
        assert any(hit.startswith("/leak/answer-inline") for hit in leak.hits[since:])
        assert not any("answer-html" in hit for hit in leak.hits[since:])
        assert "<img src=" in page.locator(ANSWER).last.inner_text()  # raw HTML stays text even then
    finally:
        context.close()
