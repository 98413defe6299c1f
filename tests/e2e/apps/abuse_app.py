"""Several ``st_modelriver`` calls on one page, one per case, at their defaults (tests/e2e/test_abuse.py).

``?mode=component|server&cases=<JSON list of [workflow, metadata]>``; once every call has its
response, a container keyed ``returned-all`` shows how many did.
"""

import json

import streamlit as st

from streamlit_modelriver import st_modelriver

query = st.query_params
mode = "server" if query.get("mode") == "server" else "component"
answered = 0
for index, (workflow, metadata) in enumerate(json.loads(query.get("cases", "[]"))):
    response = st_modelriver(f"abuse {index}", workflow=workflow, key=f"case{index}", mode=mode,
                             metadata=metadata)
    answered += response is not None
if answered and answered == len(json.loads(query.get("cases", "[]"))):
    with st.container(key="returned-all"):
        st.caption(f"{answered} answered")
