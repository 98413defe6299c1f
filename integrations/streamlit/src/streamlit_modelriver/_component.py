"""Component mode: the browser streams straight from the gateway (components v2, no iframe).

The HTML, CSS and JavaScript in ``frontend/`` are registered inline from Python: nothing to
build. The JavaScript is one module made of the shared browser module (``modelriver-link.js``, core's,
linked into the package, which speaks the protocol) followed by ``stream.js`` (which renders): components
v2 load inline JavaScript from a Blob URL, where a relative import cannot resolve. Python passes
the request's *socket* token (``ws_token``, short-lived, bound to one channel), never the API key;
the component's value is the terminal response.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

import streamlit as st

if TYPE_CHECKING:  # streamlit 1.51-1.52 have no such name at run time (a type hint only)
    from streamlit.components.v2.types import ComponentRenderer

from modelriver import AIResponse, AsyncRequest, WorkflowStep
from modelriver.types import StepStatus

__all__ = ["COMPONENT_NAME", "ComponentResult", "component", "mount", "peek", "result_of"]

logger = logging.getLogger("streamlit_modelriver")

COMPONENT_NAME = "streamlit-modelriver.stream"

ComponentResult = Mapping[str, Any]


def _asset(name: str) -> str:
    return (resources.files("streamlit_modelriver") / "frontend" / name).read_text(encoding="utf-8")


@cache
def component() -> ComponentRenderer:
    """The registered component's mount command (registered once per process)."""
    return st.components.v2.component(
        COMPONENT_NAME,
        html=_asset("stream.html"),
        css=_asset("stream.css"),
        js=_asset("modelriver-link.js") + "\n" + _asset("stream.js"),
    )


def _noop() -> None:
    """Components v2 surfaces a state or trigger value only when it has a callback."""


def component_key(key: str, channel_id: str) -> str:
    return f"modelriver-{key}-{channel_id}"


def peek(key: str, channel_id: str) -> ComponentResult:
    """The component's state and triggers from the browser, read before mounting it."""
    try:
        value = st.session_state.get(component_key(key, channel_id))
    except Exception:  # a key Streamlit does not know yet
        return {}
    return value if isinstance(value, Mapping) else {}


def mount(key: str, request: AsyncRequest, *, show_steps: bool, url_param: str | None = None) -> ComponentResult:
    """Mount the component for ``request``; the browser connects with ``request.ws_token``.

    With ``url_param``, the browser keeps ``?<url_param>=<channel_id>`` in the page URL while the
    request is in flight (so a reload finds it) and removes it at the end.
    """
    data = {
        "channel_id": request.channel_id,
        "ws_token": request.ws_token,
        "websocket_url": request.websocket_url,
        "topic": request.topic,
        "show_steps": show_steps,
        "storage_prefix": "modelriver_",
        "url_param": url_param,
    }
    result = component()(
        key=component_key(key, request.channel_id),
        data=data,
        default={"result": None},
        on_result_change=_noop,
        on_stop_change=_noop,
        on_refresh_change=_noop,
    )
    return cast(ComponentResult, result)


def result_of(state: ComponentResult, channel_id: str) -> tuple[AIResponse, str, list[WorkflowStep],
                                                                 list[str]] | None:
    """The terminal response the component handed back for ``channel_id``, if any."""
    value = state.get("result")
    if not isinstance(value, Mapping) or value.get("channel_id") != channel_id:
        return None
    payload = value.get("response")
    if not isinstance(payload, dict):
        return None
    response = AIResponse.from_payload(payload)
    text = value.get("text") if isinstance(value.get("text"), str) else ""
    steps = []
    for raw in value.get("steps") or ():
        if isinstance(raw, Mapping) and isinstance(raw.get("id"), str):
            duration = raw.get("duration")
            steps.append(WorkflowStep(
                id=raw["id"],
                name=str(raw.get("name") or raw["id"]),
                status=cast(StepStatus, raw.get("status") or "pending"),
                duration=int(duration) if isinstance(duration, int | float) else None,
                error_message=raw.get("errorMessage") if isinstance(raw.get("errorMessage"), str) else None,
            ))
    notes = [n for n in value.get("notes") or () if isinstance(n, str)]
    return response, str(text), steps, notes
