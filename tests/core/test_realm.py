"""Realm: the sans-I/O frames with literal text, then the client against a real server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from modelriver._portal import Portal
from modelriver.events import Error, Response, Token
from modelriver.exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ModelRiverError,
    ProtocolError,
    RateLimitError,
)
from modelriver.ratelimit import RateLimiter
from modelriver.realm import (
    GenerateRequest,
    RealmAuthenticationError,
    RealmCancelledError,
    RealmClient,
    RealmConnectionError,
    RealmDispatchError,
    RealmError,
    RealmInternalError,
    RealmInvalidParamsError,
    RealmProtocolError,
    RealmRateLimitError,
    RealmServer,
    RealmTimeoutError,
    SyncRealmClient,
    echo_generator,
    serve,
)
from modelriver.realm import exceptions as realm_exceptions
from modelriver.realm.protocol import (
    Answer,
    Auth,
    AuthFailed,
    AuthRequired,
    AuthSuccess,
    Call,
    Cancel,
    ErrorInfo,
    GenerateResult,
    Invalid,
    TokenRecord,
    Welcome,
    encode,
    parse_client_frame,
    parse_server_frame,
    stream_frame,
    stream_frame_prefix,
    token_record,
    token_text,
)
from support import free_port

KEY = "sk_realm_test"


def said(prompt: str) -> str:
    return f"You said: {prompt}"


# -- frames (sans-I/O) ------------------------------------------------------------------------------


def test_server_frames_parse_from_literal_text() -> None:
    assert parse_server_frame('{"type":"auth_required"}') == AuthRequired()
    assert parse_server_frame('{"type":"auth_success","tenant_id":"t1"}') == AuthSuccess("t1")
    assert parse_server_frame('{"type":"auth_failed","error":"bad key"}') == AuthFailed("bad key")
    record = parse_server_frame(
        b'{"id":"7","status":"streaming","data":{"text":"Hi","index":0,"is_final":false}}'
    )
    assert record == Answer("7", "streaming", {"text": "Hi", "index": 0, "is_final": False})
    error = parse_server_frame(
        '{"id":3,"status":"error","error":{"code":"RATE_LIMIT_EXCEEDED","message":"slow down",'
        '"details":{"retry_after":1.5}}}'
    )
    assert isinstance(error, Answer) and error.error is not None
    exc = error.error.to_exception("3")
    assert isinstance(exc, RealmRateLimitError) and exc.retry_after == 1.5 and exc.call_id == "3"
    assert parse_server_frame('{"id":"1","status":"cancelled"}') == Answer("1", "cancelled")


@pytest.mark.parametrize(
    ("frame", "call_id"),
    [
        ("not json", None),
        ("[1,2]", None),
        ('{"type":"hello"}', None),
        ('{"id":true,"status":"complete"}', None),
        ('{"id":"9","status":"done"}', "9"),
        ('{"status":"complete"}', None),
        (b"\xff\xfe", None),
        ("[" * 100_000, None),
    ],
)
def test_bad_server_frames_raise_protocol_errors(frame: str | bytes, call_id: str | None) -> None:
    with pytest.raises(RealmProtocolError) as info:
        parse_server_frame(frame)
    assert info.value.call_id == call_id
    assert isinstance(info.value, ProtocolError)


def test_oversized_frames_are_refused() -> None:
    with pytest.raises(RealmProtocolError, match="exceeds"):
        parse_server_frame('{"type":"auth_required"}', max_size=10)
    assert isinstance(parse_client_frame('{"id":1,"function":"health"}', max_size=10), Invalid)


def test_client_frames_parse_and_bad_ones_become_invalid() -> None:
    assert parse_client_frame('{"type":"auth","api_key":"k"}') == Auth("k")
    assert parse_client_frame('{"type":"cancel","id":"4"}') == Cancel("4")
    assert parse_client_frame(
        '{"id":"1","function":"generate","params":{"prompt":"x"},"tenant_id":"t"}'
    ) == Call("1", "generate", {"prompt": "x"}, "t")
    assert parse_client_frame('{"id":2,"function":"health"}') == Call(2, "health", {})
    assert parse_client_frame("{") == Invalid(None, "malformed frame: frame is not JSON")
    assert parse_client_frame('{"function":"health"}').id is None  # type: ignore[union-attr]
    assert parse_client_frame('{"id":5,"function":1}') == Invalid(5, "call without a function name")
    assert parse_client_frame('{"id":5,"function":"x","params":[]}') == Invalid(5, "params must be an object")
    assert parse_client_frame('{"type":"cancel"}') == Invalid(None, "cancel without a valid id")
    assert isinstance(parse_client_frame('{"type":"nope","id":3}'), Invalid)


def test_encode_is_compact_ascii_json() -> None:
    assert encode(Cancel("4")) == '{"type":"cancel","id":"4"}'
    assert encode(Auth("k")) == '{"type":"auth","api_key":"k"}'
    assert encode(Call("1", "health", {}, "t")) == (
        '{"id":"1","function":"health","params":{},"tenant_id":"t"}'
    )
    assert encode(Answer("1", "streaming", {"text": "\ud800é"})) == (
        '{"id":"1","status":"streaming","data":{"text":"\\ud800\\u00e9"}}'
    )
    assert json.loads(encode(Invalid(None, "bad"))) == {  # Realm's answer to a frame that is no call
        "id": "unknown", "status": "error",
        "error": {"code": "INTERNAL_ERROR", "message": "Invalid function call: bad"},
    }
    assert json.loads(encode(Invalid(3, "bad"))) == {
        "id": 3, "status": "error", "error": {"code": "DISPATCH_ERROR", "message": "bad"}
    }
    assert json.loads(encode(Welcome("1.0", None, ("cancel",)))) == {
        "status": "connected", "version": "1.0", "tenant_id": None, "capabilities": ["cancel"]}
    assert json.loads(encode(Answer("r", "error", error=ErrorInfo(
        "RATE_LIMIT_EXCEEDED", "Rate limit exceeded. Try again in 3 seconds.", retry_after=3)))) == {
        "id": "r", "status": "error", "error": {
            "code": "RATE_LIMIT_EXCEEDED", "message": "Rate limit exceeded. Try again in 3 seconds.",
            "retry_after": 3}}
    assert encode(Answer(1, "error", error=ErrorInfo("X", "m", {"a": 1}))) == (
        '{"id":1,"status":"error","error":{"code":"X","message":"m","details":{"a":1}}}'
    )


def test_stream_frame_fast_path_matches_encode() -> None:
    for call_id, text, index in [("a1", "Hi ", 0), (7, 'quote " and \ud800 é', 41)]:
        slow = encode(Answer(call_id, "streaming", token_record(text, index)))
        assert stream_frame(stream_frame_prefix(call_id), text, index) == slow
    assert token_text({"text": "x"}) == "x" and token_text({"token": "y"}) == "y"
    with pytest.raises(RealmProtocolError):
        token_text([])


def test_token_records_read_text_or_token() -> None:
    record = TokenRecord.from_data({"text": "a", "index": 2, "is_final": True})
    assert record == TokenRecord("a", 2, None, True)
    assert TokenRecord.from_data({"token": "b", "logprob": -0.5}) == TokenRecord("b", None, -0.5)
    with pytest.raises(RealmProtocolError):
        TokenRecord.from_data({"index": 1})


def test_generate_result_becomes_a_core_response() -> None:
    result = GenerateResult.from_data(
        {"text": "Hi there", "tokens_generated": 2, "prompt_tokens": 3, "cost_usd": 0.01, "time_ms": 12},
        model="m1",
    )
    response = result.to_response(duration_ms=99)
    assert response.kind == "success" and response.is_terminal and response.content == "Hi there"
    assert response.model == "m1" and response.duration_ms == 12
    assert response.meta["usage"] == {"completion_tokens": 2, "prompt_tokens": 3, "total_tokens": 5}
    assert GenerateResult.from_data(None, streamed=["a", "b"]).text == "ab"
    with pytest.raises(RealmProtocolError):
        GenerateResult.from_data([1])


def test_errors_are_typed_by_code_and_sit_under_the_core_tree() -> None:
    cases = {
        "UNAUTHORIZED": (RealmAuthenticationError, AuthenticationError),
        "RATE_LIMIT_EXCEEDED": (RealmRateLimitError, RateLimitError),
        "INVALID_PARAMS": (RealmInvalidParamsError, RealmDispatchError),
        "DISPATCH_ERROR": (RealmDispatchError, RealmError),
        "INTERNAL_ERROR": (RealmInternalError, RealmError),
        "SOMETHING_NEW": (RealmError, ModelRiverError),
    }
    for code, (cls, base) in cases.items():
        exc = realm_exceptions.error_for(code, "boom", {"retry_after_ms": 1500})
        assert type(exc) is cls and isinstance(exc, base) and exc.code == code
        assert str(exc) == f"boom ({code})"
    assert realm_exceptions.error_for("RATE_LIMIT_EXCEEDED", "x", {"retry_after": 2}).retry_after == 2.0
    assert realm_exceptions.error_for("RATE_LIMIT_EXCEEDED", "x", {"retry_after": "soon"}).retry_after is None
    # Realm's server sends only its text; the error's own field wins over it.
    text = "Rate limit exceeded. Try again in 7 seconds."
    assert realm_exceptions.error_for("RATE_LIMIT_EXCEEDED", text).retry_after == 7.0
    assert realm_exceptions.error_for("RATE_LIMIT_EXCEEDED", text, retry_after=2).retry_after == 2.0
    assert isinstance(RealmTimeoutError("t"), APITimeoutError)
    assert isinstance(RealmConnectionError("c"), APIConnectionError)
    assert isinstance(RealmProtocolError("p"), ProtocolError)
    for name in realm_exceptions.__all__:
        value = getattr(realm_exceptions, name)
        if isinstance(value, type):
            assert issubclass(value, RealmError)


def test_rate_limiter_is_a_token_bucket_per_tenant() -> None:
    limiter = RateLimiter(2)
    assert limiter.acquire("a", 0.0) is None
    assert limiter.acquire("a", 0.0) is None
    assert limiter.acquire("a", 0.0) == pytest.approx(30.0)
    assert limiter.acquire("b", 0.0) is None
    assert limiter.acquire("a", 30.0) is None
    assert RateLimiter(0).acquire("a", 0.0) is None


@pytest.mark.parametrize(
    "module",
    ["modelriver.realm", "modelriver.realm.protocol", "modelriver.realm.client", "modelriver.realm.sync",
     "modelriver.realm.server", "modelriver.realm.exceptions", "modelriver.ratelimit"],
)
def test_realm_exports_resolve(module: str) -> None:
    mod = importlib.import_module(module)
    assert len(set(mod.__all__)) == len(mod.__all__)
    assert [n for n in mod.__all__ if not hasattr(mod, n)] == []


def test_protocol_module_does_no_io() -> None:
    import modelriver.realm.protocol as protocol

    source = Path(protocol.__file__).read_text(encoding="utf-8")
    for name in ("asyncio", "websockets", "socket", "httpx", "time"):
        assert f"import {name}" not in source


# -- a real server on loopback ------------------------------------------------------------------------


class Model:
    """The echo model, except prompts starting with "hold": one token, then wait to be cancelled."""

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, request: GenerateRequest) -> AsyncIterator[str]:
        if request.prompt.startswith("hold"):
            yield "first "
            self.holding.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            yield "last"
            return
        if request.prompt == "explode":
            raise RuntimeError("model crashed")
        async for chunk in echo_generator(request):
            yield chunk


@pytest.fixture
def model() -> Model:
    return Model()


@pytest.fixture
async def server(model: Model) -> AsyncIterator[RealmServer]:
    srv = await serve(model, "127.0.0.1", free_port(), api_keys={KEY})
    yield srv
    await srv.close()


@pytest.fixture
async def client(server: RealmServer) -> AsyncIterator[RealmClient]:
    async with RealmClient(server.url, api_key=KEY) as c:
        yield c


async def test_auth_success_names_the_tenant(server: RealmServer) -> None:
    seen: list[Any] = []
    c = RealmClient(server.url, api_key=KEY)
    c.on("connected", seen.append)
    assert not c.is_connected
    await c.connect()
    try:
        assert c.is_connected
        assert c.tenant_id.startswith("tenant_") and seen == [c.tenant_id]
    finally:
        await c.disconnect()
    assert not c.is_connected


async def test_auth_failure_raises_typed_error(server: RealmServer) -> None:
    c = RealmClient(server.url, api_key="wrong")
    with pytest.raises(RealmAuthenticationError, match="Invalid API key") as info:
        await c.connect()
    assert isinstance(info.value, AuthenticationError) and info.value.code == "UNAUTHORIZED"
    assert not c.is_connected


AUTH_REQUIRED = {"type": "auth_required",
                 "message": "Please send authentication message with your API key"}


async def test_server_closes_the_socket_after_auth_failed(server: RealmServer) -> None:
    async with websockets.connect(server.url) as ws:
        assert json.loads(await ws.recv()) == AUTH_REQUIRED
        await ws.send('{"type":"auth","api_key":"wrong"}')
        assert json.loads(await ws.recv()) == {"type": "auth_failed", "error": "Invalid API key"}
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1008


@pytest.mark.parametrize(("first", "error"), [
    ('{"id":"1","function":"health","params":{}}', "Invalid authentication message format"),
    (b"\x00binary", "Authentication message must be text"),
    ("not json", "Invalid authentication message format"),
])
async def test_a_first_frame_other_than_auth_is_auth_failed_and_a_close(
    server: RealmServer, first: str | bytes, error: str
) -> None:
    async with websockets.connect(server.url) as ws:
        assert json.loads(await ws.recv()) == AUTH_REQUIRED
        await ws.send(first)
        answer = json.loads(await ws.recv())
        assert answer["type"] == "auth_failed" and answer["error"].startswith(error)
        with pytest.raises(ConnectionClosed):
            await ws.recv()


async def test_client_without_key_gets_a_typed_error(server: RealmServer) -> None:
    errors: list[Any] = []
    c = RealmClient(server.url, reconnect=False)
    c.on("error", errors.append)
    with pytest.raises(RealmAuthenticationError, match="requires an API key"):
        await c.connect()
    assert not c.is_connected and errors == []


async def test_auth_times_out(model: Model) -> None:
    srv = await serve(model, "127.0.0.1", free_port(), api_keys={KEY}, auth_timeout=0.05)
    try:
        async with websockets.connect(srv.url) as ws:
            assert json.loads(await ws.recv()) == AUTH_REQUIRED
            assert json.loads(await ws.recv()) == {"type": "auth_failed",
                                                   "error": "Authentication timeout (0.05 seconds)"}
            with pytest.raises(ConnectionClosed):
                await ws.recv()
    finally:
        await srv.close()


async def test_realm_python_client_style_reads_the_token_key(server: RealmServer) -> None:
    """Auth sent at once, generate params as Realm's Python client sends them, `token` read."""
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "auth", "api_key": KEY}))
        frames = [json.loads(await ws.recv()) for _ in range(3)]
        assert frames[0] == AUTH_REQUIRED and frames[1]["type"] == "auth_success"
        tenant = frames[1]["tenant_id"]
        assert frames[2] == {"status": "connected", "version": frames[2]["version"],
                             "tenant_id": tenant, "capabilities": ["cancel"]}
        await ws.send(json.dumps({"id": "a", "function": "generate", "tenant_id": tenant, "params": {
            "prompt": "one two", "model": "m", "max_tokens": 100, "temperature": 0.7, "stream": True}}))
        records = []
        while True:
            answer = json.loads(await ws.recv())
            if answer["status"] != "streaming":
                break
            assert answer["data"]["text"] == answer["data"]["token"]
            records.append(answer["data"])
        assert [r["is_final"] for r in records] == [False] * 4 + [True]  # the end, then complete
        assert "".join(r["token"] for r in records) == said("one two")
        assert answer["status"] == "complete" and answer["data"]["status"] == "complete"
        assert "text" not in answer["data"] and answer["data"]["tokens_generated"] == 4


