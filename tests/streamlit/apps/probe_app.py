"""A bare app around one `st_modelriver` call, shaped by query parameters (tests only).

``?mode=component|server&workflow=demo-chat&prompt=...&key=...&meta=<JSON metadata>&media=1``
(``media=1``: ``allow_remote_media=True``)
"""

import json

import streamlit as st

from streamlit_modelriver import st_modelriver

query = st.query_params
response = st_modelriver(
    query.get("prompt", "hello"),
    workflow=query.get("workflow", "demo-chat"),
    key=query.get("key", "probe"),
    mode="server" if query.get("mode") == "server" else "component",
    metadata=json.loads(query.get("meta", "{}")),
    allow_remote_media=query.get("media") == "1",
)
if response is not None:
    with st.container(key="returned-probe"):
        st.caption(f"status {response.status} · channel {response.channel_id}")
