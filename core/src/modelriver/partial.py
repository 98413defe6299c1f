"""Partial structured output: the object so far from a prefix of its JSON text, and its prose field.

``parse_partial(text)`` reads a prefix with ``jiter``'s partial mode (complete fields, the string
being written, arrays as far as they go) and leaves out a number still being written (``1`` may
yet become ``1.5``), so a field never changes type and a complete field never changes value.

The prose field is the one a chat shows as the answer's text: for a schema, the first top-level
property of type ``string`` named one of ``PROSE_FIELDS`` (in that order); ``prose_field(schema)``
finds it (the gateway announces it), ``prose_key(obj)`` applies the same rule to a partial object
when no one announced it. A schema without one has no prose: its answer is shown as a card only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jiter

__all__ = ["PROSE_FIELDS", "parse_partial", "prose_field", "prose_key"]

PROSE_FIELDS: tuple[str, ...] = ("reply", "answer", "response", "text", "content", "message")
"""Names of an obvious prose field, in order of preference."""

_NUMBER_END = frozenset("0123456789.eE+-")
_TRAILING_NUMBER = re.compile(r"-?[0-9][0-9.eE+-]*\Z|-\Z")
_ESCAPE = re.compile(r"\\.", re.DOTALL)


def parse_partial(text: str) -> Any:
    """The value a prefix of a JSON text holds so far (None when nothing is readable yet).

    Args:
        text: the JSON text streamed so far (untrusted).

    Returns:
        The partial value: objects and arrays as far as they go, the string being written,
        no incomplete number or literal. None for an empty or unreadable prefix.
    """
    if not text:
        return None
    if text[-1] in _NUMBER_END and not _inside_string(text):
        number = _TRAILING_NUMBER.search(text, max(0, len(text) - 64))
        if number is not None:  # still being written: leave it out until a delimiter ends it
            text = text[:number.start()]
            if not text:
                return None
    try:
        return jiter.from_json(text.encode(), partial_mode="trailing-strings")
    except ValueError:
        return None


def _inside_string(text: str) -> bool:
    """True when ``text`` ends inside a JSON string (an odd number of unescaped quotes)."""
    return _ESCAPE.sub("", text).count('"') % 2 == 1


def prose_field(schema: Mapping[str, Any] | None) -> str | None:
    """The schema's prose field: its first top-level string property named in ``PROSE_FIELDS``."""
    if not schema:
        return None
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return None
    for name in PROSE_FIELDS:
        spec = properties.get(name)
        if isinstance(spec, Mapping) and spec.get("type") == "string":
            return name
    return None


def prose_key(value: Any) -> str | None:
    """The prose field of a partial object when no schema named it: the first key of
    ``PROSE_FIELDS`` whose value is a string (None for anything else)."""
    if not isinstance(value, dict):
        return None
    for name in PROSE_FIELDS:
        if isinstance(value.get(name), str):
            return name
    return None
