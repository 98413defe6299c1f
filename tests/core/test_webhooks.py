"""modelriver.webhooks and modelriver._jsjson against real JavaScript.

Every vector comes from Node during the run (tests/node/webhook_oracle.mjs): its JSON.parse,
JSON.stringify and node:crypto HMAC. One Node process serves the whole module.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelriver import _jsjson
from modelriver.exceptions import WebhookVerificationError
from modelriver.webhooks import (
    CALLBACK_URL_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookEvent,
    encode_body,
    sign,
    signature_headers,
    verify_signature,
    verify_webhook,
)

ORACLE = Path(__file__).parents[1] / "node" / "webhook_oracle.mjs"
SECRET = "whsec_tëst-🔑"
TS = "1704825600"
NOW = 1704825600 + 5.0

pytestmark = pytest.mark.node


class Oracle:
    """One long-lived `node webhook_oracle.mjs`: a JSON request per line, a JSON answer per line."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("these tests need Node.js (`node` on PATH): the vectors come from real JS")
        self.proc = subprocess.Popen(
            [node, str(ORACLE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request).encode("ascii") + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "node exited"
        answer: dict[str, Any] = json.loads(line.decode("utf-8"))
        assert "error" not in answer, answer["error"]
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    node = Oracle()
    yield node
    node.close()


# -- vectors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    json: str | None = None  # the body as a (possibly non-JS) sender wrote it
    expr: str | None = None  # or a JavaScript expression building the body
    # False: the literal text holds what no JavaScript sender writes (1e400): the fallback
    # refuses it on purpose (see test_overflowing_literal_cannot_replace_null_through_the_fallback)
    literal_fallback: bool = True


def _deep(depth: int) -> str:
    inner = '{"leaf":[1,"x",null]}'
    for i in range(depth):
        inner = f'{{"k{i}":[{inner}]}}' if i % 2 else f'[{inner},{i}]'
    return inner


CASES = [
    Case("non-ascii-emoji", json='{"channel_id":"c1","data":{"text":"héllo wörld — 日本語 😀👍🏽","ä":"ß"}}'),
    Case("u2028-escaped", json='{"data":{"s":"a\\u2028b\\u2029c"}}'),
    Case("u2028-raw", json='{"data":{"s":"a\u2028b\u2029c","\u2028":1}}'),
    Case("quotes-backslashes", json=r'{"data":{"q":"say \"hi\" \\ back\\slash \/ path","\"k\\":"v"}}'),
    Case(
        "control-chars",
        json='{"data":{"c":"\\u0000\\u0001\\b\\f\\n\\r\\t\\u000b\\u001f\\u007f\\u0080"}}',
    ),
    Case("lone-surrogates", json='{"data":{"s":"\\ud800 \\udfff x\\ud83d\\ude00"}}'),
    Case("one-point-zero", json='{"data": {"x": 1.0, "y": -2.50, "z": 1E2, "w": 0.000}}'),
    Case(
        "exponents",
        json=(
            '{"data":{"big":1e21,"b2":123456789012345678901234,"e20":100000000000000000000,'
            '"small":1e-7,"edge":0.000001,"tiny":5e-324,"max":1.7976931348623157e308,'
            '"neg":-1.5e300,"frac":1.5e-10}}'
        ),
    ),
    Case("overflow", json='{"data":{"over":1e400,"under":1e-400}}', literal_fallback=False),
    Case("minus-zero", json='{"data":{"z":-0,"zf":-0.0,"ze":-0e5,"arr":[-0]}}'),
    Case(
        "past-2-53",
        json=(
            '{"data":{"n":9007199254740993,"m":18446744073709551615,"neg":-9007199254740993,'
            '"p":123456789012345678901234567890,"ok":9007199254740991}}'
        ),
    ),
    Case("key-order", json='{"data":{"z":1,"a":{"y":2,"b":3},"m":[{"k2":1,"k1":2}],"A":0}}'),
    Case(
        "index-keys-first",
        json=(
            '{"data":{"b":1,"10":2,"2":3,"01":4,"-1":5,"4294967295":6,"4294967294":7,'
            '"1.5":8,"0":9}}'
        ),
    ),
    Case("duplicate-keys", json='{"data":{"a":1,"b":2,"a":3}}'),
    Case("duplicate-data", json='{"data":{"x":1},"note":"{\\"data\\":0}","data":{"x":2}}'),
    Case("escaped-data-key", json='{"d\\u0061ta":{"a":1},"meta":{"data":{"fake":true}}}'),
    Case("tricky-strings", json='{"note":"}{][\\"data\\":","data":{"s":"}]\\\\\\"","t":"\\\\"}}'),
    Case("deep-nesting", json='{"data":' + _deep(300) + "}"),
    Case("empty-object", json='{"data":{}}'),
    Case("empty-array", json='{"data":[]}'),
    Case("string-data", json='{"data":"just a string"}'),
    Case("null-data", json='{"data":null}'),
    Case(
        "full-body",
        json=(
            '{"channel_id":"5f0c","timestamp":1704825600,"type":"task.ai_generated",'
            '"event":"review","data":{"summary":"ok","score":0.9,"items":[1,2.0]},'
            '"ai_response":{"data":{"summary":"ok"},"meta":{"duration_ms":1200}},'
            '"callback_url":"https://api.modelriver.com/v1/callback/5f0c"}'
        ),
    ),
    Case("computed-sum", expr="{data: {sum: 0.1 + 0.2, third: 1 / 3, big: 2 ** 70, neg0: -0}}"),
    Case(
        "computed-numbers",
        expr=(
            "{data: {max: Number.MAX_VALUE, min: Number.MIN_VALUE, eps: Number.EPSILON,"
            " e21: 1e21, e: 123e-20, safe: 2 ** 53 + 1, inf: Infinity, nan: NaN}}"
        ),
    ),
    Case("computed-strings", expr='{data: {s: "\\u2028\\ud800" + String.fromCharCode(31)}}'),
]

NO_DATA_CASES = [
    Case("no-data", json='{"channel_id":"c1","event":"ping"}'),
    Case("no-data-spaced", json='{ "channel_id" : "c1",\n  "nested": {"data": {"x": 1.0}} }'),
]


def node_sign(oracle: Oracle, case: Case, ts: str = TS) -> dict[str, Any]:
    request: dict[str, Any] = {"op": "sign", "secret": SECRET, "timestamp": ts}
    if case.expr is not None:
        request["expr"] = case.expr
    else:
        request["json"] = case.json
    return oracle.ask(request)


def reserialized(caplog: pytest.LogCaptureFixture) -> bool:
    return any("re-serialized" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_raw_data_text_verifies(
    oracle: Oracle, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="modelriver.webhooks")
    vec = node_sign(oracle, case)
    event = verify_signature(vec["body"].encode("utf-8"), vec["signature"], TS, SECRET, now=NOW)
    assert event.data == json.loads(vec["data"])
    assert event.raw == json.loads(vec["body"])
    assert event.signed_at == int(TS)
    assert not reserialized(caplog), "the raw data text of a JS body must match as is"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_stringify_matches_node(oracle: Oracle, case: Case) -> None:
    vec = node_sign(oracle, case)
    source = vec["body"] if case.json is None else case.json
    assert _jsjson.stringify(_jsjson.loads(source)["data"]) == vec["data"]
    assert _jsjson.stringify(_jsjson.loads(source)) == vec["body"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reserialized_fallback(
    oracle: Oracle, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    """Bodies whose raw ``data`` text is not JSON.stringify's: pretty-printed, or as first written."""
    caplog.set_level(logging.DEBUG, logger="modelriver.webhooks")
    vec = node_sign(oracle, case)
    variants = [
        json.dumps(json.loads(vec["body"]), indent=2, ensure_ascii=True),
        json.dumps(json.loads(vec["body"]), indent=1, ensure_ascii=False, separators=(", ", " : ")),
    ]
    if case.json is not None and case.literal_fallback:
        variants.append(case.json)  # the literal text: 1.0, -0, 9007199254740993, ...
    for body in variants:
        try:
            content = body.encode("utf-8")
        except UnicodeEncodeError:
            continue  # a raw lone surrogate: no sender can put that on the wire
        caplog.clear()
        event = verify_signature(content, vec["signature"], TS, SECRET, now=NOW)
        assert event.raw == json.loads(body)
        if vec["data"] not in body:  # the raw text cannot have matched: the fallback must have
            assert reserialized(caplog), body[:200]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_python_sign_matches_node(oracle: Oracle, case: Case) -> None:
    vec = node_sign(oracle, case)
    source = vec["body"] if case.json is None else case.json
    data = json.loads(source)["data"]  # Python's own parse: exact ints, 1.0 as float, ...
    assert sign(data, SECRET, TS) == (vec["signature"], TS)
    assert sign(data, SECRET.encode("utf-8"), int(TS)) == (vec["signature"], TS)


@pytest.mark.parametrize("case", NO_DATA_CASES, ids=lambda c: c.id)
def test_body_without_data_is_signed_raw(oracle: Oracle, case: Case) -> None:
    assert case.json is not None
    vec = oracle.ask({"op": "sign_raw", "secret": SECRET, "timestamp": TS, "raw": case.json})
    body = case.json.encode("utf-8")
    event = verify_signature(body, vec["signature"], TS, SECRET, now=NOW)
    assert event.data is None
    assert event.raw == json.loads(case.json)
    assert sign(body, SECRET, TS)[0] == vec["signature"]
    assert signature_headers(body, SECRET, timestamp=TS)[SIGNATURE_HEADER] == vec["signature"]
    # Re-formatting a body without ``data`` breaks it: there is nothing to re-serialize.
    pretty = json.dumps(json.loads(case.json), indent=2).encode("utf-8")
    with pytest.raises(WebhookVerificationError, match="bad signature"):
        verify_signature(pretty, vec["signature"], TS, SECRET, now=NOW)


def test_node_checks_what_python_sends(oracle: Oracle) -> None:
    body = {
        "channel_id": "c1",
        "timestamp": 1704825600,
        "data": {"z": 1.0, "a": "é\u2028😀", "n": 2**53 + 1, "10": None, "2": [-0.0, 1e21]},
    }
    content = encode_body(body)
    headers = signature_headers(body, SECRET, timestamp=TS, callback_url="https://cb.test/x")
    assert headers[TIMESTAMP_HEADER] == TS
    assert headers[CALLBACK_URL_HEADER] == "https://cb.test/x"
    vec = oracle.ask(
        {"op": "sign", "secret": SECRET, "timestamp": TS, "json": content.decode("utf-8")}
    )
    assert vec["body"].encode("utf-8") == content, "encode_body is JSON.stringify(body)"
    assert vec["signature"] == headers[SIGNATURE_HEADER]
    assert signature_headers(content, SECRET, timestamp=TS) == {
        SIGNATURE_HEADER: vec["signature"],
        TIMESTAMP_HEADER: TS,
    }
    event = verify_webhook(content, headers, SECRET, now=NOW)
    assert event.callback_url == "https://cb.test/x"


@pytest.mark.parametrize(
    ("body", "span"),
    [
        (b'{"data":{"a":1}}', b'{"a":1}'),
        (b' {\n "d\\u0061ta" :\t[1, {"x": "]}"}] \n}', b'[1, {"x": "]}"}]'),
        (b'{"meta":{"data":{"fake":1}},"data":"s\\"}"}', b'"s\\"}"'),
        (b'{"data":1,"data":-2.5e3}', b"-2.5e3"),
        (b'{"note":"\\\\","data":null}', b"null"),
        (b'{"x":[{"data":1}]}', None),
        (b"[1]", None),
        (b"{}", None),
    ],
)
def test_raw_data_span(body: bytes, span: bytes | None) -> None:
    from modelriver.webhooks import _data_span

    found = _data_span(body)
    assert (body[found[0] : found[1]] if found else None) == span


# -- property: random JSON, one batch per example, all through the same Node process -----------


class Raw(str):
    """A JSON literal, already written."""


_DIGITS = st.text("0123456789", min_size=1, max_size=25)
# -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, every part drawn on its own
_NUMBER_LITERAL = st.builds(
    lambda sign, lead, rest, frac, exp: sign + (lead + rest if lead != "0" else "0") + frac + exp,
    st.sampled_from(["", "-"]),
    st.sampled_from("0123456789"),
    st.text("0123456789", max_size=25),
    st.one_of(st.just(""), _DIGITS.map(lambda d: "." + d)),
    st.one_of(
        st.just(""),
        st.tuples(st.sampled_from(["e", "E", "e+", "e-", "E-"]), st.integers(0, 400)).map(
            lambda t: t[0] + str(t[1])
        ),
    ),
)
_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
_KEY = st.one_of(
    _TEXT,
    st.sampled_from(["0", "1", "2", "10", "01", "-1", "4294967294", "4294967295", "1.5", "data"]),
    st.integers(0, 2**33).map(str),
)
_SCALAR = st.one_of(
    st.just(Raw("null")),
    st.booleans().map(lambda b: Raw("true" if b else "false")),
    st.integers(-(2**70), 2**70).map(lambda i: Raw(str(i))),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Raw(repr(f))),
    _NUMBER_LITERAL.map(Raw),
    st.tuples(_TEXT, st.booleans()).map(lambda t: Raw(json.dumps(t[0], ensure_ascii=t[1]))),
)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(st.tuples(_KEY, inner), max_size=5).map(tuple),  # pairs: duplicates allowed
    ),
    max_leaves=12,
)


def _write(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(_write(v) for v in value) + "]"
    pairs = ",".join(json.dumps(k, ensure_ascii=False) + ":" + _write(v) for k, v in value)
    return "{" + pairs + "}"


def test_stringify_property_against_node(oracle: Oracle) -> None:
    checked = 0

    @settings(
        max_examples=70,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(_VALUE, min_size=30, max_size=30))
    def check(values: list[Any]) -> None:
        nonlocal checked
        texts = [_write(v) for v in values]
        outs = oracle.ask({"op": "stringify", "texts": texts})["outs"]
        mismatches = [
            (text, ours, node)
            for text, node in zip(texts, outs, strict=True)
            if (ours := _jsjson.stringify(_jsjson.loads(text))) != node
        ]
        assert mismatches == []  # (input, ours, JSON.stringify's)
        checked += len(texts)

    check()
    assert checked >= 2000


def test_stringify_python_values() -> None:
    assert _jsjson.stringify({"t": (1, 2.5), "b": True, "f": False, "n": None}) == (
        '{"t":[1,2.5],"b":true,"f":false,"n":null}'
    )
    assert _jsjson.stringify(10**400) == "null"  # a Number past the double range: Infinity
    assert _jsjson.stringify(float("nan")) == "null"
    assert _jsjson.stringify("\ud83d\ude00") == '"😀"'  # a surrogate pair is one character
    with pytest.raises(TypeError):
        _jsjson.stringify({1: "x"})
    with pytest.raises(TypeError):
        _jsjson.stringify(b"bytes")
    with pytest.raises(ValueError):
        _jsjson.loads("[NaN]")
    with pytest.raises(ValueError):
        _jsjson.loads("[1e400]", allow_overflow=False)


# -- refusals --------------------------------------------------------------------------------------

BODY = next(c.json for c in CASES if c.id == "full-body") or ""


def _signed(body: str = BODY, ts: str = TS) -> tuple[bytes, str]:
    signature, _ = sign(json.loads(body)["data"], SECRET, ts)
    return body.encode("utf-8"), signature


def test_full_body_fields() -> None:
    body, signature = _signed()
    event = verify_signature(
        body, signature, TS, SECRET, now=NOW, callback_url="https://header.test/cb"
    )
    assert event == WebhookEvent(
        channel_id="5f0c",
        timestamp=1704825600,
        type="task.ai_generated",
        event="review",
        status=None,
        data={"summary": "ok", "score": 0.9, "items": [1, 2.0]},
        meta={},
        ai_response={"data": {"summary": "ok"}, "meta": {"duration_ms": 1200}},
        callback_url="https://api.modelriver.com/v1/callback/5f0c",
        task_id=None,
        signed_at=1704825600,
    )
    assert event.is_event_driven


def test_fields_inside_data_and_header_callback() -> None:
    data = {
        "event": "review",
        "type": "task.ai_generated",
        "task_id": 17,
        "status": "ai_generated",
        "ai_response": {"data": {"a": 1}},
        "meta": {"workflow": "w"},
    }
    content = encode_body({"channel_id": "c", "data": data})
    headers = {
        SIGNATURE_HEADER.lower(): sign(data, SECRET, TS)[0],
        TIMESTAMP_HEADER.upper(): TS,
        CALLBACK_URL_HEADER: "https://header.test/cb",
    }
    event = verify_webhook(content, headers, SECRET, now=NOW)
    assert (event.event, event.type, event.task_id, event.status) == (
        "review", "task.ai_generated", "17", "ai_generated"
    )
    assert event.ai_response == {"data": {"a": 1}}
    assert event.meta == {"workflow": "w"}
    assert event.callback_url == "https://header.test/cb"

    plain = encode_body({"channel_id": "c", "data": {"x": 1}})
    event = verify_signature(plain, sign({"x": 1}, SECRET, TS)[0], TS, SECRET, now=NOW)
    assert event.callback_url is None
    assert not event.is_event_driven


def test_signed_callback_url_wins_over_unsigned_one() -> None:
    data = {"callback_url": "https://good.test/cb"}
    content = encode_body({"callback_url": "https://evil.test/cb", "data": data})
    event = verify_signature(content, sign(data, SECRET, TS)[0], TS, SECRET, now=NOW)
    assert event.callback_url == "https://good.test/cb"


def test_tolerance_boundaries() -> None:
    body, signature = _signed()
    verify_signature(body, signature, TS, SECRET, now=int(TS) + 300)
    verify_signature(body, signature, TS, SECRET, now=int(TS) - 300)
    verify_signature(body, signature, f" {TS} ", SECRET, now=NOW)
    verify_signature(body, signature, TS, SECRET, now=int(TS) + 10**6, tolerance=None)
    verify_signature(body, "sha256=" + signature.upper(), TS, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b, s, t: (b.replace(b'"ok"', b'"oK"', 1), s, t, SECRET, NOW), "bad signature"),
        (lambda b, s, t: (b.replace(b"0.9", b"0.8"), s, t, SECRET, NOW), "bad signature"),
        (lambda b, s, t: (b, s, t, "whsec_other", NOW), "bad signature"),
        (lambda b, s, t: (b, s, str(int(t) + 1), SECRET, NOW), "bad signature"),
        (lambda b, s, t: (b, s[:-1] + ("0" if s[-1] != "0" else "1"), t, SECRET, NOW),
         "bad signature"),
        (lambda b, s, t: (b, s, t, SECRET, int(t) + 301), "too old"),
        (lambda b, s, t: (b, s, t, SECRET, int(t) - 301), "future"),
        (lambda b, s, t: (b, s, "abc", SECRET, NOW), "not numeric"),
        (lambda b, s, t: (b, s, "1704825600abc", SECRET, NOW), "not numeric"),
        (lambda b, s, t: (b, s, "-1704825600", SECRET, NOW), "not numeric"),
        (lambda b, s, t: (b, s, "", SECRET, NOW), "missing timestamp"),
        (lambda b, s, t: (b, s, None, SECRET, NOW), "missing timestamp"),
        (lambda b, s, t: (b, "", t, SECRET, NOW), "missing signature"),
        (lambda b, s, t: (b, None, t, SECRET, NOW), "missing signature"),
        (lambda b, s, t: (b, "zz" * 32, t, SECRET, NOW), "malformed signature"),
        (lambda b, s, t: (b, s[:40], t, SECRET, NOW), "malformed signature"),
        (lambda b, s, t: (b[:-1], s, t, SECRET, NOW), "not valid JSON"),
        (lambda b, s, t: (b"\xff" + b, s, t, SECRET, NOW), "not valid UTF-8"),
    ],
    ids=[
        "altered-byte", "altered-number", "wrong-secret", "other-timestamp", "altered-signature",
        "stale", "future", "non-numeric", "trailing-garbage", "negative", "empty-timestamp",
        "no-timestamp", "empty-signature", "no-signature", "non-hex", "short", "truncated-body",
        "not-utf8",
    ],
)
def test_refusals(mutate: Any, message: str) -> None:
    body, signature = _signed()
    args = mutate(body, signature, TS)
    with pytest.raises(WebhookVerificationError, match=message):
        verify_signature(args[0], args[1], args[2], args[3], now=args[4])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"data": {"a": 1}', "not valid JSON"),
        (b'{"data": [NaN]}', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
    ],
)
def test_refuses_bodies_even_when_signed(body: bytes, message: str) -> None:
    signature, _ = sign(body, SECRET, TS)  # signed over the raw body: only the body is wrong
    with pytest.raises(WebhookVerificationError, match=message):
        verify_signature(body, signature, TS, SECRET, now=NOW)


def test_overflowing_literal_cannot_replace_null_through_the_fallback() -> None:
    # JavaScript reads 1e999 as Infinity and writes null: the re-serialization would match a
    # signature over {"x":null}, so the fallback refuses numbers a JS sender cannot produce.
    signature, _ = sign({"x": None}, SECRET, TS)
    verify_signature(b'{"data":{"x":null}}', signature, TS, SECRET, now=NOW)
    with pytest.raises(WebhookVerificationError, match="bad signature"):
        verify_signature(b'{"data":{"x":1e999}}', signature, TS, SECRET, now=NOW)


def test_empty_secret_is_a_configuration_error() -> None:
    body, signature = _signed()
    with pytest.raises(ValueError, match="secret"):
        verify_signature(body, signature, TS, "", now=NOW)
    with pytest.raises(ValueError, match="secret"):
        sign({}, b"")


def test_sign_defaults_to_now() -> None:
    signature, ts = sign({"a": 1}, SECRET)
    assert ts.isdigit()
    verify_signature(b'{"data":{"a":1}}', signature, ts, SECRET)