async def test_generate(client: RealmClient) -> None:
    result = await client.generate("hello realm", model="m7")
    assert result.text == said("hello realm")
    assert result.tokens_generated == 4 and result.prompt_tokens == 2 and result.model == "m7"
    assert result.time_ms is not None and result.time_ms >= 0


async def test_generate_honours_max_tokens(client: RealmClient) -> None:
    assert (await client.generate("a b c d e f", max_tokens=3)).text == "You said: a "


async def test_generate_stream_concatenates_to_the_final_text(client: RealmClient) -> None:
    prompt = "the quick brown fox jumps over the lazy dog"
    tokens = [t async for t in client.generate_stream(prompt)]
    assert len(tokens) > 5
    assert "".join(tokens) == (await client.generate(prompt)).text == said(prompt)


async def test_generate_events_are_core_stream_events(client: RealmClient) -> None:
    events = [e async for e in client.generate_events("stream me please", model="m1")]
    tokens, final = events[:-1], events[-1]
    assert all(type(e) is Token for e in tokens)
    assert [e.seq for e in tokens] == list(range(len(tokens)))  # type: ignore[union-attr]
    assert isinstance(final, Response)
    response = final.response
    assert response.kind == "success" and response.content == "".join(e.data for e in tokens)  # type: ignore[union-attr]
    assert response.content == said("stream me please") and response.model == "m1"
    assert response.meta["usage"]["completion_tokens"] == len(tokens)
    assert response.meta["usage"]["prompt_tokens"] == 3
    assert response.duration_ms is not None


