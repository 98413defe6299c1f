"""Realm frames fuzzed at both sides, over real sockets.

Server: garbage in never crashes it, every answer is a well-formed frame, and it keeps serving;
the same for the gateway's Realm endpoint (``modelriver dev --realm-port``, a real process),
whose ``generate`` runs the gateway's workflows.
Client: whatever a server sends, the parsers and every call raise only ``RealmError``s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from modelriver._portal import Portal
from modelriver.events import Error, Response, Token
from modelriver.realm import GenerateResult, RealmError, RealmServer, SyncRealmClient, TokenRecord
from modelriver.realm import serve as realm_serve
from modelriver.realm.protocol import STATUSES, Answer, parse_server_frame
from support import Gateway, free_port, start_gateway

KEY = "sk_fuzz"
# No keepalive pings anywhere: websockets draws ping payloads from `random`, which Hypothesis
# forbids while it generates data (the servers run on other threads).
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ----------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6,
)
param_values = st.dictionaries(
    st.sampled_from(["prompt", "max_tokens", "temperature", "top_p", "stream", "model", "name", "input"])
    | st.text(max_size=6),
    json_values | st.sampled_from(["echo", "uppercase", "hi there", 0.5, 3, True]),
    max_size=6,
)


def _object(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=keys)


client_objects = _object({
    "id": st.integers() | st.text(max_size=8) | json_values,
    "type": st.sampled_from(["auth", "cancel", "auth_required", "nope"]) | json_values,
    "function": st.sampled_from(["generate", "pipeline", "health", "metadata", "cancel"]) | json_values,
    "params": param_values | json_values,
    "tenant_id": st.text(max_size=8) | json_values,
    "api_key": st.sampled_from([KEY, "wrong"]) | json_values,
})
client_frames = (
    st.text(max_size=200)
    | st.binary(max_size=200)
    | json_values.map(json.dumps)
    | client_objects.map(json.dumps)
    | client_objects.map(lambda o: json.dumps(o).encode())
)

CALL_ID = "__CALL_ID__"
server_objects = _object({
    "id": st.just(CALL_ID) | json_values,
    "status": st.sampled_from([*STATUSES, "done", "connected"]) | json_values,
    "data": _object({
        "text": st.text(max_size=10) | json_values, "token": st.text(max_size=10) | json_values,
        "index": st.integers() | json_values, "is_final": json_values,
        "tokens_generated": st.integers() | json_values, "prompt_tokens": json_values,
        "time_ms": st.floats() | json_values, "cost_usd": json_values, "logprob": json_values,
    }) | json_values,
    "error": _object({
        "code": st.sampled_from(["UNAUTHORIZED", "RATE_LIMIT_EXCEEDED", "DISPATCH_ERROR", "INVALID_PARAMS",
                                 "INTERNAL_ERROR", "X"]) | json_values,
        "message": st.text(max_size=10) | st.just("Rate limit exceeded. Try again in 9 seconds.")
        | json_values,
        "retry_after": st.floats() | st.integers() | json_values,
        "details": _object({"retry_after": st.floats() | st.integers() | json_values}) | json_values,
    }) | json_values,
    "type": st.sampled_from(["auth_required", "auth_success", "auth_failed", "x"]) | json_values,
    "tenant_id": json_values,
})
server_frames = (
    st.text(max_size=100) | st.binary(max_size=100) | json_values.map(json.dumps)
    | server_objects.map(json.dumps)
)


# -- server side -----------------------------------------------------------------------------------------


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Served:
    portal: Portal
    open: RealmServer
    keyed: RealmServer
    errors: _Errors
    ws: ClientConnection


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    portal = Portal("realm-fuzz-server")

    async def start() -> tuple[RealmServer, RealmServer]:
        return (await realm_serve(port=free_port(), ping_interval=None),
                await realm_serve(port=free_port(), api_keys={KEY}, ping_interval=None))

    open_server, keyed = portal.call(start())
    errors = _Errors()
    logger = logging.getLogger("modelriver.realm")
    logger.addHandler(errors)
    try:
        with connect(open_server.url, ping_interval=None) as ws:
            yield Served(portal, open_server, keyed, errors, ws)
    finally:
        logger.removeHandler(errors)
        portal.call(open_server.close())
        portal.call(keyed.close())
        portal.close()


def _check_server_frame(raw: str | bytes) -> dict[str, Any]:
    assert isinstance(raw, str), "the server sends text frames only"
    frame = json.loads(raw)
    assert isinstance(frame, dict)
    if "type" in frame:
        assert frame["type"] in ("auth_required", "auth_success", "auth_failed")
    elif frame.get("status") == "connected":  # the welcome frame
        assert "id" not in frame and isinstance(frame["version"], str)
    elif "status" not in frame:
        assert frame == {"error": "Binary messages not supported"}
    else:
        assert frame["status"] in STATUSES
        if frame["status"] == "error":
            assert isinstance(frame["error"]["code"], str) and isinstance(frame["error"]["message"], str)
            assert frame["error"]["code"] in ("DISPATCH_ERROR", "INTERNAL_ERROR")
            if frame["id"] == "unknown":  # a frame that was no call
                assert frame["error"]["code"] == "INTERNAL_ERROR"
    return frame


def _probe(ws: ClientConnection) -> None:
    """A health call must still be answered (after whatever the garbage caused)."""
    probe = f"probe-{uuid.uuid4()}"
    ws.send(json.dumps({"id": probe, "function": "health"}))
    while True:
        frame = _check_server_frame(ws.recv(timeout=5))
        if frame.get("id") == probe:
            assert frame["status"] == "complete" and frame["data"]["status"] == "healthy"
            return


@FUZZ
@given(frames=st.lists(client_frames, min_size=1, max_size=3))
def test_server_survives_garbage_and_keeps_serving(served: Served, frames: list[str | bytes]) -> None:
    for frame in frames:
        served.ws.send(frame)
    _probe(served.ws)
    assert served.errors.records == [], served.errors.records[0].getMessage()


@settings(max_examples=50, deadline=None)
@given(first=client_frames)
def test_server_with_auth_refuses_any_other_first_frame(served: Served, first: str | bytes) -> None:
    """The first frame is ``auth`` with the key (then the welcome), or ``auth_failed`` and a close."""
    with connect(served.keyed.url, ping_interval=None) as ws:
        assert _check_server_frame(ws.recv(timeout=5))["type"] == "auth_required"
        ws.send(first)
        answer = _check_server_frame(ws.recv(timeout=5))
        if answer.get("type") == "auth_success":
            assert json.loads(first) == {**json.loads(first), "type": "auth", "api_key": KEY}
            assert _check_server_frame(ws.recv(timeout=5))["status"] == "connected"
            _probe(ws)
        else:
            assert answer["type"] == "auth_failed"
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
            assert ws.close_code == 1008
    with connect(served.keyed.url, ping_interval=None) as fresh:  # and it still serves newcomers
        fresh.recv(timeout=5)
        fresh.send(json.dumps({"type": "auth", "api_key": KEY}))
        assert _check_server_frame(fresh.recv(timeout=5))["type"] == "auth_success"
        _probe(fresh)
    assert served.errors.records == []


# -- server side: the gateway's Realm endpoint --------------------------------------------------------

gateway_calls = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=8), "function": st.sampled_from(["generate", "pipeline"])},
    optional={
        "params": st.fixed_dictionaries({}, optional={
            "prompt": st.text(max_size=40) | json_values,
            "model": st.sampled_from(["demo-chat", "demo-error", "demo-failover", "demo-tools",
                                      "demo-structured", "demo-events", "nope", ""]) | json_values,
            "max_tokens": st.integers(min_value=-2, max_value=5) | json_values,
            "stream": st.booleans() | json_values,
            "temperature": st.floats() | json_values,
            "pipeline": st.sampled_from(["echo", "uppercase", "nope"]) | json_values,
            "name": st.sampled_from(["echo", "uppercase", "nope"]) | json_values,
            "input": json_values,
        }) | json_values,
        "tenant_id": st.text(max_size=8) | json_values,
    },
)


@dataclass
class GatewayServed:
    gateway: Gateway
    ws: ClientConnection


@pytest.fixture(scope="module")
def gateway_served() -> Iterator[GatewayServed]:
    """A gateway with its Realm endpoint (auth off), and one socket to it."""
    port = free_port()
    gateway = start_gateway("--realm-port", str(port), "--realm-no-auth")
    try:
        with connect(f"ws://127.0.0.1:{port}", ping_interval=None) as ws:
            yield GatewayServed(gateway, ws)
    finally:
        gateway.process.stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(client_frames | gateway_calls.map(json.dumps), min_size=1, max_size=3))
def test_gateway_endpoint_survives_garbage_and_keeps_serving(
    gateway_served: GatewayServed, frames: list[str | bytes],
) -> None:
    for frame in frames:
        gateway_served.ws.send(frame)
    _probe(gateway_served.ws)  # every frame it sent meanwhile (answers to the calls) well-formed
    output = gateway_served.gateway.process.output
    assert gateway_served.gateway.process.popen.poll() is None, output[-3000:]
    assert "Traceback" not in output and " ERROR " not in output, output[-3000:]


# -- client side: the parsers -------------------------------------------------------------------------------


@FUZZ
@given(frame=server_frames | server_objects.map(lambda o: json.dumps(o).replace(f'"{CALL_ID}"', '"1"')))
def test_client_parsing_raises_only_realm_errors(frame: str | bytes) -> None:
    try:
        message = parse_server_frame(frame)
    except RealmError:
        return
    if isinstance(message, Answer):
        if message.error is not None:
            assert isinstance(message.error.to_exception("1"), RealmError)
        with contextlib.suppress(RealmError):
            TokenRecord.from_data(message.data)
        with contextlib.suppress(RealmError):
            GenerateResult.from_data(message.data).to_response(duration_ms=1)


# -- client side: a garbage server ------------------------------------------------------------------------


@dataclass
class Garbage:
    """What the fake server sends for each call, before its own final ``complete``."""

    frames: list[str | bytes] = field(default_factory=list)


@dataclass
class Liar:
    portal: Portal
    url: str
    garbage: Garbage
    client: SyncRealmClient


@pytest.fixture(scope="module")
def liar() -> Iterator[Liar]:
    portal = Portal("realm-fuzz-liar")
    garbage = Garbage()

    async def handler(ws: ServerConnection) -> None:
        await ws.send('{"status":"connected","version":"0","tenant_id":null}')
        async for raw in ws:
            try:
                message = json.loads(raw)
                call_id = message["id"]
            except (ValueError, KeyError, TypeError):
                continue
            if message.get("type") == "cancel":
                continue
            for frame in garbage.frames:
                if isinstance(frame, str):
                    frame = frame.replace(f'"{CALL_ID}"', json.dumps(call_id))
                await ws.send(frame)
            await ws.send(json.dumps(
                {"id": call_id, "status": "complete", "data": {"text": "done", "status": "ok"}}
            ))

    port = free_port()

    async def start() -> Any:
        return await serve(handler, "127.0.0.1", port, ping_interval=None)

    server = portal.call(start())
    client = SyncRealmClient(f"ws://127.0.0.1:{port}", reconnect=False, timeout=5, ping_interval=None)
    try:
        yield Liar(portal, f"ws://127.0.0.1:{port}", garbage, client)
    finally:
        client.close()
        server.close()
        portal.call(server.wait_closed())
        portal.close()


@FUZZ
@given(
    frames=st.lists(server_frames, max_size=4),
    operation=st.sampled_from(["generate", "stream", "events", "health", "metadata", "pipeline"]),
)
def test_client_calls_raise_only_realm_errors(liar: Liar, frames: list[str | bytes], operation: str) -> None:
    liar.garbage.frames = frames
    client = liar.client
    client.disconnect()
    client.connect()
    try:
        if operation == "generate":
            assert isinstance(client.generate("x").text, str)
        elif operation == "stream":
            assert all(isinstance(t, str) for t in client.generate_stream("x"))
        elif operation == "events":
            events = list(client.generate_events("x"))
            assert all(isinstance(e, Token) for e in events[:-1])
            assert isinstance(events[-1], Response | Error)
        elif operation == "health":
            assert isinstance(client.health(), dict)
        elif operation == "metadata":
            assert isinstance(client.metadata(), dict)
        else:
            client.execute_pipeline("echo", 1)
    except RealmError:
        pass
