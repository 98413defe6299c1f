"""``st_modelriver`` in ``streamlit_ttft.py``: the peer's chat page (``_peer_streamlit_app.py``) with our call.

    streamlit run benchmarks/_ours_streamlit_app.py    # ?mode=component|server

The same page as the peer's (title, history, chat input, a caption naming the channel); the
answer is ``st_modelriver(messages, workflow=..., key=..., mode=...)``, as its README shows: the
turn in flight is kept in ``st.session_state`` (component mode returns None until the browser
hands the answer back). ``?scripted=<JSON>`` is the request's ``metadata.scripted``.
"""

from __future__ import annotations

import json
import uuid

import streamlit as st

from streamlit_modelriver import freeze_startup_objects, st_modelriver

freeze_startup_objects()  # what the package's README asks for, after the imports

state = st.session_state
history: list[dict[str, str]] = state.setdefault("history", [])
st.title("Chat")
for message in history:
    with st.chat_message(message["role"]):
        st.markdown(message["content"])

if prompt := st.chat_input("Ask something"):
    history.append({"role": "user", "content": prompt})
    with st.chat_message("user"):
        st.markdown(prompt)
    state.pending = {"key": uuid.uuid4().hex[:12], "messages": list(history)}

if (pending := state.get("pending")) is not None:
    scripted = json.loads(st.query_params.get("scripted") or "{}")
    with st.chat_message("assistant"):
        response = st_modelriver(pending["messages"], workflow="demo-chat", key=pending["key"],
                                 mode="server" if st.query_params.get("mode") == "server" else "component",
                                 metadata={"scripted": scripted})
        if response is not None:
            with st.container(key=f"returned-{len(history)}"):
                st.caption(f"channel {response.channel_id}")
            history.append({"role": "assistant", "content": response.content or ""})
            del state.pending