async def test_generate_events_end_with_an_error_event(client: RealmClient) -> None:
    events = [e async for e in client.generate_events("explode")]
    assert events == [Error("generate failed: RuntimeError")]


async def test_model_failure_is_an_internal_error(client: RealmClient) -> None:
    with pytest.raises(RealmInternalError, match="generate failed"):
        await client.generate("explode")
    assert (await client.health())["status"] == "healthy"


async def test_pipelines(client: RealmClient) -> None:
    echoed = await client.execute_pipeline("echo", {"a": [1, "b"]})
    assert echoed["pipeline"] == "echo" and echoed["output"] == {"a": [1, "b"]}
    assert (await client.execute_pipeline("uppercase", "shout"))["output"] == "SHOUT"
    with pytest.raises(RealmDispatchError, match="Unknown pipeline: nope") as info:
        await client.execute_pipeline("nope", "x")
    assert info.value.details["pipelines"] == ["echo", "uppercase"] and info.value.code == "DISPATCH_ERROR"
    with pytest.raises(RealmDispatchError):
        await client.execute_pipeline("uppercase", 42)
    # Ours: the name under `name` too; Realm's key `pipeline` is what the client sends.
    assert (await client.call("pipeline", {"name": "echo", "input": 1}))["output"] == 1
    with pytest.raises(RealmDispatchError, match="Missing 'pipeline' parameter"):
        await client.call("pipeline", {"input": 1})


