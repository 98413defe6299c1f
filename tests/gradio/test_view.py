"""``ChatView``: stream events in, Gradio chat messages out (pure, no gateway)."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr
import pytest

from gradio_modelriver import ChatView, markdown_card, modelriver_chat, partial_json_string
from gradio_modelriver._chat import _history_messages, _validate
from modelriver.events import Error, Response, Status, Step, StreamEvent, Token, ToolCall
from modelriver.steps import StepTracker
from modelriver.types import AIResponse


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(view: ChatView, tracker: StepTracker, *events: StreamEvent) -> None:
    """Apply events as the core stream would emit them (steps after responses)."""
    for event in events:
        view.apply(event)
        if isinstance(event, Response):
            for step in tracker.response(event.response):
                view.apply(Step(step))


def thoughts(messages: list[gr.ChatMessage]) -> list[dict[str, Any]]:
    return [dict(m.metadata) for m in messages if m.metadata.get("title")]


def success(content: str, data: Any = None, status: str = "success") -> Response:
    payload = {"status": status, "content": content, "meta": {"duration_ms": 1200}}
    if data is not None:
        payload["data"] = data
    return Response(AIResponse.from_payload(payload))


def test_steps_go_pending_then_done_with_durations() -> None:
    clock = Clock()
    view = ChatView("demo-chat", clock=clock)
    tracker = StepTracker()
    first = thoughts(view.messages())
    assert first[0]["title"] == "Workflow `demo-chat`" and first[0]["status"] == "pending"
    assert [t["title"] for t in first[1:]] == [
        "Queueing request", "Processing AI request", "Waiting for response", "Response received"]
    assert all(t["status"] == "pending" and t["parent_id"] == first[0]["id"] for t in first[1:])
    clock.now += 0.25
    for step in tracker.joined():
        assert view.apply(Step(step))
    queue = thoughts(view.messages())[1]
    assert queue["status"] == "done" and queue["duration"] == pytest.approx(0.25)
    assert view.apply(Token("Hello "))
    assert view.apply(Token("world"))
    assert view.messages()[-1].content == "Hello world"
    clock.now += 1.0
    feed(view, tracker, success("Hello world"))
    final = thoughts(view.messages())
    assert all(t["status"] == "done" for t in final)
    assert final[0]["duration"] == pytest.approx(1.25)
    assert final[2]["duration"] == pytest.approx(1.2)  # process: the gateway's meta.duration_ms
    assert view.done and view.error is None


def test_failover_resets_the_answer_and_shows_a_thought() -> None:
    view = ChatView("demo-failover")
    view.apply(Token("partial from a"))
    assert view.apply(Status("failover", payload={"from": "a", "to": "b", "reset": True,
                                                   "reason": "boom"}))
    assert view.text == ""
    view.apply(Token("from b"))
    titles = {t["title"]: t for t in thoughts(view.messages())}
    assert titles["Failover: a → b"]["log"] == "boom"
    assert view.messages()[-1].content == "from b"


def test_tool_calls_are_thoughts_and_show_steps_false_hides_steps() -> None:
    view = ChatView("demo-tools", show_steps=False)
    view.apply(ToolCall("get_weather", {"city": "Paris"}))
    view.apply(Token("Sunny"))
    messages = view.messages()
    assert [t["title"] for t in thoughts(messages)] == ["🛠️ Used tool `get_weather`"]
    assert '"city": "Paris"' in str(messages[0].content)
    assert messages[-1].content == "Sunny"


def test_structured_reply_streams_then_rest_renders_as_json_or_markdown() -> None:
    data = {"reply": "Hi \"there\"", "summary": "greeting", "sentiment": "positive",
            "confidence": 0.9, "topics": ["hello"], "action_items": [{"task": "wave", "priority": "low"}]}
    text = json.dumps(data)
    for mode in ("json", "markdown"):
        view = ChatView("demo-structured", structured=mode)  # type: ignore[arg-type]
        view.apply(Token(text[:14]))
        assert view.answer_text() == "Hi "
        view.apply(Token(text[14:]))
        view.apply(success(text, data))
        messages = view.messages()
        answer = next(m for m in messages if not m.metadata) if mode == "json" else messages[-2]
        assert answer.content == 'Hi "there"'
        card = messages[-1]
        assert "greeting" in str(card.content) and "reply" not in str(card.content)
        if mode == "json":
            assert card.metadata["title"] == "Structured output"
        else:
            assert "**Sentiment:** positive (confidence 90%)" in str(card.content)
            assert "wave _(low)_" in str(card.content)
    raw = ChatView("demo-structured", structured=None)
    raw.apply(Token(text))
    raw.apply(success(text, data))
    assert raw.messages()[-1].content == text


def test_event_driven_backend_step_waits_for_completed_then_shows_enriched_data() -> None:
    view, tracker = ChatView("demo-events"), StepTracker()
    feed(view, tracker, Token("answer"),
         Response(AIResponse.from_payload({"status": "ai_generated", "content": "answer"})))
    backend = [t for t in thoughts(view.messages()) if t["title"] == "Waiting for backend callback..."]
    assert backend and backend[0]["status"] == "pending" and not view.done
    feed(view, tracker, success("answer", {"ticket": "T-1"}, status="completed"))
    titles = {t["title"]: t for t in thoughts(view.messages())}
    assert titles["Backend processed"]["status"] == "done"
    assert '"ticket": "T-1"' in str(view.messages()[-1].content)
    assert titles["Enriched data"]
    assert view.data == {"ticket": "T-1"}


def test_errors_mark_steps_and_the_workflow() -> None:
    view, tracker = ChatView("demo-error"), StepTracker()
    view.apply(Error("provider exploded"))
    for step in tracker.error("provider exploded"):
        view.apply(Step(step))
    meta = thoughts(view.messages())
    assert meta[0]["log"] == "failed" and meta[0]["status"] == "done"
    assert any(t.get("log") == "provider exploded" for t in meta[1:])
    assert view.error == "provider exploded"
    cancelled = ChatView("demo-chat")
    cancelled.apply(Response(AIResponse.from_payload(
        {"status": "cancelled", "error": {"message": "Request cancelled"}})))
    assert cancelled.cancelled and thoughts(cancelled.messages())[0]["log"] == "cancelled"


@pytest.mark.parametrize(("text", "expected"), [
    ('{"reply": "Hel', "Hel"),
    ('{"summary": "x", "reply" : "a\\nb\\u00e9', "a\nbé"),
    ('{"reply": "cut \\', "cut "),
    ('{"reply": "cut \\u00', "cut "),
    ('{"reply": "\\ud83d\\ude00!"}', "😀!"),
    ('{"reply"', None),
    ('{"other": 1}', None),
    ('{"reply": 5}', None),
])
def test_partial_json_string(text: str, expected: str | None) -> None:
    assert partial_json_string(text, "reply") == expected


def test_markdown_card_shows_unknown_fields_too() -> None:
    card = markdown_card({"summary": "s", "extra": {"a": 1}})
    assert "**Summary:** s" in card and '**extra:** {"a": 1}' in card


def test_history_keeps_text_turns_only() -> None:
    history = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "", "metadata": {"title": "Workflow `x`"}},
        {"role": "assistant", "content": [{"type": "text", "text": "hello"}], "metadata": {}},
        {"role": "assistant", "content": "card", "metadata": {"id": "modelriver-structured-1"}},
        {"role": "user", "content": "again"},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/x"}}]},
    ]
    assert _history_messages(history) == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"}]


def test_validation_messages() -> None:
    with pytest.raises(gr.Error, match="empty"):
        _validate("   \n", 10)
    with pytest.raises(gr.Error, match="too long: 11 bytes, the limit is 10 bytes"):
        _validate("x" * 11, 10)
    _validate("x" * 10, 10)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="structured"):
        modelriver_chat(workflow="w", structured="yaml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_message_bytes"):
        modelriver_chat(workflow="w", max_message_bytes=0)
