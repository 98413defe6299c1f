"""Hypothesis against a live `modelriver dev`: socket frames and HTTP bodies (docs/gateway.md).

The gateway must never crash and must stay responsive. Frames that are valid Phoenix but odd
(unknown topics and events, strange payloads, v1 objects) keep the socket open: a heartbeat
right after each one gets its reply. Malformed frames close the socket with 1007 (1009 when over
1 MiB) and a reason; the test then reconnects with the same token. Bad JSON bodies get 400, wrong
shapes 400 (or 404 for an unknown workflow), never a 5xx.

One gateway for the module (its own subprocess); one socket is reused for as many frames as it
survives. Examples are derandomized so a run is reproducible.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from modelriver.types import AsyncRequest, socket_endpoint
from support import Gateway, reopen_socket, start_gateway
from support.gatewaytest import WebhookReceiver

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(
    deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
MIB = 1 << 20


class Sock:
    """One reusable socket on the gateway; reopened (same token) after the gateway closes it."""

    def __init__(self, gateway: Gateway, request: AsyncRequest) -> None:
        self.gateway = gateway
        self.request = request
        self.ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()
        self.opened = 0
        self._n = 0

    def ensure(self) -> ClientConnection:
        if self.ws is not None:
            return self.ws
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            reopen_socket(socket_endpoint(self.request.websocket_url, self.request.ws_token)))
        self.opened += 1
        return self.ws

    def close(self) -> None:
        self._stack.close()
        self.ws = None

    def roundtrip(self, frame: str | bytes) -> tuple[int, str] | None:
        """Send ``frame``, then a heartbeat. None when the heartbeat was answered (socket alive),
        else the close ``(code, reason)``."""
        ws = self.ensure()
        self._n += 1
        ref = f"fuzz-hb-{self._n}-{uuid.uuid4().hex[:6]}"
        try:
            ws.send(frame)
            ws.send(json.dumps([None, ref, "phoenix", "heartbeat", {}]))
            while True:
                text = ws.recv(timeout=10)
                reply = json.loads(text)
                if reply[1] == ref and reply[3] == "phx_reply":
                    assert reply[4] == {"status": "ok", "response": {}}
                    return None
        except ConnectionClosed as exc:
            self.close()
            if exc.rcvd is None:  # no close frame: the connection just died
                return 1006, "connection dropped without a close frame"
            return exc.rcvd.code, exc.rcvd.reason


@pytest.fixture(scope="module")
def fuzz_gateway() -> Iterator[Gateway]:
    gw = start_gateway()
    yield gw
    alive = gw.process.popen.poll() is None
    gw.process.stop()
    assert alive, f"the gateway died during fuzzing:\n{gw.process.output[-4000:]}"


@pytest.fixture(scope="module")
def api(fuzz_gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_gateway.url, timeout=10,
                      headers={"Authorization": f"Bearer {fuzz_gateway.api_key}"}) as client:
        yield client


@pytest.fixture(scope="module")
def sock(fuzz_gateway: Gateway, api: httpx.Client) -> Iterator[Sock]:
    answer = api.post("/v1/ai/async", json={
        "workflow": "demo-chat", "messages": [{"role": "user", "content": "fuzz"}],
        "metadata": {"scripted": {"tokens_per_second": 5000, "first_token_ms": 0}},
    })
    answer.raise_for_status()
    s = Sock(fuzz_gateway, AsyncRequest.from_payload(answer.json()))
    yield s
    s.close()


def assert_alive(gateway: Gateway) -> None:
    assert gateway.process.popen.poll() is None, f"the gateway died:\n{gateway.process.output[-4000:]}"


def assert_serves(gateway: Gateway, api: httpx.Client) -> None:
    """The gateway is alive and still streams a normal request to its final answer."""
    assert_alive(gateway)
    assert api.get("/health").json()["status"] == "ok"
    answer = api.post("/v1/ai/async", json={
        "workflow": "demo-chat", "messages": [{"role": "user", "content": "still there?"}],
        "metadata": {"scripted": {"tokens_per_second": 5000, "first_token_ms": 0}},
    })
    assert answer.status_code == 200, answer.text
    request = AsyncRequest.from_payload(answer.json())
    with connect(request.socket_url, open_timeout=5) as ws:
        ws.send(json.dumps(["1", "1", request.topic, "phx_join", {}]))
        while True:
            frame = json.loads(ws.recv(timeout=10))
            assert frame[3] != "error", frame
            if frame[3] == "response":
                assert frame[4]["status"] == "success", frame
                assert frame[4]["content"]
                return


# -- strategies ------------------------------------------------------------------------------

sendable = st.characters(exclude_categories=("Cs",))  # what a text frame can carry as UTF-8
json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
"""JSON scalars; strings may hold lone surrogates (sent escaped, as ``json.dumps`` writes them)."""
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
refs = st.none() | st.text(max_size=10) | st.integers(0, 10**9).map(str)


def topics(own: str) -> st.SearchStrategy[str]:
    channel = own.rsplit(":", 1)[1]
    return st.sampled_from([
        "phoenix", own, f"ai_response:{channel}", f"ai_response:{uuid.UUID(int=1)}:{channel}",
        "ai_response:x:y", "ai_response:", "room:lobby", "",
    ]) | st.text(max_size=40)


events = st.sampled_from([
    "phx_join", "phx_leave", "heartbeat", "phx_reply", "phx_close", "phx_error", "tokens",
    "response", "custom",
]) | st.text(max_size=15)


def join_payloads() -> st.SearchStrategy[Any]:
    return json_values | st.fixed_dictionaries({}, optional={
        "last_seq": st.integers(0, 10**6) | json_scalars,
        "coalesce": st.booleans() | json_scalars,
    })


def odd_frames(own: str) -> st.SearchStrategy[str]:
    v2 = st.tuples(refs, refs, topics(own), events, join_payloads()).map(list)
    v1 = st.fixed_dictionaries(
        {"topic": topics(own), "event": events, "payload": join_payloads()},
        optional={"ref": refs, "join_ref": refs},
    )
    return (v2 | v1).map(json.dumps)


def _not_json(data: str | bytes) -> bool:
    """True when Python's json (which the gateway uses) cannot parse ``data``."""
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return True
    return False