async def test_health(client: RealmClient) -> None:
    health = await client.health()
    assert health["status"] == "healthy" and health["connections"] == 1 and isinstance(health["version"], str)
    assert isinstance(health["uptime_seconds"], int) and health["uptime_seconds"] >= 0


async def test_metadata_lists_functions_and_params(client: RealmClient) -> None:
    meta = await client.metadata()
    functions = {f["name"]: f for f in meta["functions"]}
    assert set(functions) == {"generate", "pipeline", "health", "metadata"}
    assert functions["generate"]["streaming"] is True
    prompt = next(p for p in functions["generate"]["params"] if p["name"] == "prompt")
    assert prompt == {"name": "prompt", "type": "string", "description": "The prompt.", "required": True}
    for function in meta["functions"]:
        assert set(function) == {"name", "description", "params", "returns", "streaming"}
        for param in function["params"]:
            assert {"name", "type", "description", "required"} <= set(param)
    assert meta["pipelines"] == ["echo", "uppercase"]


@pytest.mark.parametrize(
    ("params", "param"),
    [({"temperature": 5}, "temperature"), ({"top_p": -1}, "top_p"), ({"max_tokens": 0}, "max_tokens"),
     ({"prompt": 3}, "prompt"), ({"stream": "yes"}, "stream"), ({"model": 1}, "model")],
)
async def test_bad_params_are_invalid_params(client: RealmClient, params: dict[str, Any], param: str) -> None:
    with pytest.raises(RealmDispatchError) as info:
        await client.call("generate", {"prompt": "ok", **params})
    assert info.value.details == {"param": param} and info.value.code == "DISPATCH_ERROR"


