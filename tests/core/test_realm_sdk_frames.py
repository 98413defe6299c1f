"""The gateway's Realm endpoint, frame by frame, as Realm's TypeScript SDK (``@realm-ai/ws-client``)
talks to it in its examples ``basic``, ``streaming`` and ``error-handling`` (PROTOCOL §7).

Each test sends exactly the frames the SDK sends (auth at once on open, then calls with a uuid id,
``params`` as its methods build them and its own ``tenant_id``) and asserts what the SDK needs to
get on: ``auth_success`` (its ``connect()``), answers by id, ``token`` in streamed records and the
end of a stream on ``is_final: true`` (its ``generateStream()``), ``error.code`` and a numeric
``error.retry_after`` (its ``retryAfter``), ``auth_failed`` for a wrong key.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.core.realm_support import REALM_KEY, RealmGateway, acquire, release, scripted

MODEL = "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf"  # what the SDK's examples send


@pytest.fixture(scope="session")
def realm_gateways() -> Iterator[tuple[RealmGateway, RealmGateway]]:
    """Auth on (``REALM_KEY``), and auth off with a rate limit of 2 a minute (shared gateways)."""
    try:
        yield acquire()
    finally:
        release()


class SdkSocket:
    """One SDK connection's raw frames: what ``RealmWebSocketClient`` sends, and reads."""

    def __init__(self, ws: ClientConnection, tenant_id: str) -> None:
        self.ws = ws
        self.tenant_id = tenant_id
        self.pending: list[dict[str, Any]] = []

    async def recv(self) -> dict[str, Any]:
        frame = json.loads(await self.ws.recv(decode=True))
        assert isinstance(frame, dict)
        return frame

    async def send_call(self, function: str, params: dict[str, Any]) -> str:
        call_id = str(uuid.uuid4())
        await self.ws.send(json.dumps({"id": call_id, "function": function, "params": params,
                                       "tenant_id": self.tenant_id}))
        return call_id

    async def answers(self, call_id: str) -> AsyncIterator[dict[str, Any]]:
        """Every answer to ``call_id`` up to the terminal one (other frames fail the test)."""
        while True:
            frame = await self.recv()
            assert frame.get("id") == call_id, frame
            yield frame
            if frame["status"] != "streaming":
                return

    async def call(self, function: str, params: dict[str, Any]) -> dict[str, Any]:
        """``callFunction()``: the terminal answer (``complete`` or ``error``)."""
        frames = [f async for f in self.answers(await self.send_call(function, params))]
        assert [f["status"] for f in frames[:-1]] == ["streaming"] * (len(frames) - 1)
        return frames[-1]


async def sdk_connect(url: str, api_key: str | None, tenant_id: str = "example-tenant") -> SdkSocket:
    """``connect()``: with a key, ``{type: auth}`` at once on open, then ``auth_success``."""
    ws = await websockets.connect(url)
    sock = SdkSocket(ws, tenant_id)
    if api_key is not None:
        await ws.send(json.dumps({"type": "auth", "api_key": api_key}))
        assert await sock.recv() == {"type": "auth_required", "message": "Please send authentication "
                                     "message with your API key"}
        success = await sock.recv()
        assert success["type"] == "auth_success" and success["tenant_id"]
    welcome = await sock.recv()  # no id: the SDK routes it nowhere, and must not need to
    assert welcome["status"] == "connected" and "id" not in welcome
    assert isinstance(welcome["version"], str)
    assert welcome["tenant_id"] == (success["tenant_id"] if api_key is not None else None)
    return sock


def generate_params(prompt: str, max_tokens: int, temperature: float = 0.7, *, stream: bool = False,
                    ) -> dict[str, Any]:
    """The params ``generate()`` / ``generateStream()`` build (the client's model always sent)."""
    return {"prompt": prompt, "model": MODEL, "max_tokens": max_tokens, "temperature": temperature,
            "stream": stream}


# -- examples/basic.ts ------------------------------------------------------------------------------


async def test_basic_example(realm_gateways: tuple[RealmGateway, RealmGateway]) -> None:
    gw = realm_gateways[0]
    sdk = await sdk_connect(gw.url, REALM_KEY)
    try:
        health = await sdk.call("health", {})
        assert health["status"] == "complete"
        assert health["data"]["status"] == "healthy"
        assert isinstance(health["data"]["version"], str)
        assert isinstance(health["data"]["uptime_seconds"], int)

        metadata = await sdk.call("metadata", {})
        names = [f["name"] for f in metadata["data"]["functions"]]  # metadata.functions.map(f => f.name)
        assert set(names) == {"generate", "pipeline", "health", "metadata"}
        assert metadata["data"]["default_model"] == "demo-chat"

        prompt = "What is the capital of France?"
        result = await sdk.call("generate", generate_params(prompt, 50))
        assert result["status"] == "complete"  # an unknown model is answered, never refused
        text, count = result["data"]["text"], result["data"]["tokens_generated"]
        assert count == 50 and text and scripted(prompt).startswith(text)  # max_tokens honoured
        assert result["data"]["model"] == "demo-chat"  # the workflow that ran, instead of MODEL
    finally:
        await sdk.ws.close()


async def test_basic_example_pipeline(realm_gateways: tuple[RealmGateway, RealmGateway]) -> None:
    sdk = await sdk_connect(realm_gateways[0].url, REALM_KEY)
    try:
        # executePipeline(name, input) sends params.pipeline.
        echoed = await sdk.call("pipeline", {"pipeline": "uppercase", "input": "shout"})
        assert echoed["status"] == "complete" and echoed["data"]["output"] == "SHOUT"
        for name, input_ in (("simple-chat", {"prompt": "Hello, how are you?"}),
                             ("rag-pipeline", {"query": "q", "context": "c"})):
            missing = await sdk.call("pipeline", {"pipeline": name, "input": input_})
            assert missing["status"] == "error"  # the example catches it: "Pipeline not available"
            assert missing["error"]["code"] == "DISPATCH_ERROR"
            assert missing["error"]["message"] == f"Unknown pipeline: {name}"
    finally:
        await sdk.ws.close()