bad_refs = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)) | st.booleans() \
    | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
malformed_frames = st.one_of(
    st.text(sendable, max_size=60).filter(_not_json),
    json_scalars.map(json.dumps),
    st.lists(json_values, max_size=7).filter(lambda xs: len(xs) != 5).map(json.dumps),
    st.tuples(refs, refs, json_values.filter(lambda v: not isinstance(v, str)), st.text(max_size=5),
              json_values).map(lambda f: json.dumps(list(f))),
    st.tuples(refs, refs, st.text(max_size=5), json_values.filter(lambda v: not isinstance(v, str)),
              json_values).map(lambda f: json.dumps(list(f))),
    st.tuples(bad_refs, refs, st.just("phoenix"), st.just("heartbeat"), st.just({}))
    .map(lambda f: json.dumps(list(f))),
    st.dictionaries(st.sampled_from(["payload", "ref", "event"]), json_values, max_size=3)
    .map(json.dumps),
)


# -- socket frames ---------------------------------------------------------------------------


def test_odd_but_valid_frames_keep_the_socket(
    fuzz_gateway: Gateway, api: httpx.Client, sock: Sock
) -> None:
    own = sock.request.topic
    closes: list[tuple[int, str]] = []

    @settings(FUZZ, max_examples=800)
    @given(frame=odd_frames(own))
    def check(frame: str) -> None:
        result = sock.roundtrip(frame)
        if result is not None:
            # Only a join whose last_seq is not a non-negative integer may be refused this way.
            code, reason = result
            closes.append(result)
            assert code == 1007, (frame, result)
            assert reason, frame
            parsed = json.loads(frame)
            event = parsed[3] if isinstance(parsed, list) else parsed["event"]
            assert event == "phx_join", (frame, result)

    check()
    print(f"odd frames: {len(closes)} joins refused by closing; socket opened {sock.opened} times")
    assert sock.roundtrip(json.dumps([None, "x", "phoenix", "heartbeat", {}])) is None
    assert_serves(fuzz_gateway, api)


def test_malformed_frames_close_with_1007_and_a_reason(
    fuzz_gateway: Gateway, api: httpx.Client, sock: Sock
) -> None:
    @settings(FUZZ, max_examples=250)
    @given(frame=malformed_frames)
    def check(frame: str) -> None:
        result = sock.roundtrip(frame)
        assert result is not None, f"the gateway kept a socket after {frame!r}"
        code, reason = result
        assert code == 1007, (frame, result)
        assert reason, frame

    check()
    assert_serves(fuzz_gateway, api)


def test_binary_garbage_closes_the_socket_cleanly(
    fuzz_gateway: Gateway, api: httpx.Client, sock: Sock
) -> None:
    @settings(FUZZ, max_examples=100)
    @given(frame=st.binary(max_size=64).filter(_not_json))
    def check(frame: bytes) -> None:
        result = sock.roundtrip(frame)
        assert result is not None, f"the gateway kept a socket after binary {frame!r}"
        code, reason = result
        assert code in (1003, 1007), (frame, result)
        assert reason

    check()
    assert_serves(fuzz_gateway, api)


def test_frames_over_one_mib_close_with_1009_and_just_under_pass(
    fuzz_gateway: Gateway, api: httpx.Client, sock: Sock
) -> None:
    under = json.dumps([None, "big", "phoenix", "heartbeat", {"pad": "x" * (MIB - 200)}])
    assert len(under.encode()) < MIB
    assert sock.roundtrip(under) is None
    over = json.dumps([None, "big", "phoenix", "heartbeat", {"pad": "x" * (MIB + 10)}])
    result = sock.roundtrip(over)
    assert result is not None
    assert result[0] == 1009
    assert result[1]
    assert sock.roundtrip(json.dumps([None, "1", "phoenix", "heartbeat", {}])) is None
    assert_serves(fuzz_gateway, api)


# -- HTTP bodies -----------------------------------------------------------------------------

