"""``ChatView`` on a structured answer (issue 18): the reply streams as prose and the card fills in
live; the raw JSON is never shown; a failover that continues keeps the text, a reset replaces it."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from gradio_modelriver import ChatView
from modelriver.events import Response, Status, Token
from modelriver.types import AIResponse

DATA = {"reply": "Rivers \"flow\" downhill.", "summary": "rivers", "sentiment": "neutral",
        "confidence": 0.75, "topics": ["geography", "water"],
        "action_items": [{"task": "read more", "priority": "low"}]}
TEXT = json.dumps(DATA)


def started(prose: str | None = "reply") -> Status:
    return Status("started", payload={"status": "started", "structured": True, "prose": prose})


def success(data: Any) -> Response:
    return Response(AIResponse.from_payload({"status": "success", "content": json.dumps(data), "data": data}))


def card_of(messages: list[gr.ChatMessage]) -> str:
    return "\n".join(str(m.content) for m in messages if "Structured output" in
                     (str(m.metadata.get("title", "")) + str(m.content)))


def shown(messages: list[gr.ChatMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


def test_every_prefix_shows_prose_and_a_growing_card_never_the_json() -> None:
    for mode in ("json", "markdown"):
        view = ChatView("demo-structured", structured=mode, show_steps=False)  # type: ignore[arg-type]
        view.apply(started())
        answers = []
        cards = []
        for end in range(1, len(TEXT) + 1):
            view.apply(Token(TEXT[end - 1]))
            messages = view.messages()
            assert '{"reply"' not in shown(messages) and '"reply":' not in shown(messages)
            answers.append(view.answer_text())
            cards.append(card_of(messages))
        assert all(DATA["reply"].startswith(a) for a in answers)
        assert len(set(answers)) >= 3  # the reply grows token by token
        assert any("rivers" in c for c in cards[:-1]) and any("geography" in c for c in cards[:-1])
        view.apply(success(DATA))
        final = view.messages()
        assert view.answer_text() == DATA["reply"]
        assert "read more" in card_of(final) and "reply" not in card_of(final)


def test_steps_show_process_loading_while_tokens_stream() -> None:
    view = ChatView("demo-structured")
    view.apply(started())
    view.apply(Token('{"reply": "Hi'))
    process = [m.metadata for m in view.messages() if m.metadata.get("id", "").endswith("-process")]
    assert process and process[0]["status"] == "pending" and process[0]["log"] == "running"
    waiting = [m.metadata for m in view.messages() if m.metadata.get("id", "").endswith("-receive")]
    assert waiting and "log" not in waiting[0]  # a step not started yet is not "running"
    assert view.state.steps[[s.id for s in view.state.steps].index("process")].status == "loading"


def test_a_schema_without_prose_streams_the_card_only() -> None:
    view = ChatView("extract", structured="markdown", show_steps=False)
    view.apply(started(None))
    view.apply(Token('{"name": "Ada", "city": "Lon'))
    assert view.answer_text() == ""
    card = card_of(view.messages())
    assert "Ada" in card and "Lon" in card and "{\"name\"" not in card
    view.apply(success({"name": "Ada", "city": "London"}))
    assert view.answer_text() == "" and '"name"' not in str(view.messages()[-2].content)


def test_failover_continue_keeps_the_text_and_restart_replaces_it() -> None:
    view = ChatView("demo-failover", show_steps=False)
    view.apply(Token("The answer so"))
    view.apply(Status("failover", payload={"status": "failover", "from": "a", "to": "b", "reset": False}))
    assert view.answer_text() == "The answer so"
    view.apply(Token(" far continues."))
    assert view.answer_text() == "The answer so far continues."

    restart = ChatView("demo-failover", show_steps=False)
    restart.apply(Token("The answer so"))
    restart.apply(Status("failover", payload={"status": "failover", "from": "a", "to": "b", "reset": True}))
    assert restart.answer_text() == ""
    restart.apply(Token("Second"))
    assert restart.answer_text() == "Second"


def test_an_unannounced_json_answer_streams_its_reply_and_no_json_block() -> None:
    view = ChatView("demo-structured", show_steps=False)
    view.apply(Token(TEXT[:40]))
    messages = view.messages()
    assert view.answer_text() == DATA["reply"][: len(view.answer_text())] and view.answer_text()
    assert '"reply"' not in shown(messages)
