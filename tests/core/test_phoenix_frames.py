"""``modelriver.phoenix.frames`` and the backoff schedules: literal frames in, ``Message`` out.

Also holds the property tests of the codec and the check that the phoenix package stays sans-I/O.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelriver.exceptions import ProtocolError
from modelriver.phoenix import (
    Message,
    as_broadcast,
    decode,
    encode,
    encode_parts,
    reconnect_backoff,
    rejoin_backoff,
)
from modelriver.phoenix.frames import CLOSE_INVALID, CLOSE_TOO_BIG, decode_parts

CORE_SRC = Path(__file__).resolve().parents[2] / "core" / "src"
FORBIDDEN = ("asyncio", "websockets", "httpx", "httpcore", "anyio", "socket", "ssl", "selectors")

# -- literal frames -------------------------------------------------------------------------------


def test_decode_v2_join() -> None:
    message = decode('["1","1","ai_response:abc","phx_join",{}]')
    assert message == Message("ai_response:abc", "phx_join", {}, ref="1", join_ref="1")


def test_decode_v2_broadcast_with_null_refs() -> None:
    message = decode('[null,null,"ai_response:p:c","tokens",{"data":"hello ","seq":42}]')
    assert message == Message("ai_response:p:c", "tokens", {"data": "hello ", "seq": 42})
    assert message.ref is None
    assert message.join_ref is None


def test_decode_v2_reply() -> None:
    message = decode('["1","3","ai_response:abc","phx_reply",{"status":"ok","response":{}}]')
    assert message.event == "phx_reply"
    assert message.payload == {"status": "ok", "response": {}}
    assert (message.join_ref, message.ref) == ("1", "3")


def test_decode_bytes_utf8() -> None:
    message = decode('[null,null,"t","tokens",{"data":"héllo ✓"}]'.encode())
    assert message.payload == {"data": "héllo ✓"}


def test_decode_integer_refs_become_strings() -> None:
    assert decode('[7,8,"t","e",null]') == Message("t", "e", None, ref="8", join_ref="7")


def test_decode_v1_object_frame() -> None:
    message = decode('{"topic":"ai_response:abc","event":"phx_join","payload":{},"ref":"1"}')
    assert message == Message("ai_response:abc", "phx_join", {}, ref="1", join_ref=None)


def test_decode_v1_object_frame_with_integer_ref_and_join_ref() -> None:
    text = '{"topic":"t","event":"tokens","payload":{"seq":1},"ref":5,"join_ref":"2"}'
    assert decode(text) == Message("t", "tokens", {"seq": 1}, ref="5", join_ref="2")


def test_decode_v1_object_frame_without_refs() -> None:
    assert decode('{"topic":"t","event":"e"}') == Message("t", "e", None)


def test_encode_literal() -> None:
    message = Message("ai_response:abc", "phx_join", {}, ref="1", join_ref="1")
    assert encode(message) == '["1","1","ai_response:abc","phx_join",{}]'


def test_encode_compact_and_non_ascii_as_is() -> None:
    text = encode(Message("t", "tokens", {"data": "héllo ✓", "seq": 1}))
    assert text == '[null,null,"t","tokens",{"data":"héllo ✓","seq":1}]'


def test_encode_parts_matches_encode() -> None:
    message = Message("t", "heartbeat", {}, ref="9", join_ref=None)
    assert encode_parts(None, "9", "t", "heartbeat", {}) == encode(message)


def test_decode_parts_order() -> None:
    parts = decode_parts('["1","2","t","e",{"a":1}]')
    assert parts == ("1", "2", "t", "e", {"a": 1})


def test_max_size_boundary() -> None:
    text = '[null,null,"t","e",{}]'
    assert decode(text, max_size=len(text)).topic == "t"
    with pytest.raises(ProtocolError) as info:
        decode(text, max_size=len(text) - 1)
    assert info.value.close_code == CLOSE_TOO_BIG == 1009


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("x" * 2_000, id="text"),
        pytest.param(b"[" + b" " * 2_000 + b"]", id="bytes"),
    ],
)
def test_oversized_is_1009(frame: str | bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frame, max_size=1_000)
    assert info.value.close_code == 1009


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("", id="empty"),
        pytest.param("not json", id="not-json"),
        pytest.param('["1","1","t","phx_join",{}', id="truncated"),
        pytest.param(b"\xff\xfe\xfa", id="not-utf8"),
        pytest.param(b'[null,null,"t","e",{"data":"\xc3"}]', id="bad-utf8-inside"),
        pytest.param('["1","1","t","phx_join"]', id="four-elements"),
        pytest.param('["1","1","t","phx_join",{},{}]', id="six-elements"),
        pytest.param("[]", id="empty-list"),
        pytest.param("42", id="number"),
        pytest.param('"frame"', id="string"),
        pytest.param("null", id="null"),
        pytest.param('[null,null,1,"e",{}]', id="topic-not-string"),
        pytest.param('[null,null,"t",null,{}]', id="event-not-string"),
        pytest.param('[null,1.5,"t","e",{}]', id="float-ref"),
        pytest.param('[true,null,"t","e",{}]', id="bool-join-ref"),
        pytest.param('[null,["1"],"t","e",{}]', id="list-ref"),
        pytest.param('{"event":"e","payload":{}}', id="v1-without-topic"),
        pytest.param('{"topic":"t","event":"e","ref":{}}', id="v1-object-ref"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="deep-nesting"),
        pytest.param("\ufeff[null,null,\"t\",\"e\",{}]", id="bom"),
    ],
)
def test_malformed_is_1007(frame: str | bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frame, max_size=1 << 30)
    assert info.value.close_code == CLOSE_INVALID == 1007


def test_malformed_keeps_the_json_error_as_cause() -> None:
    with pytest.raises(ProtocolError) as info:
        decode("{")
    assert isinstance(info.value.__cause__, ValueError)


# -- backoff schedules ----------------------------------------------------------------------------


def test_reconnect_backoff_is_phoenix_js_schedule() -> None:
    delays_ms = [round(d * 1000) for d in islice(reconnect_backoff(), 13)]
    assert delays_ms == [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000, 5000, 5000]


def test_rejoin_backoff_is_phoenix_js_schedule() -> None:
    delays_ms = [round(d * 1000) for d in islice(rejoin_backoff(), 7)]
    assert delays_ms == [1000, 2000, 5000, 10000, 10000, 10000, 10000]


def test_backoff_generators_are_independent() -> None:
    first, second = reconnect_backoff(), reconnect_backoff()
    assert [next(first) for _ in range(3)] == [0.01, 0.05, 0.1]
    assert next(second) == 0.01


# -- property tests -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
refs = st.none() | st.text(max_size=6)
messages = st.builds(
    Message,
    topic=st.text(max_size=30),
    event=st.text(max_size=15),
    payload=json_values,
    ref=refs,
    join_ref=refs,
)

def close_code_of(func: Callable[..., object], *args: object) -> int | None:
    """None when ``func(*args)`` returns, the close code when it raises ProtocolError (others propagate)."""
    try:
        func(*args)
    except ProtocolError as exc:
        return exc.close_code
    return None


FAST = settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(FAST, max_examples=400)


@FEWER
@given(messages)
def test_round_trip(message: Message) -> None:
    text = encode(message)
    assert decode(text) == message
    assert decode(text.encode()) == message
    assert json.loads(text) == [message.join_ref, message.ref, message.topic, message.event, message.payload]


def test_as_broadcast_nulls_the_refs_and_keeps_the_rest_as_received() -> None:
    topic = "ai_response:p:c"
    received = '["7",null,"ai_response:p:c","tokens",{"data":"d\\u00e9j\u00e0","seq":3}]'
    assert as_broadcast(received, topic) == '[null,null,"ai_response:p:c","tokens",{"data":"d\\u00e9j\u00e0","seq":3}]'
    assert as_broadcast('[7,"3","ai_response:p:c","x",{}]', topic) == '[null,null,"ai_response:p:c","x",{}]'
    assert as_broadcast(encode_parts("7", None, "ai_response:p:other", "tokens", {}), topic) is None
    assert as_broadcast('["7", null, "ai_response:p:c", "tokens", {}]', topic) is None  # not compact
    assert as_broadcast('{"topic":"ai_response:p:c","event":"x","payload":{}}', topic) is None  # v1


@FEWER
@given(messages, st.booleans())
def test_as_broadcast_is_the_same_message_with_null_refs_or_none(message: Message, compact: bool) -> None:
    text = encode(message) if compact else json.dumps(
        [message.join_ref, message.ref, message.topic, message.event, message.payload])
    out = as_broadcast(text, message.topic)
    if out is not None:
        assert json.loads(out) == [None, None, message.topic, message.event, message.payload]
    plain = all(r is None or "\\" not in json.dumps(r, ensure_ascii=False) for r in (message.join_ref, message.ref))
    if compact and plain:
        assert out == encode_parts(None, None, message.topic, message.event, message.payload)


@FAST
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    assert close_code_of(decode, data) in (None, 1007, 1009)


@FAST
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_protocol_error(data: str) -> None:
    assert close_code_of(decode, data) in (None, 1007, 1009)


@FEWER
@given(json_values)
def test_arbitrary_json_raises_only_protocol_error(value: Any) -> None:
    text = json.dumps(value)
    code = close_code_of(decode, text)
    assert code in (None, 1007)
    if code is None:
        message = decode(text)
        assert type(message.topic) is str
        assert type(message.event) is str
        assert message.ref is None or type(message.ref) is str


@FEWER
@given(st.tuples(json_scalars, json_scalars, json_scalars, json_scalars, json_values).map(list))
def test_arbitrary_five_element_arrays(value: list[Any]) -> None:
    text = json.dumps(value)
    code = close_code_of(decode, text)
    assert code in (None, 1007)
    if code is None:
        message = decode(text)
        assert (message.topic, message.event, message.payload) == tuple(value[2:])


# -- sans-I/O ---------------------------------------------------------------------------------------


def _imported_modules(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return set(json.loads(out))


def _forbidden(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)


def test_phoenix_package_imports_no_io() -> None:
    """The phoenix modules and what they import, with the parent package's own imports set aside."""
    stub_parent = (
        "import types\n"
        "parent = types.ModuleType('modelriver')\n"
        f"parent.__path__ = [{str(CORE_SRC / 'modelriver')!r}]\n"
        "sys.modules['modelriver'] = parent\n"
        "import modelriver.phoenix\n"
        "assert modelriver.phoenix.PhoenixClient\n"
    )
    assert _forbidden(_imported_modules(stub_parent)) == []


def test_import_modelriver_phoenix_imports_no_io() -> None:
    """``import modelriver.phoenix`` in a fresh interpreter: no event loop, socket or HTTP stack.

    This includes ``modelriver/__init__.py``, which runs first: its re-exports must stay lazy
    for anything built on asyncio, websockets or httpx.
    """
    assert _forbidden(_imported_modules("import modelriver.phoenix")) == []
