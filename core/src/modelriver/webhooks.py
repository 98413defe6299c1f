"""Webhooks from the gateway to your backend: verify them, or sign them (PROTOCOL §6).

Receiving::

    from modelriver.webhooks import verify_webhook
    from modelriver.exceptions import WebhookVerificationError

    try:
        event = verify_webhook(request_body_bytes, request.headers, secret)
    except WebhookVerificationError:
        return 401            # keep nothing
    if event.callback_url:    # event-driven: enrich, then POST {data, task_id} to it
        ...

The signature is the lowercase hex HMAC-SHA256 of ``"<timestamp>." + JSON.stringify(body.data)``
(the whole raw body when it has no ``data`` field), sent as ``X-ModelRiver-Signature`` beside
``X-ModelRiver-Timestamp`` (Unix seconds). Verification tries the raw text of ``data`` as it sits
in the body first; when that does not match (a sender that pretty-printed the body, or wrote
``1.0`` where JavaScript writes ``1``) it re-serializes ``data`` exactly as JavaScript would and
tries again. Both compare in constant time.

Only ``data`` is signed when the body has it: top-level fields beside it are not covered by the
signature. :class:`WebhookEvent` therefore reads ``callback_url`` from ``data`` first.

Sending (the embedded gateway does this)::

    body = {"channel_id": cid, "timestamp": ts, "data": payload}
    content = encode_body(body)                       # JSON.stringify(body), UTF-8
    headers = signature_headers(body, secret)         # signature + timestamp headers
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelriver import _jsjson
from modelriver.exceptions import WebhookVerificationError

__all__ = [
    "CALLBACK_URL_HEADER",
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookEvent",
    "encode_body",
    "sign",
    "signature_headers",
    "verify_signature",
    "verify_webhook",
]

logger = logging.getLogger("modelriver.webhooks")

SIGNATURE_HEADER = "X-ModelRiver-Signature"
TIMESTAMP_HEADER = "X-ModelRiver-Timestamp"
CALLBACK_URL_HEADER = "X-ModelRiver-Callback-Url"
DEFAULT_TOLERANCE = 300
"""Seconds a webhook's timestamp may differ from the receiver's clock, either way."""

_TIMESTAMP = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?")
_SIGNATURE = re.compile(r"(?:sha256=)?([0-9a-fA-F]{64})")


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook.

    Attributes:
        channel_id: the request's channel.
        timestamp: the body's own ``timestamp`` field, as sent (None when absent).
        type: e.g. ``task.ai_generated``.
        event: the event name the request was sent with.
        status: the body's status.
        data: the ``data`` field (the signed part), parsed by Python's ``json``.
        meta: ``meta`` (``{}`` when absent).
        ai_response: ``{data, meta}`` of the AI's answer, when sent.
        callback_url: where to POST ``{data, task_id}`` for an event-driven request; None for a
            plain notification.
        task_id: the task's id, when sent.
        signed_at: the verified ``X-ModelRiver-Timestamp``, Unix seconds.
        raw: the whole parsed body.

    ``type``, ``event``, ``status``, ``channel_id``, ``meta``, ``ai_response`` and ``task_id`` are
    read from the top level, else from inside ``data``. ``callback_url`` is read from ``data``
    first (it is signed there), then the top level, then the ``X-ModelRiver-Callback-Url`` header.
    """

    channel_id: str | None
    timestamp: str | int | float | None
    type: str | None
    event: str | None
    status: str | None
    data: Any
    meta: dict[str, Any]
    ai_response: dict[str, Any] | None
    callback_url: str | None
    task_id: str | None
    signed_at: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_event_driven(self) -> bool:
        """True when the gateway waits for your callback (a ``callback_url`` was given)."""
        return self.callback_url is not None

    @classmethod
    def from_body(
        cls, body: dict[str, Any], *, callback_url: str | None = None, signed_at: float = 0.0
    ) -> WebhookEvent:
        """Build from a parsed (already verified) body.

        Args:
            body: the parsed JSON object.
            callback_url: the ``X-ModelRiver-Callback-Url`` header, if any.
            signed_at: the verified timestamp.
        """
        data = body.get("data")
        inner = data if isinstance(data, dict) else {}

        def pick(key: str, kind: type | tuple[type, ...]) -> Any:
            for source in (body, inner):
                value = source.get(key)
                if isinstance(value, kind) and not isinstance(value, bool):
                    return value
            return None

        url = _str(inner.get("callback_url")) or _str(body.get("callback_url")) or callback_url
        top_url = _str(body.get("callback_url"))
        if top_url and url != top_url:
            logger.warning("webhook: top-level callback_url differs from the signed one; ignored")
        task_id = pick("task_id", (str, int))
        return cls(
            channel_id=pick("channel_id", str),
            timestamp=pick("timestamp", (str, int, float)),
            type=pick("type", str),
            event=pick("event", str),
            status=pick("status", str),
            data=data,
            meta=pick("meta", dict) or {},
            ai_response=pick("ai_response", dict),
            callback_url=url or None,
            task_id=None if task_id is None else str(task_id),
            signed_at=signed_at,
            raw=body,
        )


