"""Several ``st_modelriver`` calls on one page, one per case, at their defaults (tests/e2e/test_abuse.py).

``?mode=component|server&cases=<JSON list of [workflow, metadata]>``; once every call has its
response, a container keyed ``returned-all`` shows how many did.
"""

import json

import streamlit as st

from streamlit_modelriver import st_modelriver

query = st.query_params
server = query.get("mode") == "server"
cases = json.loads(query.get("cases", "[]"))
answered = 0
for index, (workflow, metadata) in enumerate(cases):
    response = st_modelriver(f"abuse {index}", workflow=workflow, key=f"case{index}",
                             mode="server" if server else "component", metadata=metadata)
    answered += response is not None
if cases and answered == len(cases):
    with st.container(key="returned-all"):
        st.caption(f"{answered} answered")
