"""``RequestState``: literal events in, text, steps, notes and the outcome out (PROTOCOL §3, §4)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelriver.events import Error, Response, Status, Step, StreamEvent, Token, ToolCall, event_from_message
from modelriver.state import NOTHING, Changes, Failover, RequestState
from modelriver.steps import STEP_ORDER, StepTracker
from modelriver.types import AIResponse, WorkflowStep


def response(payload: dict[str, Any]) -> Response:
    return Response(AIResponse.from_payload(payload))


def feed(state: RequestState, *events: StreamEvent) -> list[Changes]:
    return [state.feed(event) for event in events]


def step_states(state: RequestState) -> dict[str, tuple[str, str]]:
    return {s.id: (s.status, s.name) for s in state.steps}


def test_a_fresh_state_shows_the_four_pending_steps_and_no_text() -> None:
    state = RequestState("c1")
    assert state.text == "" and state.part_count == 0 and state.attempt == 0
    assert [(s.id, s.status) for s in state.steps] == [
        ("queue", "pending"), ("process", "pending"), ("receive", "pending"), ("complete", "pending")]
    assert state.status is None and state.notes == [] and not state.done and state.result is None


def test_tokens_grow_the_text_and_say_so_without_allocating() -> None:
    state = RequestState()
    first, second, empty = feed(state, Token("Hel", 1), Token("lo", 2), Token("", 3))
    assert first.text and first.status and state.status == "streaming"
    assert second.text and not second.status and not second.steps and not second.done
    assert empty is NOTHING  # an empty delta changes nothing
    assert state.text == "Hello" and state.part_count == 2
    assert state.feed(Token(" world")) is state.feed(Token("!"))  # one shared instance per token
    assert state.text == "Hello world!"
    assert state.text_since(1) == "lo world!" and state.text_since(4) == "" and state.text_since(0) == state.text


@pytest.mark.parametrize("status", ["success", "SUCCESS", "ok"])
def test_success_statuses_end_the_request_with_every_step_done(status: str) -> None:
    state = RequestState("c1")
    assert state.joined().steps == (WorkflowStep("queue", "Queueing request", "success"),)
    feed(state, Token("hi"))
    changes = state.feed(response({"status": status, "content": "hi", "meta": {"duration_ms": 12}}))
    assert changes.done and changes.response is state.response is state.result
    assert [s.id for s in changes.steps] == ["process", "receive", "complete"]
    assert {v[0] for v in step_states(state).values()} == {"success"}
    assert next(s for s in state.steps if s.id == "process").duration == 12
    assert state.error is None and state.status == "success" and state.done


def test_meta_status_success_ends_the_request_whatever_the_status_says() -> None:
    state = RequestState()
    assert state.feed(response({"status": "weird", "meta": {"status": "success"}})).done
    assert state.error is None and state.result is not None and state.result.kind == "success"


def test_ai_generated_is_intermediate_then_completed_ends_event_driven() -> None:
    state = RequestState("c1")
    state.joined()
    generated = state.feed(response({"status": "ai_generated", "content": "answer",
                                     "meta": {"duration_ms": 7}}))
    assert not generated.done and not state.done and state.result is None
    assert state.intermediate is generated.response and state.status == "awaiting_callback"
    assert [(s.id, s.status) for s in generated.steps] == [("process", "success"), ("backend", "pending")]
    assert [s.id for s in state.steps] == list(STEP_ORDER)
    assert step_states(state)["backend"] == ("pending", "Waiting for backend callback...")
    completed = state.feed(response({"status": "completed", "data": {"ticket": "T-1"}}))
    assert completed.done and state.response is not None and state.response.data == {"ticket": "T-1"}
    assert step_states(state)["backend"] == ("success", "Backend processed")
    assert {v[0] for v in step_states(state).values()} == {"success"}


def test_success_after_ai_generated_says_no_backend_processing_was_needed() -> None:
    state = RequestState()
    feed(state, response({"status": "ai_generated"}), response({"status": "success"}))
    assert step_states(state)["backend"] == ("success", "No backend processing needed")


@pytest.mark.parametrize("payload", [
    {"status": "error", "error": {"message": "nope"}},
    {"status": "cancelled", "error": {"message": "nope"}},
    {"status": "pending", "message": "nope"},  # any unknown status is an error that ends the request
])
def test_error_and_unknown_statuses_end_the_request_as_an_error(payload: dict[str, Any]) -> None:
    state = RequestState("c1")
    state.joined()
    changes = state.feed(response(payload))
    assert changes.done and state.status == "error"
    assert state.response is state.result and state.result is not None and state.result.is_error
    assert state.error == state.result.error_message == "nope"
    assert [(s.id, s.status, s.error_message) for s in changes.steps] == [
        ("process", "error", "nope"), ("receive", "error", "nope"), ("complete", "error", "nope")]
    assert step_states(state)["queue"][0] == "success"


def test_an_error_event_ends_the_request_with_an_error_response() -> None:
    state = RequestState("c1")
    feed(state, Token("par"))
    changes = state.feed(Error("provider exploded", 4))
    assert changes.done and state.error == "provider exploded"
    assert state.response is None  # no response came from the server
    result = state.result
    assert result is not None and result.status == "error" and result.channel_id == "c1"
    assert result.error_message == "provider exploded" and result.raw == {"message": "provider exploded"}
    assert {s.id: s.status for s in changes.steps} == {
        "process": "error", "receive": "error", "complete": "error"}
    assert state.text == "par"  # the partial answer stays for the adapter to show


def test_nothing_but_steps_is_taken_after_the_end() -> None:
    state = RequestState()
    feed(state, Token("done"), response({"status": "success"}))
    for event in (Token("late"), Status("failover", payload={"reset": True}), ToolCall("f"),
                  Error("late"), response({"status": "error"})):
        assert state.feed(event) is NOTHING
    assert state.fail("socket lost") is NOTHING
    assert state.text == "done" and state.error is None and state.notes == []
    late = WorkflowStep("complete", "Response received", "error", None, "from elsewhere")
    assert state.feed(Step(late)).steps == (late,)


def test_failover_with_reset_restarts_the_text_and_notes_the_failover() -> None:
    state = RequestState()
    feed(state, Token("partial "), Token("from a"))
    changes = state.feed(Status("failover", 3, payload={
        "status": "failover", "from": "a", "to": "b", "reason": "boom", "reset": True}))
    assert changes.text and changes.reset and changes.status
    assert changes.notes == (Failover("a", "b", "boom", reset=True, seq=3),)
    assert state.text == "" and state.part_count == 0 and state.attempt == 1
    feed(state, Token("from b"))
    assert state.text == "from b" and state.text_since(0) == "from b"
    assert state.notes == [Failover("a", "b", "boom", reset=True, seq=3)]


def test_failover_without_reset_keeps_the_text_and_still_notes_it() -> None:
    state = RequestState()
    feed(state, Token("kept"))
    changes = state.feed(Status("failover", payload={"from": "a", "to": "b", "reset": False}))
    assert not changes.text and not changes.reset and changes.notes == (Failover("a", "b"),)
    assert state.text == "kept" and state.attempt == 0


def test_failover_fields_are_read_as_untrusted_payload() -> None:
    event = event_from_message("status", {"status": "failover", "from": 7, "to": "", "reason": None})
    assert event is not None
    assert RequestState().feed(event).notes == (Failover("7", None, None),)


def test_a_reset_on_any_status_restarts_the_text_without_a_note() -> None:
    state = RequestState()
    feed(state, Token("x"))
    changes = state.feed(Status("started", payload={"reset": True}))
    assert changes.reset and changes.notes == () and state.text == "" and state.attempt == 1


def test_statuses_set_the_status_word_and_change_only_it() -> None:
    state = RequestState()
    assert state.feed(Status("queued", 1, "queue")) == Changes(status=True)
    assert state.status == "queued"
    assert state.feed(Status("queued", 2, "queue")) is NOTHING
    assert not NOTHING and Changes(status=True)


def test_tool_calls_are_notes_with_their_arguments() -> None:
    state = RequestState()
    call = ToolCall("get_weather", {"city": "Paris"}, 5)
    assert state.feed(call).notes == (call,)
    assert state.notes == [call] and state.text == ""


def test_the_steps_follow_the_sdk_sequence() -> None:
    tracker, state = StepTracker(), RequestState()
    seen: list[tuple[str, str]] = []
    for changes in [state.joined(), *feed(state, Status("queued"), Token("a"),
                                          response({"status": "success"}))]:
        seen += [(s.id, s.status) for s in changes.steps]
    # Issue 18: process is loading from the first token until the response.
    assert seen == [("queue", "success"), ("process", "loading"), ("process", "success"),
                    ("receive", "success"), ("complete", "success")]
    tracker.joined()
    tracker.streaming()
    tracker.response(AIResponse.from_payload({"status": "success"}))
    assert state.steps == tracker.steps  # the same rules as the tracker the stream used to run


def test_step_events_from_a_stream_are_absorbed_once() -> None:
    """Adapters get the stream's Step events too: taking them again changes nothing."""
    stream_tracker, state = StepTracker(), RequestState()
    for step in stream_tracker.joined():
        assert state.feed(Step(step)).steps == (step,)
    final = AIResponse.from_payload({"status": "success"})
    assert state.feed(Response(final)).steps  # the state computes the steps itself...
    for step in stream_tracker.response(final):
        assert state.feed(Step(step)) is NOTHING  # ...so the stream's copies are no news
    assert state.steps == stream_tracker.steps