def verify_signature(
    body: bytes | str,
    signature: str | None,
    timestamp: str | None,
    secret: str | bytes,
    *,
    tolerance: int | None = DEFAULT_TOLERANCE,
    now: float | None = None,
    callback_url: str | None = None,
) -> WebhookEvent:
    """Check a webhook's signature and timestamp, then parse it.

    Args:
        body: the request body exactly as received.
        signature: the ``X-ModelRiver-Signature`` header (hex; a ``sha256=`` prefix is allowed).
        timestamp: the ``X-ModelRiver-Timestamp`` header, Unix seconds.
        secret: the webhook secret.
        tolerance: how many seconds the timestamp may be off from ``now``, either way;
            None disables the check (replays become possible: only for tests).
        now: the current Unix time; defaults to ``time.time()``.
        callback_url: the ``X-ModelRiver-Callback-Url`` header, if any.

    Returns:
        The verified event.

    Raises:
        WebhookVerificationError: signature missing or wrong, timestamp missing, not numeric or
            outside the tolerance, body not UTF-8, not JSON or not a JSON object.
        ValueError: ``secret`` is empty (a configuration error, not a bad webhook).
    """
    key = _secret_bytes(secret)
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)

    if not signature:
        raise _refuse(f"missing signature ({SIGNATURE_HEADER})")
    sig_match = _SIGNATURE.fullmatch(signature.strip())
    if sig_match is None:
        raise _refuse("malformed signature: expected 64 hex digits")
    provided = sig_match.group(1).lower().encode("ascii")

    signed_at, ts_text = _check_timestamp(timestamp, tolerance, now)

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse("body is not valid UTF-8") from exc
    try:
        parsed = _jsjson.strict_loads(text)
    except ValueError as exc:
        raise _refuse(f"body is not valid JSON: {exc}") from exc

    prefix = ts_text.encode("ascii") + b"."
    if isinstance(parsed, dict) and "data" in parsed:
        if not _data_matches(raw, text, prefix, key, provided):
            raise _refuse("bad signature")
    elif not _matches(key, prefix + raw, provided):
        raise _refuse("bad signature")

    if not isinstance(parsed, dict):
        raise _refuse(f"body must be a JSON object, not {type(parsed).__name__}")
    return WebhookEvent.from_body(parsed, callback_url=callback_url, signed_at=signed_at)


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance: int | None = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> WebhookEvent:
    """:func:`verify_signature` with the three headers looked up in ``headers``.

    Header names are matched case-insensitively, so any framework's header mapping works.

    Raises:
        WebhookVerificationError: as :func:`verify_signature`.
    """
    folded = {name.lower(): value for name, value in headers.items()}
    return verify_signature(
        body,
        folded.get(SIGNATURE_HEADER.lower()),
        folded.get(TIMESTAMP_HEADER.lower()),
        secret,
        tolerance=tolerance,
        now=now,
        callback_url=folded.get(CALLBACK_URL_HEADER.lower()),
    )


