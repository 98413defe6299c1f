"""A test double of Realm's real server (``crates/realm-server``), as PROTOCOL §7 describes it.

Not our ``RealmServer``: this one behaves as Realm's Rust server does, so ``RealmClient`` is tested
against the real behaviour and not only against our own endpoint.

* auth on: ``{type: "auth_required", message}`` first; the first frame read must be
  ``{type: "auth", api_key}`` with a known key (else ``auth_failed`` and a close:
  a wrong key, another frame, a binary frame, or nothing within ``auth_timeout``);
* then the welcome frame ``{status: "connected", version, tenant_id}`` (no id, no capabilities);
* with auth on, every call's ``tenant_id`` must be the key's tenant, else ``UNAUTHORIZED``
  "Tenant ID mismatch"; then the per-tenant rate limit (every call counts), whose error carries
  only Realm's text "Rate limit exceeded. Try again in N seconds.";
* calls are handled one after another, in order (the next frame is read once the call is done);
  no cancel message (a ``{type: "cancel"}`` frame is no call: ``INTERNAL_ERROR`` to id "unknown");
* ``generate`` never refuses a model; it answers a simulated text, word by word when streamed:
  records ``{text, index, is_final}`` (``text`` only), the last with ``is_final: true``, then
  ``complete`` ``{status: "complete", tokens_generated}`` (no text);
* ``DISPATCH_ERROR`` for bad params, an unknown function or pipeline, a missing ``pipeline``;
* binary frames after auth: ``{"error": "Binary messages not supported"}``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

VERSION = "0.1.0"
NOT_AUTH = 'Invalid authentication message format. Expected: {"type":"auth","api_key":"your-key"}'


def simulated(prompt: str) -> str:
    """The double's answer to ``prompt`` (Realm's server answers a simulated text like it)."""
    return f"The capital of France is Paris. This is a simulated response to: {prompt}"


def words(prompt: str, max_tokens: int) -> list[str]:
    """The tokens of the answer: its words, each but the last followed by a space."""
    parts = simulated(prompt).split(" ")[:max_tokens]
    return [w + " " for w in parts[:-1]] + parts[-1:]


class _DispatchError(Exception):
    pass


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RealmDouble:
    """Realm's server on loopback. ``keys`` maps API keys to tenants (None: auth off).

    Attributes:
        received: every text frame received after auth, in order, per connection index.
        connections: connections accepted so far.
    """

    keys: dict[str, str] | None = None
    rate_per_minute: int = 0
    auth_timeout: float = 10.0
    token_delay: float = 0.0
    pipelines: tuple[str, ...] = ("rag-pipeline",)
    received: list[list[str]] = field(default_factory=list)
    connections: int = 0
    _server: Server | None = None
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    async def start(self) -> RealmDouble:
        self._server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None,
                                   compression=None)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    def frames(self, connection: int = -1) -> list[dict[str, Any]]:
        """The JSON frames a connection sent after auth (the last connection by default)."""
        return [json.loads(f) for f in self.received[connection]]

    # -- connection -------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        seen: list[str] = []
        self.received.append(seen)
        tenant: str | None = None
        try:
            if self.keys is not None:
                tenant = await self._authenticate(ws)
                if tenant is None:
                    return
            await ws.send(json.dumps({"status": "connected", "version": VERSION, "tenant_id": tenant}))
            async for message in ws:  # one at a time: the next is read when this one is done
                if isinstance(message, bytes):
                    await ws.send(json.dumps({"error": "Binary messages not supported"}))
                    continue
                seen.append(message)
                await self._call(ws, message, tenant)
        except ConnectionClosed:
            return

    async def _authenticate(self, ws: ServerConnection) -> str | None:
        await ws.send(json.dumps({"type": "auth_required",
                                  "message": "Please send authentication message with your API key"}))
        try:
            first = await asyncio.wait_for(ws.recv(), self.auth_timeout)
        except TimeoutError:
            return await self._refuse(ws, f"Authentication timeout ({self.auth_timeout:g} seconds)")
        if isinstance(first, bytes):
            return await self._refuse(ws, "Authentication message must be text")
        try:
            auth = json.loads(first)
            key, kind = auth["api_key"], auth["type"]
        except (ValueError, KeyError, TypeError):
            return await self._refuse(ws, NOT_AUTH)
        if kind != "auth" or not isinstance(key, str):
            return await self._refuse(ws, NOT_AUTH)
        assert self.keys is not None
        tenant = self.keys.get(key)
        if tenant is None:
            return await self._refuse(ws, "Invalid API key")
        await ws.send(json.dumps({"type": "auth_success", "tenant_id": tenant}))
        return tenant

    @staticmethod
    async def _refuse(ws: ServerConnection, error: str) -> None:
        await ws.send(json.dumps({"type": "auth_failed", "error": error}))
        await ws.close()
        return None

    # -- calls ------------------------------------------------------------------------------------

    async def _call(self, ws: ServerConnection, text: str, tenant: str | None) -> None:
        try:
            call = json.loads(text)
            call_id, function, params = call["id"], call["function"], call["params"]
            if not isinstance(call_id, str) or not isinstance(function, str):
                raise TypeError("id and function must be strings")
        except (ValueError, KeyError, TypeError) as exc:
            await _answer(ws, "unknown", "error", error={
                "code": "INTERNAL_ERROR", "message": f"Invalid function call: {exc!r}"})
            return
        if tenant is not None:
            if call.get("tenant_id") != tenant:
                await _answer(ws, call_id, "error", error={
                    "code": "UNAUTHORIZED", "message": "Tenant ID mismatch"})
                return
            wait = self._wait(tenant)
            if wait is not None:
                await _answer(ws, call_id, "error", error={
                    "code": "RATE_LIMIT_EXCEEDED",
                    "message": f"Rate limit exceeded. Try again in {wait} seconds."})
                return
        try:
            await self._dispatch(ws, call_id, function, params)
        except _DispatchError as exc:
            await _answer(ws, call_id, "error", error={"code": "DISPATCH_ERROR", "message": str(exc)})

    def _wait(self, tenant: str) -> int | None:
        """None when the call may go ahead, else whole seconds to wait (Realm's ``as_secs()``)."""
        if self.rate_per_minute <= 0:
            return None
        now = time.monotonic()
        rate = self.rate_per_minute / 60
        bucket = self._buckets.setdefault(tenant, _Bucket(float(self.rate_per_minute), now))
        bucket.tokens = min(float(self.rate_per_minute), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return math.floor((1 - bucket.tokens) / rate)

    async def _dispatch(self, ws: ServerConnection, call_id: str, function: str, params: Any) -> None:
        if function == "health":
            await _answer(ws, call_id, "complete", {"status": "healthy", "version": VERSION,
                                                    "uptime_seconds": 0})
        elif function == "metadata":
            await _answer(ws, call_id, "complete", {"version": VERSION, "functions": [
                {"name": name, "description": name, "params": [], "returns": "Value",
                 "streaming": name == "generate"}
                for name in ("generate", "health", "metadata", "pipeline")]})
        elif function == "generate":
            await self._generate(ws, call_id, params)
        elif function == "pipeline":
            name = params.get("pipeline") if isinstance(params, dict) else None
            if not isinstance(name, str):
                raise _DispatchError("Missing 'pipeline' parameter")
            if name not in self.pipelines:
                raise _DispatchError(f"Pipeline not found: {name}")
            await _answer(ws, call_id, "complete", {"pipeline": name, "output": params.get("input", {})})
        else:
            raise _DispatchError(f"Unknown function: {function}")

    async def _generate(self, ws: ServerConnection, call_id: str, params: Any) -> None:
        if not isinstance(params, dict) or not isinstance(params.get("prompt"), str):
            raise _DispatchError("missing field `prompt`")
        max_tokens = params.get("max_tokens", 100)
        if not isinstance(max_tokens, int) or max_tokens < 0:
            raise _DispatchError("invalid type: max_tokens")
        prompt = params["prompt"]
        tokens = words(prompt, max_tokens)  # whatever `model` says: never refused
        if not params.get("stream", False):
            await _answer(ws, call_id, "complete", {
                "text": "".join(tokens), "tokens_generated": len(tokens),
                "prompt_tokens": len(prompt.split())})
            return
        for index, text in enumerate(tokens):
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            await _answer(ws, call_id, "streaming",
                          {"text": text, "index": index, "is_final": index == len(tokens) - 1})
        await _answer(ws, call_id, "complete", {"status": "complete", "tokens_generated": len(tokens)})


async def _answer(ws: ServerConnection, call_id: str, status: str, data: Any = None,
                  error: dict[str, Any] | None = None) -> None:
    frame: dict[str, Any] = {"id": call_id, "status": status}
    if data is not None:
        frame["data"] = data
    if error is not None:
        frame["error"] = error
    await ws.send(json.dumps(frame))
