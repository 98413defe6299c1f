"""Realm's errors, each under the core error it specializes (``modelriver.exceptions``).

    RealmError (ModelRiverError)          every Realm failure (.code, .details, .call_id)
    ├── RealmAuthenticationError          UNAUTHORIZED, auth_failed (also an AuthenticationError)
    ├── RealmRateLimitError               RATE_LIMIT_EXCEEDED (.retry_after; also a RateLimitError)
    ├── RealmDispatchError                DISPATCH_ERROR: bad params, unknown function or pipeline
    │   └── RealmInvalidParamsError       INVALID_PARAMS (in Realm's SDK docs; its server sends none)
    ├── RealmInternalError                INTERNAL_ERROR
    ├── RealmCancelledError               the server answered ``cancelled``
    ├── RealmConnectionError              no socket, or it was lost (also an APIConnectionError)
    │   └── RealmTimeoutError             no answer in time (also an APITimeoutError)
    └── RealmProtocolError                a malformed or unexpected frame (also a ProtocolError)

Codes this library does not know raise a plain ``RealmError`` carrying that code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

from modelriver.exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ModelRiverError,
    ProtocolError,
    RateLimitError,
)

__all__ = [
    "CANCELLED",
    "CONNECTION_LOST",
    "DISPATCH_ERROR",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "PROTOCOL_ERROR",
    "RATE_LIMIT_EXCEEDED",
    "TIMEOUT",
    "UNAUTHORIZED",
    "RealmAuthenticationError",
    "RealmCancelledError",
    "RealmConnectionError",
    "RealmDispatchError",
    "RealmError",
    "RealmInternalError",
    "RealmInvalidParamsError",
    "RealmProtocolError",
    "RealmRateLimitError",
    "RealmTimeoutError",
    "error_for",
]

# Codes on the wire (PROTOCOL §7).
UNAUTHORIZED = "UNAUTHORIZED"
RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
DISPATCH_ERROR = "DISPATCH_ERROR"
INVALID_PARAMS = "INVALID_PARAMS"
INTERNAL_ERROR = "INTERNAL_ERROR"
# Codes this library gives to local failures (never sent by a server).
CANCELLED = "CANCELLED"
CONNECTION_LOST = "CONNECTION_LOST"
TIMEOUT = "TIMEOUT"
PROTOCOL_ERROR = "PROTOCOL_ERROR"


class _Fields(TypedDict, total=False):
    """``RealmError``'s keyword arguments, for the subclasses that add their own."""

    code: str | None
    details: Mapping[str, Any] | None
    call_id: str | None


class RealmError(ModelRiverError):
    """A Realm call or connection failed.

    Attributes:
        message: the server's (or this library's) message.
        code: the error code, e.g. ``INVALID_PARAMS``.
        details: the server's ``error.details`` (a dict, empty when absent).
        call_id: the id of the call that failed, or None for connection-level errors.
    """

    default_code = INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        call_id: str | None = None,
    ) -> None:
        self._init_base(message, details)
        self._realm(message, code, details, call_id)

    def _init_base(self, message: str, details: Mapping[str, Any] | None) -> None:
        """The library-wide base's own ``__init__`` (each subclass calls its mixin's)."""
        ModelRiverError.__init__(self, message)

    def _realm(
        self, message: str, code: str | None, details: Mapping[str, Any] | None, call_id: str | None
    ) -> None:
        self.message = message
        self.code = code or self.default_code
        self.details: dict[str, Any] = dict(details or {})
        self.call_id = call_id

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class RealmAuthenticationError(RealmError, AuthenticationError):
    """The API key was missing or refused (``auth_failed`` or ``UNAUTHORIZED``)."""

    default_code = UNAUTHORIZED

    def _init_base(self, message: str, details: Mapping[str, Any] | None) -> None:
        AuthenticationError.__init__(self, message, status=401, body=dict(details or {}))


