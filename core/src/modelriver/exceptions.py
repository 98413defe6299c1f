"""Every error the library raises, under one root.

    ModelRiverError
    ├── APIError                  the HTTP API answered with an error status (.status, .body)
    │   ├── AuthenticationError   401/403: bad or missing API key
    │   ├── RateLimitError        429 (.retry_after seconds, or None)
    │   └── UpstreamError         400: the upstream cannot do that (e.g. webhooks on Realm)
    ├── InvalidInputError         input that cannot be sent (also a ValueError); nothing was sent
    ├── APIConnectionError        the API could not be reached
    │   └── APITimeoutError       it did not answer in time
    ├── ProtocolError             a malformed, oversized or unexpected frame (.close_code)
    ├── StreamError               the stream could not go on
    │   ├── JoinError             the server refused the channel join (.reason)
    │   └── RequestTimeoutError   no terminal response within the request timeout
    └── WebhookVerificationError  a webhook's signature or timestamp did not check out

Third-party errors are wrapped at the edge with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "InvalidInputError",
    "JoinError",
    "ModelRiverError",
    "ProtocolError",
    "RateLimitError",
    "RequestTimeoutError",
    "StreamError",
    "UpstreamError",
    "WebhookVerificationError",
]


class ModelRiverError(Exception):
    """Root of every error raised by ``modelriver``."""


class APIError(ModelRiverError):
    """The HTTP API answered with an error status.

    Attributes:
        status: the HTTP status code (the one the API would answer, when nothing was sent).
        body: the decoded JSON body, or the raw text when it was not JSON.
        answered: False when the client refused before sending (e.g. no API key): the message
            then names no HTTP status, since none was received.
    """

    def __init__(self, message: str, *, status: int, body: Any = None, answered: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.answered = answered

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.answered else self.message


class UpstreamError(APIError):
    """The upstream cannot do what was asked (e.g. an event-driven request on Realm).

    An ``APIError`` with status 400, so code that handles a ModelRiver refusal handles it too.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, status=400, body={"error": "bad_request", "message": message})


class AuthenticationError(APIError):
    """The API key was missing or refused (401/403)."""


class RateLimitError(APIError):
    """The API rate limit was hit (429).

    Attributes:
        retry_after: seconds to wait before trying again, from ``Retry-After``, or None.
    """

    def __init__(
        self, message: str, *, status: int = 429, body: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class InvalidInputError(ModelRiverError, ValueError):
    """Input that cannot be sent as given, found before anything was sent.

    For example text holding a lone surrogate (``"\\ud800"``), which UTF-8 cannot encode. It is
    also a ``ValueError``, so code catching either sees it.
    """


class APIConnectionError(ModelRiverError):
    """The API could not be reached (DNS, refused, reset)."""


class APITimeoutError(APIConnectionError):
    """The API did not answer within the timeout."""


class ProtocolError(ModelRiverError):
    """A frame broke the protocol: malformed, oversized or unexpected.

    Attributes:
        close_code: the WebSocket close code an I/O layer should close with.
    """

    def __init__(self, message: str, *, close_code: int = 1007) -> None:
        super().__init__(message)
        self.close_code = close_code


class StreamError(ModelRiverError):
    """The stream could not go on (join refused, gave up reconnecting, timed out)."""


class JoinError(StreamError):
    """The server refused the channel join.

    Attributes:
        reason: the refusal reason, e.g. ``unauthorized_project_access``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"join refused: {reason}")
        self.reason = reason


class RequestTimeoutError(StreamError):
    """No terminal response arrived within the request timeout."""


class WebhookVerificationError(ModelRiverError):
    """A webhook's signature, timestamp or body did not check out."""