# -- examples/streaming.ts ----------------------------------------------------------------------------


async def sdk_generate_stream(sdk: SdkSocket, params: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """``generateStream()``: yield ``data.token`` of each record, stop at ``is_final: true``; then
    the ``complete`` answer its ``callPromise`` waits for."""
    call_id = await sdk.send_call("generate", params)
    tokens: list[str] = []
    answers = sdk.answers(call_id)
    async for frame in answers:
        assert frame["status"] == "streaming", frame  # before is_final: records only
        data = frame["data"]
        assert data["token"] == data["text"] and data["index"] == len(tokens)
        if data["token"]:
            tokens.append(data["token"])
        if data["is_final"] is True:
            break
        assert data["is_final"] is False
    complete = await anext(answers)
    return tokens, complete


async def test_streaming_example_ends_on_is_final(realm_gateways: tuple[RealmGateway, RealmGateway]) -> None:
    gw = realm_gateways[0]
    sdk = await sdk_connect(gw.url, REALM_KEY)
    try:
        prompt = "Tell me a short story about a robot."
        tokens, complete = await sdk_generate_stream(sdk, generate_params(prompt, 100, 0.8, stream=True))
        assert len(tokens) > 10 and "".join(tokens) == scripted(prompt)
        assert complete["status"] == "complete"
        assert complete["data"]["status"] == "complete"
        assert complete["data"]["tokens_generated"] == len(tokens)
        assert gw.log_for(prompt)["status"] == "success"
    finally:
        await sdk.ws.close()


# -- examples/error-handling.ts --------------------------------------------------------------------------


async def test_error_handling_example_rate_limit(realm_gateways: tuple[RealmGateway, RealmGateway]) -> None:
    """No key (REALM_API_KEY unset), against the endpoint without auth and 2 calls a minute."""
    limited = realm_gateways[1]
    sdk = await sdk_connect(limited.url, None, tenant_id=f"example-{uuid.uuid4()}")  # its own budget
    try:
        for _ in range(2):
            answered = await sdk.call("generate", {"prompt": "Hello", "model": MODEL, "max_tokens": 50,
                                                   "temperature": 0.7, "stream": False})
            assert answered["status"] == "complete"
        limited_answer = await sdk.call("generate", generate_params("Hello", 50))
        error = limited_answer["error"]
        assert limited_answer["status"] == "error" and error["code"] == "RATE_LIMIT_EXCEEDED"
        retry_after = error["retry_after"]  # the SDK's error.retryAfter; it sleeps retryAfter * 1000
        assert type(retry_after) in (int, float) and 0 < retry_after <= 30
        found = re.fullmatch(r"Rate limit exceeded\. Try again in (\d+) seconds\.", error["message"])
        assert found is not None and int(found.group(1)) == retry_after
    finally:
        await sdk.ws.close()


async def test_error_handling_example_wrong_key(realm_gateways: tuple[RealmGateway, RealmGateway]) -> None:
    async with websockets.connect(realm_gateways[0].url) as ws:
        await ws.send(json.dumps({"type": "auth", "api_key": "invalid-key"}))  # at once on open
        assert json.loads(await ws.recv())["type"] == "auth_required"
        failed = json.loads(await ws.recv())
        assert failed == {"type": "auth_failed", "error": "Invalid API key"}  # the SDK rejects
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()


async def test_error_handling_example_generate_answers(realm_gateways: tuple[RealmGateway, RealmGateway],
                                                       ) -> None:
    sdk = await sdk_connect(realm_gateways[0].url, REALM_KEY)
    try:
        answered = await sdk.call("generate", generate_params("Test", 10))
        assert answered["status"] == "complete" and answered["data"]["tokens_generated"] == 10
    finally:
        await sdk.ws.close()


# -- what the SDK does not send, answered as Realm's server answers it -------------------------------------


@pytest.mark.parametrize("first", ['{"id":"1","function":"health","params":{}}', b"\x01\x02"])
async def test_a_first_frame_other_than_auth_is_auth_failed_and_a_close(
    realm_gateways: tuple[RealmGateway, RealmGateway], first: str | bytes,
) -> None:
    async with websockets.connect(realm_gateways[0].url) as ws:
        assert json.loads(await ws.recv())["type"] == "auth_required"
        await ws.send(first)
        assert json.loads(await ws.recv())["type"] == "auth_failed"
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()


async def test_binary_frames_and_non_calls_after_auth(realm_gateways: tuple[RealmGateway, RealmGateway],
                                                      ) -> None:
    sdk = await sdk_connect(realm_gateways[0].url, REALM_KEY)
    try:
        await sdk.ws.send(b"binary")
        assert await sdk.recv() == {"error": "Binary messages not supported"}
        await sdk.ws.send("not json")
        error = await sdk.recv()
        assert error["id"] == "unknown" and error["status"] == "error"
        assert error["error"]["code"] == "INTERNAL_ERROR"
        unknown = await sdk.call("teleport", {})
        assert unknown["error"]["code"] == "DISPATCH_ERROR"
        no_prompt = await sdk.call("generate", {"model": MODEL})
        assert no_prompt["error"]["code"] == "DISPATCH_ERROR"
        # Ours: `name` for the pipeline's name is accepted too.
        assert (await sdk.call("pipeline", {"name": "echo", "input": 1}))["data"]["output"] == 1
    finally:
        await sdk.ws.close()
