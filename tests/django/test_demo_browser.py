"""The demo on real processes: Daphne (runserver) + the real dev gateway + Debian's Chromium.

Progressive tokens, steps, the structured card, reload mid-stream, two tabs, stop, the webhook
loop, and the API key nowhere a browser or a log can see it. Each test runs once per upstream
(``chat`` is parametrized over them): ModelRiver (the gateway's HTTP API and Phoenix socket) and
Realm (the same gateway's Realm endpoint, ``--realm-port``; the demo switched by
``MODELRIVER_UPSTREAM=realm``). A test left out for an upstream says why in its ``upstreams()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from djmr_demo import Chat, upstreams
from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

DONE = ".mr-assistant[data-state=done]"
@pytest.fixture
def page(browser: Browser, chat: Chat) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.goto(chat.demo.url + "/")
    yield page
    context.close()


def send(page: Page, text: str, workflow: str = "demo-chat") -> None:
    page.select_option("select.mr-workflow", workflow)
    page.fill("textarea.mr-input", text)
    page.click("button.mr-send")


def last_assistant(page: Page) -> Any:
    return page.locator(".mr-assistant").last


def record_text_states(page: Page) -> None:
    """Record every distinct text of the streaming bubble (a MutationObserver in the page)."""
    page.evaluate("""() => {
        window.__states = [];
        new MutationObserver(() => {
            const node = document.querySelector('.mr-assistant[data-state=streaming] .mr-text');
            if (node && window.__states[window.__states.length - 1] !== node.textContent)
                window.__states.push(node.textContent);
        }).observe(document.querySelector('.mr-history'), {subtree: true, childList: true, characterData: true});
    }""")


@upstreams()
def test_streams_progressively_with_steps(page: Page, chat: Chat) -> None:
    record_text_states(page)
    prompt = "stream this progressively"
    send(page, prompt)
    page.wait_for_selector(".mr-assistant[data-state=streaming]")
    # Mid-stream: the join is done (queue) but nothing has completed yet.
    page.wait_for_selector(".mr-steps [data-step=queue][data-status=success]")
    assert page.get_attribute(".mr-steps [data-step=complete]", "data-status") == "pending"
    page.wait_for_selector(DONE, timeout=20_000)
    bubble = last_assistant(page)
    final = chat.final(bubble.get_attribute("data-channel-id"), prompt)
    assert bubble.get_attribute("data-streamed") == final["content"]
    assert bubble.locator(".mr-text").inner_text() == final["content"]
    states = page.evaluate("window.__states")
    assert len(states) >= 10, states
    assert all(final["content"].startswith(s) for s in states)
    for step in ("queue", "process", "receive", "complete"):
        assert page.get_attribute(f".mr-steps [data-step={step}]", "data-status") == "success"


@upstreams("modelriver", why="Realm answers text only: no structured `data`, so no card")
def test_structured_output_card(page: Page, chat: Chat) -> None:
    prompt = "I am happy with the release, please plan the docs"
    send(page, prompt, "demo-structured")
    page.wait_for_selector(DONE, timeout=20_000)
    bubble = last_assistant(page)
    final = chat.final(bubble.get_attribute("data-channel-id"), prompt)
    data = final["data"]
    assert bubble.locator(".mr-text").inner_text() == data["reply"]
    card = bubble.locator(".mr-card")
    for field in ("summary", "sentiment", "confidence", "topics", "action_items"):
        assert card.locator(f"[data-field={field}]").count() == 1, field
    assert data["sentiment"] in card.locator("[data-field=sentiment]").inner_text()
    assert data["summary"] in card.locator("[data-field=summary]").inner_text()


@upstreams()
def test_reload_mid_stream_resumes_without_loss_or_duplicates(page: Page, chat: Chat) -> None:
    prompt = "reload me halfway through"
    send(page, prompt)
    page.wait_for_function(
        "() => { const n = document.querySelector('.mr-assistant[data-state=streaming] .mr-text');"
        " return n && n.textContent.length > 40; }")
    page.reload()
    page.wait_for_selector(".mr-assistant[data-resumed=true]")
    page.wait_for_selector(".mr-assistant[data-resumed=true][data-state=done]", timeout=20_000)
    bubble = page.locator(".mr-assistant[data-resumed=true]")
    assert int(bubble.get_attribute("data-resume-seq")) > 0  # rejoined with {last_seq}, not from scratch
    final = chat.final(bubble.get_attribute("data-channel-id"), prompt)
    assert bubble.get_attribute("data-streamed") == final["content"]
    # the conversation survived the reload too
    assert page.locator(".mr-user").last.inner_text() == prompt


@upstreams()
def test_two_tabs_on_one_conversation_see_the_same_stream(page: Page, chat: Chat) -> None:
    prompt = "two tabs, one stream"
    send(page, prompt)
    page.wait_for_function("() => document.querySelector('.mr-assistant[data-state=streaming] .mr-text')"
                           "?.textContent.length > 10")
    second = page.context.new_page()
    second.goto(chat.demo.url + "/")
    second.wait_for_selector(".mr-assistant[data-resumed=true]")
    page.wait_for_selector(DONE, timeout=20_000)
    second.wait_for_selector(".mr-assistant[data-resumed=true][data-state=done]", timeout=20_000)
    channel_id = last_assistant(page).get_attribute("data-channel-id")
    assert second.locator(".mr-assistant[data-resumed=true]").get_attribute("data-channel-id") == channel_id
    # One upstream request, however many tabs (Realm: one gateway request for the prompt;
    # ModelRiver: one socket and one join on it too).
    log = chat.log(channel_id, prompt)
    if not chat.upstream.realm:
        assert log["sockets"] == 1 and log["joins"] == 1
    content = chat.final(channel_id, prompt)["content"]
    assert last_assistant(page).get_attribute("data-streamed") == content
    assert second.locator(".mr-assistant[data-resumed=true]").get_attribute("data-streamed") == content


@upstreams()
def test_stop_cancels_upstream(page: Page, chat: Chat) -> None:
    prompt = "please stop me"
    send(page, prompt)
    page.wait_for_function("() => document.querySelector('.mr-assistant[data-state=streaming] .mr-text')"
                           "?.textContent.length > 5")
    page.click("button.mr-stop")
    page.wait_for_selector(".mr-assistant[data-state=cancelled]", timeout=10_000)
    channel_id = last_assistant(page).get_attribute("data-channel-id")
    final = chat.final(channel_id, prompt)  # waits until the gateway's request has ended
    assert final["status"] == "cancelled"
    log = chat.log(channel_id, prompt)
    assert log["cancelled"] is True and log["status"] == "cancelled"
    assert page.is_hidden("button.mr-stop")


@upstreams("modelriver", why="event-driven workflows need webhooks and a callback, which Realm has not")
def test_event_driven_webhook_loop_end_to_end(page: Page, chat: Chat) -> None:
    page.evaluate("""() => { window.__seen = [];
        new MutationObserver(() => document.querySelectorAll('.mr-assistant').forEach((n) => {
            const state = n.getAttribute('data-state');
            if (window.__seen[window.__seen.length - 1] !== state) window.__seen.push(state);
        })).observe(document.querySelector('.mr-history'), {subtree: true, childList: true, attributes: true});
    }""")
    prompt = "I love it, open a ticket"
    send(page, prompt, "demo-events")
    page.wait_for_selector(DONE, timeout=20_000)
    # The intermediate ai_generated response was shown before the enriched completion.
    assert page.evaluate("window.__seen").count("ai_generated") == 1
    assert page.evaluate("window.__seen")[-2:] == ["ai_generated", "done"]
    bubble = last_assistant(page)
    channel_id = bubble.get_attribute("data-channel-id")
    assert bubble.get_attribute("data-status") == "completed"
    ticket = bubble.locator(".mr-card [data-field=ticket_id]").inner_text()
    assert "TKT-" in ticket
    assert bubble.locator(".mr-card [data-field=validated]").inner_text().endswith("true")
    final = chat.final(channel_id, prompt)
    assert final["status"] == "completed"
    assert final["data"]["ticket_id"] in ticket and final["data"]["validated"] is True
    assert final["ai_response"]["data"]["reply"] == final["data"]["reply"]
    log = chat.log(channel_id, prompt)
    assert log["status"] == "completed" and log["callback"]["received"] is True
    assert [w["status_code"] for w in log["webhooks"]] == [200]
    assert page.get_attribute(".mr-steps [data-step=backend]", "data-status") == "success"
    assert f"enriched {channel_id}" in chat.demo.process.output


@upstreams()
def test_api_key_never_reaches_a_page_static_file_frame_or_log(page: Page, chat: Chat) -> None:
    seen: list[str] = []
    page.on("websocket", lambda ws: (ws.on("framereceived", lambda f: seen.append(str(f))),
                                     ws.on("framesent", lambda f: seen.append(str(f)))))
    page.on("response", lambda r: seen.append(r.text()) if r.request.resource_type in
            ("document", "script", "stylesheet", "fetch", "xhr") and r.status != 204 else None)
    page.reload()
    # The event-driven workflow on ModelRiver (the webhook and callback too); Realm runs none.
    send(page, "is my key safe?", "demo-chat" if chat.upstream.realm else "demo-events")
    page.wait_for_selector(DONE, timeout=20_000)
    for path in ("/", "/static/django_modelriver/modelriver.js", "/static/django_modelriver/modelriver.css"):
        seen.append(page.request.get(chat.demo.url + path).text())
    assert any("ws_token" in s for s in seen) and any("tokens" in s for s in seen)  # we did capture
    output = chat.demo.process.output
    for key in chat.secrets:
        for text in seen:
            assert key not in text
        assert key not in output
        assert key[-12:] not in output
