"""ModelRiver chat on Streamlit: ``streamlit run demo_projects/streamlit_chat/app.py``.

Runs against the embedded gateway by default (``modelriver dev``, or ``make demo`` which starts
both); reads ``MODELRIVER_API_BASE`` / ``MODELRIVER_API_KEY`` like every demo.

Upstream: ``MODELRIVER_UPSTREAM=realm`` sends the chat to a Realm server instead (``REALM_URL``,
default ``ws://localhost:8080``, and ``REALM_API_KEY``; e.g. ``modelriver dev --realm-port 8080``,
whose Realm endpoint takes the gateway's API key unless ``--realm-api-key`` sets another).
Realm requests stream in server mode (the browser gets no socket token for them), and the
event-driven workflow needs ModelRiver (Realm has no webhooks): it shows Realm's refusal.

- Chat history lives in ``st.session_state``; the turn in flight is ``st.session_state.pending``.
- Sidebar: workflow (chat, structured, event-driven, failover, tools, error), streaming mode
  (component: the browser streams from the gateway; server: this process streams), steps on/off.
- Structured answers show their ``reply`` as the message and the rest as a table.
- Event-driven: a small receiver started in-process (``demo_webhooks.py``) verifies the signed
  webhook and calls back with enriched data; the answer completes when the callback lands.
- Reload the page mid-answer: the answer resumes (``resumable_requests()``), no second request.

Dev-gateway knobs (optional): ``MODELRIVER_DEMO_MODE`` (component | server),
``MODELRIVER_DEMO_TOKENS_PER_SECOND`` or the ``?tps=`` query parameter (scripted provider speed),
``MODELRIVER_DEMO_METADATA`` (JSON merged into each request's metadata),
``MODELRIVER_WEBHOOK_SECRET`` (default ``whsec_dev``), ``MODELRIVER_DEMO_WEBHOOK_URL`` (a public
receiver instead of the in-process one), ``MODELRIVER_DEMO_BACKEND_SECONDS`` (the demo backend's
simulated processing time before it calls back, default 1), ``MODELRIVER_DEMO_GC_FREEZE=0`` (no
``freeze_startup_objects()`` at start).
Query parameters ``?mode=``, ``?workflow=`` (e.g. ``demo-structured``) and ``?tps=`` preselect the
sidebar.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from modelriver import AIResponse
from streamlit_modelriver import (
    freeze_startup_objects,
    modelriver_client,
    resumable_requests,
    st_modelriver,
    upstream_client,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_webhooks import WebhookReceiver

if os.environ.get("MODELRIVER_DEMO_GC_FREEZE", "1") != "0":
    freeze_startup_objects()  # once a process: Streamlit's end-of-run GC pass then skips the imports

logging.basicConfig(level=os.environ.get("MODELRIVER_DEMO_LOG_LEVEL", "INFO"),
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")

WORKFLOWS: dict[str, dict[str, Any]] = {
    "Chat": {"workflow": "demo-chat"},
    "Structured output": {"workflow": "demo-structured"},
    "Event-driven (webhook + callback)": {"workflow": "demo-events", "events": ["webhook_received"]},
    "Failover": {"workflow": "demo-failover"},
    "Tool call": {"workflow": "demo-tools"},
    "Error": {"workflow": "demo-error"},
}
MODES = ("component", "server")


@st.cache_resource(show_spinner=False)
def webhook_receiver() -> WebhookReceiver:
    """The in-process webhook receiver, started once per process."""
    secret = os.environ.get("MODELRIVER_WEBHOOK_SECRET", "whsec_dev")
    delay = float(os.environ.get("MODELRIVER_DEMO_BACKEND_SECONDS", "1"))
    return WebhookReceiver(modelriver_client(), secret, processing_seconds=delay).start()


def request_metadata() -> dict[str, Any] | None:
    metadata: dict[str, Any] = {}
    raw = os.environ.get("MODELRIVER_DEMO_METADATA")
    if raw:
        metadata.update(json.loads(raw))
    tps = st.query_params.get("tps") or os.environ.get("MODELRIVER_DEMO_TOKENS_PER_SECOND")
    if tps:
        scripted = dict(metadata.get("scripted") or {})
        scripted["tokens_per_second"] = float(tps)
        metadata["scripted"] = scripted
    return metadata or None


def show_returned(message: dict[str, Any]) -> None:
    """What the app does with the returned AIResponse: a table for structured data, a caption."""
    data = message.get("data")
    if isinstance(data, dict):
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list) and k != "reply"}
        if scalars:
            st.table(pd.DataFrame({"field": list(scalars), "value": [str(v) for v in scalars.values()]}))
        items = data.get("action_items")
        if isinstance(items, list) and items:
            st.dataframe(pd.DataFrame(items), hide_index=True)
        if isinstance(data.get("topics"), list):
            st.caption("Topics: " + ", ".join(map(str, data["topics"])))
        if isinstance(data.get("enrichment"), dict):
            st.table(pd.DataFrame({"field": list(data["enrichment"]),
                                   "value": [str(v) for v in data["enrichment"].values()]}))
    with st.container(key=f"returned-{message['key']}"):
        st.caption(message["caption"])


def to_message(key: str, response: AIResponse, workflow: str | None) -> dict[str, Any]:
    meta = response.meta
    usage = meta.get("usage") if isinstance(meta.get("usage"), dict) else {}
    parts = [f"status {response.status}"]
    if response.model:
        parts.append(f"model {response.model}")
    if response.duration_ms is not None:
        parts.append(f"{response.duration_ms} ms")
    if usage.get("total_tokens"):
        parts.append(f"{usage['total_tokens']} tokens")
    parts.append(f"channel {response.channel_id}")
    data = response.data if isinstance(response.data, dict) else None
    text = data["reply"] if data and isinstance(data.get("reply"), str) else (response.content or "")
    return {"role": "assistant", "key": key, "content": text, "data": data, "workflow": workflow,
            "error": response.error_message, "caption": " · ".join(parts)}


def render_history(history: list[dict[str, Any]]) -> None:
    for message in history:
        with st.chat_message(message["role"]):
            if message["content"]:
                st.markdown(message["content"])
            if message["role"] == "assistant":
                if message.get("error"):
                    st.error(message["error"], icon=":material/error:")
                show_returned(message)


def main() -> None:
    st.set_page_config(page_title="ModelRiver + Streamlit", page_icon="🌊")
    state = st.session_state
    history: list[dict[str, Any]] = state.setdefault("history", [])
    state.setdefault("pings", 0)

    with st.sidebar:
        st.header("ModelRiver chat")
        names = list(WORKFLOWS)
        wanted = st.query_params.get("workflow")  # e.g. ?workflow=demo-structured
        index = next((i for i, n in enumerate(names) if WORKFLOWS[n]["workflow"] == wanted), 0)
        label = st.selectbox("Workflow", names, index=index, key="workflow_label")
        default_mode = st.query_params.get("mode") or os.environ.get("MODELRIVER_DEMO_MODE", "component")
        mode = st.radio("Streaming", MODES, index=MODES.index(default_mode) if default_mode in MODES else 0,
                        key="mode", horizontal=True,
                        help="component: the browser streams from the gateway. server: Python streams.")
        show_steps = st.toggle("Show workflow steps", value=True, key="show_steps")
        if st.button("Ping (an unrelated widget)", key="ping"):
            state.pings += 1
        st.caption(f"Pings: {state.pings}")
        st.caption(f"Upstream: {upstream_client().api_base}")
        if st.button("Clear chat", key="clear"):
            history.clear()
            state.pop("pending", None)

    st.title("ModelRiver + Streamlit")
    render_history(history)

    if prompt := st.chat_input("Ask something"):
        history.append({"role": "user", "content": prompt})
        spec = WORKFLOWS[label]
        state.pending = {
            "key": uuid.uuid4().hex[:12],
            "messages": [{"role": m["role"], "content": m["content"]} for m in history if m["content"]],
            **spec,
        }
        with st.chat_message("user"):
            st.markdown(prompt)

    pending = state.get("pending")
    if pending is None:
        for key in resumable_requests():  # a reload while an answer was streaming
            pending = state.pending = {"key": key, "messages": None, "workflow": None, "resumed": True}
            break
    if pending is None:
        return

    webhook_url = None
    if pending.get("events"):
        webhook_url = os.environ.get("MODELRIVER_DEMO_WEBHOOK_URL") or webhook_receiver().url
    with st.chat_message("assistant"):
        if pending.get("resumed"):
            st.caption("Resumed after a reload")
        response = st_modelriver(
            pending["messages"],
            workflow=pending.get("workflow"),
            key=pending["key"],
            mode=mode,
            show_steps=show_steps,
            events=pending.get("events"),
            webhook_url=webhook_url,
            metadata=request_metadata(),
        )
        if response is not None:
            message = to_message(pending["key"], response, pending.get("workflow"))
            show_returned(message)
            history.append(message)
            state.pop("pending", None)


main()
