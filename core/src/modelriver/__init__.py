"""ModelRiver's real-time AI delivery, from Python.

    from modelriver import AsyncModelRiver, Token

    async with AsyncModelRiver() as client:           # MODELRIVER_API_KEY / MODELRIVER_API_BASE
        stream = await client.stream("demo-chat", "Hello!")
        async for event in stream:
            if isinstance(event, Token):
                print(event.data, end="", flush=True)

Modules: ``phoenix`` (sans-I/O Phoenix Channels), ``stream`` (asyncio client + sync facade),
``api`` (HTTP client), ``webhooks`` (signatures), ``upstream`` (the seam: ModelRiver or Realm),
``events`` / ``types`` / ``steps`` (the typed vocabulary), ``state`` (one request's events folded:
text, steps, notes, outcome), ``realm`` (the Realm client, server and upstream), ``devserver``
(the embedded gateway, ``modelriver dev``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modelriver import exceptions
from modelriver._version import __version__

if TYPE_CHECKING:
    from modelriver.api import AsyncModelRiver, ModelRiver
    from modelriver.events import Error, Response, Status, Step, StreamEvent, Token, ToolCall
    from modelriver.exceptions import *  # noqa: F403 (every error: exceptions.__all__)
    from modelriver.settings import Settings
    from modelriver.state import RequestState
    from modelriver.steps import StepTracker
    from modelriver.stream import Stream, SyncStream, connect, connect_sync
    from modelriver.types import AIResponse, AsyncRequest, WorkflowStep
    from modelriver.webhooks import WebhookEvent, verify_signature

# Names load on first use, so importing a submodule such as ``modelriver.phoenix`` (sans-I/O)
# does not drag in httpx, websockets or asyncio.
_LAZY = {
    "AsyncModelRiver": "api", "ModelRiver": "api",
    "Error": "events", "Response": "events", "Status": "events", "Step": "events",
    "StreamEvent": "events", "Token": "events", "ToolCall": "events",
    "RequestState": "state",
    "Settings": "settings",
    "StepTracker": "steps",
    "Stream": "stream", "SyncStream": "stream", "connect": "stream", "connect_sync": "stream",
    "AIResponse": "types", "AsyncRequest": "types", "WorkflowStep": "types",
    "WebhookEvent": "webhooks", "verify_signature": "webhooks",
    **dict.fromkeys(exceptions.__all__, "exceptions"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelriver' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"modelriver.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AIResponse",
    "AsyncModelRiver",
    "AsyncRequest",
    "Error",
    "ModelRiver",
    "RequestState",
    "Response",
    "Settings",
    "Status",
    "Step",
    "StepTracker",
    "Stream",
    "StreamEvent",
    "SyncStream",
    "Token",
    "ToolCall",
    "WebhookEvent",
    "WorkflowStep",
    "__version__",
    "connect",
    "connect_sync",
    "verify_signature",
]
__all__ += exceptions.__all__  # every error, as ``modelriver.exceptions`` lists them
