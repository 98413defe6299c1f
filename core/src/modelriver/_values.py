"""Lenient readers of values decoded from JSON: the value when it has the expected type, else None.

A JSON ``true`` is never a number here, although Python's ``bool`` is an ``int``.
"""

from __future__ import annotations

import math

__all__ = ["finite_or_none", "int_or_none", "str_or_none"]


def int_or_none(value: object) -> int | None:
    """``value`` when it is an integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def str_or_none(value: object) -> str | None:
    """``value`` when it is a string, else None."""
    return value if isinstance(value, str) else None


def finite_or_none(value: object) -> float | None:
    """``value`` as a float when it is a finite number (not a bool) a float can hold, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None
