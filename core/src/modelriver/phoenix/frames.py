"""Phoenix Channels serializer v2 (and v1 decoding): text in, ``Message`` out, and back."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from modelriver.exceptions import ProtocolError

__all__ = [
    "CLOSE_INTERNAL",
    "CLOSE_INVALID",
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "CLOSE_UNSUPPORTED",
    "DEFAULT_MAX_FRAME",
    "Message",
    "as_broadcast",
    "decode",
    "decode_parts",
    "encode",
    "encode_parts",
    "has_lone_surrogate",
]

DEFAULT_MAX_FRAME = 1 << 20
CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID = 1007
CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008
"""A client that stops reading: its outbox stayed over the limit for the grace period."""
CLOSE_INTERNAL = 1011
"""The server could not write a frame (it could not be encoded)."""

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_dumps_ascii = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value holds a string UTF-8 cannot encode (a lone surrogate, such as
    JSON's ``"\\ud800"``)."""
    try:
        _dumps(value).encode()
    except UnicodeEncodeError:
        return True
    return False


def _text(value: Any) -> str:
    """Compact JSON, non-ASCII as is; escaped (``\\ud800``) where a lone surrogate would make
    the text unencodable, so a frame can always be written as UTF-8."""
    text = _dumps(value)
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return _dumps_ascii(value)


@dataclass(frozen=True, slots=True)
class Message:
    """One Phoenix frame: ``[join_ref, ref, topic, event, payload]``."""

    topic: str
    event: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None


def encode(message: Message) -> str:
    """Serialize as a v2 text frame (compact JSON, non-ASCII left as is; lone surrogates escaped)."""
    return _text([message.join_ref, message.ref, message.topic, message.event, message.payload])


def encode_parts(
    join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
) -> str:
    """``encode`` without building a ``Message`` first (for hot paths)."""
    return _text([join_ref, ref, topic, event, payload])


def as_broadcast(text: str, topic: str) -> str | None:
    """A received v2 frame on ``topic`` as a broadcast frame: its ``join_ref`` and ``ref`` made
    null (``encode_parts(None, None, topic, ...)``'s head), the rest as received; None when the
    frame does not start ``[<ref>,<ref>,"<topic>",`` with plain string, integer or null refs.

    A relay forwards what it received this way instead of encoding the payload again.
    """
    if not text.startswith("["):
        return None
    at = _skip_ref(text, _skip_ref(text, 1))
    if at < 0 or not text.startswith(_dumps(topic) + ",", at):
        return None
    return "[null,null," + text[at:]


def _skip_ref(text: str, at: int) -> int:
    """Where the next element starts after a compact ``null,``, ``123,`` or ``"plain",`` at
    ``at`` (-1 for anything else: escapes, spaces, other types)."""
    if at < 0:
        return -1
    if text.startswith("null,", at):
        return at + 5
    if text.startswith('"', at):
        end = text.find('"', at + 1)
        if end < 0 or "\\" in text[at:end] or not text.startswith(",", end + 1):
            return -1
        return end + 2
    end = text.find(",", at)
    return end + 1 if end > at and text[at:end].isascii() and text[at:end].isdigit() else -1


def decode(data: str | bytes, *, max_size: int = DEFAULT_MAX_FRAME) -> Message:
    """Parse a v2 array frame or a v1 object frame.

    Raises:
        ProtocolError: the frame is oversized (close code 1009), not UTF-8, not JSON,
            or not a Phoenix frame (1007).
    """
    join_ref, ref, topic, event, payload = decode_parts(data, max_size=max_size)
    return Message(topic, event, payload, ref, join_ref)


def decode_parts(
    data: str | bytes, *, max_size: int = DEFAULT_MAX_FRAME
) -> tuple[str | None, str | None, str, str, Any]:
    """``decode`` without building a ``Message``: ``(join_ref, ref, topic, event, payload)``.

    Raises:
        ProtocolError: as ``decode``.
    """
    if len(data) > max_size:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds {max_size}", close_code=CLOSE_TOO_BIG)
    try:
        value = _loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ProtocolError(f"frame is not valid JSON: {exc}", close_code=CLOSE_INVALID) from exc
    if type(value) is list:
        if len(value) != 5:
            raise ProtocolError("v2 frame must have 5 elements", close_code=CLOSE_INVALID)
        join_ref, ref, topic, event, payload = value
    elif type(value) is dict:
        topic, event = value.get("topic"), value.get("event")
        payload, ref, join_ref = value.get("payload"), value.get("ref"), value.get("join_ref")
    else:
        raise ProtocolError("frame is neither a v2 array nor a v1 object", close_code=CLOSE_INVALID)
    if type(topic) is not str or type(event) is not str:
        raise ProtocolError("frame topic and event must be strings", close_code=CLOSE_INVALID)
    if ref is not None and type(ref) is not str:
        ref = _ref(ref)
    if join_ref is not None and type(join_ref) is not str:
        join_ref = _ref(join_ref)
    return join_ref, ref, topic, event, payload


def _ref(value: object) -> str | None:
    if value is None or type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise ProtocolError("frame refs must be strings or null", close_code=CLOSE_INVALID)
