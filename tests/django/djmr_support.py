"""Helpers of the in-process Django tests: a browser session (AsyncClient) and a Phoenix socket
(WebsocketCommunicator) speaking literal v2 frames."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from django_modelriver.signals import request_starting
from modelriver.upstream import AsyncUpstream, upstream_from_env

ORIGIN = b"http://testserver"


GATE = {"open": True}


def gate(request_or_scope: Any) -> bool:
    """The tests' PERMISSION callable: allows while ``GATE["open"]``."""
    return GATE["open"]


UPSTREAMS_MADE: list[AsyncUpstream] = []


def counting_upstream() -> AsyncUpstream:
    """An ``UPSTREAM`` factory: core's ``upstream_from_env()``, each one made kept in ``UPSTREAMS_MADE``."""
    upstream = upstream_from_env()
    UPSTREAMS_MADE.append(upstream)
    return upstream


def not_an_upstream() -> object:
    """An ``UPSTREAM`` factory that returns something else (refused at first use)."""
    return object()


@contextlib.contextmanager
def scripted(**script: Any) -> Iterator[None]:
    """Shape the requests started meanwhile with the dev gateway's ``metadata.scripted``."""

    def receiver(sender: Any, options: dict[str, Any], **kwargs: Any) -> None:
        options["metadata"] = {**options["metadata"], "scripted": script}

    request_starting.connect(receiver, weak=False)
    try:
        yield
    finally:
        request_starting.disconnect(receiver)


COOKIES_OF_TOKEN: dict[str, bytes] = {}
"""The session cookies a ``Browser`` had when it got each token: its ``Socket`` sends them, as a
browser does (the relay binds a token to its session)."""


class Browser:
    """One browser session (its own cookies: its own owner)."""

    def __init__(self, **kwargs: Any) -> None:
        self.client = AsyncClient(**kwargs)

    @property
    def cookie_header(self) -> bytes:
        return "; ".join(f"{name}={morsel.value}" for name, morsel in self.client.cookies.items()).encode()

    def _keep(self, response: Any) -> None:
        if response.get("content-type", "").startswith("application/json"):
            token = response.json().get("ws_token") if isinstance(response.json(), dict) else None
            if isinstance(token, str):
                COOKIES_OF_TOKEN[token] = self.cookie_header

    async def start(self, message: str = "hello", **body: Any) -> dict[str, Any]:
        response = await self.client.post("/modelriver/start", {"message": message, **body},
                                          content_type="application/json")
        assert response.status_code == 200, response.content
        self._keep(response)
        answer: dict[str, Any] = response.json()
        return answer

    async def post(self, path: str, body: Any, **headers: Any) -> Any:
        response = await self.client.post(path, body, content_type="application/json", headers=headers)
        self._keep(response)
        return response


class Socket:
    """A Phoenix v2 client socket on the relay, frame by frame."""

    def __init__(self, token: str | None, *, origin: bytes | None = ORIGIN,
                 subprotocols: list[str] | None = None, query: str | None = None,
                 cookie: bytes | None = None) -> None:
        """``cookie``: the Cookie header; by default that of the ``Browser`` the token came from."""
        from djmr_asgi import application

        path = "/modelriver/socket/websocket?" + (query if query is not None else f"token={token}&vsn=2.0.0")
        cookie = cookie if cookie is not None else COOKIES_OF_TOKEN.get(token or "")
        headers = [(b"host", b"testserver")] + ([(b"origin", origin)] if origin else []) + \
            ([(b"cookie", cookie)] if cookie else [])
        self.comm = WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)
        self.ref = 0
        self.frames: list[list[Any]] = []

    async def connect(self) -> bool:
        connected, _ = await self.comm.connect(timeout=5)
        return bool(connected)

    async def send(self, join_ref: str | None, topic: str, event: str, payload: Any) -> str:
        self.ref += 1
        ref = str(self.ref)
        await self.comm.send_to(text_data=json.dumps([join_ref, ref, topic, event, payload]))
        return ref

    async def recv(self, wait: float = 10) -> list[Any]:
        frame: list[Any] = json.loads(await self.comm.receive_from(timeout=wait))
        self.frames.append(frame)
        return frame

    async def reply_to(self, ref: str, wait: float = 10) -> list[Any]:
        """Read until the phx_reply of ``ref`` (other frames are kept in ``frames``)."""
        while True:
            frame = await self.recv(wait)
            if frame[3] == "phx_reply" and frame[1] == ref:
                return frame

    async def join(self, topic: str, payload: dict[str, Any] | None = None, join_ref: str = "1") -> list[Any]:
        ref = await self.send(join_ref, topic, "phx_join", payload or {})
        return await self.reply_to(ref)

    async def until(self, pred: Callable[[list[Any]], bool], wait: float = 15) -> list[list[Any]]:
        """Channel events (not replies) up to and including the first matching ``pred``."""
        got = []
        while True:
            frame = await self.recv(wait)
            if frame[3] == "phx_reply":
                continue
            got.append(frame)
            if pred(frame):
                return got

    async def until_final(self, wait: float = 15) -> list[list[Any]]:
        return await self.until(lambda f: f[3] == "error" or (f[3] == "response" and
                                                             f[4].get("status") != "ai_generated"), wait)

    async def close_output(self, wait: float = 5) -> dict[str, Any]:
        """The next ASGI message the server sends, expected to be a close."""
        while True:
            message: dict[str, Any] = await self.comm.receive_output(wait)
            if message["type"] == "websocket.close":
                return message

    async def disconnect(self) -> None:
        await self.comm.disconnect()


async def settle(channel_id: str) -> None:
    """Wait for this process's pump of ``channel_id`` to finish (it marks the request ended)."""
    from django_modelriver.hub import get_hub

    pump = get_hub()._pumps.get(channel_id)
    if pump is not None and pump.task is not None:
        await pump.task


def text_of(frames: list[list[Any]]) -> str:
    return "".join(f[4]["data"] for f in frames if f[3] == "tokens")


def seqs_of(frames: list[list[Any]]) -> list[int]:
    return [f[4]["seq"] for f in frames if isinstance(f[4], dict) and "seq" in f[4]]
