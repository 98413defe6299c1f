"""The demo under a real `streamlit run`, driven by Chromium (Playwright), against a real gateway.

Every wait is on a DOM state (``wait_for_function`` polls the page each animation frame) or an
output line; stream speed is set per request with ``?tps=`` (the scripted provider's pace; on the
Realm upstream, which carries no per-request pace, the Realm gateway's config sets it).

Each test runs against both upstreams (``upstream``: ModelRiver, and the gateway's Realm endpoint
through core's ``SyncRealmUpstream``), except what is ModelRiver's alone: component mode (the
browser joins the gateway's channel with the request's socket token; a Realm request has none, so
component mode falls back to server mode, which ``test_component_mode_on_realm_...`` shows),
event-driven workflows (webhooks and callbacks) and the socket-token refresh.
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from modelriver import ModelRiver
from support import Gateway
from support.upstreams import REALM_KEY

if TYPE_CHECKING:
    from support.upstreams import Upstream

pytestmark = pytest.mark.browser

MODES = ["component", "server"]
UPSTREAM_MODES = pytest.mark.parametrize(
    ("upstream", "mode"), [("modelriver", "component"), ("modelriver", "server"), ("realm", "server")],
    indirect=["upstream"])
MODELRIVER = pytest.mark.parametrize("upstream", ["modelriver"], indirect=True)
REALM = pytest.mark.parametrize("upstream", ["realm"], indirect=True)

# Helpers installed in every page: read the answer wherever the mode draws it. Component mode
# draws inside the component's shadow root; server mode in the keyed text container.
HELPERS = r"""
window.mr = {
  component() {
    for (const host of document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')) {
      const root = host.shadowRoot && host.shadowRoot.querySelector('[data-testid="modelriver-stream"]');
      if (root) return root;
    }
    return null;
  },
  text() {
    const root = mr.component();
    if (root) return root.querySelector('[data-testid="modelriver-text"]').textContent;
    const md = document.querySelector(
      '[class*="st-key-modelriver-text-"] [data-testid="stMarkdownContainer"]');
    return md ? md.innerText.replace(/\s*▌$/, "") : null;
  },
  steps() {
    const root = mr.component();
    const out = {};
    if (root) {
      for (const li of root.querySelectorAll("li[data-step]")) out[li.dataset.step] = li.dataset.status;
      return out;
    }
    const messages = document.querySelectorAll('[data-testid="stChatMessage"]');
    const last = messages[messages.length - 1];
    const status = last;  // server mode draws the live steps below the text (a collapsed status shows none)
    if (!status) return out;
    const icons = {check_circle: "success", radio_button_unchecked: "pending", progress_activity: "loading",
                   cancel: "error"};
    const ids = {"Queueing request": "queue", "Processing AI request": "process",
                 "Waiting for response": "receive", "Response received": "complete",
                 "Waiting for backend callback...": "backend", "Backend processed": "backend"};
    for (const line of status.innerText.split("\n")) {
      const m = line.trim().match(/^(check_circle|radio_button_unchecked|progress_activity|cancel)\s*(.+?)( · .*)?$/);
      if (m && ids[m[2]]) out[ids[m[2]]] = icons[m[1]];
    }
    return out;
  },
  returned() {
    const el = document.querySelector('[class*="st-key-returned-"]');
    return el ? el.innerText : null;
  },
};
"""


def norm(text: str) -> str:
    return " ".join(text.split())


class GatewayWatch:
    """The gateway's requests since the test began, minus the test's own reference requests."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.before = {r["channel_id"] for r in gateway.requests()}
        self.own: set[str] = set()

    def new(self) -> list[str]:
        return [r["channel_id"] for r in self.gateway.requests()
                if r["channel_id"] not in self.before | self.own]

    def expected_content(self, workflow: str, prompt: str) -> str:
        """The gateway's own final content for the same request, read with the bare core client."""
        with ModelRiver(self.gateway.api_key, api_base=self.gateway.url) as client, \
                client.stream(workflow, [{"role": "user", "content": prompt}],
                              metadata={"scripted": {"tokens_per_second": 0}}) as stream:
            response = stream.wait()
            self.own.add(stream.request.channel_id)
        assert response.status == "success", response
        assert response.content
        return response.content


@pytest.fixture
def watch(upstream: Upstream) -> GatewayWatch:
    return GatewayWatch(upstream.gateway)


def open_demo(page: Any, app: Any, *, mode: str, tps: float, workflow: str = "demo-chat") -> None:
    page.add_init_script(HELPERS)
    page.goto(f"{app.url}/?mode={mode}&tps={tps}&workflow={workflow}")
    # The first visit runs the demo's imports in a fresh script thread: slow on a loaded machine.
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)


