"""The Django widget streams answers as a user reads them (issue 18), in Debian's Chromium on real
processes: the dev gateway (configured per site below), the demo on Daphne.

The page samples the last answer every 45 ms (its text, its card's fields, the ``process`` step)
from the moment the message is sent; the assertions read those samples:

- ``demo-structured`` at a slow pace: no sample shows the answer's JSON, the reply grows in at
  least 3 states before the response, the card's fields appear before it, and the final reply and
  card are the gateway's ``data``; ``process`` is loading while tokens stream.
- a failover that continues (the default): no sample is shorter than the one before, and the final
  text is the gateway's content; with ``failover = "restart"`` the reset shows.
- Markdown: a list, emphasis, code and a link render as elements; a remote image is not fetched
  (a link instead); raw HTML from the model is text.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from djmr_demo import Chat, demo_env, migrate, start_demo
from playwright.sync_api import Browser, Page

from support import start_gateway
from support.upstreams import Upstream

pytestmark = pytest.mark.browser

SLOW = 25  # tokens per second: ~1.7 s for the structured demo's answer, ~35 samples
CONTINUE_CONFIG = f"""
[providers.demo-structured]
format = "chatbot_response"
model = "scripted-json"
tokens_per_second = {SLOW}

[providers.demo-flaky]
model = "scripted-flaky"
fail_after = 8
error = "scripted provider failure after 8 tokens"
tokens_per_second = {SLOW}

[providers.demo-backup]
model = "scripted-backup"
tokens_per_second = {SLOW}

[workflows.demo-chat]
providers = ["demo-flaky", "demo-backup"]
"""
REMOTE_IMAGE = "http://127.0.0.2:9/remote-image.png"
MARKDOWN = f"""Rivers, in short:

- **sediment** settles where the current *slows*
- deltas form at the mouth

```
flow = area * velocity
```

![a map of the delta]({REMOTE_IMAGE})