class RealmRateLimitError(RealmError, RateLimitError):
    """The tenant's rate limit was hit (``RATE_LIMIT_EXCEEDED``).

    Attributes:
        retry_after: seconds to wait before trying again, or None. From the ``retry_after``
            argument (the error's own ``retry_after`` field), else ``details``, else parsed
            from Realm's message "Rate limit exceeded. Try again in N seconds.".
    """

    default_code = RATE_LIMIT_EXCEEDED

    def __init__(
        self, message: str, *, retry_after: float | None = None, **fields: Unpack[_Fields]
    ) -> None:
        super().__init__(message, **fields)
        if retry_after is None:
            retry_after = _retry_after(self.details)
        self.retry_after = retry_after if retry_after is not None else _retry_after_in(message)

    def _init_base(self, message: str, details: Mapping[str, Any] | None) -> None:
        RateLimitError.__init__(self, message, body=dict(details or {}))


class RealmDispatchError(RealmError):
    """The server could not run the call (``DISPATCH_ERROR``): bad params, an unknown function
    or pipeline, a missing ``pipeline``."""

    default_code = DISPATCH_ERROR


class RealmInvalidParamsError(RealmDispatchError):
    """The call's parameters were refused (``INVALID_PARAMS``: named in Realm's SDK docs; its
    server sends ``DISPATCH_ERROR`` instead, so catch ``RealmDispatchError`` for both)."""

    default_code = INVALID_PARAMS


class RealmInternalError(RealmError):
    """The server failed while handling the call (``INTERNAL_ERROR``)."""

    default_code = INTERNAL_ERROR


class RealmCancelledError(RealmError):
    """The server answered ``cancelled``: the call was stopped before it completed."""

    default_code = CANCELLED


class RealmConnectionError(RealmError, APIConnectionError):
    """No socket to the server: it could not be opened, was lost, or the client disconnected."""

    default_code = CONNECTION_LOST


class RealmTimeoutError(RealmConnectionError, APITimeoutError):
    """No answer arrived within the timeout."""

    default_code = TIMEOUT


class RealmProtocolError(RealmError, ProtocolError):
    """A frame was malformed or unexpected."""

    default_code = PROTOCOL_ERROR

    def _init_base(self, message: str, details: Mapping[str, Any] | None) -> None:
        ProtocolError.__init__(self, message)


_BY_CODE: dict[str, type[RealmError]] = {
    UNAUTHORIZED: RealmAuthenticationError,
    RATE_LIMIT_EXCEEDED: RealmRateLimitError,
    DISPATCH_ERROR: RealmDispatchError,
    INVALID_PARAMS: RealmInvalidParamsError,
    INTERNAL_ERROR: RealmInternalError,
}


def error_for(
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    call_id: str | None = None,
    *,
    retry_after: float | None = None,
) -> RealmError:
    """The typed error for a server's ``error`` object (unknown codes give a ``RealmError``).

    ``retry_after`` is the error's own field (seconds), kept by a ``RealmRateLimitError``.
    """
    cls = _BY_CODE.get(code, RealmError)
    if cls is RealmRateLimitError:
        return RealmRateLimitError(message, code=code, details=details, call_id=call_id,
                                   retry_after=retry_after)
    return cls(message, code=code, details=details, call_id=call_id)


_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?) ?(ms|milliseconds?|s|seconds?)\b", re.IGNORECASE)


def _retry_after_in(message: str) -> float | None:
    """Seconds from a message such as Realm's "Rate limit exceeded. Try again in 3 seconds."."""
    found = _TRY_AGAIN.search(message)
    if found is None:
        return None
    seconds = float(found.group(1))
    if found.group(2).lower().startswith("m"):
        seconds /= 1000
    return seconds if math.isfinite(seconds) else None


def _retry_after(details: Mapping[str, Any]) -> float | None:
    """Seconds from ``retry_after`` (or ``retryAfter``), or from ``retry_after_ms``."""
    for key, scale in (("retry_after", 1.0), ("retryAfter", 1.0), ("retry_after_ms", 0.001)):
        value = details.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                seconds = float(value) * scale
            except OverflowError:
                return None
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    return None
