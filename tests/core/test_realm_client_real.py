"""``RealmClient`` and ``SyncRealmClient`` against a double of Realm's real server (realm_double.py).

The double behaves as Realm's Rust server does (PROTOCOL §7): auth first, a welcome frame, the
tenant rule, calls answered one after another, no cancel message, its error codes and texts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from modelriver._portal import Portal
from modelriver.events import Response, Token
from modelriver.realm import (
    RealmAuthenticationError,
    RealmClient,
    RealmDispatchError,
    RealmRateLimitError,
    SyncRealmClient,
)
from tests.core.realm_double import RealmDouble, simulated, words

KEY = "sk_real_double"
TENANT = "tenant-from-the-key"


@pytest.fixture
async def double() -> AsyncIterator[RealmDouble]:
    server = await RealmDouble(keys={KEY: TENANT}).start()
    yield server
    await server.close()


class Watched:
    """A connected client and every ``error`` event it fired."""

    def __init__(self, client: RealmClient) -> None:
        self.client = client
        self.errors: list[Any] = []
        client.on("error", self.errors.append)


@pytest.fixture
async def watched(double: RealmDouble) -> AsyncIterator[Watched]:
    watched = Watched(RealmClient(double.url, api_key=KEY, tenant_id="my-own-tenant"))
    await watched.client.connect()
    yield watched
    await watched.client.disconnect()
    assert watched.errors == []  # no spurious error event, on connect or after


async def test_connect_accepts_the_welcome_and_adopts_the_keys_tenant(double: RealmDouble) -> None:
    client = RealmClient(double.url, api_key=KEY, tenant_id="my-own-tenant")
    seen: list[Any] = []
    for event in ("connected", "error"):
        client.on(event, lambda arg, event=event: seen.append((event, arg)))
    await client.connect()
    try:
        assert client.is_connected and client.tenant_id == TENANT
        assert client.capabilities == ()  # Realm's server announces no cancel
        assert seen == [("connected", TENANT)]
        assert (await client.health())["status"] == "healthy"
    finally:
        await client.disconnect()


async def test_generate_sends_the_tenant_and_never_has_its_model_refused(watched: Watched,
                                                                          double: RealmDouble) -> None:
    client = watched.client
    result = await client.generate("What is the capital of France?",
                                   model="tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf", max_tokens=50)
    assert result.text == simulated("What is the capital of France?")
    assert result.tokens_generated == len(words("What is the capital of France?", 50))
    (frame,) = double.frames()
    assert frame["tenant_id"] == TENANT and frame["function"] == "generate"


async def test_generate_stream_ends_and_joins_the_tokens(watched: Watched) -> None:
    client = watched.client
    prompt = "Tell me a short story about a robot."
    tokens = [t async for t in client.generate_stream(prompt, max_tokens=100)]
    assert tokens == words(prompt, 100) and "".join(tokens) == simulated(prompt)
    # `complete` has no text: the result is the streamed tokens joined.
    events = [e async for e in client.generate_events(prompt)]
    *streamed, final = events
    assert all(isinstance(e, Token) for e in streamed) and isinstance(final, Response)
    assert final.response.content == simulated(prompt)
    assert final.response.meta["usage"]["completion_tokens"] == len(streamed)


async def test_pipeline_health_metadata(watched: Watched, double: RealmDouble) -> None:
    client = watched.client
    output = await client.execute_pipeline("rag-pipeline", {"query": "q", "context": "c"})
    assert output == {"pipeline": "rag-pipeline", "output": {"query": "q", "context": "c"}}
    assert double.frames()[-1]["params"] == {"pipeline": "rag-pipeline",
                                             "input": {"query": "q", "context": "c"}}
    with pytest.raises(RealmDispatchError, match="Pipeline not found: simple-chat") as info:
        await client.execute_pipeline("simple-chat", {"prompt": "Hello"})
    assert info.value.code == "DISPATCH_ERROR"
    with pytest.raises(RealmDispatchError, match="Unknown function: teleport"):
        await client.call("teleport")
    health = await client.health()
    assert health == {"status": "healthy", "version": "0.1.0", "uptime_seconds": 0}
    metadata = await client.metadata()
    assert {f["name"] for f in metadata["functions"]} == {"generate", "health", "metadata", "pipeline"}


async def test_rate_limit_is_typed_with_retry_after_from_the_message() -> None:
    server = await RealmDouble(keys={KEY: TENANT}, rate_per_minute=2).start()
    try:
        async with RealmClient(server.url, api_key=KEY) as client:
            await client.health()  # every call counts, health too
            await client.generate("one")
            with pytest.raises(RealmRateLimitError) as info:
                await client.generate("two")
        error = info.value
        assert error.code == "RATE_LIMIT_EXCEEDED" and error.message.startswith("Rate limit exceeded.")
        wait = int(error.message.split("Try again in ")[1].split(" ")[0])
        assert error.retry_after == wait and 0 <= wait <= 30
    finally:
        await server.close()


async def test_a_wrong_key_is_a_typed_auth_error(double: RealmDouble) -> None:
    client = RealmClient(double.url, api_key="sk_wrong", reconnect=False)
    with pytest.raises(RealmAuthenticationError, match="Invalid API key") as info:
        await client.connect()
    assert info.value.code == "UNAUTHORIZED" and not client.is_connected
    with pytest.raises(RealmAuthenticationError, match="requires an API key"):
        await RealmClient(double.url, reconnect=False).connect()


async def test_calls_pipelined_on_one_socket_are_answered_in_order(watched: Watched,
                                                                    double: RealmDouble) -> None:
    client = watched.client
    prompts = [f"pipelined call {i}" for i in range(8)]

    async def stream(prompt: str) -> str:
        return "".join([t async for t in client.generate_stream(prompt)])

    results = await asyncio.gather(
        *(client.generate(p) for p in prompts[:4]), *(stream(p) for p in prompts[4:]),
        client.health(), client.execute_pipeline("rag-pipeline", {"query": "x"}),
    )
    assert [r.text for r in results[:4]] == [simulated(p) for p in prompts[:4]]
    assert results[4:8] == [simulated(p) for p in prompts[4:]]
    assert results[8]["status"] == "healthy" and results[9]["output"] == {"query": "x"}
    assert double.connections == 1 and len(double.frames()) == 10  # one socket, all sent at once
    assert {f["tenant_id"] for f in double.frames()} == {TENANT}


async def test_leaving_a_stream_sends_no_cancel_and_discards_its_frames() -> None:
    server = await RealmDouble(keys={KEY: TENANT}, token_delay=0.01).start()
    try:
        watched = Watched(RealmClient(server.url, api_key=KEY))
        async with watched.client as client:
            prompt = "a long answer that is left after its first token"
            async with contextlib.aclosing(client.generate_stream(prompt)) as tokens:
                async for first in tokens:
                    assert first == words(prompt, 100)[0]
                    break
            # The server finishes the stream (Realm has no cancel); the next call waits behind it.
            assert (await client.generate("next")).text == simulated("next")
            assert client.pending_calls == 0
        assert [f.get("type") for f in server.frames()] == [None, None]  # two calls, no cancel
        assert watched.errors == []
    finally:
        await server.close()


async def test_auth_off_server_welcomes_at_once_and_gets_no_auth_frame() -> None:
    server = await RealmDouble(keys=None).start()
    try:
        watched = Watched(RealmClient(server.url, api_key="unused", tenant_id="mine"))
        async with watched.client as client:
            assert client.tenant_id == "mine"
            assert (await client.generate("open")).text == simulated("open")
        assert [f["tenant_id"] for f in server.frames()] == ["mine"]  # no auth frame was sent
        assert watched.errors == []
    finally:
        await server.close()


# -- the sync facade ------------------------------------------------------------------------------


@pytest.fixture
def portal_double() -> Iterator[RealmDouble]:
    """The double on its own loop thread, so sync code can block on it."""
    portal = Portal("realm-double")
    server = portal.call(RealmDouble(keys={KEY: TENANT}, rate_per_minute=12).start())
    yield server
    portal.call(server.close())
    portal.close()


def test_sync_client_against_the_real_server_double(portal_double: RealmDouble) -> None:
    errors: list[Any] = []
    with SyncRealmClient(portal_double.url, api_key=KEY) as realm:
        realm.on("error", errors.append)
        assert realm.is_connected and realm.tenant_id == TENANT and realm.capabilities == ()
        assert realm.generate("sync hello", model="any.gguf").text == simulated("sync hello")
        tokens = list(realm.generate_stream("sync stream"))
        assert tokens == words("sync stream", 100) and "".join(tokens) == simulated("sync stream")
        assert realm.execute_pipeline("rag-pipeline", {"query": "q"})["output"] == {"query": "q"}
        assert realm.health()["status"] == "healthy"
        assert len(realm.metadata()["functions"]) == 4
        with pytest.raises(RealmDispatchError):
            realm.execute_pipeline("nope", {})
        stream = realm.generate_stream("left early")
        assert next(stream) == "The "
        stream.close()  # no cancel message: its frames are discarded
        assert realm.generate("after").text == simulated("after")
        for _ in range(4):  # 8 calls so far: the 12 a minute run out
            realm.health()
        with pytest.raises(RealmRateLimitError) as info:
            realm.health()
        assert info.value.retry_after is not None and info.value.retry_after >= 0
    assert errors == []
    assert all(f.get("type") is None and f["tenant_id"] == TENANT for f in portal_double.frames())
    refused = SyncRealmClient(portal_double.url, api_key="sk_wrong", reconnect=False)
    try:
        with pytest.raises(RealmAuthenticationError, match="Invalid API key"):
            refused.connect()
    finally:
        refused.close()
