"""Acceptance: every built-in workflow of `modelriver dev`, end to end (docs/gateway.md).

The gateway is a real subprocess (the session ``gateway`` fixture); each test keeps to its own
channel_id. The core client (``modelriver.stream``) checks what an application sees: deltas that
add up to the final ``content``, steps as PROTOCOL §4 says, structured ``data`` that fits its
schema. A plain ``websockets`` client (``RawSocket``) checks what is on the wire, which the core
client hides: ``seq`` 1, 2, 3… with no gap, replay on join, coalescing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import jsonschema
import pytest

from modelriver.api import AsyncModelRiver
from modelriver.events import Error, Response, Status, StreamEvent, Token, ToolCall
from modelriver.stream import Stream, connect
from modelriver.types import AsyncRequest
from support import Gateway
from support.gatewaytest import (
    CHATBOT_RESPONSE_SCHEMA,
    RawSocket,
    WebhookReceiver,
    scripted,
    seqs,
    wait_until,
)
from tests.core.realm_support import RESTART_CONFIG

pytestmark = pytest.mark.timeout(60)

CHANNEL_EVENTS = {"status", "tokens", "tool_call", "response", "error"}


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[AsyncModelRiver]:
    async with AsyncModelRiver(api_key=gateway.api_key, api_base=gateway.url, max_retries=0) as c:
        yield c


async def stream_all(request: AsyncRequest, **options: Any) -> tuple[Stream, list[StreamEvent]]:
    """Run the core client to the terminal response; returns the stream and every event."""
    async with asyncio.timeout(30):
        stream = await connect(request, **options)
        events = [event async for event in stream]
    return stream, events


def token_events(events: list[StreamEvent]) -> list[Token]:
    return [e for e in events if isinstance(e, Token)]


def step_states(stream: Stream) -> dict[str, str]:
    return {step.id: step.status for step in stream.steps}


async def finished_log(gateway: Gateway, channel_id: str, status: str) -> dict[str, Any]:
    """The request log once it shows ``status`` (it may lag the final push by a moment)."""
    def check() -> dict[str, Any] | None:
        log = gateway.request_log(channel_id)
        return log if log["status"] == status else None
    return dict(await wait_until(check, within=10))


def content_length_ok(log: dict[str, Any], content: str) -> bool:
    return log["content_length"] in (len(content), len(content.encode()))


# -- the core client, one workflow at a time -------------------------------------------------


async def test_demo_chat_deltas_make_the_content_and_steps_succeed(
    gateway: Gateway, client: AsyncModelRiver
) -> None:
    request = await client.create_request("demo-chat", "Tell me about rivers", metadata=scripted())
    assert request.websocket_channel == f"ai_response:{request.project_id}:{request.channel_id}"
    stream, events = await stream_all(request)

    response = stream.response
    assert response is not None
    assert response.status == "success", response
    assert response.channel_id == request.channel_id
    tokens = token_events(events)
    assert len(tokens) >= 3
    assert response.content
    assert "".join(t.data for t in tokens) == response.content == stream.text
    assert all(t.model == response.model for t in tokens)
    assert all(t.provider for t in tokens)
    assert response.meta["workflow"] == "demo-chat"
    assert response.meta["status"] == "success"
    assert isinstance(response.meta["duration_ms"], int | float)
    usage = response.meta["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    statuses = [e for e in events if isinstance(e, Status)]
    names = [s.status for s in statuses]
    assert "queued" in names
    assert "started" in names
    assert names.index("queued") < names.index("started")
    started = statuses[names.index("started")]
    assert started.provider
    assert started.model
    first_token = events.index(tokens[0])
    assert events.index(started) < first_token

    assert step_states(stream) == {
        "queue": "success", "process": "success", "receive": "success", "complete": "success"
    }
    log = await finished_log(gateway, request.channel_id, "success")
    assert log["workflow"] == "demo-chat"
    assert log["tokens"] == len(tokens)
    assert content_length_ok(log, response.content)
    assert log["cancelled"] is False
    assert log["error"] is None
    assert log["failovers"] == []
    assert log["joins"] >= 1
    assert log["sockets"] >= 1


async def test_demo_chat_answer_depends_on_the_prompt(client: AsyncModelRiver) -> None:
    answers = []
    for prompt in ("hello", "what is a river delta?", "hello"):
        stream, _ = await stream_all(await client.create_request("demo-chat", prompt, metadata=scripted()))
        assert stream.response is not None
        answers.append(stream.response.content)
    assert answers[0] == answers[2], "a scripted answer must be deterministic"
    assert answers[0] != answers[1]


async def test_demo_structured_data_matches_the_chatbot_response_schema(
    gateway: Gateway, client: AsyncModelRiver
) -> None:
    request = await client.create_request(
        "demo-structured", "My order arrived broken and I want a refund", metadata=scripted()
    )
    stream, events = await stream_all(request)
    response = stream.response
    assert response is not None
    assert response.status == "success", response
    jsonschema.validate(response.data, CHATBOT_RESPONSE_SCHEMA)
    tokens = token_events(events)
    assert len(tokens) >= 2, "the JSON text must stream as several deltas"
    assert "".join(t.data for t in tokens) == response.content
    assert json.loads(response.content or "") == response.data
    log = await finished_log(gateway, request.channel_id, "success")
    assert log["tokens"] == len(tokens)


async def test_demo_events_completes_with_the_backend_data(
    gateway: Gateway, client: AsyncModelRiver
) -> None:
    with WebhookReceiver(gateway.webhook_secret) as receiver:
        request = await client.create_request(
            "demo-events", "Book a table for two", events=["webhook_received"],
            webhook_url=receiver.url, metadata=scripted(),
        )
        stream = await connect(request)
        events: list[StreamEvent] = []
        enriched: dict[str, Any] = {}
        async with asyncio.timeout(30):
            async for event in stream:
                events.append(event)
                if isinstance(event, Response) and event.response.status == "ai_generated":
                    assert [s.status for s in stream.steps if s.id == "backend"] == ["pending"]
                    hook = await receiver.aget()
                    assert hook.verified, hook.error
                    body = hook.json()
                    assert body["channel_id"] == request.channel_id
                    enriched = {**body["data"], "booking_id": "B-42", "approved": True}
                    await client.callback(request.channel_id, enriched, task_id="task-7",
                                          callback_url=body["callback_url"])

    kinds = [e.response.status for e in events if isinstance(e, Response)]
    assert kinds == ["ai_generated", "completed"]
    ai_generated = next(e.response for e in events if isinstance(e, Response))
    tokens = token_events(events)
    assert "".join(t.data for t in tokens) == ai_generated.content
    response = stream.response
    assert response is not None
    assert response.status == "completed"
    assert response.data == enriched
    assert response.raw["task_id"] == "task-7"
    assert response.content == ai_generated.content
    assert isinstance(response.raw["ai_response"], dict)
    assert step_states(stream) == {
        "queue": "success", "process": "success", "backend": "success",
        "receive": "success", "complete": "success",
    }
    backend = next(s for s in stream.steps if s.id == "backend")
    assert backend.name == "Backend processed"
    log = await finished_log(gateway, request.channel_id, "completed")
    assert log["callback"]["received"] is True


async def test_demo_failover_restarts_the_answer_on_the_second_provider(
    gateway_factory: Callable[..., Gateway]
) -> None:
    # failover = "restart" (the behaviour before issue 18; the default continues the answer).
    gateway = gateway_factory("--config", str(RESTART_CONFIG))
    async with AsyncModelRiver(api_key=gateway.api_key, api_base=gateway.url, max_retries=0) as client:
        request = await client.create_request("demo-failover", "hello", metadata=scripted())
    stream, events = await stream_all(request)
    response = stream.response
    assert response is not None
    assert response.status == "success", response

    failovers = [e for e in events if isinstance(e, Status) and e.status == "failover"]
    assert len(failovers) == 1
    failover = failovers[0]
    assert failover.reset
    source, target = failover.payload["from"], failover.payload["to"]
    assert source != target
    assert failover.payload["reason"]
    at = events.index(failover)
    before = token_events(events[:at])
    after = token_events(events[at:])
    assert len(before) == 5
    assert {t.provider for t in before} == {source}
    assert {t.provider for t in after} == {target}
    assert "".join(t.data for t in after) == response.content == stream.text
    log = await finished_log(gateway, request.channel_id, "success")
    assert len(log["failovers"]) == 1
    assert log["failovers"][0]["from"] == source
    assert log["failovers"][0]["to"] == target
    assert log["failovers"][0]["at_token"] == 5
    assert log["provider"] == target


async def test_demo_tools_calls_a_tool_before_the_answer(client: AsyncModelRiver) -> None:
    request = await client.create_request("demo-tools", "What's the weather in Paris?", metadata=scripted())
    stream, events = await stream_all(request)
    response = stream.response
    assert response is not None
    assert response.status == "success", response
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert len(calls) == 1
    call = calls[0]
    assert call.name
    arguments = json.loads(call.arguments) if isinstance(call.arguments, str) else call.arguments
    assert isinstance(arguments, dict)
    tokens = token_events(events)
    assert tokens
    assert events.index(call) < events.index(tokens[0])
    assert "".join(t.data for t in tokens) == response.content


async def test_demo_error_ends_with_an_error_and_error_steps(
    gateway: Gateway, client: AsyncModelRiver
) -> None:
    request = await client.create_request("demo-error", "hello", metadata=scripted())
    stream, events = await stream_all(request)
    errors = [e for e in events if isinstance(e, Error)]
    assert len(errors) == 1
    message = errors[0].message
    assert message
    assert token_events(events) == []
    assert stream.response is not None
    assert stream.response.is_error
    states = {s.id: (s.status, s.error_message) for s in stream.steps}
    assert states["queue"] == ("success", None)
    for step in ("process", "receive", "complete"):
        assert states[step] == ("error", message)
    log = await finished_log(gateway, request.channel_id, "error")
    assert log["error"]


# -- the wire: seq, replay, coalescing (a plain websockets client) -------------------------


async def _run_raw(
    gateway: Gateway, client: AsyncModelRiver, workflow: str, receiver: WebhookReceiver
) -> tuple[AsyncRequest, RawSocket]:
    driven = workflow == "demo-events"
    request = await client.create_request(
        workflow, "hello there", events=["webhook_received"] if driven else None,
        webhook_url=receiver.url if driven else None, metadata=scripted(),
    )
    sock = await RawSocket.for_request(request)
    topic = request.topic
    _, reply = await sock.join(topic)
    assert reply["status"] == "ok", reply
    if driven:
        await sock.until(lambda f: f[2] == topic and f[3] == "response" and f[4]["status"] == "ai_generated")
        hook = await receiver.aget()
        await client.callback(request.channel_id, {"ok": True}, callback_url=hook.json()["callback_url"])
    await sock.until_final(topic)
    return request, sock


@pytest.mark.parametrize(
    "workflow", ["demo-chat", "demo-structured", "demo-events", "demo-failover", "demo-tools", "demo-error"]
)
async def test_every_event_carries_seq_without_gaps(
    gateway: Gateway, client: AsyncModelRiver, workflow: str
) -> None:
    with WebhookReceiver(gateway.webhook_secret) as receiver:
        request, sock = await _run_raw(gateway, client, workflow, receiver)
    async with sock:
        topic = request.topic
        events = sock.events(topic)
        assert {name for name, _ in events} <= CHANNEL_EVENTS
        assert seqs(events) == list(range(1, len(events) + 1))
        # Progress never goes out as a non-terminal `response` (the SDK would end on it).
        responses = [p["status"] for name, p in events if name == "response"]
        assert all(s in {"ai_generated", "success", "completed"} for s in responses), responses
        # The raw deltas rebuild the content (after a failover reset, only what follows it).
        text = ""
        for name, payload in events:
            if name == "status" and payload.get("reset"):
                text = ""
            elif name == "tokens":
                text += payload["data"]
        final_name, final = events[-1]
        if final_name == "response":
            assert text == final["content"]
        log = await wait_until(lambda: (lg := gateway.request_log(request.channel_id))["status"]
                               not in ("pending", "streaming", "ai_generated", "awaiting_callback") and lg)
        assert log["last_seq"] == len(events)
        assert log["tokens"] == sum(1 for name, _ in events if name == "tokens")
        # After the final the socket stays open, answers heartbeats, and does not re-send it.
        after = len(sock.frames)
        ref = await sock.push(topic, "heartbeat", {}, join_ref=sock.frames[0][0])
        assert (await sock.reply(ref))["status"] == "ok"
        assert (await sock.heartbeat())["status"] == "ok"
        assert sock.events(topic, start=after) == []


async def test_a_late_join_replays_everything_and_last_seq_resumes(
    gateway: Gateway, client: AsyncModelRiver
) -> None:
    request = await client.create_request("demo-chat", "replay me", metadata=scripted())
    log = await finished_log(gateway, request.channel_id, "success")
    total = log["last_seq"]
    assert total >= 4
    topic = request.topic

    async with await RawSocket.for_request(request) as sock:
        _, reply = await sock.join(topic, {})
        assert reply["status"] == "ok"
        final = await sock.until_final(topic)
        events = sock.events(topic)
        assert seqs(events) == list(range(1, total + 1))
        assert final[4]["seq"] == total
        content = final[4]["content"]

    middle = total // 2
    async with await RawSocket.for_request(request) as sock:
        _, reply = await sock.join(topic, {"last_seq": middle})
        assert reply["status"] == "ok"
        await sock.until_final(topic)
        assert seqs(sock.events(topic)) == list(range(middle + 1, total + 1))

    async with await RawSocket.for_request(request) as sock:
        _, reply = await sock.join(topic, {"last_seq": total})
        assert reply["status"] == "ok"
        assert (await sock.heartbeat())["status"] == "ok"
        assert sock.events(topic) == []

    # Coalesced replay: runs of tokens merged, seq ranges chained, same text.
    async with await RawSocket.for_request(request) as sock:
        _, reply = await sock.join(topic, {"coalesce": True})
        assert reply["status"] == "ok"
        await sock.until_final(topic)
        events = sock.events(topic)
        expected = 1
        text = ""
        merged = 0
        for name, payload in events:
            first = payload.get("from_seq", payload["seq"])
            assert first == expected, events
            if name == "tokens":
                text += payload["data"]
                merged += "from_seq" in payload
            expected = payload["seq"] + 1
        assert expected == total + 1
        assert text == content
        assert merged >= 1
        assert len(events) < total


async def test_the_fallback_topic_without_project_works(client: AsyncModelRiver) -> None:
    request = await client.create_request("demo-chat", "hello", metadata=scripted())
    topic = f"ai_response:{request.channel_id}"
    async with await RawSocket.for_request(request) as sock:
        _, reply = await sock.join(topic)
        assert reply["status"] == "ok", reply
        final = await sock.until_final(topic)
        assert final[4]["status"] == "success"
        assert seqs(sock.events(topic)) == list(range(1, final[4]["seq"] + 1))


# -- the order of events (docs/gateway.md "Orders") ------------------------------------------------


def shape(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Events as short names, runs of tokens as one ``tokens``: ``queued``, ``tokens``,
    ``response:success``..."""
    out: list[str] = []
    for name, payload in events:
        if name == "status":
            item = payload["status"]
        elif name == "response":
            item = f"response:{payload['status']}"
        else:
            item = name
        if not (item == "tokens" and out and out[-1] == "tokens"):
            out.append(item)
    return out