def ask(page: Any, prompt: str) -> None:
    page.get_by_test_id("stChatInputTextArea").fill(prompt)
    page.keyboard.press("Enter")


def wait_text(page: Any, min_chars: int) -> str:
    return str(page.wait_for_function("(n) => { const t = mr.text(); return t && t.length >= n && t; }",
                                      arg=min_chars).json_value())


def wait_returned(page: Any) -> str:
    return str(page.wait_for_function("() => mr.returned()", timeout=30_000).json_value())


def channel_of(caption: str) -> str:
    return caption.rsplit("channel ", 1)[1].strip()


def final_text(page: Any) -> str:
    return str(page.locator('[class*="st-key-modelriver-text-"] [data-testid="stMarkdownContainer"]')
               .last.inner_text())


def watch_stream(page: Any) -> tuple[list[str], list[dict[str, str]]]:
    """Every distinct text the page showed while streaming (and the steps at each), until the end."""
    texts: list[str] = []
    steps: list[dict[str, str]] = []
    last = ""
    while True:
        state = page.wait_for_function(
            """(prev) => {
                 if (mr.returned()) return {done: true};
                 const t = mr.text();
                 return (t && t !== prev) ? {text: t, steps: mr.steps()} : false;
               }""", arg=last, timeout=30_000).json_value()
        if state.get("done"):
            return texts, steps
        last = state["text"]
        texts.append(last)
        steps.append(state["steps"])


@UPSTREAM_MODES
def test_tokens_and_steps_stream_live_and_the_value_returns(
        mode: str, upstream: Upstream, demo_app: Any, page: tuple[Any, Any],
        watch: GatewayWatch) -> None:
    browser_page, _ = page
    prompt = f"Stream live in {mode} mode"
    open_demo(browser_page, demo_app, mode=mode, tps=25)
    ask(browser_page, prompt)
    texts, steps = watch_stream(browser_page)

    assert len(texts) >= 5, f"too few intermediate states: {texts}"
    for shorter, longer in itertools.pairwise(texts):
        assert longer.startswith(shorter.rstrip()), (shorter, longer)
    # steps were live: the join was done while the answer was still arriving
    assert any(s.get("queue") == "success" and s.get("complete") == "pending" for s in steps), steps

    caption = wait_returned(browser_page)
    assert "status success" in caption
    channel_id = upstream.log(channel_of(caption), prompt)["channel_id"]
    want = watch.expected_content("demo-chat", prompt)
    assert norm(final_text(browser_page)) == norm(want)
    assert norm(texts[-1]) in norm(want)
    assert watch.new() == [channel_id]
    assert upstream.gateway.request_log(channel_id)["status"] == "success"


@UPSTREAM_MODES
def test_reload_mid_stream_resumes_without_a_second_request(
        mode: str, upstream: Upstream, demo_app: Any, page: tuple[Any, Any],
        watch: GatewayWatch) -> None:
    browser_page, capture = page
    prompt = f"Reload me in {mode} mode"
    open_demo(browser_page, demo_app, mode=mode, tps=12)
    ask(browser_page, prompt)
    partial = wait_text(browser_page, 40)
    browser_page.reload()
    browser_page.get_by_text("Resumed after a reload").wait_for()
    resumed = wait_text(browser_page, len(partial))  # the text so far is back at once
    caption = wait_returned(browser_page)

    channel_id = upstream.log(channel_of(caption), prompt)["channel_id"]
    want = watch.expected_content("demo-chat", prompt)
    assert norm(want).startswith(norm(resumed)[: len(norm(partial))])
    assert norm(final_text(browser_page)) == norm(want)
    assert watch.new() == [channel_id], "the reload must not start a second upstream request"
    log = upstream.gateway.request_log(channel_id)
    assert log["status"] == "success"
    if mode == "component":
        # the browser rejoined with a fresh token and asked only for what it had not seen
        assert log["joins"] >= 2
        joins = [json.loads(f) for f in capture.gateway_frames() if '"phx_join"' in f]
        assert len(joins) >= 2
        assert joins[-1][4].get("last_seq", 0) > 0, joins[-1]
    elif not upstream.realm:  # (a Realm call joins no channel: one call, one request, as above)
        # the new session re-followed the process's pump: one socket, joined once
        assert log["joins"] == 1