def test_fail_ends_locally_and_fails_only_what_was_pending() -> None:
    state = RequestState("c9")
    state.joined()
    state.feed(response({"status": "ai_generated"}))
    changes = state.fail("the socket was lost")
    assert changes.done and state.error == "the socket was lost" and state.response is None
    assert state.result is not None and state.result.error_message == "the socket was lost"
    assert {s.id: s.status for s in changes.steps} == {"receive": "error", "complete": "error"}
    assert step_states(state)["process"][0] == "success"  # it had finished: it stays so


@given(st.lists(st.one_of(
    st.text(max_size=5).map(Token),
    st.booleans().map(lambda reset: Status("failover", payload={"reset": reset})),
    st.sampled_from(["queued", "started", "streaming"]).map(Status),
    st.just(ToolCall("f")),
), max_size=60), st.integers(0, 60))
def test_text_is_the_deltas_since_the_last_reset(events: list[StreamEvent], read_every: int) -> None:
    state = RequestState()
    expected: list[str] = []
    for count, event in enumerate(events, 1):
        state.feed(event)
        if isinstance(event, Token):
            expected.append(event.data)
        elif isinstance(event, Status) and event.reset:
            expected = []
        if read_every and count % read_every == 0:  # reading caches; later deltas still show
            assert state.text == "".join(expected)
    assert state.text == "".join(expected)
    assert state.attempt == sum(isinstance(e, Status) and e.reset for e in events)