def sign(data: Any, secret: str | bytes, timestamp: int | str | None = None) -> tuple[str, str]:
    """Sign a webhook's ``data`` as the gateway does.

    Args:
        data: the body's ``data`` value, signed as ``JSON.stringify(data)``; or ``bytes``: a
            raw body without a ``data`` field, signed as is.
        secret: the webhook secret.
        timestamp: Unix seconds; defaults to now.

    Returns:
        ``(signature, timestamp)``: the values of ``X-ModelRiver-Signature`` and
        ``X-ModelRiver-Timestamp``.

    Raises:
        ValueError: ``secret`` is empty.
        TypeError: ``data`` holds something JSON cannot carry.
    """
    key = _secret_bytes(secret)
    ts_text = str(int(time.time())) if timestamp is None else str(timestamp)
    raw_body = isinstance(data, bytes | bytearray)
    payload = bytes(data) if raw_body else _jsjson.stringify(data).encode("utf-8")
    digest = hmac.new(key, ts_text.encode("ascii") + b"." + payload, hashlib.sha256).hexdigest()
    return digest, ts_text


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The bytes to send for ``body``: ``JSON.stringify(body)`` in UTF-8.

    Written this way, the raw ``data`` text in the body is exactly the signed string, so any
    receiver (this module, or one that only checks the raw text) verifies it.
    """
    return _jsjson.stringify(body).encode("utf-8")


def signature_headers(
    body: Mapping[str, Any] | bytes,
    secret: str | bytes,
    *,
    timestamp: int | str | None = None,
    callback_url: str | None = None,
) -> dict[str, str]:
    """The signature headers for a webhook body.

    Args:
        body: the body as a mapping (to be sent as :func:`encode_body` writes it), or the exact
            bytes to be sent. Its ``data`` field is signed; without one, the whole body is.
        secret: the webhook secret.
        timestamp: Unix seconds; defaults to now.
        callback_url: also send ``X-ModelRiver-Callback-Url``.

    Returns:
        ``{X-ModelRiver-Signature, X-ModelRiver-Timestamp[, X-ModelRiver-Callback-Url]}``.

    Raises:
        ValueError: ``secret`` is empty, or ``body`` bytes are not JSON.
    """
    target: Any
    if isinstance(body, bytes | bytearray):
        parsed = _jsjson.loads(bytes(body))
        target = parsed["data"] if isinstance(parsed, dict) and "data" in parsed else bytes(body)
    elif "data" in body:
        target = body["data"]
    else:
        target = _jsjson.stringify(body).encode("utf-8")
    signature, ts_text = sign(target, secret, timestamp)
    headers = {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: ts_text}
    if callback_url is not None:
        headers[CALLBACK_URL_HEADER] = callback_url
    return headers


# -- internals -----------------------------------------------------------------------------------


def _refuse(reason: str) -> WebhookVerificationError:
    logger.info("webhook refused: %s", reason)
    return WebhookVerificationError(reason)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _secret_bytes(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _check_timestamp(
    timestamp: str | None, tolerance: int | None, now: float | None
) -> tuple[float, str]:
    if timestamp is None or not timestamp.strip():
        raise _refuse(f"missing timestamp ({TIMESTAMP_HEADER})")
    ts_text = timestamp.strip()
    if _TIMESTAMP.fullmatch(ts_text) is None:
        raise _refuse(f"timestamp is not numeric Unix seconds: {ts_text[:32]!r}")
    signed_at = float(ts_text)
    if tolerance is not None:
        current = time.time() if now is None else now
        skew = current - signed_at
        if skew > tolerance:
            raise _refuse(f"timestamp too old: {skew:.0f}s beyond now, tolerance {tolerance}s")
        if -skew > tolerance:
            raise _refuse(f"timestamp in the future: {-skew:.0f}s ahead, tolerance {tolerance}s")
    return signed_at, ts_text


def _matches(key: bytes, message: bytes, provided: bytes) -> bool:
    expected = hmac.new(key, message, hashlib.sha256).hexdigest().encode("ascii")
    return hmac.compare_digest(expected, provided)


def _data_matches(raw: bytes, text: str, prefix: bytes, key: bytes, provided: bytes) -> bool:
    """Signed ``data``: try its raw text, then its JavaScript re-serialization."""
    span = _data_span(raw)
    if span is not None and _matches(key, prefix + raw[span[0] : span[1]], provided):
        return True
    try:
        body = _jsjson.loads(text, allow_overflow=False)
        canonical = _jsjson.stringify(body["data"]).encode("utf-8")
    except (ValueError, TypeError, KeyError, RecursionError):
        return False
    if _matches(key, prefix + canonical, provided):
        logger.debug("webhook: raw data text differs from JSON.stringify; re-serialized match")
        return True
    return False


# A minimal scanner over the raw body: where does the top-level "data" member's value lie?
# It runs only on bodies json.loads accepted, and returns None on anything it does not expect.
_WS = re.compile(rb"[ \t\n\r]*")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STRUCTURAL = re.compile(rb'["\[\]{}]')
_SCALAR = re.compile(rb"[^ \t\n\r,\]}]+")


def _data_span(raw: bytes) -> tuple[int, int] | None:
    """Byte span of the value of the top-level ``data`` key (the last one, as JSON.parse keeps)."""
    pos = _skip_ws(raw, 0)
    if raw[pos : pos + 1] != b"{":
        return None
    pos = _skip_ws(raw, pos + 1)
    if raw[pos : pos + 1] == b"}":
        return None
    found: tuple[int, int] | None = None
    while True:
        key_match = _STRING.match(raw, pos)
        if key_match is None:
            return None
        pos = _skip_ws(raw, key_match.end())
        if raw[pos : pos + 1] != b":":
            return None
        start = _skip_ws(raw, pos + 1)
        end = _value_end(raw, start)
        if end is None:
            return None
        if _is_data_key(key_match.group()):
            found = (start, end)
        pos = _skip_ws(raw, end)
        sep = raw[pos : pos + 1]
        if sep == b"}":
            return found
        if sep != b",":
            return None
        pos = _skip_ws(raw, pos + 1)


def _skip_ws(raw: bytes, pos: int) -> int:
    match = _WS.match(raw, pos)
    return match.end() if match else pos


def _is_data_key(token: bytes) -> bool:
    if b"\\" not in token:
        return token == b'"data"'
    try:
        return bool(json.loads(token.decode("utf-8")) == "data")
    except ValueError:
        return False


def _value_end(raw: bytes, pos: int) -> int | None:
    first = raw[pos : pos + 1]
    if first == b'"':
        match = _STRING.match(raw, pos)
        return match.end() if match else None
    if first in (b"{", b"["):
        depth = 0
        while True:
            found = _STRUCTURAL.search(raw, pos)
            if found is None:
                return None
            char = found.group()
            if char == b'"':
                string = _STRING.match(raw, found.start())
                if string is None:
                    return None
                pos = string.end()
                continue
            pos = found.end()
            if char in (b"{", b"["):
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return pos
    match = _SCALAR.match(raw, pos)
    return match.end() if match else None
