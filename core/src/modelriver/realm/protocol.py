"""Realm's wire format, sans-I/O: text frames in, typed messages out, and back (PROTOCOL §7).

No sockets, no clocks. The client side builds ``Auth``/``Call``/``Cancel`` frames with ``encode()``
and reads the server's with ``parse_server_frame()``; the server side reads with
``parse_client_frame()`` (which never raises: a bad frame becomes ``Invalid``) and answers with
``encode()`` of ``AuthRequired``/``AuthSuccess``/``AuthFailed``/``Welcome``/``Answer``.

Frames:

    server -> client   {"type": "auth_required", "message"}                 (auth on, first)
                       {"type": "auth_success", "tenant_id": "..."}
                       {"type": "auth_failed", "error": "..."}              (then the server closes)
                       {"status": "connected", "version", "tenant_id",      (welcome, no id:
                        "capabilities"?: ["cancel"]}                         after auth, or first)
                       {"id", "status": "streaming"|"complete"|"error"|"cancelled",
                        "data"?, "error"?: {"code", "message", "details"?, "retry_after"?}}
                       {"error": "Binary messages not supported"}           (no id, no status)
    client -> server   {"type": "auth", "api_key": "..."}
                       {"id", "function", "params", "tenant_id"?}
                       {"type": "cancel", "id"}                              (ours: stop call ``id``)

Ours, beyond Realm's server: ``capabilities`` in the welcome frame (``"cancel"``: the server
understands ``{type: "cancel", id}``; Realm's own server announces none and has no cancel
message, so a client only sends one when announced). A cancelled call is answered
``{"id", "status": "cancelled"}`` if it was still running; a cancel for an unknown or finished id
is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from modelriver._values import finite_or_none, int_or_none
from modelriver.realm.exceptions import (
    DISPATCH_ERROR,
    INTERNAL_ERROR,
    RealmError,
    RealmProtocolError,
    error_for,
)
from modelriver.types import AIResponse

__all__ = [
    "AUTH_TIMEOUT",
    "BINARY_REFUSED",
    "CAPABILITY_CANCEL",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_URL",
    "FUNCTIONS",
    "STATUSES",
    "UNKNOWN_ID",
    "Answer",
    "AnswerStatus",
    "Auth",
    "AuthFailed",
    "AuthRequired",
    "AuthSuccess",
    "Call",
    "CallId",
    "Cancel",
    "ClientMessage",
    "ErrorInfo",
    "GenerateResult",
    "Invalid",
    "ServerMessage",
    "TokenRecord",
    "Welcome",
    "encode",
    "parse_client_frame",
    "parse_server_frame",
    "stream_frame",
    "stream_frame_prefix",
    "token_record",
    "token_text",
]

DEFAULT_URL = "ws://localhost:8080"
DEFAULT_MAX_FRAME = 1 << 20
AUTH_TIMEOUT = 10.0
"""Seconds a client has to authenticate after connecting."""
FUNCTIONS = ("generate", "pipeline", "health", "metadata")
STATUSES = ("streaming", "complete", "error", "cancelled")
CAPABILITY_CANCEL = "cancel"
"""*(ours)* A welcome frame's ``capabilities`` entry: the server understands ``Cancel``."""
UNKNOWN_ID = "unknown"
"""The ``id`` of an error answer to a frame that is not a call (Realm's server)."""
BINARY_REFUSED = '{"error":"Binary messages not supported"}'
"""What Realm's server answers to a binary frame (no id, no status)."""

CallId: TypeAlias = str | int
AnswerStatus = Literal["streaming", "complete", "error", "cancelled"]

# ASCII-only JSON: a lone surrogate in a string can never make a frame that is not UTF-8.
_dumps = json.JSONEncoder(separators=(",", ":")).encode


# -- server to client ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthRequired:
    """The server wants ``Auth`` before anything else (its first frame when auth is on)."""

    message: str = "Please send authentication message with your API key"


@dataclass(frozen=True, slots=True)
class AuthSuccess:
    """The API key was accepted; calls are billed and rate-limited to ``tenant_id``."""

    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """The API key was refused; the server closes the socket next."""

    error: str = "authentication failed"


