"""streamlit-modelriver's README in a fresh virtualenv from the wheels: `streamlit run app.py`
serves the quickstart's app, and a prompt typed into it in Chromium streams the gateway's answer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from oracle import finished_answer
from playwright.sync_api import sync_playwright
from readme_quickstart import PACKAGES, Quickstart, blocks

from support import CHROMIUM_ARGS, chromium_path

pytestmark = [pytest.mark.timeout(900), pytest.mark.browser]

README = PACKAGES["streamlit-modelriver"] / "README.md"
PROMPT = "Tell me about rivers"


@pytest.fixture(scope="module")
def app(quickstart: Quickstart) -> Quickstart:
    code = blocks(README, "Install", "Quickstart")
    assert [b.file for b in code if b.file] == [("app.py", False)]
    quickstart.run(code)
    return quickstart


@pytest.fixture
def page() -> Iterator[Any]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_the_server_is_healthy(app: Quickstart) -> None:
    import urllib.request

    with urllib.request.urlopen(app.server("streamlit").url + "/_stcore/health", timeout=10) as resp:
        assert resp.read() == b"ok"


def test_a_prompt_streams_the_gateways_answer_into_the_page(app: Quickstart, page: Any) -> None:
    page.goto(app.server("streamlit").url)
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=60_000)
    box.fill(PROMPT)
    page.keyboard.press("Enter")
    entry, content = finished_answer(app, PROMPT)
    assert entry["status"] == "success" and entry["workflow"] == "demo-chat" and content
    # The answer is drawn as Markdown: compare the words.
    want = words(content)
    deadline = time.monotonic() + 60
    shown = ""
    while time.monotonic() < deadline:
        shown = str(page.evaluate(SHOWN) or "")
        if want in words(shown):
            break
        page.wait_for_timeout(100)  # a poll interval, not a wait for the result: the loop checks the page
    assert want in words(shown), f"the page shows {shown!r}, the gateway answered {content!r}"


# Where st_modelriver draws the answer: the component (its shadow root) while it streams, then the
# answer's Markdown element once it returned.
SHOWN = """() => [
  ...[...document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')]
    .map((h) => h.shadowRoot && h.shadowRoot.querySelector('[data-testid="modelriver-text"]'))
    .filter(Boolean).map((t) => t.textContent),
  ...[...document.querySelectorAll('[class*="st-key-modelriver-text-"] [data-testid="stMarkdownContainer"]')]
    .map((m) => m.innerText),
].join(" | ")"""


def words(text: str) -> str:
    """The text without what Markdown rendering changes (markup, spacing)."""
    return re.sub(r"[\W_]+", " ", text, flags=re.ASCII).strip()