STEPS = {"queued": "queue", "started": "process", "streaming": "receive", "ai_generated": "process",
         "awaiting_callback": "backend"}
ORDERS = {
    "demo-chat": ["queued", "started", "streaming", "tokens", "response:success"],
    "demo-structured": ["queued", "started", "streaming", "tokens", "response:success"],
    "demo-tools": ["queued", "started", "tool_call", "streaming", "tokens", "response:success"],
    "demo-failover": ["queued", "started", "streaming", "tokens", "failover", "started", "streaming",
                      "tokens", "response:success"],
    "demo-events": ["queued", "started", "streaming", "tokens", "ai_generated", "response:ai_generated",
                    "awaiting_callback", "response:completed"],
    "demo-error": ["queued", "started", "error"],
}


@pytest.mark.parametrize("workflow", list(ORDERS))
async def test_events_come_in_the_documented_order(
    gateway: Gateway, client: AsyncModelRiver, workflow: str
) -> None:
    with WebhookReceiver(gateway.webhook_secret) as receiver:
        request, sock = await _run_raw(gateway, client, workflow, receiver)
    async with sock:
        events = sock.events(request.topic)
    assert shape(events) == ORDERS[workflow]
    terminal = [(n, p) for n, p in events if n == "error" or (n == "response" and p["status"] != "ai_generated")]
    assert len(terminal) == 1, "exactly one terminal event per request"
    for name, payload in events:
        if name == "status" and payload["status"] in STEPS:
            assert payload.get("step") == STEPS[payload["status"]], payload
        if name == "status" and payload["status"] in ("started", "failover"):
            assert payload["provider"]
            assert payload["model"]
    final_name, final = events[-1]
    if workflow == "demo-chat":
        assert final["content"].startswith('You said: "hello there"')
    if workflow == "demo-tools":
        [call] = [p for n, p in events if n == "tool_call"]
        assert call["name"] == "get_weather"
        assert set(call["arguments"]) == {"location", "unit"}
        assert final["tool_calls"] == [{"name": call["name"], "arguments": call["arguments"]}]
    if workflow == "demo-failover":
        failover = next(p for n, p in events if n == "status" and p["status"] == "failover")
        assert (failover["from"], failover["to"]) == ("demo-flaky", "demo-backup")
        assert failover["provider"] == "demo-backup"
        assert final["meta"]["provider"] == "demo-backup"
    if final_name == "response":
        assert final["meta"]["workflow"] == workflow


@pytest.mark.parametrize("workflow", ["demo-structured", "demo-events"])
async def test_structured_output_breaking_its_schema_is_an_error_with_details(
    gateway: Gateway, client: AsyncModelRiver, workflow: str
) -> None:
    with WebhookReceiver(gateway.webhook_secret) as receiver:
        driven = workflow == "demo-events"
        request = await client.create_request(
            workflow, "hello", events=["webhook_received"] if driven else None,
            webhook_url=receiver.url if driven else None, metadata=scripted(invalid_output=True),
        )
        async with await RawSocket.for_request(request) as sock:
            await sock.join(request.topic)
            name, payload = (await sock.until_final(request.topic))[3:]
        assert receiver.received.empty(), "no webhook for an answer that failed its schema"
    assert name == "error"
    assert payload["message"]
    errors = payload["details"]["errors"]
    assert errors
    assert all({"path", "message"} <= set(e) for e in errors)
    paths = {str(e["path"]) for e in errors}
    assert any("sentiment" in p for p in paths)
    assert any("confidence" in p for p in paths)
    log = await finished_log(gateway, request.channel_id, "error")
    assert log["error"]
