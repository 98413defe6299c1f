"""Model output is untrusted (issue 14, finding 4): a real `streamlit run` in Chromium, both modes.

The gateway's scripted workflows answer hostile Markdown (``support.leakserver``): remote images
inline, by reference and inside a link, ``<img>``, ``<script>``, ``<video>``, and put
``:red[...]``, bold, links, images and HTML into an error message, a failover reason and a tool
name. Every URL points at a local leak server: a safe page fetches none of them (links stay
links: fetched only on a click), injects no element, and shows labels as typed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from support import Gateway
from support.leakserver import ANSWER_MARKERS, LeakServer, error_text, hostile_gateway, reason_text, tool_name

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

MODES = ["component", "server"]

# Everything the page holds, shadow roots (component mode) included.
PAGE_STATE = r"""
(leakBase) => {
  const all = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      all.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  const loads = all.filter((el) => ["src", "srcset", "poster", "data"].some(
    (name) => (el.getAttribute(name) || "").includes(leakBase)));
  const fetched = performance.getEntriesByType("resource").map((e) => e.name)
    .filter((name) => name.startsWith(leakBase));
  const answer = document.querySelector('[class*="st-key-modelriver-text-"] [data-testid="stMarkdownContainer"]');
  return {
    loads: loads.map((el) => el.outerHTML.slice(0, 200)),
    fetched,
    media: answer ? [...answer.querySelectorAll("img, video, audio, iframe, script, object, embed")]
      .map((el) => el.outerHTML.slice(0, 200)) : null,
    answerText: answer ? answer.innerText : null,
    answerLinks: answer ? [...answer.querySelectorAll("a")].map((a) => a.href) : [],
    statusText: [...document.querySelectorAll('[data-testid="stExpander"]')].map((e) => e.textContent).join("\n"),
    alertText: [...document.querySelectorAll('[data-testid="stAlert"]')].map((e) => e.textContent).join("\n"),
    colored: [...document.querySelectorAll('[data-testid="stExpander"] span, [data-testid="stAlert"] span')]
      .filter((el) => /(^|\s):red\[|REASON|ERROR|TOOL/.test(el.textContent) && el.children.length === 0
                      && el.getAttribute("style") && el.getAttribute("style").includes("color"))
      .map((el) => el.outerHTML),
    title: document.title,
  };
}
"""


@pytest.fixture(scope="module")
def leak() -> Iterator[LeakServer]:
    with LeakServer() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(leak: LeakServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """This module's gateway (``probe_app`` runs on it): the hostile scripted workflows."""
    with hostile_gateway(leak, tmp_path_factory.mktemp("hostile")) as hostile:
        yield hostile


@pytest.fixture(scope="module")
def app(probe_app: Any) -> Any:
    """The conftest's one-call probe app, on the hostile gateway."""
    return probe_app


def finish(page: Any, app: Any, *, mode: str, workflow: str, key: str, media: bool = False) -> str:
    """Run one request of ``workflow`` in the probe app; the returned caption (status, channel)."""
    url = f"{app.url}/?mode={mode}&workflow={workflow}&key={key}&prompt={quote('hello there')}"
    page.goto(url + ("&media=1" if media else ""))
    returned = page.locator('[class*="st-key-returned-probe"]')
    returned.wait_for(timeout=60_000)
    return str(returned.inner_text())


def state(page: Any, leak: LeakServer) -> dict[str, Any]:
    return dict(page.evaluate(PAGE_STATE, leak.base))


def assert_nothing_loaded(page: Any, leak: LeakServer) -> dict[str, Any]:
    """No element of the page loads a leak URL, none was fetched, the leak server saw nothing."""
    seen = state(page, leak)
    assert seen["loads"] == [], seen["loads"]
    assert seen["fetched"] == [], seen["fetched"]
    assert [hit for hit in leak.hits if "/leak/" in hit] == []
    assert seen["title"] != "pwned"
    return seen


@pytest.mark.parametrize("mode", MODES)
def test_an_answer_with_remote_images_and_html_loads_nothing(page: Any, app: Any, leak: LeakServer,
                                                              mode: str) -> None:
    browser_page, _ = page
    assert "status success" in finish(browser_page, app, mode=mode, workflow="demo-chat", key=f"answer-{mode}")
    seen = assert_nothing_loaded(browser_page, leak)
    assert seen["media"] == []
    for marker in ANSWER_MARKERS:
        assert marker in seen["answerText"]
    # Images became links (the URL is there for a user who wants it); raw HTML shows as text.
    assert any("/leak/answer-inline" in href for href in seen["answerLinks"])
    assert "<img src=" in seen["answerText"] and "<script>" in seen["answerText"]


@pytest.mark.parametrize("mode", MODES)
def test_an_error_message_shows_as_typed(page: Any, app: Any, leak: LeakServer, mode: str) -> None:
    browser_page, _ = page
    assert "status error" in finish(browser_page, app, mode=mode, workflow="demo-error", key=f"error-{mode}")
    seen = assert_nothing_loaded(browser_page, leak)
    typed = error_text(leak)
    assert typed in " ".join(seen["alertText"].split())  # st.error: no red, no bold, no image
    assert f"Failed: provider 'demo-broken' failed: {typed}" in " ".join(seen["statusText"].split())
    assert seen["colored"] == []


@pytest.mark.parametrize("mode", MODES)
def test_a_failover_reason_and_a_tool_name_show_as_typed(page: Any, app: Any, leak: LeakServer,
                                                         mode: str) -> None:
    browser_page, _ = page
    assert "status success" in finish(browser_page, app, mode=mode, workflow="demo-failover",
                                      key=f"failover-{mode}")
    seen = assert_nothing_loaded(browser_page, leak)
    assert f"({reason_text(leak)})" in " ".join(seen["statusText"].split())
    assert seen["colored"] == []

    assert "status success" in finish(browser_page, app, mode=mode, workflow="demo-tools", key=f"tools-{mode}")
    seen = assert_nothing_loaded(browser_page, leak)
    assert f"Tool call: {tool_name(leak)}(" in " ".join(seen["statusText"].split())
    assert seen["colored"] == [] and seen["media"] == []


def test_allow_remote_media_shows_the_images(page: Any, app: Any) -> None:
    """The opt-in, and the proof that this page would report a fetch: the leak server sees one.

    Its own leak server (so the module's stays clean whatever the test order), named in the
    request's scripted text.
    """
    browser_page, _ = page
    with LeakServer() as leak:
        answer = f"![answer image]({leak.url('answer-inline')}) <img src={leak.url('answer-html')}>"
        meta = quote(json.dumps({"scripted": {"text": answer}}))
        browser_page.goto(f"{app.url}/?mode=server&workflow=demo-chat&key=media&media=1&meta={meta}")
        browser_page.locator('[class*="st-key-returned-probe"]').wait_for(timeout=60_000)
        browser_page.wait_for_function(
            "(base) => performance.getEntriesByType('resource').some((e) => e.name.startsWith(base))",
            arg=leak.base)
        assert any(hit.startswith("/leak/answer-inline") for hit in leak.hits)
        assert not any("answer-html" in hit for hit in leak.hits)  # raw HTML stays text even then
