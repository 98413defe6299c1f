"""Black-box helpers for the `modelriver dev` acceptance tests.

* ``RawSocket``: a plain ``websockets`` client speaking Phoenix v2 frames by hand, keeping every
  frame it receives (the core client dedupes and hides frames; these tests need to see them).
* ``WebhookReceiver``: ``modelriver.testing.WebhookInbox``, a real HTTP server on loopback (a
  thread) that verifies each webhook and answers a scripted status sequence.
* ``CHATBOT_RESPONSE_SCHEMA`` and small helpers shared by the gateway test modules.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from modelriver.testing import Received, WebhookInbox
from modelriver.types import AsyncRequest, socket_endpoint

__all__ = [
    "CHATBOT_RESPONSE_SCHEMA",
    "RawSocket",
    "Received",
    "WebhookReceiver",
    "is_terminal",
    "scripted",
    "seqs",
    "wait_until",
]

CHATBOT_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reply", "summary", "sentiment", "confidence", "topics", "action_items"],
    "properties": {
        "reply": {"type": "string"},
        "summary": {"type": "string"},
        "sentiment": {"enum": ["positive", "negative", "neutral", "mixed"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "topics": {"type": "array", "items": {"type": "string"}},
        "action_items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["task", "priority"],
                "properties": {
                    "task": {"type": "string"},
                    "priority": {"enum": ["high", "medium", "low"]},
                },
            },
        },
    },
}
"""The ``chatbot_response`` schema as docs/gateway.md describes it."""


def scripted(**overrides: Any) -> dict[str, Any]:
    """Request metadata with ``metadata.scripted`` overrides; fast tokens unless told otherwise."""
    overrides.setdefault("tokens_per_second", 5000)
    overrides.setdefault("first_token_ms", 0)
    return {"scripted": overrides}


def is_terminal(event: str, payload: Any) -> bool:
    """A channel event that ends a request for the official SDK: ``error``, or a non-intermediate
    ``response``."""
    if event == "error":
        return True
    return event == "response" and isinstance(payload, dict) and payload.get("status") != "ai_generated"


async def wait_until(predicate: Callable[[], Any], *, within: float = 10.0, every: float = 0.02) -> Any:
    """Poll ``predicate`` (a cheap check, e.g. the gateway's request log) until it is truthy."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(every)


class RawSocket:
    """A hand-driven Phoenix v2 client over a plain ``websockets`` connection.

    Every frame received is decoded and kept in ``frames`` (``[join_ref, ref, topic, event, payload]``).
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[list[Any]] = []
        self.texts: list[str] = []
        self._refs = itertools.count(1)

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        websocket_url: str,
        token: str | None,
        *,
        subprotocols: list[str] | None = None,
        max_size: int | None = 4 << 20,
    ) -> RawSocket:
        """Open ``websocket_url``'s Phoenix endpoint with ``token`` as the query param (None: none).

        Raises:
            websockets.exceptions.InvalidStatus: the handshake was refused (e.g. HTTP 403).
        """
        url = socket_endpoint(websocket_url, token)
        ws = await websockets.connect(
            url, subprotocols=subprotocols, max_size=max_size, ping_interval=None,  # type: ignore[arg-type]
            compression=None, open_timeout=10,
        )
        return cls(ws)

    @classmethod
    async def for_request(cls, request: AsyncRequest, **kwargs: Any) -> RawSocket:
        return await cls.open(request.websocket_url, request.ws_token, **kwargs)

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> RawSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending -------------------------------------------------------------------------------

    def next_ref(self) -> str:
        return str(next(self._refs))

    async def send_frame(self, frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def push(self, topic: str, event: str, payload: Any, *, join_ref: str | None = None) -> str:
        """Send ``[join_ref, ref, topic, event, payload]``; returns the ref."""
        ref = self.next_ref()
        await self.send_frame([join_ref, ref, topic, event, payload])
        return ref

    # -- receiving -----------------------------------------------------------------------------

    async def next_frame(self, *, within: float = 10.0) -> list[Any]:
        """The next frame, decoded and recorded.

        Raises:
            ConnectionClosed: the socket closed.
            TimeoutError: nothing arrived in time.
        """
        async with asyncio.timeout(within):
            text = await self.ws.recv()
        assert isinstance(text, str), f"the gateway sent a binary frame: {text!r}"
        self.texts.append(text)
        frame = json.loads(text)
        assert isinstance(frame, list), f"not a v2 frame: {text}"
        assert len(frame) == 5, f"not a v2 frame: {text}"
        self.frames.append(frame)
        return frame

    async def until(self, predicate: Callable[[list[Any]], bool], *, within: float = 10.0,
                    start: int = 0) -> list[Any]:
        """The first frame (from index ``start`` of ``frames``, then new ones) that matches."""
        for frame in self.frames[start:]:
            if predicate(frame):
                return frame
        async with asyncio.timeout(within):
            while True:
                frame = await self.next_frame(within=within)
                if predicate(frame):
                    return frame

    async def reply(self, ref: str, *, within: float = 10.0) -> dict[str, Any]:
        """The ``phx_reply`` payload ``{status, response}`` for ``ref``."""
        frame = await self.until(lambda f: f[3] == "phx_reply" and f[1] == ref, within=within)
        return dict(frame[4])

    async def join(
        self, topic: str, payload: Any = None, *, within: float = 10.0
    ) -> tuple[str, dict[str, Any]]:
        """Join ``topic`` (join_ref = ref); returns ``(join_ref, reply payload)``."""
        ref = self.next_ref()
        await self.send_frame([ref, ref, topic, "phx_join", {} if payload is None else payload])
        return ref, await self.reply(ref, within=within)

    async def heartbeat(self, *, within: float = 10.0) -> dict[str, Any]:
        """A socket heartbeat (topic ``phoenix``); returns its reply."""
        ref = await self.push("phoenix", "heartbeat", {})
        return await self.reply(ref, within=within)

    async def until_final(self, topic: str, *, within: float = 20.0, start: int = 0) -> list[Any]:
        """Read until ``topic``'s terminal event; returns that frame."""
        return await self.until(
            lambda f: f[2] == topic and is_terminal(f[3], f[4]), within=within, start=start
        )

    async def closed(self, *, within: float = 10.0) -> tuple[int | None, str]:
        """Read (recording frames) until the server closes; returns ``(code, reason)``."""
        try:
            async with asyncio.timeout(within):
                while True:
                    await self.next_frame(within=within)
        except ConnectionClosed:
            pass
        return self.ws.close_code, self.ws.close_reason or ""

    def events(self, topic: str, *, start: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """The channel events (not control frames) received on ``topic``, in order."""
        return [
            (f[3], f[4]) for f in self.frames[start:]
            if f[2] == topic and not f[3].startswith("phx_")
        ]


def seqs(events: Iterable[tuple[str, dict[str, Any]]]) -> list[int]:
    return [payload["seq"] for _, payload in events]


# -- webhooks ------------------------------------------------------------------------------------

WebhookReceiver = WebhookInbox
"""The webhook endpoint users get from ``modelriver.testing`` (signature-checking, scripted answers)."""
