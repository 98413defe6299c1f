"""``modelriver.stream`` against a real local Phoenix server (sockets, not mocks)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from phoenix_testserver import PhoenixTestServer

from modelriver.events import Error, Response, Status, Step, StreamEvent, Token
from modelriver.exceptions import JoinError, ProtocolError, RequestTimeoutError, StreamError
from modelriver.phoenix import ChannelJoined, coalesce_tokens
from modelriver.stream import Stream, SyncStream, connect
from modelriver.types import AsyncRequest

PROJECT = "6f1a2b3c-0000-4000-8000-000000000001"
CHANNEL = "6f1a2b3c-0000-4000-8000-0000000000aa"
TOPIC = f"ai_response:{PROJECT}:{CHANNEL}"
TOKEN = "tok-1"


def request_for(server: PhoenixTestServer, token: str = TOKEN, topic: str = TOPIC) -> AsyncRequest:
    return AsyncRequest(channel_id=CHANNEL, ws_token=token, websocket_url=server.url,
                        websocket_channel=topic, project_id=PROJECT)


@pytest.fixture
async def server() -> AsyncIterator[PhoenixTestServer]:
    async with PhoenixTestServer({TOKEN: {TOPIC}, "tok-2": {TOPIC}}) as srv:
        yield srv


async def publish_tokens(server: PhoenixTestServer, words: Iterable[str]) -> None:
    for word in words:
        await server.publish(TOPIC, "tokens", {"data": word})


async def finish(server: PhoenixTestServer, content: str) -> None:
    await server.publish(TOPIC, "response", {"status": "success", "channel_id": CHANNEL,
                                             "content": content, "meta": {"duration_ms": 5}})


async def collect(stream: Stream) -> list[StreamEvent]:
    return [event async for event in stream]


WORDS = [f"w{i} " for i in range(40)]


async def test_tokens_in_order_then_terminal_response(server: PhoenixTestServer) -> None:
    stream = await connect(request_for(server))
    await server.wait_joined(TOPIC)
    await server.publish(TOPIC, "status", {"status": "started", "provider": "scripted"})
    await publish_tokens(server, WORDS)
    await finish(server, "".join(WORDS))
    events = await collect(stream)

    tokens = [e for e in events if isinstance(e, Token)]
    assert [t.data for t in tokens] == WORDS
    assert [t.seq for t in tokens] == list(range(2, 42))
    assert stream.text == "".join(WORDS)
    assert isinstance(events[-1], Step)  # the final steps follow the response
    response = next(e for e in events if isinstance(e, Response)).response
    assert response.content == stream.text
    assert stream.response is response
    assert {s.id: s.status for s in stream.steps} == dict.fromkeys(
        ["queue", "process", "receive", "complete"], "success")
    # the client closes after the terminal response and does not come back
    await server.wait_for(lambda: not server.sockets)
    assert len(server.joins(TOPIC)) == 1


async def test_drops_mid_stream_lose_and_duplicate_nothing(server: PhoenixTestServer) -> None:
    stream = await connect(request_for(server))
    received: list[str] = []
    stream.on("token", lambda t: received.append(t.data))
    await server.wait_joined(TOPIC)
    cuts = 4
    for cut in range(cuts):
        await publish_tokens(server, WORDS[cut * 10:(cut + 1) * 10 - 5])
        await server.disconnect_all()
        # published while the client is away: only the rejoin's replay can deliver these
        await publish_tokens(server, WORDS[(cut + 1) * 10 - 5:(cut + 1) * 10])
        await server.wait_joined(TOPIC, count=cut + 2)
    await finish(server, "".join(WORDS))
    response = await stream.wait()

    assert received == WORDS
    assert response.content == stream.text == "".join(WORDS)
    assert stream.reconnects == cuts
    rejoins = [join for _, join in server.joins(TOPIC)][1:]
    assert all(join.last_seq is not None for join in rejoins)
    assert [join.last_seq for join in rejoins] == sorted(join.last_seq for join in rejoins)


class ReplayEverything(PhoenixTestServer):
    """A server that ignores ``last_seq``: every join replays from the first event."""

    def _on_event(self, sock: Any, event: Any) -> None:
        if isinstance(event, ChannelJoined):
            event = ChannelJoined(event.topic, event.payload, None, event.coalesce)
        super()._on_event(sock, event)


async def test_dedupes_when_the_server_replays_from_the_start() -> None:
    async with ReplayEverything({TOKEN: {TOPIC}}) as server:
        stream = await connect(request_for(server))
        await server.wait_joined(TOPIC)
        await publish_tokens(server, WORDS[:20])
        await server.wait_for(lambda: True)
        await server.disconnect_all()
        await publish_tokens(server, WORDS[20:])
        await server.wait_joined(TOPIC, count=2)
        await finish(server, "".join(WORDS))
        events = await collect(stream)
    assert [e.data for e in events if isinstance(e, Token)] == WORDS


async def test_resume_from_last_seq_in_a_new_stream(server: PhoenixTestServer) -> None:
    await server.publish(TOPIC, "tokens", {"data": "seen "})
    await server.publish(TOPIC, "tokens", {"data": "new"})
    await finish(server, "seen new")
    stream = await connect(request_for(server), last_seq=1)
    events = await collect(stream)
    assert [e.data for e in events if isinstance(e, Token)] == ["new"]
    assert server.joins(TOPIC)[0][1].last_seq == 1


async def test_request_timeout_fires(server: PhoenixTestServer) -> None:
    stream = await connect(request_for(server), request_timeout=0.3)
    with pytest.raises(RequestTimeoutError):
        await stream.wait()


async def test_event_driven_flow_keeps_going_after_ai_generated(server: PhoenixTestServer) -> None:
    stream = await connect(request_for(server))
    await server.wait_joined(TOPIC)
    await server.publish(TOPIC, "response", {"status": "ai_generated", "data": {"a": 1}})
    await server.publish(TOPIC, "status", {"status": "awaiting_callback"})
    await server.publish(TOPIC, "response", {"status": "completed", "data": {"a": 1, "id": 7}})
    events = await collect(stream)
    kinds = [e.response.kind for e in events if isinstance(e, Response)]
    assert kinds == ["ai_generated", "completed"]
    assert stream.response is not None and stream.response.data == {"a": 1, "id": 7}
    steps = {s.id: (s.status, s.name) for s in stream.steps}
    assert steps["backend"] == ("success", "Backend processed")


async def test_error_event_ends_the_stream_with_an_error_response(server: PhoenixTestServer) -> None:
    stream = await connect(request_for(server))
    await server.wait_joined(TOPIC)
    await server.publish(TOPIC, "error", {"message": "provider exploded"})
    events = await collect(stream)
    assert any(isinstance(e, Error) and e.message == "provider exploded" for e in events)
    assert stream.response is not None
    assert stream.response.is_error and stream.response.error_message == "provider exploded"
    assert {s.id: s.status for s in stream.steps}["complete"] == "error"


async def test_failover_status_resets_the_partial_answer(server: PhoenixTestServer) -> None:
    stream = await connect(request_for(server))
    await server.wait_joined(TOPIC)
    await publish_tokens(server, ["bad ", "start "])
    await server.publish(TOPIC, "status", {"status": "failover", "from": "a", "to": "b", "reset": True})
    await publish_tokens(server, ["good ", "answer"])
    await finish(server, "good answer")
    events = await collect(stream)
    assert any(isinstance(e, Status) and e.reset for e in events)
    assert stream.text == "good answer" == stream.response.content  # type: ignore[union-attr]


async def test_join_refused_raises_with_the_reason(server: PhoenixTestServer) -> None:
    other = f"ai_response:{PROJECT}:6f1a2b3c-0000-4000-8000-0000000000bb"
    stream = await connect(request_for(server, topic=other))
    reasons: list[str] = []
    stream.on("channel_error", reasons.append)
    with pytest.raises(JoinError) as info:
        await stream.wait()
    assert info.value.reason == "unauthorized_project_access"
    assert reasons == ["unauthorized_project_access"]


async def test_refused_token_is_renewed_through_refresh(server: PhoenixTestServer) -> None:
    calls: list[str] = []

    async def refresh() -> AsyncRequest:
        calls.append("refresh")
        return request_for(server, token="tok-2")

    stream = await connect(request_for(server, token="expired"), refresh=refresh)
    await server.wait_joined(TOPIC)
    await finish(server, "")
    await stream.wait()
    assert calls == ["refresh"]
    assert stream.request.ws_token == "tok-2"
    assert server.refused and server.refused[0][1] == 403


async def test_malformed_frame_raises_a_protocol_error(server: PhoenixTestServer) -> None:
    stream = await connect(request_for(server))
    await server.wait_joined(TOPIC)
    sock = next(iter(server.sockets.values()))
    await sock.websocket.send('{"not": "a phoenix frame"')
    with pytest.raises(ProtocolError):
        await stream.wait()


async def test_unknown_events_are_ignored_and_logged_at_debug(
    server: PhoenixTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "modelriver.stream")
    stream = await connect(request_for(server))
    await server.wait_joined(TOPIC)
    await server.publish(TOPIC, "presence_diff", {"joins": {}})
    await finish(server, "")
    events = await collect(stream)
    assert [type(e) for e in events if not isinstance(e, Step)] == [Response]
    assert "presence_diff" in caplog.text


async def test_callbacks_and_unsubscribe(server: PhoenixTestServer) -> None:
    stream = await connect(request_for(server))
    seen: list[str] = []
    lifecycle: list[str] = []
    two_seen = asyncio.Event()

    def on_token(token: Token) -> None:
        seen.append(token.data)
        if len(seen) == 2:
            two_seen.set()

    unsubscribe = stream.on("token", on_token)
    stream.on("connected", lambda _: lifecycle.append("connected"))
    stream.on("channel_joined", lambda _: lifecycle.append("joined"))
    with pytest.raises(ValueError, match="unknown event"):
        stream.on("tokenz", print)
    await server.wait_joined(TOPIC)
    await publish_tokens(server, ["a", "b"])
    await asyncio.wait_for(two_seen.wait(), 5)
    unsubscribe()
    await publish_tokens(server, ["c"])
    await finish(server, "abc")
    await stream.wait()
    assert seen == ["a", "b"]
    assert lifecycle == ["connected", "joined"]


async def test_wait_runs_the_callbacks_and_keeps_no_events_for_iteration(server: PhoenixTestServer) -> None:
    """A callbacks-only consumer (a relay) waits: every callback runs; nothing piles up unread."""
    stream = await connect(request_for(server))
    seen: list[str] = []
    messages: list[str] = []
    stream.on("token", lambda t: seen.append(t.data))
    stream.on("message", lambda m: messages.append(m.event))
    await server.wait_joined(TOPIC)
    await publish_tokens(server, WORDS[:5])
    waiting = asyncio.create_task(stream.wait())
    await publish_tokens(server, WORDS[5:])
    await finish(server, "".join(WORDS))
    response = await waiting
    assert seen == WORDS and messages == ["tokens"] * len(WORDS) + ["response"]
    assert response.content == stream.text == "".join(WORDS)
    assert await collect(stream) == []  # iterate or wait: wait() consumed the events


async def test_wait_on_a_stream_closed_before_its_end_raises(server: PhoenixTestServer) -> None:
    stream = await connect(request_for(server))
    await server.wait_joined(TOPIC)
    waiting = asyncio.create_task(stream.wait())
    await publish_tokens(server, ["a"])
    await stream.close()
    with pytest.raises(StreamError, match="closed before the terminal response"):
        await waiting


async def test_coalesced_tokens_reassemble_the_same_text(server: PhoenixTestServer) -> None:
    await publish_tokens(server, WORDS)
    await finish(server, "".join(WORDS))
    frames = coalesce_tokens(server.log(TOPIC).after(None), TOPIC)
    assert len(frames) == 2  # one merged tokens event + the response
    stream = await connect(request_for(server), coalesce=True)
    events = await collect(stream)
    tokens = [e for e in events if isinstance(e, Token)]
    assert len(tokens) == 1 and tokens[0].from_seq == 1 and tokens[0].seq == 40
    assert stream.text == "".join(WORDS)


def test_sync_facade_gives_the_same_events() -> None:
    """The sync stream runs the async implementation: same events, same order."""
    loop = asyncio.new_event_loop()
    server = PhoenixTestServer({TOKEN: {TOPIC}})
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(10)

    try:
        run(server.start())

        async def produce() -> None:
            await publish_tokens(server, WORDS[:10])
            await server.publish(TOPIC, "response", {"status": "ai_generated"})
            await finish(server, "".join(WORDS[:10]))

        run(produce())
        with SyncStream(request_for(server)) as sync_stream:
            sync_events = list(sync_stream)
            assert sync_stream.text == "".join(WORDS[:10])

        async def async_events() -> list[StreamEvent]:
            return await collect(await connect(request_for(server)))

        assert sync_events == run(async_events())
        assert sum(isinstance(e, Token) for e in sync_events) == 10
        with SyncStream(request_for(server)) as waited:  # wait(): one call into the loop thread
            assert waited.wait().content == waited.text == "".join(WORDS[:10])
    finally:
        run(server.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def test_origin_and_headers_go_into_the_handshake(server: PhoenixTestServer) -> None:
    stream = await connect(request_for(server), origin="https://app.example", headers={"X-Trace": "t-1"})
    await server.wait_joined(TOPIC)
    handshake = server.accepted[-1].websocket.request
    assert handshake is not None
    assert handshake.headers["Origin"] == "https://app.example"
    assert handshake.headers["X-Trace"] == "t-1"
    await finish(server, "")
    await stream.wait()


async def test_a_token_refused_again_after_refresh_fails_naming_the_handshake(server: PhoenixTestServer) -> None:
    calls = 0

    def refresh() -> AsyncRequest:
        nonlocal calls
        calls += 1
        return request_for(server, token="still-refused")

    stream = await connect(request_for(server, token="expired"), refresh=refresh, request_timeout=10)
    with pytest.raises(StreamError, match=r"handshake with ws://127\.0\.0\.1:\d+/socket/websocket was refused "
                                          r"with HTTP 403"):
        await stream.wait()
    assert calls == 1  # one fresh token, not a refresh loop until the request timeout