async def test_unknown_function_is_a_dispatch_error(client: RealmClient) -> None:
    with pytest.raises(RealmDispatchError, match="Unknown function: teleport"):
        await client.call("teleport")


async def test_50_concurrent_streams_share_one_socket_without_cross_talk(
    server: RealmServer, client: RealmClient
) -> None:
    in_flight: list[int] = []

    async def one(i: int) -> str:
        parts = []
        async for text in client.generate_stream(f"prompt number {i} " * (1 + i % 7), max_tokens=None):
            if not parts:
                in_flight.append(client.pending_calls)
            parts.append(text)
        return "".join(parts)

    texts = await asyncio.gather(*(one(i) for i in range(50)))
    assert texts == [said(f"prompt number {i} " * (1 + i % 7)) for i in range(50)]
    assert len(server.connections) == 1
    assert max(in_flight) > 1  # the calls really were in flight together
    assert client.pending_calls == 0


async def test_rate_limit_is_per_tenant_with_retry_after(model: Model) -> None:
    keys = {"k1": "tenant-1", "k2": "tenant-2"}
    srv = await serve(model, "127.0.0.1", free_port(), api_keys=keys, rate_limit_per_minute=2)
    try:
        async with RealmClient(srv.url, api_key="k1") as one, RealmClient(srv.url, api_key="k2") as two:
            assert one.tenant_id == "tenant-1"
            await one.generate("a")
            await one.execute_pipeline("echo", 1)
            with pytest.raises(RealmRateLimitError) as info:
                await one.generate("b")
            assert isinstance(info.value, RateLimitError)
            assert info.value.code == "RATE_LIMIT_EXCEEDED"
            assert info.value.retry_after is not None and 1 <= info.value.retry_after <= 30
            assert info.value.message == f"Rate limit exceeded. Try again in {info.value.retry_after:g} seconds."
            with pytest.raises(RealmRateLimitError):
                await one.health()  # every call counts, health too (Realm's server)
            assert (await two.generate("c")).text == said("c")  # another tenant's own budget
            events = [e async for e in one.generate_events("d")]
            assert len(events) == 1 and isinstance(events[0], Error)
    finally:
        await srv.close()


