"""Native Streamlit rendering shared by both modes: steps, the final answer, data, errors.

Model and error text is untrusted: the answer goes through ``safe_markdown`` (no remote image,
no raw HTML; links stay links), and any text put into a label, a step line or ``st.error`` is
escaped (``escape_markdown``), so ``:red[...]``, ``**``, ``[x](y)``, ``:material/...:`` or ``$``
in it show as typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from modelriver import AIResponse, WorkflowStep
from modelriver.markdown import escape_markdown, safe_markdown

__all__ = [
    "STEP_ICONS",
    "answer_markdown", "display_text", "final_label", "render_final", "render_outcome",
    "steps_markdown", "text_container",
]

STEP_ICONS = {
    "pending": ":gray[:material/radio_button_unchecked:]",
    "loading": ":blue[:material/progress_activity:]",
    "success": ":green[:material/check_circle:]",
    "error": ":red[:material/cancel:]",
}
"""Markdown icon of each step status (Streamlit's bundled Material Symbols: no emoji font needed)."""


def steps_markdown(steps: Sequence[WorkflowStep], notes: Sequence[str] = ()) -> str:
    """The steps (and notes) as Markdown, one a line: ``:green[:material/check_circle:] Queueing request``.

    Names, error messages and notes (tool names, failover reasons) are escaped: shown as typed.
    """
    lines = []
    for step in steps:
        line = f"{STEP_ICONS.get(step.status, STEP_ICONS['pending'])} {escape_markdown(step.name)}"
        if step.duration is not None:
            line += f" · {step.duration} ms"
        if step.status == "error" and step.error_message:
            line += f" · {escape_markdown(step.error_message)}"
        lines.append(line)
    lines.extend(f":gray[:material/subdirectory_arrow_right:] {escape_markdown(note)}" for note in notes)
    return "  \n".join(lines)


def display_text(response: AIResponse, streamed: str) -> str:
    """The chat text of a final answer: a structured ``reply``, else ``content``, else the stream."""
    for data in (response.data, response.raw.get("ai_response", {}).get("data")
                 if isinstance(response.raw.get("ai_response"), dict) else None):
        if isinstance(data, dict) and isinstance(data.get("reply"), str):
            return str(data["reply"])
    if response.content:
        return response.content
    return streamed


def structured_data(response: AIResponse) -> Any:
    """The structured part of a final answer (``data``), or None."""
    if response.is_error:
        return None
    data = response.data
    return data if isinstance(data, dict | list) and data else None


def answer_markdown(text: str, *, allow_remote_media: bool = False) -> str:
    """The answer as Markdown safe to show: images as links (unless allowed), no raw HTML."""
    return safe_markdown(text, allow_remote_media=allow_remote_media)


def final_label(response: AIResponse) -> str:
    """The status label of a finished request (the error message escaped)."""
    if response.is_error:
        return f"Failed: {escape_markdown(response.error_message or '')}"
    if response.kind == "completed":
        return "Completed (backend processed)"
    return "Answer ready"


def render_outcome(response: AIResponse, *, container: DeltaGenerator | None = None) -> None:
    """Below the text: the structured data (``st.json``) or the error (``st.error``)."""
    target: Any = container if container is not None else st
    data = structured_data(response)
    if data is not None:
        target.json(data, expanded=False)
    if response.is_error:
        target.error(escape_markdown(response.error_message or "request failed"), icon=":material/error:")


def text_container(key: str) -> DeltaGenerator:
    """The container of a request's text (CSS class ``st-key-modelriver-text-<key>``)."""
    return st.container(key=f"modelriver-text-{key}")


def render_final(response: AIResponse, *, key: str, text: str, steps: Sequence[WorkflowStep],
                 notes: Sequence[str], show_steps: bool, allow_remote_media: bool = False) -> None:
    """A finished request, drawn from scratch (a rerun after the end, or component mode's end)."""
    if show_steps and steps:
        with st.status(final_label(response), state="error" if response.is_error else "complete",
                       expanded=False):
            st.markdown(steps_markdown(steps, notes))
    shown = display_text(response, text)
    if shown:
        text_container(key).markdown(answer_markdown(shown, allow_remote_media=allow_remote_media))
    render_outcome(response)
