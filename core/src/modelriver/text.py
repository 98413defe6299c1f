"""Text that cannot be sent: lone surrogates (``"\\ud800"``), which UTF-8 cannot encode.

JSON allows ``"\\ud800"`` and Python decodes it to a one-character string that every UTF-8
writer then refuses (``UnicodeEncodeError``). Entries refuse such input (``unencodable_path``);
writers of text kept from elsewhere replace them (``scrub``). Adapters check their own entries
with ``unencodable_path`` the way core does, for a clear error before anything is sent upstream.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["scrub", "unencodable_path"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def unencodable_path(value: Any, where: str = "body") -> str | None:
    """Where the first string (a key or a value) that UTF-8 cannot encode is, or None.

    Walks dicts, lists and tuples without recursion (any depth).

    Args:
        value: decoded JSON (or any nesting of dicts, lists, tuples and scalars).
        where: the name of ``value`` in the returned path.

    Returns:
        A path such as ``body.messages[0].content``, or None when every string is encodable.
    """
    # (item, its parent's entry, its key or index): the path is built only for a bad string
    stack: list[tuple[Any, Any, Any]] = [(value, None, None)]
    while stack:
        entry = stack.pop()
        item = entry[0]
        if isinstance(item, str):
            if _bad(item):
                return _path(entry, where)
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _bad(key):
                    return _path(entry, where) + " (a key)"
                stack.append((child, entry, key))
        elif isinstance(item, list | tuple):
            stack.extend((child, entry, i) for i, child in enumerate(item))
    return None


def _path(entry: tuple[Any, Any, Any], where: str) -> str:
    parts: list[str] = []
    while entry[1] is not None:
        key = entry[2]
        parts.append(f"[{key}]" if isinstance(key, int) else f".{scrub(str(key))}")
        entry = entry[1]
    return where + "".join(reversed(parts))


def scrub(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, so that UTF-8 can encode it."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)
