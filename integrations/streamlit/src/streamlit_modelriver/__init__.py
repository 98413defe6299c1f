"""streamlit-modelriver: streamed ModelRiver answers in Streamlit, in one call.

The 30-second version::

    import streamlit as st
    from streamlit_modelriver import st_modelriver

    if prompt := st.chat_input("Ask something"):
        st.session_state.turn = {"prompt": prompt, "key": f"turn-{len(st.session_state)}"}
    if turn := st.session_state.get("turn"):
        with st.chat_message("assistant"):
            response = st_modelriver(turn["prompt"], workflow="demo-chat", key=turn["key"])
        if response is not None:            # None while the answer streams
            st.session_state.pop("turn")   # response.content, .data, .is_error, .meta ...

Settings come from ``st.secrets`` (``MODELRIVER_API_KEY`` / ``MODELRIVER_API_BASE``, or
``api_key`` / ``api_base`` in a ``[modelriver]`` table) or the environment. The API key stays on
the server: the browser only ever sees a request's short-lived socket token.

The upstream: ``client=`` takes any ``modelriver.upstream.Upstream``; by default
``upstream_client()`` picks it as core's ``sync_upstream_from_env`` does:
``MODELRIVER_UPSTREAM=realm`` (``REALM_URL``, ``REALM_API_KEY``) sends requests to a Realm server,
otherwise to ModelRiver. Realm requests have no browser socket token, so component mode follows
them in server mode.

Two modes:

- ``mode="component"`` (default): a components-v2 element (no iframe, no build step) whose
  JavaScript joins the gateway's Phoenix channel with the socket token, draws tokens and steps as
  they come (no rerun per token), and hands the final response to Python as its value: the call
  returns None, then, on the rerun the component triggers, the ``AIResponse``.
- ``mode="server"``: this process streams through core's sync client into native elements:
  ``st.markdown`` for the tokens (inside the current ``st.chat_message``), the live steps below
  them, a collapsed ``st.status`` above (the steps once over), ``st.json`` for structured output,
  ``st.error`` for errors. The call
  returns the ``AIResponse`` when the answer is complete.

Both are rerun-safe: a rerun while a request is in flight (any widget click) re-attaches to it
by ``key`` rather than starting another. A browser reload finds it through the ``mr_<key>`` query
parameter: call ``st_modelriver(None, key=key)`` for each key of ``resumable_requests()``. Each
shows a Stop control that cancels the request upstream. Errors (an API error, a failed or
cancelled request) are shown with ``st.error`` and returned as an ``AIResponse`` whose
``is_error`` is true, never swallowed.

Event-driven workflows: pass ``events=["webhook_received"]`` and ``webhook_url=...``; the steps
show "Waiting for backend callback..." until your backend calls back and the response is
``completed``. ``metadata`` is passed through to the gateway.

Latency: call ``freeze_startup_objects()`` after the app's imports. Streamlit ends each run with a
full garbage collection that holds the GIL for 70-200 ms in a typical process and holds back the
run's last deltas, the answer's component among them; frozen startup objects make it ~2 ms.

Logging goes to the ``streamlit_modelriver`` logger (never the API key).
"""

from streamlit_modelriver._gc import freeze_startup_objects
from streamlit_modelriver._main import Mode, pump_registry, resumable_requests, st_modelriver
from streamlit_modelriver._settings import (
    modelriver_client,
    resolve_settings,
    resolve_upstream_settings,
    streamlit_settings,
    upstream_client,
)
from streamlit_modelriver._version import __version__

__all__ = [
    "Mode",
    "__version__",
    "freeze_startup_objects",
    "modelriver_client",
    "pump_registry",
    "resolve_settings",
    "resolve_upstream_settings",
    "resumable_requests",
    "st_modelriver",
    "streamlit_settings",
    "upstream_client",
]
