"""Native Streamlit rendering shared by both modes: steps, the final answer, data, errors.

Model and error text is untrusted: the answer goes through ``safe_markdown`` (no remote image,
no raw HTML; links stay links), and any text put into a label, a step line or ``st.error`` is
escaped (``escape_markdown``), so ``:red[...]``, ``**``, ``[x](y)``, ``:material/...:`` or ``$``
in it show as typed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from modelriver import AIResponse, WorkflowStep
from modelriver.markdown import escape_markdown, safe_markdown
from modelriver.partial import prose_key

__all__ = [
    "STEP_ICONS",
    "answer_markdown", "card_container", "card_markdown", "display_text", "final_label", "render_final",
    "render_outcome", "steps_markdown", "text_container",
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
    """The chat text of a final answer: a structured answer's prose field (``reply``...; none
    for a schema without one: its card shows it), else ``content``, else the stream."""
    for data in (response.data, _ai_data(response)):
        key = prose_key(data)
        if key is not None:
            return str(data[key])
    if not response.is_error and isinstance(_ai_data(response), dict) and _ai_data(response):
        return ""
    if response.content:
        return response.content
    return streamed


def _ai_data(response: AIResponse) -> Any:
    """The AI's structured object: ``ai_response.data`` of a ``completed`` answer, else ``data``."""
    ai_response = response.raw.get("ai_response")
    if isinstance(ai_response, dict) and isinstance(ai_response.get("data"), dict):
        return ai_response["data"]
    return response.data


_CARD_ORDER = ("summary", "sentiment", "confidence", "topics", "action_items")


def card_markdown(data: Any, prose: str | None = None) -> str:
    """A structured answer's fields (all but its prose field) as a Markdown card, as far as they came.

    ``chatbot_response`` fields first (summary, sentiment with confidence, topics, action items),
    then any other field. Values are the model's: each is escaped (shown as typed).

    Args:
        data: the object so far (a partial object, or the final ``data``); anything else: no card.
        prose: the prose field to leave out (it is the chat text); None: the obvious one.

    Returns:
        The card's Markdown, ``""`` when there is nothing to show yet.
    """
    if not isinstance(data, Mapping):
        return ""
    skip = prose if prose is not None else prose_key(dict(data))
    lines: list[str] = []
    if isinstance(data.get("summary"), str) and data["summary"]:
        lines.append(f"**Summary:** {escape_markdown(data['summary'])}")
    confidence = data.get("confidence")
    level = f"{float(confidence):.0%}" if isinstance(confidence, int | float) else None
    if isinstance(data.get("sentiment"), str) and data["sentiment"]:
        lines.append(f"**Sentiment:** {escape_markdown(data['sentiment'])}"
                     + (f" · confidence {level}" if level else ""))
    elif level:
        lines.append(f"**Confidence:** {level}")
    topics = [t for t in data.get("topics") or () if isinstance(t, str) and t] \
        if isinstance(data.get("topics"), list) else []
    if topics:
        lines.append("**Topics:** " + ", ".join(escape_markdown(t) for t in topics))
    items = data.get("action_items") if isinstance(data.get("action_items"), list) else []
    tasks = [_item_text(item) for item in items or ()]
    if any(tasks):
        lines.append("**Action items:**  \n" + "  \n".join(f"• {t}" for t in tasks if t))
    for key, value in data.items():
        if key in _CARD_ORDER or key == skip or value in (None, "", [], {}):
            continue
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f"**{escape_markdown(str(key))}:** {escape_markdown(shown)}")
    return "\n\n".join(lines)


def _item_text(item: Any) -> str:
    if isinstance(item, Mapping):
        task = item.get("task")
        if not isinstance(task, str) or not task:
            return ""
        priority = item.get("priority")
        return escape_markdown(task) + (f" ({escape_markdown(priority)})" if isinstance(priority, str)
                                        and priority else "")
    return escape_markdown(item) if isinstance(item, str) else ""


def card_container(key: str) -> DeltaGenerator:
    """The container of a request's card (CSS class ``st-key-modelriver-card-<key>``)."""
    return st.container(key=f"modelriver-card-{key}")


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


def render_outcome(response: AIResponse, *, container: DeltaGenerator | None = None,
                   card: DeltaGenerator | None = None) -> None:
    """Below the text: the card and the structured data (``st.json``), or the error (``st.error``).

    Args:
        response: the final response.
        container: where to write (default: the page).
        card: where the card goes (the live card's slot); default: ``container``.
    """
    target: Any = container if container is not None else st
    data = structured_data(response)
    if data is not None:
        shown = card_markdown(_ai_data(response)) if not response.is_error else ""
        card_target: Any = card if card is not None else target
        if shown:
            card_target.markdown(shown)
        elif card is not None:
            card.empty()
        target.json(data, expanded=False)
    elif card is not None:
        card.empty()
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
    render_outcome(response, card=card_container(key).empty())