async def test_cancelling_the_task_cancels_the_call(model: Model, client: RealmClient) -> None:
    async def consume() -> list[str]:
        return [t async for t in client.generate_stream("hold on")]

    task = asyncio.create_task(consume())
    await model.holding.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await model.cancelled.wait()
    assert client.pending_calls == 0
    assert (await client.generate("still here")).text == said("still here")


async def test_leaving_a_stream_early_cancels_the_call(model: Model, client: RealmClient) -> None:
    async with contextlib.aclosing(client.generate_stream("hold it")) as stream:
        async for text in stream:
            assert text == "first "
            break
    await model.cancelled.wait()


async def test_server_answers_cancelled(model: Model, server: RealmServer) -> None:
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "auth", "api_key": KEY}))
        await ws.recv(), await ws.recv(), await ws.recv()  # auth_required, auth_success, welcome
        await ws.send(json.dumps(
            {"id": 5, "function": "generate", "params": {"prompt": "hold", "stream": True}}
        ))
        assert json.loads(await ws.recv())["status"] == "streaming"
        await ws.send('{"type":"cancel","id":5}')
        assert json.loads(await ws.recv()) == {"id": 5, "status": "cancelled"}
        await ws.send('{"type":"cancel","id":5}')  # already over: ignored
        await ws.send('{"id":6,"function":"health"}')
        assert json.loads(await ws.recv())["id"] == 6