@dataclass(frozen=True, slots=True)
class Welcome:
    """The frame a server sends once a connection may make calls (no id: it answers no call).

    Attributes:
        version: the server's version.
        tenant_id: the authenticated tenant, or None when auth is off.
        capabilities: *(ours)* what the server supports beyond Realm's protocol, e.g. ``cancel``.
    """

    version: str | None = None
    tenant_id: str | None = None
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An answer's ``error`` object; ``retry_after`` (seconds) is filled for rate limits."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None

    def to_exception(self, call_id: str | None = None) -> RealmError:
        """The typed ``RealmError`` for this code."""
        return error_for(self.code, self.message, self.details, call_id,
                         retry_after=self.retry_after)

    @classmethod
    def from_exception(cls, exc: RealmError) -> ErrorInfo:
        retry_after = getattr(exc, "retry_after", None)
        return cls(exc.code, exc.message, exc.details,
                   retry_after if isinstance(retry_after, int | float) else None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer to call ``id``: a streaming record, or the terminal complete/error/cancelled.

    ``id`` is None only for errors about frames the server could not attribute to a call.
    """

    id: CallId | None
    status: AnswerStatus
    data: Any = None
    error: ErrorInfo | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status != "streaming"


ServerMessage: TypeAlias = AuthRequired | AuthSuccess | AuthFailed | Welcome | Answer


# -- client to server ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Auth:
    """Authenticate with ``api_key``."""

    api_key: str


@dataclass(frozen=True, slots=True)
class Call:
    """Call ``function`` with ``params``; every answer carries ``id``."""

    id: CallId
    function: str
    params: dict[str, Any] = field(default_factory=dict)
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """*(ours)* Stop call ``id``."""

    id: CallId


@dataclass(frozen=True, slots=True)
class Invalid:
    """A client frame the server cannot act on. Encoded as its answer: ``DISPATCH_ERROR`` to
    ``id``, or, when the frame named no call, ``INTERNAL_ERROR`` to id ``"unknown"`` (Realm's)."""

    id: CallId | None
    message: str


ClientMessage: TypeAlias = Auth | Call | Cancel | Invalid


# -- encoding -------------------------------------------------------------------------------------


def encode(message: ClientMessage | ServerMessage) -> str:
    """Serialize a message as a compact, ASCII-only JSON text frame.

    Raises:
        TypeError: ``message`` holds data JSON cannot represent.
    """
    return _dumps(_to_json(message))


def _to_json(message: ClientMessage | ServerMessage) -> dict[str, Any]:
    if isinstance(message, Answer):
        out: dict[str, Any] = {"id": message.id, "status": message.status}
        if message.data is not None:
            out["data"] = message.data
        if message.error is not None:
            out["error"] = message.error.to_json()
        return out
    if isinstance(message, Call):
        out = {"id": message.id, "function": message.function, "params": message.params}
        if message.tenant_id is not None:
            out["tenant_id"] = message.tenant_id
        return out
    if isinstance(message, AuthRequired):
        return {"type": "auth_required", "message": message.message}
    if isinstance(message, Welcome):
        out = {"status": "connected", "version": message.version, "tenant_id": message.tenant_id}
        if message.capabilities:
            out["capabilities"] = list(message.capabilities)
        return out
    if isinstance(message, AuthSuccess):
        return {"type": "auth_success", "tenant_id": message.tenant_id}
    if isinstance(message, AuthFailed):
        return {"type": "auth_failed", "error": message.error}
    if isinstance(message, Auth):
        return {"type": "auth", "api_key": message.api_key}
    if isinstance(message, Cancel):
        return {"type": "cancel", "id": message.id}
    # Invalid: what the server answers for it.
    if message.id is None:
        return _to_json(Answer(UNKNOWN_ID, "error", error=ErrorInfo(
            INTERNAL_ERROR, f"Invalid function call: {message.message}")))
    return _to_json(Answer(message.id, "error", error=ErrorInfo(DISPATCH_ERROR, message.message)))


# -- decoding -------------------------------------------------------------------------------------


def _load_object(data: str | bytes, max_size: int) -> dict[str, Any] | str:
    """The frame's JSON object, or the reason it is not one."""
    if len(data) > max_size:
        return f"frame of {len(data)} bytes exceeds {max_size}"
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            return "frame is not UTF-8"
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return "frame is not JSON"
    if not isinstance(obj, dict):
        return "frame is not a JSON object"
    return obj


def _call_id(value: object) -> CallId | None:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def parse_server_frame(data: str | bytes, *, max_size: int = DEFAULT_MAX_FRAME) -> ServerMessage:
    """Parse one frame from a Realm server.

    Raises:
        RealmProtocolError: the frame is oversized, not JSON, or not a Realm message;
            ``call_id`` is set when the frame named a call (fail that call).
    """
    obj = _load_object(data, max_size)
    if isinstance(obj, str):
        raise RealmProtocolError(f"malformed frame from the server: {obj}")
    kind = obj.get("type")
    if kind == "auth_required":
        return AuthRequired()
    if kind == "auth_success":
        tenant = obj.get("tenant_id")
        return AuthSuccess(tenant if isinstance(tenant, str) else None)
    if kind == "auth_failed":
        return AuthFailed(_message(obj.get("error"), "authentication failed"))
    if "status" not in obj:
        if kind is None and "id" not in obj and "error" in obj:  # e.g. binary frames refused
            return Answer(None, "error", error=_error_info(obj["error"]))
        raise RealmProtocolError(f"unexpected frame from the server (type {str(kind)[:40]!r})")
    if obj["status"] == "connected" and obj.get("id") is None:
        return _welcome(obj)
    raw_id = obj.get("id")
    call_id = _call_id(raw_id)
    if raw_id is not None and call_id is None:
        raise RealmProtocolError("answer with an id that is neither a string nor an integer")
    named = None if call_id is None else str(call_id)
    status = obj["status"]
    if status not in STATUSES:
        raise RealmProtocolError(f"answer with unknown status {str(status)[:40]!r}", call_id=named)
    error = None
    if status == "error":
        error = _error_info(obj.get("error"))
    elif call_id is None:
        raise RealmProtocolError(f"{status!r} answer without an id")
    return Answer(call_id, status, obj.get("data"), error)


def _welcome(obj: dict[str, Any]) -> Welcome:
    version, tenant, capabilities = obj.get("version"), obj.get("tenant_id"), obj.get("capabilities")
    return Welcome(
        version if isinstance(version, str) else None,
        tenant if isinstance(tenant, str) and tenant else None,
        tuple(c for c in capabilities if isinstance(c, str)) if isinstance(capabilities, list) else (),
    )


def _message(value: object, default: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return str(value["message"])
    return default


def _error_info(value: object) -> ErrorInfo:
    if isinstance(value, str):
        return ErrorInfo(INTERNAL_ERROR, value or "call failed")
    if not isinstance(value, dict):
        return ErrorInfo(INTERNAL_ERROR, "call failed")
    code = value.get("code")
    details = value.get("details")
    retry_after = finite_or_none(value.get("retry_after"))
    return ErrorInfo(
        code if isinstance(code, str) and code else INTERNAL_ERROR,
        _message(value.get("message"), "call failed"),
        details if isinstance(details, dict) else {},
        retry_after if retry_after is not None and retry_after >= 0 else None,
    )


def parse_client_frame(data: str | bytes, *, max_size: int = DEFAULT_MAX_FRAME) -> ClientMessage:
    """Parse one frame from a Realm client. Never raises: a bad frame gives ``Invalid``."""
    obj = _load_object(data, max_size)
    if isinstance(obj, str):
        return Invalid(None, f"malformed frame: {obj}")
    kind = obj.get("type")
    call_id = _call_id(obj.get("id"))
    if kind == "auth":
        key = obj.get("api_key")
        return Auth(key if isinstance(key, str) else "")
    if kind == "cancel":
        return Cancel(call_id) if call_id is not None else Invalid(None, "cancel without a valid id")
    if kind is not None and "function" not in obj:
        return Invalid(call_id, f"unknown message type {str(kind)[:40]!r}")
    if call_id is None:
        return Invalid(None, "call without a valid id (a string or an integer)")
    function = obj.get("function")
    if not isinstance(function, str):
        return Invalid(call_id, "call without a function name")
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return Invalid(call_id, "params must be an object")
    tenant = obj.get("tenant_id")
    if tenant is not None and not isinstance(tenant, str):
        return Invalid(call_id, "tenant_id must be a string")
    return Call(call_id, function, params, tenant)


# -- records ------------------------------------------------------------------------------------


def token_record(
    text: str, index: int, *, is_final: bool = False, logprob: float | None = None
) -> dict[str, Any]:
    """A streaming ``data`` record, with the text under both ``text`` and ``token`` (§7)."""
    record: dict[str, Any] = {"text": text, "token": text, "index": index, "is_final": is_final}
    if logprob is not None:
        record["logprob"] = logprob
    return record


def token_text(data: object) -> str:
    """A streaming record's text: ``text``, else ``token`` (the hot path of ``TokenRecord``).

    Raises:
        RealmProtocolError: neither key holds a string.
    """
    if type(data) is dict:
        text = data.get("text")
        if type(text) is str:
            return text
    return TokenRecord.from_data(data).text


def stream_frame_prefix(call_id: CallId) -> str:
    """The start of every streaming answer to ``call_id``: ``stream_frame()`` completes it."""
    return '{"id":' + _dumps(call_id) + ',"status":"streaming","data":'


def stream_frame(prefix: str, text: str, index: int) -> str:
    """``encode(Answer(id, "streaming", token_record(text, index)))``, faster (server hot path)."""
    quoted = _dumps(text)
    return f'{prefix}{{"text":{quoted},"token":{quoted},"index":{index},"is_final":false}}}}'


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A streaming record of ``generate``: one token's text and its position."""

    text: str
    index: int | None = None
    logprob: float | None = None
    is_final: bool = False

    @classmethod
    def from_data(cls, data: object) -> TokenRecord:
        """Read a record; the text comes from ``text``, else ``token`` (Realm's Python client).

        Raises:
            RealmProtocolError: neither key holds a string.
        """
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, dict):
            raise RealmProtocolError("streaming record is not an object")
        text = data.get("text")
        if not isinstance(text, str):
            text = data.get("token")
        if not isinstance(text, str):
            raise RealmProtocolError("streaming record without a text or token string")
        index = data.get("index")
        return cls(text, int_or_none(index), finite_or_none(data.get("logprob")),
                   data.get("is_final") is True)


@dataclass(frozen=True, slots=True)
class GenerateResult:
    """What ``generate`` completes with.

    Attributes:
        text: the whole generated text.
        tokens_generated: tokens (records) generated.
        prompt_tokens: the prompt's size in tokens, when the server says.
        cost_usd: the call's cost, when the server says.
        time_ms: the server's generation time, when it says.
        model: the model asked for, when known.
        raw: the complete ``data`` object as received.
    """

    text: str
    tokens_generated: int = 0
    prompt_tokens: int | None = None
    cost_usd: float | None = None
    time_ms: float | None = None
    model: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_data(
        cls, data: object, *, streamed: list[str] | None = None, model: str | None = None
    ) -> GenerateResult:
        """Read the complete ``data``; ``streamed`` fills in a missing text or count.

        Raises:
            RealmProtocolError: ``data`` is neither an object nor absent.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise RealmProtocolError("generate completed with data that is not an object")
        parts = streamed or []
        text = data.get("text")
        if not isinstance(text, str):
            text = data.get("token") if isinstance(data.get("token"), str) else "".join(parts)
        count = int_or_none(data.get("tokens_generated"))
        reported_model = data.get("model")
        return cls(
            text=str(text),
            tokens_generated=count if count is not None else len(parts),
            prompt_tokens=int_or_none(data.get("prompt_tokens")),
            cost_usd=finite_or_none(data.get("cost_usd")),
            time_ms=finite_or_none(data.get("time_ms")),
            model=reported_model if isinstance(reported_model, str) else model,
            raw=data,
        )

    def to_data(self) -> dict[str, Any]:
        """The complete ``data`` object a server sends for this result."""
        out: dict[str, Any] = {"text": self.text, "tokens_generated": self.tokens_generated}
        for key in ("prompt_tokens", "cost_usd", "time_ms", "model"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def to_response(self, *, duration_ms: int | None = None) -> AIResponse:
        """This result as a successful core ``AIResponse`` (usage in ``meta``)."""
        usage: dict[str, int] = {"completion_tokens": self.tokens_generated}
        if self.prompt_tokens is not None:
            usage["prompt_tokens"] = self.prompt_tokens
            usage["total_tokens"] = self.prompt_tokens + self.tokens_generated
        meta: dict[str, Any] = {"status": "success", "usage": usage, "upstream": "realm"}
        if self.time_ms is not None:
            meta["duration_ms"] = int(self.time_ms)
        elif duration_ms is not None:
            meta["duration_ms"] = duration_ms
        if self.cost_usd is not None:
            meta["cost_usd"] = self.cost_usd
        raw = {"status": "success", "content": self.text, "model": self.model, "meta": meta}
        return AIResponse(
            status="success", content=self.text, model=self.model, data=self.raw or None,
            meta=meta, raw=raw,
        )
