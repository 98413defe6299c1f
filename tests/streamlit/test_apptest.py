"""The demo in server mode under `streamlit.testing.v1.AppTest`, against a real gateway subprocess.

Each test runs against both upstreams (ModelRiver, and the gateway's Realm endpoint through core's
``SyncRealmUpstream``) unless what it tests is ModelRiver's alone (see ``MODELRIVER_ONLY``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from streamlit.testing.v1 import AppTest

from modelriver import ModelRiver
from streamlit_modelriver._render import STEP_ICONS
from support import ROOT, Gateway

if TYPE_CHECKING:
    from support.upstreams import Upstream

DONE = STEP_ICONS["success"]

DEMO = ROOT / "demo_projects" / "streamlit_chat" / "app.py"

RUN_TIMEOUT = 30


UPSTREAMS = pytest.mark.parametrize("upstream", ["modelriver", "realm"], indirect=True)
MODELRIVER_ONLY = pytest.mark.parametrize("upstream", ["modelriver"], indirect=True)
"""Failover restarts an answer after tokens were streamed, which a Realm stream cannot take back
(the Realm endpoint refuses it); event-driven workflows need webhooks and callbacks, which Realm
has not; structured output is a workflow's validated ``data``, and Realm answers text."""


@pytest.fixture
def demo(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    for name, value in upstream.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODELRIVER_DEMO_MODE", "server")
    monkeypatch.setenv("MODELRIVER_DEMO_GC_FREEZE", "0")  # AppTest runs the demo in this process
    monkeypatch.setenv("MODELRIVER_DEMO_TOKENS_PER_SECOND", "0")  # as fast as the gateway goes
    at = AppTest.from_file(str(DEMO), default_timeout=RUN_TIMEOUT)
    at.run()
    assert not at.exception
    return at


def expected(gateway: Gateway, workflow: str, prompt: str) -> Any:
    """The gateway's own final response for the same request, read with the bare core client."""
    with ModelRiver(gateway.api_key, api_base=gateway.url) as client, \
            client.stream(workflow, [{"role": "user", "content": prompt}],
                          metadata={"scripted": {"tokens_per_second": 0}}) as stream:
        return stream.wait()


def ask(at: AppTest, prompt: str, workflow_label: str | None = None) -> AppTest:
    if workflow_label is not None:
        at.selectbox(key="workflow_label").set_value(workflow_label).run()
    at.chat_input[0].set_value(prompt).run()
    assert not at.exception, at.exception
    return at


def assistant_markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.chat_message[-1].markdown]


@UPSTREAMS
def test_chat_streams_the_gateways_content_with_steps_done(demo: AppTest, upstream: Upstream) -> None:
    prompt = "Tell me about rivers"
    ask(demo, prompt)
    caption = next(c.value for c in demo.get("caption") if "channel " in c.value)
    channel_id = upstream.log(caption.rsplit("channel ", 1)[1].strip(), prompt)["channel_id"]
    assert upstream.gateway.request_log(channel_id)["status"] == "success"
    if upstream.realm:  # it came through the gateway's Realm endpoint
        upstream.gateway.process.wait_for(f"realm: request {channel_id}", timeout=10)
    want = expected(upstream.gateway, "demo-chat", prompt)
    assert want.status == "success" and len(want.content) > 20
    texts = assistant_markdown(demo)
    assert want.content in texts  # the streamed answer, replaced by the final content
    status = demo.status[-1]
    assert status.label == "Answer ready"
    assert status.state == "complete"
    steps = status.markdown[0].value
    for name in ("Queueing request", "Processing AI request", "Waiting for response", "Response received"):
        assert f"{DONE} {name}" in steps
    assert STEP_ICONS["pending"] not in steps and STEP_ICONS["error"] not in steps
    caption = demo.get("caption")
    assert any("status success" in c.value for c in caption)
    assert not demo.error


@MODELRIVER_ONLY
def test_structured_output_renders_reply_and_table(demo: AppTest, gateway: Gateway) -> None:
    ask(demo, "I need help with my order", "Structured output")
    want = expected(gateway, "demo-structured", "I need help with my order")
    assert isinstance(want.data, dict) and want.data["reply"]
    assert want.data["reply"] in assistant_markdown(demo)
    # st.json from the adapter, a table and a dataframe from the demo's use of the return value
    assert demo.json[-1].value and '"sentiment"' in demo.json[-1].value
    table = demo.table[-1].value
    assert set(table["field"]) >= {"sentiment", "confidence", "summary"}
    assert want.data["sentiment"] in list(table["value"])
    if want.data.get("action_items"):
        assert list(demo.dataframe[-1].value["task"]) == [a["task"] for a in want.data["action_items"]]


@UPSTREAMS
def test_error_workflow_shows_st_error_and_returns_it(demo: AppTest) -> None:
    ask(demo, "this will fail", "Error")
    assert demo.error, "st.error expected"
    status = demo.status[-1]
    assert status.state == "error"
    assert status.label.startswith("Failed: ")
    assert STEP_ICONS["error"] in status.markdown[0].value
    assert any("status error" in c.value for c in demo.get("caption"))


@MODELRIVER_ONLY
def test_failover_ends_with_the_second_providers_answer(demo: AppTest, gateway: Gateway) -> None:
    ask(demo, "fail over please", "Failover")
    want = expected(gateway, "demo-failover", "fail over please")
    assert want.status == "success"
    assert want.content in assistant_markdown(demo)
    assert "Failover" in demo.status[-1].markdown[0].value


@MODELRIVER_ONLY
def test_event_driven_completes_after_the_demo_backend_calls_back(demo: AppTest, gateway: Gateway) -> None:
    ask(demo, "open a ticket", "Event-driven (webhook + callback)")
    status = demo.status[-1]
    assert status.state == "complete", status.label
    steps = status.markdown[0].value
    assert f"{DONE} Backend processed" in steps
    caption = next(c.value for c in demo.get("caption") if "channel " in c.value)
    assert "status completed" in caption
    channel_id = caption.rsplit("channel ", 1)[1].strip()
    log = gateway.request_log(channel_id)
    assert log["status"] == "completed"
    assert log["callback"] and log["callback"]["received"]
    # the enriched data came back through the gateway and the demo shows it
    assert any("ticket_id" in list(t.value["field"]) for t in demo.table)
