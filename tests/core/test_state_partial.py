"""Partial structured output (issue 18): every prefix of a JSON answer reads as a partial object
consistent with the final one; the prose rule; a structured stream on a real gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelriver.api import ModelRiver
from modelriver.devserver.config import CHATBOT_RESPONSE_SCHEMA
from modelriver.events import Response, Status, Token
from modelriver.partial import parse_partial, prose_field, prose_key
from modelriver.state import RequestState
from modelriver.types import AIResponse
from support import Gateway

# -- every prefix is consistent with the final object ---------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)
objects = st.dictionaries(st.text(max_size=6), documents, max_size=5)


def consistent(part: Any, final: Any, where: str = "$") -> None:
    """``part`` is a prefix-state of ``final``: the same type; complete entries equal; strings only
    grow (a prefix of the final string); containers as far as they go."""
    if isinstance(final, dict):
        assert isinstance(part, dict), (where, part, final)
        keys, final_keys = list(part), list(final)
        assert keys == final_keys[:len(keys)], (where, keys, final_keys)
        for i, key in enumerate(keys):
            if i < len(keys) - 1:
                assert part[key] == final[key] and type(part[key]) is type(final[key]), (where, key)
            else:
                consistent(part[key], final[key], f"{where}.{key}")
    elif isinstance(final, list):
        assert isinstance(part, list) and len(part) <= len(final), (where, part, final)
        for i, item in enumerate(part):
            if i < len(part) - 1:
                assert item == final[i] and type(item) is type(final[i]), (where, i)
            else:
                consistent(item, final[i], f"{where}[{i}]")
    elif isinstance(final, str):
        assert isinstance(part, str) and final.startswith(part), (where, part, final)
    else:
        assert part == final and type(part) is type(final), (where, part, final)


def grew(before: Any, after: Any) -> None:
    """Between two prefixes: nothing shrinks or changes type (``before`` is a prefix-state of
    ``after``, except a container's last entry, which may still be growing)."""
    if before is None:
        return
    if isinstance(before, dict):
        assert isinstance(after, dict) and list(after)[:len(before)] == list(before)
        for key in before:
            grew(before[key], after[key])
    elif isinstance(before, list):
        assert isinstance(after, list) and len(after) >= len(before)
        for old, new in zip(before, after, strict=False):
            grew(old, new)
    elif isinstance(before, str):
        assert isinstance(after, str) and after.startswith(before), (before, after)
    else:
        assert before == after and type(before) is type(after)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=objects, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_every_prefix_is_consistent_with_the_final_object(doc: dict[str, Any], ascii_only: bool,
                                                          indent: int | None) -> None:
    text = json.dumps(doc, ensure_ascii=ascii_only, indent=indent)
    previous: Any = None
    for end in range(len(text) + 1):
        part = parse_partial(text[:end])
        if part is None:
            assert previous is None, (text[:end], previous)  # once readable, it stays readable
            continue
        consistent(part, doc)
        grew(previous, part)
        previous = part
    assert parse_partial(text) == doc


def test_a_number_still_being_written_is_left_out() -> None:
    assert parse_partial('{"a": 1') == {}
    assert parse_partial('{"a": 1.5') == {}
    assert parse_partial('{"a": 1.5,') == {"a": 1.5}
    assert parse_partial('{"a": [1, 2') == {"a": [1]}
    assert parse_partial('{"a": "room 12') == {"a": "room 12"}  # inside a string: kept
    assert parse_partial('{"a": "q\\"12') == {"a": 'q"12'}
    assert parse_partial('{"a": true') == {"a": True}
    assert parse_partial("") is None and parse_partial("12") is None and parse_partial("nonsense") is None


# -- the prose rule ---------------------------------------------------------------------------------

def test_the_prose_field_of_a_schema() -> None:
    assert prose_field(CHATBOT_RESPONSE_SCHEMA) == "reply"
    props = {"summary": {"type": "string"}, "answer": {"type": "string"}, "reply": {"type": "number"}}
    assert prose_field({"type": "object", "properties": props}) == "answer"  # reply is no string
    assert prose_field({"type": "object", "properties": {"title": {"type": "string"}}}) is None
    assert prose_field(None) is None and prose_field({"type": "array"}) is None


def test_the_prose_key_of_a_partial_object_without_a_schema() -> None:
    assert prose_key({"summary": "s", "message": "m", "text": "t"}) == "text"
    assert prose_key({"reply": 3, "content": "c"}) == "content"
    assert prose_key({"title": "x"}) is None and prose_key(["reply"]) is None


def _structured_state(prose: object = "reply") -> RequestState:
    state = RequestState("c")
    state.feed(Status("queued", payload={"status": "queued", "structured": True, "prose": prose}))
    return state


def test_the_state_streams_the_reply_as_prose_and_the_final_data_replaces_it() -> None:
    final = {"reply": 'Hi "there"', "summary": "s", "topics": ["a", "b"]}
    text = json.dumps(final)
    state = _structured_state()
    assert state.structured and state.partial is None and state.prose == ""
    prose_seen = [state.prose]
    for i in range(0, len(text), 3):
        changes = state.feed(Token(text[i:i + 3]))
        assert changes.text and changes.partial
        prose_seen.append(state.prose)
    assert all(final["reply"].startswith(p) for p in prose_seen)
    assert len(set(prose_seen)) >= 4  # the reply grew as prose, not all at once
    assert state.partial == final
    changes = state.feed(Response(AIResponse.from_payload({"status": "success", "content": text,
                                                           "data": final})))
    assert changes.partial and changes.done and state.partial == final and state.prose == final["reply"]


def test_a_schema_without_prose_streams_the_card_only() -> None:
    state = _structured_state(prose=None)
    state.feed(Token('{"summary": "a card", "score": 3, '))
    assert state.partial == {"summary": "a card", "score": 3} and state.prose == ""


def test_text_answers_are_unaffected() -> None:
    state = RequestState("c")
    state.feed(Status("started", payload={"status": "started"}))
    changes = state.feed(Token('{"reply": "x"}'))
    assert not changes.partial and state.partial is None and state.prose == '{"reply": "x"}'


def test_with_a_clock_the_partial_is_parsed_at_most_every_interval_and_fresh_at_the_end() -> None:
    now = [0.0]
    state = RequestState("c", structured=True, clock=lambda: now[0], parse_interval=0.05)
    state.feed(Token('{"reply": "a'))
    assert state.prose == "a"
    state.feed(Token("b"))
    assert state.prose == "a"  # within the interval: the previous parse
    now[0] = 0.06
    assert state.prose == "ab"
    state.feed(Token('c"}'))
    state.fail("socket lost")  # the end: parsed fresh whatever the clock says
    assert state.partial == {"reply": "abc"}


def test_a_restarting_failover_resets_the_partial_and_a_continuing_one_keeps_it() -> None:
    state = _structured_state()
    state.feed(Token('{"reply": "first'))
    state.feed(Status("failover", payload={"status": "failover", "reset": False}))
    state.feed(Token(' and more'))
    assert state.prose == "first and more"
    changes = state.feed(Status("failover", payload={"status": "failover", "reset": True}))
    assert changes.reset and changes.partial and state.partial is None and state.prose == ""


def test_process_is_loading_from_the_first_token_until_the_response() -> None:
    state = RequestState("c")
    state.joined()
    state.feed(Status("streaming", payload={"status": "streaming"}))
    assert {s.id: s.status for s in state.steps}["process"] == "pending"
    changes = state.feed(Token("a"))
    assert [(s.id, s.status) for s in changes.steps] == [("process", "loading")]
    assert not state.feed(Token("b")).steps
    state.feed(Response(AIResponse.from_payload({"status": "success", "meta": {"duration_ms": 5}})))
    assert {s.id: s.status for s in state.steps}["process"] == "success"


# -- a structured stream on a real gateway ------------------------------------------------------------

@pytest.fixture
def client(gateway: Gateway) -> Iterator[ModelRiver]:
    with ModelRiver(api_key=gateway.api_key, api_base=gateway.url, max_retries=0) as c:
        yield c


@pytest.mark.timeout(60)
def test_demo_structured_streams_the_reply_before_the_final_which_equals_data(client: ModelRiver) -> None:
    prose: list[str] = []
    cards: list[Any] = []
    with client.stream("demo-structured", "Tell me about rivers and deltas",
                       metadata={"scripted": {"tokens_per_second": 100, "first_token_ms": 0}}) as stream:
        state = RequestState(stream.request.channel_id)  # a view folding the same events
        for event in stream:
            changes = state.feed(event)
            if changes.partial and not changes.done:
                prose.append(state.prose)
                cards.append(state.partial)
        response = stream.response
    assert response is not None and response.status == "success", response
    assert state.structured and state.prose_field == "reply"
    grown = [p for i, p in enumerate(prose) if p and (i == 0 or p != prose[i - 1])]
    assert len(grown) >= 3, prose  # the reply grows in 3 or more states before the final
    assert all(response.data["reply"].startswith(p) for p in prose)
    assert any("summary" in c and "topics" not in c for c in cards if isinstance(c, dict))  # fields fill in
    assert parse_partial(response.content or "") == response.data == state.partial
    assert not any(p.lstrip().startswith("{") for p in prose)  # never raw JSON as prose