@UPSTREAM_MODES
def test_clicking_an_unrelated_widget_while_streaming_does_not_restart(
        mode: str, upstream: Upstream, demo_app: Any, page: tuple[Any, Any],
        watch: GatewayWatch) -> None:
    browser_page, _ = page
    prompt = f"Rerun me in {mode} mode"
    open_demo(browser_page, demo_app, mode=mode, tps=8)
    ask(browser_page, prompt)
    wait_text(browser_page, 20)
    browser_page.get_by_role("button", name="Ping (an unrelated widget)").click()
    browser_page.get_by_text("Pings: 1").wait_for()
    assert browser_page.evaluate("() => mr.returned()") is None, "the click came too late to test"
    caption = wait_returned(browser_page)
    channel_id = upstream.log(channel_of(caption), prompt)["channel_id"]
    want = watch.expected_content("demo-chat", prompt)
    assert norm(final_text(browser_page)) == norm(want)
    assert watch.new() == [channel_id]


@UPSTREAM_MODES
def test_stop_cancels_upstream_and_shows_the_error(
        mode: str, upstream: Upstream, demo_app: Any, page: tuple[Any, Any],
        watch: GatewayWatch) -> None:
    browser_page, _ = page
    prompt = f"Stop me in {mode} mode"
    open_demo(browser_page, demo_app, mode=mode, tps=8)
    ask(browser_page, prompt)
    wait_text(browser_page, 10)
    if mode == "component":
        browser_page.get_by_test_id("modelriver-stop").click()
    else:
        browser_page.locator('[class*="st-key-modelriver-stop-"] button').click()
    caption = wait_returned(browser_page)
    assert "status cancelled" in caption
    browser_page.get_by_test_id("stAlert").filter(has_text="Request cancelled").first.wait_for()
    channel_id = upstream.log(channel_of(caption), prompt)["channel_id"]
    log = upstream.gateway.request_log(channel_id)
    assert log["cancelled"] is True
    assert log["status"] == "cancelled"
    assert watch.new() == [channel_id]


@MODELRIVER
@pytest.mark.parametrize("mode", MODES)
def test_event_driven_shows_the_backend_step_until_completed(
        mode: str, upstream: Upstream, demo_app: Any, gateway: Gateway, page: tuple[Any, Any]) -> None:
    browser_page, _ = page
    open_demo(browser_page, demo_app, mode=mode, tps=100, workflow="demo-events")
    ask(browser_page, f"Open a ticket in {mode} mode")
    browser_page.wait_for_function("() => mr.steps().backend === 'pending'")
    assert browser_page.evaluate("() => mr.returned()") is None
    caption = wait_returned(browser_page)
    assert "status completed" in caption
    browser_page.get_by_text("streamlit-demo-backend").first.wait_for()  # the enriched data came back
    log = gateway.request_log(channel_of(caption))
    assert log["status"] == "completed"
    assert log["callback"]["received"] is True


SNAPSHOT = r"""() => {
  const parts = [document.documentElement.outerHTML];
  for (const el of document.querySelectorAll("*")) if (el.shadowRoot) parts.push(el.shadowRoot.innerHTML);
  parts.push(JSON.stringify({...localStorage}), JSON.stringify({...sessionStorage}), location.href);
  return parts.join("\n");
}"""


@MODELRIVER
def test_the_api_key_reaches_no_page_payload_frame_or_log(
        upstream: Upstream, demo_app: Any, gateway: Gateway, page: tuple[Any, Any]) -> None:
    browser_page, capture = page
    sources: list[str] = []

    def snapshot() -> None:
        sources.append(browser_page.evaluate(SNAPSHOT))

    # component mode, with a reload mid-stream
    open_demo(browser_page, demo_app, mode="component", tps=20)
    ask(browser_page, "Is my key safe?")
    wait_text(browser_page, 30)
    snapshot()
    browser_page.reload()
    browser_page.get_by_text("Resumed after a reload").wait_for()
    wait_text(browser_page, 1)
    snapshot()
    wait_returned(browser_page)
    snapshot()
    # server mode, event-driven (webhook, signature check, callback with the key server side)
    open_demo(browser_page, demo_app, mode="server", tps=50, workflow="demo-events")
    ask(browser_page, "Is my key safe on the server?")
    wait_text(browser_page, 10)
    snapshot()
    caption = wait_returned(browser_page)
    assert "status completed" in caption
    snapshot()
    demo_app.process.wait_for("called back for", timeout=10)

    key = gateway.api_key
    streamlit_frames = [p for url, p in capture.frames if "/_stcore/stream" in url]
    gateway_frames = capture.gateway_frames()
    logs = demo_app.process.output + gateway.process.output
    # the scan is not vacuous: the component payload (with the socket token) went through the
    # Streamlit frames, the gateway's frames carried the answer, the logs are the real ones
    tokens = [url.split("token=", 1)[1].split("&", 1)[0] for url in capture.sockets if "token=" in url]
    assert tokens and any(tokens[0].encode() in (f if isinstance(f, bytes) else f.encode())
                          for f in streamlit_frames)
    assert any('"tokens"' in f for f in gateway_frames)
    assert "started request" in logs and "modelriver dev ready on" in logs
    assert len(sources) == 5

    assert key not in logs
    for text in sources:
        assert key not in text
    for url in capture.sockets:
        assert key not in url
    for frame in streamlit_frames + gateway_frames:
        data = frame if isinstance(frame, bytes) else frame.encode()
        assert key.encode() not in data


