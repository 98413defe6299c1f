"""AIResponse's terminal rules (PROTOCOL §3) and the step model (PROTOCOL §4)."""

from __future__ import annotations

import pytest

from modelriver.events import Error, Response, Status, Token, ToolCall, event_from_message
from modelriver.steps import INITIAL_STEPS, StepTracker
from modelriver.types import AIResponse, AsyncRequest, socket_endpoint


@pytest.mark.parametrize(
    ("payload", "kind", "terminal"),
    [
        ({"status": "success"}, "success", True),
        ({"status": "SUCCESS"}, "success", True),
        ({"status": "ok"}, "success", True),
        ({"status": "weird", "meta": {"status": "success"}}, "success", True),
        ({"status": "completed"}, "completed", True),
        ({"status": "ai_generated"}, "ai_generated", False),
        ({"status": "error", "error": {"message": "boom"}}, "error", True),
        ({"status": "pending"}, "error", True),  # any unknown status ends the request as an error
        ({}, "error", True),
    ],
)
def test_terminal_rules(payload: dict[str, object], kind: str, terminal: bool) -> None:
    response = AIResponse.from_payload(payload)
    assert response.kind == kind
    assert response.is_terminal is terminal


def test_error_message_prefers_error_object() -> None:
    assert AIResponse.from_payload({"status": "error", "error": {"message": "boom"}}).error_message == "boom"
    assert AIResponse.from_payload({"status": "error", "error": "flat"}).error_message == "flat"
    assert "pending" in (AIResponse.from_payload({"status": "pending"}).error_message or "")
    assert AIResponse.from_payload({"status": "success"}).error_message is None


def test_initial_steps_have_the_sdk_ids_and_labels() -> None:
    assert [(s.id, s.name, s.status) for s in INITIAL_STEPS] == [
        ("queue", "Queueing request", "pending"),
        ("process", "Processing AI request", "pending"),
        ("receive", "Waiting for response", "pending"),
        ("complete", "Response received", "pending"),
    ]


def states(tracker: StepTracker) -> dict[str, tuple[str, str]]:
    return {s.id: (s.status, s.name) for s in tracker.steps}


def test_success_path() -> None:
    tracker = StepTracker()
    changed = tracker.joined()
    assert [(s.id, s.status) for s in changed] == [("queue", "success")]
    tracker.response(AIResponse.from_payload({"status": "success", "meta": {"duration_ms": 42}}))
    assert {k: v[0] for k, v in states(tracker).items()} == {
        "queue": "success", "process": "success", "receive": "success", "complete": "success"}
    assert next(s for s in tracker.steps if s.id == "process").duration == 42


def test_event_driven_path() -> None:
    tracker = StepTracker()
    tracker.joined()
    ai_generated = AIResponse.from_payload({"status": "ai_generated", "meta": {"duration_ms": 7}})
    changed = tracker.response(ai_generated)
    assert [(s.id, s.status) for s in changed] == [("process", "success"), ("backend", "pending")]
    assert states(tracker)["backend"] == ("pending", "Waiting for backend callback...")
    assert [s.id for s in tracker.steps] == ["queue", "process", "backend", "receive", "complete"]
    tracker.response(AIResponse.from_payload({"status": "completed"}))
    assert states(tracker)["backend"] == ("success", "Backend processed")
    assert {v[0] for v in states(tracker).values()} == {"success"}


def test_success_after_backend_step_says_no_processing_needed() -> None:
    tracker = StepTracker()
    tracker.response(AIResponse.from_payload({"status": "ai_generated"}))
    tracker.response(AIResponse.from_payload({"status": "success"}))
    assert states(tracker)["backend"] == ("success", "No backend processing needed")


def test_error_path() -> None:
    tracker = StepTracker()
    tracker.joined()
    changed = tracker.response(AIResponse.from_payload({"status": "error", "error": {"message": "nope"}}))
    assert [(s.id, s.status, s.error_message) for s in changed] == [
        ("process", "error", "nope"), ("receive", "error", "nope"), ("complete", "error", "nope")]
    assert states(tracker)["queue"][0] == "success"


def test_events_from_messages() -> None:
    assert event_from_message("tokens", {"seq": 3, "data": "hi", "provider": "p"}) == Token(
        "hi", 3, None, "p", None)
    status = event_from_message("status", {"seq": 4, "status": "failover", "reset": True})
    assert isinstance(status, Status) and status.reset and status.seq == 4
    assert event_from_message("tool_call", {"seq": 5, "name": "f", "arguments": {"a": 1}}) == ToolCall(
        "f", {"a": 1}, 5)
    response = event_from_message("response", {"status": "success", "content": "x"})
    assert isinstance(response, Response) and response.response.content == "x"
    assert event_from_message("error", {"message": "bad"}) == Error("bad")
    assert event_from_message("presence_diff", {}) is None
    assert isinstance(event_from_message("tokens", {"seq": 1}), Error)  # malformed: clear error
    assert isinstance(event_from_message("tokens", "nope"), Error)


def test_socket_url_follows_the_sdk() -> None:
    assert socket_endpoint("ws://h:1") == "ws://h:1/socket/websocket?vsn=2.0.0"
    assert socket_endpoint("ws://h:1/socket/", "t k") == "ws://h:1/socket/websocket?token=t+k&vsn=2.0.0"
    request = AsyncRequest.from_payload(
        {"channel_id": "c", "ws_token": "t", "websocket_url": "wss://x/p/socket"})
    assert request.topic == "ai_response:c"
    assert request.socket_url == "wss://x/p/socket/websocket?token=t&vsn=2.0.0"
    with pytest.raises(KeyError):
        AsyncRequest.from_payload({"channel_id": "c"})
