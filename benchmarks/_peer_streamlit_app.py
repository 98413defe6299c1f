"""The peer of ``st_modelriver`` in ``streamlit_ttft.py``: the chat page a competent user writes without it.

    streamlit run benchmarks/_peer_streamlit_app.py    # MODELRIVER_API_BASE / MODELRIVER_API_KEY

Core's sync client streams the answer in the script run and ``st.write_stream`` shows it; the
history lives in ``st.session_state``. The page is the same as ``_ours_streamlit_app.py``'s (title,
history, chat input, the answer in a keyed container, a caption naming the channel); only the
answer's call differs. ``?scripted=<JSON>`` is the request's ``metadata.scripted``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import streamlit as st

from modelriver import ModelRiver, Token


@st.cache_resource
def client() -> ModelRiver:
    return ModelRiver(os.environ["MODELRIVER_API_KEY"], api_base=os.environ["MODELRIVER_API_BASE"])


history: list[dict[str, str]] = st.session_state.setdefault("history", [])
st.title("Chat")
for message in history:
    with st.chat_message(message["role"]):
        st.markdown(message["content"])

if prompt := st.chat_input("Ask something"):
    history.append({"role": "user", "content": prompt})
    with st.chat_message("user"):
        st.markdown(prompt)
    scripted = json.loads(st.query_params.get("scripted") or "{}")
    channel: dict[str, str] = {}

    def tokens() -> Iterator[str]:
        with client().stream("demo-chat", list(history), metadata={"scripted": scripted}) as stream:
            channel["id"] = stream.request.channel_id
            for event in stream:
                if isinstance(event, Token):
                    yield event.data

    with st.chat_message("assistant"):
        with st.container(key=f"peer-text-{len(history)}"):
            text = st.write_stream(tokens())
        with st.container(key=f"returned-{len(history)}"):
            st.caption(f"channel {channel['id']}")
    history.append({"role": "assistant", "content": str(text)})
