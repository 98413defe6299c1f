"""JSON the way JavaScript reads and writes it: ``JSON.parse`` / ``JSON.stringify``, byte for byte.

Webhook signatures cover ``JSON.stringify(body.data)`` (PROTOCOL §6). A receiver that cannot use
the raw ``data`` text must rebuild that string exactly, so this module reproduces JavaScript's
semantics rather than Python's:

- every number is an IEEE double: ``1.0`` is written ``1``, ``9007199254740993`` reads as
  ``9007199254740992``, ``-0`` is written ``0``, an overflowing literal reads as ``Infinity`` and
  is written ``null``; the digits follow ECMAScript ``Number::toString`` (shortest round-trip,
  exponent form from ``1e21`` up and below ``1e-6``);
- strings escape only ``"``, ``\\``, control characters (``\\b \\f \\n \\r \\t``, others as
  ``\\u00xx``) and lone surrogates (``\\udxxx``); everything else, U+2028/U+2029 and emoji
  included, is left as is;
- object keys keep their order, except that array-index keys (``"0"`` ... ``"4294967294"``)
  come first in ascending numeric order, as in every JavaScript object.

Use :func:`loads` to parse with JavaScript's number semantics, :func:`stringify` to serialize.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["loads", "strict_loads", "stringify"]

_MAX_ARRAY_INDEX = 2**32 - 2  # array indices are the canonical integers below 2**32 - 1

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
# A surrogate pair (two UTF-16 units in a Python str) is one character to JavaScript: keep it,
# joined. A lone surrogate, a quote, a backslash or a control character is escaped.
_NEEDS_ESCAPE = re.compile(
    "([\ud800-\udbff][\udc00-\udfff])|([\x00-\x1f\"\\\\\ud800-\udfff])"
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _number(text: str) -> float:
    return float(text)  # correctly rounded, like JavaScript; overflow gives inf


def _finite_number(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]!r} overflows a double")
    return value


def loads(text: str | bytes, *, allow_overflow: bool = True) -> Any:
    """Parse JSON as ``JSON.parse`` does: every number becomes a ``float`` (an IEEE double).

    Duplicate keys keep the last value at the first key's position, as in JavaScript.

    Args:
        text: the JSON text.
        allow_overflow: when False, a number literal too large for a double (JavaScript would
            read ``Infinity``) is refused instead.

    Returns:
        The parsed value: dicts, lists, str, float, bool and None.

    Raises:
        ValueError: the text is not valid JSON (``NaN`` and ``Infinity`` literals included).
        RecursionError: the text nests too deeply for Python's parser.
    """
    return json.loads(
        text,
        parse_float=_number if allow_overflow else _finite_number,
        parse_int=_number if allow_overflow else _finite_number,
        parse_constant=_reject_constant,
    )


def strict_loads(text: str | bytes) -> Any:
    """Parse JSON with Python's types (ints stay ints), refusing ``NaN`` and ``Infinity`` as
    ``JSON.parse`` does; :func:`loads` is the one with JavaScript's numbers.

    Raises:
        ValueError: the text is not valid JSON, or nests too deeply for Python's parser.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("JSON nests too deeply") from exc


def stringify(value: Any) -> str:
    """Serialize ``value`` exactly as JavaScript's ``JSON.stringify(value)`` would.

    Python ints are treated as JavaScript Numbers (doubles): past 2**53 they lose precision
    the way JavaScript does, and past the double range they become ``null``. Tuples serialize
    as arrays.

    Args:
        value: None, bool, int, float, str, a mapping with str keys, a list or tuple, nested.

    Returns:
        The JSON text, compact, non-ASCII left as is.

    Raises:
        TypeError: a value or key that JSON cannot carry.
        RecursionError: the value nests deeper than Python's recursion limit.
    """
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int):
        try:
            out.append(_format_number(float(value)))
        except OverflowError:
            out.append("null")  # Infinity in JavaScript
    elif isinstance(value, float):
        out.append(_format_number(value))
    elif isinstance(value, Mapping):
        items = _ordered_items(value)
        if not items:
            out.append("{}")
            return
        out.append("{")
        first = True
        for key, item in items:
            if not first:
                out.append(",")
            first = False
            out.append(_quote(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        if not value:
            out.append("[]")
            return
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _ordered_items(mapping: Mapping[Any, Any]) -> list[tuple[str, Any]]:
    """Own-property order of a JavaScript object: array indices ascending, then the rest."""
    indexed: list[tuple[int, str, Any]] = []
    named: list[tuple[str, Any]] = []
    for key, item in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"object keys must be str, not {type(key).__name__}")
        index = _array_index(key)
        if index is None:
            named.append((key, item))
        else:
            indexed.append((index, key, item))
    if not indexed:
        return named
    indexed.sort(key=lambda entry: entry[0])
    return [(key, item) for _, key, item in indexed] + named


def _array_index(key: str) -> int | None:
    if not key or len(key) > 10 or not key.isascii() or not key.isdigit():
        return None
    if len(key) > 1 and key[0] == "0":
        return None  # not canonical: "01" is a plain name
    index = int(key)
    return index if index <= _MAX_ARRAY_INDEX else None


def _quote(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return f'"{text}"'
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def _escape(match: re.Match[str]) -> str:
    pair = match.group(1)
    if pair is not None:
        high, low = ord(pair[0]), ord(pair[1])
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    char = match.group(2)
    escaped = _ESCAPES.get(char)
    return escaped if escaped is not None else f"\\u{ord(char):04x}"


def _format_number(x: float) -> str:
    """ECMAScript ``Number::toString(x)`` in radix 10, with JSON's ``null`` for non-finite."""
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"  # -0 too
    if x < 0:
        return "-" + _format_number(-x)
    # repr() gives the shortest digits that round-trip, nearest to x: the same digits
    # ECMAScript asks for. Only the layout differs, so take the digits and lay them out again.
    mantissa, _, exp_text = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    stripped = all_digits.lstrip("0")
    # x = 0.<digits> * 10**n
    n = len(whole) + (int(exp_text) if exp_text else 0) - (len(all_digits) - len(stripped))
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    exponent = n - 1
    sign = "+" if exponent >= 0 else "-"
    if k == 1:
        return f"{digits}e{sign}{abs(exponent)}"
    return f"{digits[0]}.{digits[1:]}e{sign}{abs(exponent)}"
