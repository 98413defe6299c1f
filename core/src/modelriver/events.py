"""The typed events every adapter consumes: one ``StreamEvent`` union.

``event_from_message(event, payload)`` turns a channel message into an event; it never raises:
unknown events give ``None`` (logged at debug by the caller), malformed payloads an ``Error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelriver._values import int_or_none, str_or_none
from modelriver.types import AIResponse, WorkflowStep

__all__ = [
    "Error",
    "Response",
    "Status",
    "Step",
    "StreamEvent",
    "Token",
    "ToolCall",
    "event_from_message",
]


@dataclass(frozen=True, slots=True)
class Token:
    """A text delta of the answer. ``from_seq`` is set when the server coalesced several."""

    type: ClassVar[str] = "token"
    data: str
    seq: int | None = None
    from_seq: int | None = None
    provider: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """Live progress. ``status == "failover"`` with ``reset``: the partial answer starts over."""

    type: ClassVar[str] = "status"
    status: str
    seq: int | None = None
    step: str | None = None
    provider: str | None = None
    model: str | None = None
    payload: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def reset(self) -> bool:
        """True when the tokens that follow replace the partial answer (failover)."""
        return bool(self.payload.get("reset"))


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model made, with its arguments."""

    type: ClassVar[str] = "tool_call"
    name: str
    arguments: Any = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """A workflow step changed (PROTOCOL §4)."""

    type: ClassVar[str] = "step"
    step: WorkflowStep


@dataclass(frozen=True, slots=True)
class Response:
    """A ``response``: the final answer, or the intermediate ``ai_generated``."""

    type: ClassVar[str] = "response"
    response: AIResponse


@dataclass(frozen=True, slots=True)
class Error:
    """The request failed with this message."""

    type: ClassVar[str] = "error"
    message: str
    seq: int | None = None


StreamEvent = Token | Status | ToolCall | Step | Response | Error


def event_from_message(event: str, payload: Any) -> StreamEvent | None:
    """The ``StreamEvent`` for a channel message, or None for events this library ignores."""
    if not isinstance(payload, dict):
        if event in _KNOWN:
            return Error(f"malformed {event!r} payload")
        return None
    seq = int_or_none(payload.get("seq"))
    if event == "tokens":
        data = payload.get("data")
        if not isinstance(data, str):
            return Error("malformed 'tokens' payload", seq=seq)
        return Token(data, seq, int_or_none(payload.get("from_seq")),
                     str_or_none(payload.get("provider")), str_or_none(payload.get("model")))
    if event == "status":
        return Status(str(payload.get("status", "")), seq, str_or_none(payload.get("step")),
                      str_or_none(payload.get("provider")), str_or_none(payload.get("model")),
                      payload)
    if event == "response":
        return Response(AIResponse.from_payload(payload))
    if event == "error":
        message = payload.get("message") or payload.get("error") or "request failed"
        if isinstance(message, dict):
            message = message.get("message", "request failed")
        return Error(str(message), seq)
    if event == "tool_call":
        return ToolCall(str(payload.get("name", "")), payload.get("arguments"), seq)
    return None


_KNOWN = frozenset({"tokens", "status", "response", "error", "tool_call"})