async def test_server_cancelled_answer_raises() -> None:
    """A client sees ``cancelled`` as RealmCancelledError when it did not cancel itself."""
    async with websockets.serve(_cancelling_handler, "127.0.0.1", 0) as fake:
        port = next(iter(fake.sockets)).getsockname()[1]
        async with RealmClient(f"ws://127.0.0.1:{port}") as c:
            with pytest.raises(RealmCancelledError):
                await c.health()


async def _cancelling_handler(ws: Any) -> None:
    await ws.send('{"status":"connected","version":"0","tenant_id":null}')
    async for raw in ws:
        await ws.send(json.dumps({"id": json.loads(raw)["id"], "status": "cancelled"}))


async def test_call_timeout_raises_and_cancels(model: Model, client: RealmClient) -> None:
    with pytest.raises(RealmTimeoutError, match="no answer within") as info:
        await client.generate("hold please", call_timeout=0.1)
    assert isinstance(info.value, APITimeoutError)
    await model.cancelled.wait()


async def test_reconnects_after_the_socket_is_cut(model: Model, server: RealmServer) -> None:
    connected = asyncio.Event()
    reasons: list[str] = []
    c = RealmClient(server.url, api_key=KEY, reconnect_interval=0.01)
    await c.connect()
    c.on("connected", lambda _tenant: connected.set())
    c.on("disconnected", reasons.append)
    try:
        pending = asyncio.create_task(c.generate("hold the line"))
        await model.holding.wait()
        for ws in list(server.connections):
            ws.transport.abort()  # a cut: no close frame
        with pytest.raises(RealmConnectionError, match="connection lost"):
            await pending
        await connected.wait()
        assert c.is_connected and c.reconnects == 1 and len(reasons) == 1
        assert (await c.generate("back again")).text == said("back again")
    finally:
        await c.disconnect()


async def test_calls_wait_for_a_reconnect_under_way(server: RealmServer) -> None:
    c = RealmClient(server.url, api_key=KEY, reconnect_interval=0.01)
    await c.connect()
    disconnected = asyncio.Event()
    c.on("disconnected", lambda _reason: disconnected.set())
    try:
        for ws in list(server.connections):
            ws.transport.abort()
        await disconnected.wait()
        assert not c.is_connected
        assert (await c.health())["status"] == "healthy"  # waited for the new socket
    finally:
        await c.disconnect()


async def test_outage_then_server_restart(model: Model) -> None:
    """While the server is down, attempts fail (``error`` events) and calls time out; once it is
    back on the same port, the client reconnects by itself."""
    port = free_port()
    srv = await serve(model, "127.0.0.1", port, api_keys={KEY})
    failed_attempt = asyncio.Event()
    connected = asyncio.Event()
    errors: list[Any] = []
    c = RealmClient(srv.url, api_key=KEY, reconnect_interval=0.01)
    await c.connect()
    c.on("error", lambda exc: (errors.append(exc), failed_attempt.set()))
    c.on("connected", lambda _tenant: connected.set())
    try:
        await srv.close()
        await failed_attempt.wait()
        assert isinstance(errors[0], RealmConnectionError)
        with pytest.raises(RealmTimeoutError, match="not reconnected"):
            await c.health(call_timeout=0.05)
        srv = await serve(model, "127.0.0.1", port, api_keys={KEY})
        await connected.wait()
        assert (await c.health())["status"] == "healthy"
    finally:
        await c.disconnect()
        await srv.close()