ROUTES = ["/v1/ai/async", "/api/v1/ai/async", "/v1/ai/reconnect", "/api/v1/ai/reconnect", "/v1/ai/cancel"]
WORKFLOWS = ["demo-chat", "demo-structured", "demo-events", "demo-failover", "demo-error", "demo-tools"]

async_bodies = st.fixed_dictionaries({}, optional={
    "workflow": st.sampled_from(WORKFLOWS) | json_values,
    "messages": st.lists(st.fixed_dictionaries({}, optional={"role": json_values, "content": json_values}),
                         max_size=3) | json_values,
    "delivery_method": st.just("websocket") | json_values,
    "webhook_url": json_values,
    "events": st.lists(st.text(max_size=20), max_size=3) | json_values,
    "metadata": st.fixed_dictionaries({}, optional={"scripted": st.dictionaries(
        st.sampled_from(["text", "tokens_per_second", "first_token_ms", "fail_after", "hang",
                         "drop_socket_after", "invalid_output", "error", "upstream_timeout",
                         "callback_timeout", "bogus"]),
        json_values, max_size=4)}) | json_values,
})


def check_answer(answer: httpx.Response, allowed: set[int], what: object) -> None:
    assert answer.status_code in allowed, (answer.status_code, answer.text[:300], what)
    if answer.status_code >= 400:
        body = answer.json()
        assert isinstance(body.get("error"), str), (answer.text, what)
        assert isinstance(body.get("message"), str), (answer.text, what)
        assert body["message"]


def test_bad_json_bodies_are_400(fuzz_gateway: Gateway, api: httpx.Client) -> None:
    """Every route, including the callback of a request that is waiting for one (bad JSON must
    not count as its callback: a good one afterwards still completes it)."""
    with WebhookReceiver(fuzz_gateway.webhook_secret) as receiver:
        created = api.post("/v1/ai/async", json={
            "workflow": "demo-events", "messages": [{"role": "user", "content": "fuzz"}],
            "events": ["webhook_received"], "webhook_url": receiver.url,
            "metadata": {"scripted": {"tokens_per_second": 5000, "first_token_ms": 0}},
        })
        assert created.status_code == 200, created.text
        cid = created.json()["channel_id"]
        receiver.get()  # the webhook went out: the request now waits for its callback

    @settings(FUZZ, max_examples=300)
    @given(route=st.sampled_from([*ROUTES, f"/v1/callback/{cid}"]),
           body=st.binary(max_size=80).filter(_not_json))
    def check(route: str, body: bytes) -> None:
        answer = api.post(route, content=body, headers={"Content-Type": "application/json"})
        check_answer(answer, {400}, (route, body))

    check()
    completed = api.post(f"/v1/callback/{cid}", json={"data": {"ok": True}})
    assert completed.status_code == 200, completed.text
    assert api.get(f"/v1/requests/{cid}").json()["status"] == "completed"
    assert_serves(fuzz_gateway, api)


def test_wrong_shapes_are_4xx_never_5xx(fuzz_gateway: Gateway, api: httpx.Client) -> None:
    @settings(FUZZ, max_examples=400)
    @given(route=st.sampled_from(ROUTES), body=json_values | async_bodies)
    def check(route: str, body: Any) -> None:
        answer = api.post(route, json=body)
        if answer.status_code == 200:
            # The body happened to be valid: it must then be answered as the contract says.
            assert answer.json()["channel_id"]
            return
        check_answer(answer, {400, 404}, (route, body))
        if not isinstance(body, dict):
            assert answer.status_code == 400, (route, body)

    check()
    assert_serves(fuzz_gateway, api)


def test_callback_bodies_never_5xx(fuzz_gateway: Gateway, api: httpx.Client) -> None:
    waiting = str(uuid.uuid4())

    @settings(FUZZ, max_examples=200)
    @given(body=json_values, token=st.none() | st.text(max_size=20))
    def check(body: Any, token: str | None) -> None:
        params = {"token": token} if token is not None else None
        answer = api.post(f"/v1/callback/{waiting}", json=body, params=params)
        check_answer(answer, {400, 401, 404, 409}, body)

    check()
    assert_serves(fuzz_gateway, api)


def test_unknown_routes_and_methods_answer_json(fuzz_gateway: Gateway, api: httpx.Client) -> None:
    for method, path, status in [("POST", "/v1/nope", 404), ("GET", "/v1/ai/async", 405),
                                 ("DELETE", "/v1/requests", 405), ("GET", "/socket/nope", 404)]:
        answer = api.request(method, path)
        check_answer(answer, {status}, (method, path))


def test_bodies_over_one_mib_are_413(fuzz_gateway: Gateway, api: httpx.Client) -> None:
    big = json.dumps({"workflow": "demo-chat", "messages": [{"role": "user", "content": "x" * (MIB + 10)}]})
    answer = api.post("/v1/ai/async", content=big, headers={"Content-Type": "application/json"})
    check_answer(answer, {413}, "1 MiB body")
    assert answer.json()["error"] == "payload_too_large"
    assert_serves(fuzz_gateway, api)