<b>not bold</b> <img src="{REMOTE_IMAGE}?raw"> and [a link](https://example.com/rivers)."""
RESTART_CONFIG = f"""
[providers.demo-flaky]
model = "scripted-flaky"
fail_after = 8
error = "scripted provider failure after 8 tokens"
tokens_per_second = {SLOW}

[providers.demo-backup]
model = "scripted-backup"
tokens_per_second = {SLOW}

[workflows.demo-chat]
providers = ["demo-flaky", "demo-backup"]
failover = "restart"

[providers.markdown]
model = "scripted-markdown"
tokens_per_second = 200
text = '''{MARKDOWN}'''

[workflows.demo-structured]
providers = ["markdown"]
"""

SAMPLER = """() => {
    window.__samples = [];
    setInterval(() => {
        const bubble = [...document.querySelectorAll('.mr-assistant')].pop();
        if (!bubble) return;
        const text = bubble.querySelector('.mr-text');
        window.__samples.push({
            state: bubble.getAttribute('data-state'),
            text: text ? text.textContent : '',
            fields: [...bubble.querySelectorAll('.mr-card [data-field]')].map((f) => f.getAttribute('data-field')),
            process: document.querySelector('.mr-steps [data-step=process]')?.getAttribute('data-status'),
        });
    }, 45);
}"""
DONE = ".mr-assistant[data-state=done]"


def _site(tmp: Path, config: str) -> Iterator[Chat]:
    (tmp / "gateway.toml").write_text(config)
    gateway = start_gateway("--config", str(tmp / "gateway.toml"))
    try:
        env = demo_env(gateway, tmp / "db.sqlite3")
        migrate(env)
        demo = start_demo(env)
        try:
            yield Chat(Upstream("modelriver", gateway), demo, (gateway.api_key,))
        finally:
            demo.stop()
    finally:
        gateway.process.stop()


@pytest.fixture(scope="module")
def continuing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    """The demo on a gateway whose demo-structured is slow and whose demo-chat fails over (continue)."""
    yield from _site(tmp_path_factory.mktemp("continuing"), CONTINUE_CONFIG)


@pytest.fixture(scope="module")
def restarting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    """demo-chat fails over with ``failover = "restart"``; demo-structured answers in Markdown."""
    yield from _site(tmp_path_factory.mktemp("restarting"), RESTART_CONFIG)


def _open(browser: Browser, chat: Chat) -> Page:
    page = browser.new_context().new_page()
    page.goto(chat.demo.url + "/")
    page.wait_for_selector(".mr-history")
    return page


def _ask(page: Page, text: str, workflow: str) -> list[dict[str, Any]]:
    """Send ``text``, wait for the answer; returns the samples taken meanwhile."""
    page.evaluate(SAMPLER)
    page.select_option("select.mr-workflow", workflow)
    page.fill("textarea.mr-input", text)
    page.click("button.mr-send")
    page.wait_for_selector(DONE, timeout=30_000)
    page.wait_for_timeout(100)  # two more samples of the final rendering
    samples: list[dict[str, Any]] = page.evaluate("window.__samples")
    return samples


def _channel(page: Page) -> str:
    channel = page.locator(".mr-assistant").last.get_attribute("data-channel-id")
    assert channel
    return channel


def test_a_structured_answer_streams_as_prose_and_fills_the_card(browser: Browser, continuing: Chat) -> None:
    page = _open(browser, continuing)
    prompt = "Tell me about rivers and their deltas"
    samples = _ask(page, prompt, "demo-structured")
    data = continuing.final(_channel(page), prompt)["data"]
    reply = data["reply"]
    streaming = [s for s in samples if s["state"] == "streaming"]
    for sample in samples:  # never the JSON: no brace, no quoted key of the answer
        assert not sample["text"].lstrip().startswith("{"), sample
        assert not any(f'"{key}"' in sample["text"] for key in data), sample
    states = [s["text"] for s in streaming if s["text"]]
    assert len(set(states)) >= 3, states
    assert all(reply.startswith(text) for text in states), (states, reply)
    assert any(len(s["fields"]) >= 2 for s in streaming), streaming  # the card fills before the end
    assert any(s["text"] and s["process"] == "loading" for s in streaming), streaming
    bubble = page.locator(".mr-assistant").last
    assert bubble.locator(".mr-text").inner_text() == reply
    card = bubble.locator(".mr-card")
    assert sorted(card.locator("[data-field]").evaluate_all("(ns) => ns.map((n) => n.dataset.field)")) == \
        sorted(k for k in data if k != "reply")
    assert data["summary"] in card.locator("[data-field=summary]").inner_text()
    assert data["sentiment"] in card.locator("[data-field=sentiment]").inner_text()
    assert str(data["confidence"]) in card.locator("[data-field=confidence]").inner_text()
    for topic in data["topics"]:
        assert topic in card.locator("[data-field=topics]").inner_text()
    assert data["action_items"][0]["task"] in card.locator("[data-field=action_items]").inner_text()
    page.context.close()


def test_a_continued_failover_never_shortens_the_answer(browser: Browser, continuing: Chat) -> None:
    page = _open(browser, continuing)
    prompt = "a failover that continues"
    samples = _ask(page, prompt, "demo-chat")
    channel = _channel(page)
    assert continuing.log(channel, prompt)["failovers"], "the workflow did fail over"
    content = continuing.final(channel, prompt)["content"]
    lengths = [len(s["text"]) for s in samples]
    assert all(b >= a for a, b in itertools.pairwise(lengths)), lengths
    assert len({s["text"] for s in samples if s["state"] == "streaming"}) >= 3
    assert page.locator(".mr-assistant").last.locator(".mr-text").inner_text() == content
    page.context.close()


def test_a_restarting_failover_shows_the_reset(browser: Browser, restarting: Chat) -> None:
    page = _open(browser, restarting)
    prompt = "a failover that restarts"
    samples = _ask(page, prompt, "demo-chat")
    channel = _channel(page)
    assert restarting.log(channel, prompt)["failovers"]
    texts = [s["text"] for s in samples]
    assert any(len(b) < len(a) for a, b in itertools.pairwise(texts)), texts
    content = restarting.final(channel, prompt)["content"]
    assert page.locator(".mr-assistant").last.locator(".mr-text").inner_text() == content
    page.context.close()


def test_markdown_renders_safely(browser: Browser, restarting: Chat) -> None:
    page = _open(browser, restarting)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    _ask(page, "show me some Markdown", "demo-structured")
    text = page.locator(".mr-assistant").last.locator(".mr-text")
    assert text.locator("ul > li").count() == 2
    assert text.locator("li strong").inner_text() == "sediment"
    assert text.locator("li em").inner_text() == "slows"
    assert text.locator("pre code").inner_text().strip() == "flow = area * velocity"
    link = text.locator("a[href='https://example.com/rivers']")
    assert link.inner_text() == "a link"
    assert link.get_attribute("target") == "_blank" and link.get_attribute("rel") == "noopener noreferrer"
    # the remote image is a link to it, never fetched; raw HTML is shown as text
    assert text.locator("img").count() == 0 and text.locator("b").count() == 0
    assert text.locator(f"a[href='{REMOTE_IMAGE}']").inner_text() == "a map of the delta"
    assert "<b>not bold</b>" in text.inner_text() and f'<img src="{REMOTE_IMAGE}?raw">' in text.inner_text()
    assert not [url for url in requested if "remote-image" in url], requested
    page.context.close()
