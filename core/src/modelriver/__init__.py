"""ModelRiver's real-time AI delivery, from Python.

    from modelriver import AsyncModelRiver, Token

    async with AsyncModelRiver() as client:           # MODELRIVER_API_KEY / MODELRIVER_API_BASE
        stream = await client.stream("demo-chat", "Hello!")
        async for event in stream:
            if isinstance(event, Token):
                print(event.data, end="", flush=True)

Modules: ``phoenix`` (sans-I/O Phoenix Channels), ``stream`` (asyncio client + sync facade),
``api`` (HTTP client), ``webhooks`` (signatures), ``store`` (in-flight requests), ``events`` /
``types`` / ``steps`` (the typed vocabulary), ``devserver`` (the embedded gateway, ``modelriver dev``).
"""

from modelriver._version import __version__
from modelriver.api import AsyncModelRiver, ModelRiver
from modelriver.events import Error, Response, Status, Step, StreamEvent, Token, ToolCall
from modelriver.exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    JoinError,
    ModelRiverError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    StreamError,
    WebhookVerificationError,
)
from modelriver.steps import StepTracker
from modelriver.stream import Stream, SyncStream, connect, connect_sync
from modelriver.types import AIResponse, AsyncRequest, WorkflowStep
from modelriver.webhooks import WebhookEvent, verify_signature

__all__ = [
    "AIResponse",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncModelRiver",
    "AsyncRequest",
    "AuthenticationError",
    "Error",
    "JoinError",
    "ModelRiver",
    "ModelRiverError",
    "ProtocolError",
    "RateLimitError",
    "RequestTimeoutError",
    "Response",
    "Status",
    "Step",
    "StepTracker",
    "Stream",
    "StreamError",
    "StreamEvent",
    "SyncStream",
    "Token",
    "ToolCall",
    "WebhookEvent",
    "WebhookVerificationError",
    "WorkflowStep",
    "__version__",
    "connect",
    "connect_sync",
    "verify_signature",
]