@MODELRIVER
def test_component_reconnects_after_a_dropped_socket_and_resumes_from_last_seq(
        upstream: Upstream, probe_app: Any, gateway: Gateway, page: tuple[Any, Any], watch: GatewayWatch) -> None:
    browser_page, capture = page
    prompt = "Drop my socket"
    meta = json.dumps({"scripted": {"tokens_per_second": 40, "drop_socket_after": 12}})
    browser_page.add_init_script(HELPERS)
    browser_page.goto(f"{probe_app.url}/?mode=component&prompt={quote(prompt)}&meta={quote(meta)}")
    caption = wait_returned(browser_page)
    assert "status success" in caption
    want = watch.expected_content("demo-chat", prompt)
    assert norm(final_text(browser_page)) == norm(want)  # nothing lost, nothing twice
    log = gateway.request_log(channel_of(caption))
    assert log["sockets"] >= 2 and log["joins"] >= 2
    joins = [json.loads(f) for f in capture.gateway_frames() if '"phx_join"' in f]
    assert len(joins) >= 2
    assert joins[-1][4].get("last_seq", 0) >= 12, joins[-1]
    assert watch.new() == [channel_of(caption)]


@MODELRIVER
def test_switching_to_component_mid_stream_gets_a_fresh_token_from_the_backend(
        upstream: Upstream, demo_app: Any, gateway: Gateway, page: tuple[Any, Any], watch: GatewayWatch) -> None:
    """The server-mode pump holds the socket token, so the component's opens are refused: it asks
    Python (a trigger) for a fresh one, Python calls the reconnect API with its key, the stream goes on."""
    browser_page, _ = page
    prompt = "Switch modes mid-stream"
    open_demo(browser_page, demo_app, mode="server", tps=8)
    ask(browser_page, prompt)
    wait_text(browser_page, 20)
    browser_page.get_by_text("component", exact=True).click()
    browser_page.wait_for_function("() => mr.component() !== null")
    caption = wait_returned(browser_page)
    assert "status success" in caption
    want = watch.expected_content("demo-chat", prompt)
    assert norm(final_text(browser_page)) == norm(want)
    demo_app.process.wait_for(f"fresh socket token for request {channel_of(caption)}", timeout=30)
    assert watch.new() == [channel_of(caption)]


@REALM
def test_component_mode_on_realm_falls_back_to_server_mode_and_streams(
        upstream: Upstream, demo_app: Any, page: tuple[Any, Any], watch: GatewayWatch) -> None:
    """A Realm request has no browser socket token: component mode follows it in server mode (logged
    once), the tokens still stream, and the browser opens no gateway socket nor sees Realm's key."""
    browser_page, capture = page
    prompt = "Component mode on Realm"
    open_demo(browser_page, demo_app, mode="component", tps=25)
    browser_page.get_by_text(f"Upstream: {upstream.realm_url}").wait_for()
    ask(browser_page, prompt)
    texts, _ = watch_stream(browser_page)

    assert len(texts) >= 5, f"too few intermediate states: {texts}"
    for shorter, longer in itertools.pairwise(texts):
        assert longer.startswith(shorter.rstrip()), (shorter, longer)
    assert browser_page.evaluate("() => mr.component()") is None, "no component: server mode drew it"
    caption = wait_returned(browser_page)
    assert "status success" in caption
    channel_id = upstream.log(channel_of(caption), prompt)["channel_id"]
    want = watch.expected_content("demo-chat", prompt)
    assert norm(final_text(browser_page)) == norm(want)
    assert watch.new() == [channel_id]
    demo_app.process.wait_for("component mode falls back to server mode", timeout=30)
    assert demo_app.process.output.count("component mode falls back to server mode") == 1
    assert not [url for url in capture.sockets if "/socket/websocket" in url]
    frames = [p if isinstance(p, bytes) else p.encode() for _, p in capture.frames]
    assert frames and all(REALM_KEY.encode() not in f for f in frames)
    assert REALM_KEY not in browser_page.evaluate(SNAPSHOT)
    assert REALM_KEY not in demo_app.process.output
