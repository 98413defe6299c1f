"""Plain data shapes of the ModelRiver protocol: the async answer, AIResponse, workflow steps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlencode

from modelriver._values import str_or_none

__all__ = [
    "AIResponse",
    "AsyncRequest",
    "ResponseKind",
    "StepStatus",
    "WorkflowStep",
    "socket_endpoint",
]

ResponseKind = Literal["success", "completed", "ai_generated", "error"]
StepStatus = Literal["pending", "loading", "success", "error"]

_SUCCESS = frozenset({"success", "SUCCESS", "ok"})


def socket_endpoint(websocket_url: str, token: str | None = None) -> str:
    """The Phoenix endpoint for a ``websocket_url``, as the official SDK builds it.

    ``/socket`` is appended unless present, then ``/websocket`` and the query
    (``token`` when given, ``vsn=2.0.0``).
    """
    base = websocket_url.rstrip("/")
    if not base.endswith("/socket"):
        base += "/socket"
    query = {"token": token, "vsn": "2.0.0"} if token is not None else {"vsn": "2.0.0"}
    return f"{base}/websocket?{urlencode(query)}"


@dataclass(frozen=True, slots=True)
class AsyncRequest:
    """What ``POST /v1/ai/async`` (or ``/v1/ai/reconnect``) answers: where to listen.

    ``ws_token`` is short-lived and bound to this channel; it is not the API key.
    """

    channel_id: str
    ws_token: str
    websocket_url: str
    websocket_channel: str | None = None
    project_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def topic(self) -> str:
        """The channel topic, with the SDK's fallback ``ai_response:<channel_id>``."""
        return self.websocket_channel or f"ai_response:{self.channel_id}"

    @property
    def socket_url(self) -> str:
        """The full Phoenix WebSocket URL, token included."""
        return socket_endpoint(self.websocket_url, self.ws_token)

    def with_token(self, other: AsyncRequest) -> AsyncRequest:
        """This request with the fresh token (and URLs) of a reconnect answer."""
        return replace(
            self,
            ws_token=other.ws_token,
            websocket_url=other.websocket_url or self.websocket_url,
            websocket_channel=other.websocket_channel or self.websocket_channel,
        )

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AsyncRequest:
        """Build from the API's JSON answer.

        Raises:
            KeyError, TypeError: a required field is missing or not a string.
        """
        def text(key: str) -> str:
            value = payload[key]
            if not isinstance(value, str):
                raise TypeError(f"{key} must be a string")
            return value

        def opt(key: str) -> str | None:
            value = payload.get(key)
            return value if isinstance(value, str) else None

        return cls(
            channel_id=text("channel_id"),
            ws_token=text("ws_token"),
            websocket_url=text("websocket_url"),
            websocket_channel=opt("websocket_channel"),
            project_id=opt("project_id"),
            raw=payload,
        )


@dataclass(frozen=True, slots=True)
class AIResponse:
    """A ``response`` payload: a status change or the final answer (PROTOCOL §3)."""

    status: str
    channel_id: str | None = None
    content: str | None = None
    model: str | None = None
    data: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AIResponse:
        """Build from a ``response`` payload; unknown fields stay in ``raw``."""
        meta = payload.get("meta")
        error = payload.get("error")
        if isinstance(error, str):
            error = {"message": error}
        status = payload.get("status")
        return cls(
            status=status if isinstance(status, str) else "",
            channel_id=str_or_none(payload.get("channel_id")),
            content=str_or_none(payload.get("content")),
            model=str_or_none(payload.get("model")),
            data=payload.get("data"),
            meta=meta if isinstance(meta, dict) else {},
            error=error if isinstance(error, dict) else None,
            raw=payload,
        )

    @property
    def kind(self) -> ResponseKind:
        """The SDK's reading of ``status``: success, completed, ai_generated or error."""
        if self.status in _SUCCESS or self.meta.get("status") == "success":
            return "success"
        if self.status == "completed":
            return "completed"
        if self.status == "ai_generated":
            return "ai_generated"
        return "error"

    @property
    def is_terminal(self) -> bool:
        """True when this response ends the request (everything but ``ai_generated``)."""
        return self.kind != "ai_generated"

    @property
    def is_error(self) -> bool:
        return self.kind == "error"

    @property
    def duration_ms(self) -> int | None:
        value = self.meta.get("duration_ms")
        return int(value) if isinstance(value, int | float) else None

    @property
    def error_message(self) -> str | None:
        """The error's message, for error responses."""
        if not self.is_error:
            return None
        if self.error and isinstance(self.error.get("message"), str):
            return str(self.error["message"])
        message = self.raw.get("message")
        return message if isinstance(message, str) else f"request ended with status {self.status!r}"


@dataclass(frozen=True, slots=True)
class WorkflowStep:
    """One step of the SDK's progress model (PROTOCOL §4)."""

    id: str
    name: str
    status: StepStatus = "pending"
    duration: int | None = None
    error_message: str | None = None