async def test_no_reconnect_when_disabled(server: RealmServer) -> None:
    c = RealmClient(server.url, api_key=KEY, reconnect=False)
    await c.connect()
    disconnected = asyncio.Event()
    c.on("disconnected", lambda _reason: disconnected.set())
    for ws in list(server.connections):
        ws.transport.abort()
    await disconnected.wait()
    with pytest.raises(RealmConnectionError, match="not connected"):
        await c.health()
    await c.connect()  # an explicit connect works again
    assert (await c.health())["status"] == "healthy"
    await c.disconnect()


async def test_connect_failure_is_a_connection_error() -> None:
    c = RealmClient(f"ws://127.0.0.1:{free_port()}", open_timeout=2)
    with pytest.raises(RealmConnectionError, match="cannot connect"):
        await c.connect()
    with pytest.raises(RealmConnectionError, match="not connected"):
        await c.health()


async def test_disconnect_fails_calls_in_flight(model: Model, client: RealmClient) -> None:
    pending = asyncio.create_task(client.generate("hold tight"))
    await model.holding.wait()
    await client.disconnect()
    with pytest.raises(RealmConnectionError):
        await pending
    await client.disconnect()  # idempotent


async def test_auth_off_server_accepts_any_client(model: Model) -> None:
    srv = await serve(model, "127.0.0.1", free_port())
    try:
        async with RealmClient(srv.url, tenant_id="mine") as anonymous:
            assert anonymous.tenant_id == "mine"
            assert (await anonymous.generate("hi")).text == said("hi")
        async with RealmClient(srv.url, api_key="anything", tenant_id="own") as keyed:
            assert keyed.tenant_id == "own"  # no auth asked: the key is not sent
            assert (await keyed.generate("hi")).text == said("hi")
    finally:
        await srv.close()


async def test_on_returns_an_unsubscribe_function(server: RealmServer) -> None:
    seen: list[Any] = []
    c = RealmClient(server.url, api_key=KEY)
    unsubscribe = c.on("connected", seen.append)
    unsubscribe()
    with pytest.raises(ValueError, match="unknown event"):
        c.on("token", seen.append)
    async with c:
        pass
    assert seen == []


# -- the sync facade ----------------------------------------------------------------------------------


@pytest.fixture
def portal_server() -> Iterator[RealmServer]:
    """A server on its own loop thread, so sync code can block on it."""
    portal = Portal("realm-test-server")

    async def start() -> RealmServer:
        return await serve(Model(), "127.0.0.1", free_port(), api_keys={KEY})

    srv = portal.call(start())
    yield srv
    portal.call(srv.close())
    portal.close()


def test_sync_client(portal_server: RealmServer) -> None:
    with SyncRealmClient(portal_server.url, api_key=KEY) as realm:
        assert realm.is_connected and realm.tenant_id.startswith("tenant_")
        assert realm.generate("sync hello").text == said("sync hello")
        assert "".join(realm.generate_stream("sync stream")) == said("sync stream")
        events = list(realm.generate_events("sync events"))
        assert isinstance(events[-1], Response) and events[-1].response.content == said("sync events")
        assert realm.execute_pipeline("uppercase", "x")["output"] == "X"
        assert realm.health()["status"] == "healthy"
        assert len(realm.metadata()["functions"]) == 4
        with pytest.raises(RealmDispatchError):
            realm.generate("x", temperature=9)
        stream = realm.generate_stream("hold sync")
        assert next(stream) == "first "
        stream.close()  # cancels the call
    assert not realm.is_connected
    realm.close()  # idempotent
