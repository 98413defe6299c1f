"""The gateway's Realm endpoint (`modelriver dev --realm-port`), against real gateway processes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
import websockets

from modelriver.events import Response, Token
from modelriver.exceptions import RateLimitError
from modelriver.realm import (
    RealmAuthenticationError,
    RealmClient,
    RealmConnectionError,
    RealmDispatchError,
    RealmInternalError,
    RealmRateLimitError,
)
from support.faultproxy import FaultProxy
from tests.core.realm_support import REALM_KEY, RealmGateway, acquire, release, scripted


@pytest.fixture(scope="session")
def realm_gateways() -> Iterator[tuple[RealmGateway, RealmGateway]]:
    """Two gateways with a Realm endpoint, started (and stopped) side by side: auth on, and
    auth off with a rate limit of 2 a minute (shared with test_upstream.py)."""
    try:
        yield acquire()
    finally:
        release()


@pytest.fixture(scope="session")
def realm_gw(realm_gateways: tuple[RealmGateway, RealmGateway]) -> RealmGateway:
    """The gateway with auth on."""
    return realm_gateways[0]


async def test_the_endpoint_is_logged_at_start(realm_gw: RealmGateway) -> None:
    assert f"Realm:       {realm_gw.url} (auth on" in realm_gw.gateway.process.output


async def test_auth_success_names_the_tenant(realm_gw: RealmGateway) -> None:
    async with RealmClient(realm_gw.url, api_key=REALM_KEY) as client:
        assert client.is_connected
        assert client.tenant_id.startswith("tenant_")


async def test_a_wrong_key_gets_auth_failed_and_the_socket_closed(realm_gw: RealmGateway) -> None:
    with pytest.raises(RealmAuthenticationError):
        await RealmClient(realm_gw.url, api_key="sk_wrong").connect()
    async with websockets.connect(realm_gw.url) as ws:  # the raw exchange
        assert '"auth_required"' in str(await ws.recv())
        await ws.send('{"type": "auth", "api_key": "nope"}')
        assert '"auth_failed"' in str(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1008


async def test_generate_runs_the_workflow(realm_gw: RealmGateway) -> None:
    prompt = "generate through the realm endpoint please"
    async with RealmClient(realm_gw.url, api_key=REALM_KEY) as client:
        result = await client.generate(prompt, model="demo-chat", max_tokens=None)
    assert result.text == scripted(prompt)
    assert result.tokens_generated == len(scripted(prompt).split())
    record = realm_gw.log_for(prompt)  # an ordinary gateway request, in the log
    assert record["workflow"] == "demo-chat" and record["status"] == "success"


async def test_generate_stream_concatenates_to_the_scripted_answer(realm_gw: RealmGateway) -> None:
    prompt = "stream me the default workflow"
    async with RealmClient(realm_gw.url, api_key=REALM_KEY) as client:
        tokens = [t async for t in client.generate_stream(prompt, max_tokens=None)]  # no model
        events = [e async for e in client.generate_events("events too", max_tokens=None)]
    assert len(tokens) > 10 and "".join(tokens) == scripted(prompt)
    *token_events, final = events
    assert "".join(e.data for e in token_events if isinstance(e, Token)) == scripted("events too")
    assert len(token_events) > 10 and all(isinstance(e, Token) for e in token_events)
    assert isinstance(final, Response) and final.response.content == scripted("events too")


async def test_max_tokens_stops_the_answer_and_the_request(realm_gw: RealmGateway) -> None:
    prompt = "only five tokens of this please"
    async with RealmClient(realm_gw.url, api_key=REALM_KEY) as client:
        tokens = [t async for t in client.generate_stream(prompt, max_tokens=5)]
    assert len(tokens) == 5 and scripted(prompt).startswith("".join(tokens))


async def test_models_errors_and_failover(realm_gw: RealmGateway) -> None:
    async with RealmClient(realm_gw.url, api_key=REALM_KEY) as client:
        # A model name that is no workflow runs the default one, as Realm's server falls back.
        fallback = await client.generate("any model will do", model="gpt-nothing", max_tokens=None)
        assert fallback.text == scripted("any model will do") and fallback.model == "demo-chat"
        assert realm_gw.log_for("any model will do")["workflow"] == "demo-chat"
        with pytest.raises(RealmDispatchError, match="event-driven") as info:
            await client.generate("x", model="demo-events")
        assert info.value.code == "DISPATCH_ERROR" and "demo-chat" in info.value.details["models"]
        with pytest.raises(RealmInternalError, match="upstream unavailable"):
            await client.generate("x", model="demo-error")
        # Not streamed: the failover is invisible, the answer is the backup's.
        result = await client.generate("fail over quietly", model="demo-failover", max_tokens=None)
        assert result.text == scripted("fail over quietly", "demo-backup")
        # Streamed: tokens already sent cannot be taken back, so the call fails, clearly.
        with pytest.raises(RealmInternalError, match="restarts the answer"):
            async for _ in client.generate_stream("fail over loudly", model="demo-failover"):
                pass


async def test_pipeline_health_metadata(realm_gw: RealmGateway) -> None:
    async with RealmClient(realm_gw.url, api_key=REALM_KEY) as client:
        assert await client.execute_pipeline("uppercase", "shout") == {
            "pipeline": "uppercase", "output": "SHOUT", "time_ms": pytest.approx(0, abs=1000)}
        with pytest.raises(RealmDispatchError, match="Unknown pipeline: nope"):
            await client.execute_pipeline("nope", 1)
        health = await client.health()
        assert health["status"] == "healthy" and health["connections"] >= 1
        metadata = await client.metadata()
    assert {f["name"] for f in metadata["functions"]} == {"generate", "pipeline", "health", "metadata"}
    assert metadata["default_model"] == "demo-chat" and metadata["capabilities"] == ["cancel"]
    assert "demo-chat" in metadata["models"] and "demo-events" not in metadata["models"]


async def test_50_concurrent_streams_on_one_socket_without_cross_talk(realm_gw: RealmGateway) -> None:
    prompts = [f"concurrent stream number {i} of fifty" for i in range(50)]
    requests_before = len(realm_gw.gateway.requests())
    async with RealmClient(realm_gw.url, api_key=REALM_KEY) as client:

        async def one(prompt: str) -> str:
            return "".join([t async for t in client.generate_stream(prompt, max_tokens=None)])

        started = time.monotonic()
        texts = await asyncio.gather(*(one(p) for p in prompts))
        elapsed = time.monotonic() - started
    assert texts == [scripted(p) for p in prompts]
    assert elapsed < 10  # concurrently: about one answer's time (~1 s), not fifty
    assert len(realm_gw.gateway.requests()) - requests_before == 50


async def test_cancelling_a_stream_cancels_the_gateway_request(realm_gw: RealmGateway) -> None:
    prompt = "cancel me after the first token"
    async with RealmClient(realm_gw.url, api_key=REALM_KEY) as client:
        async with contextlib.aclosing(client.generate_stream(prompt)) as tokens:
            async for _ in tokens:
                break  # leaving the loop sends {type: cancel}
        deadline = time.monotonic() + 10
        while realm_gw.log_for(prompt)["status"] != "cancelled":
            assert time.monotonic() < deadline, realm_gw.log_for(prompt)
            await asyncio.sleep(0.05)
        assert realm_gw.log_for(prompt)["cancelled"] is True
        assert await client.generate("still usable", max_tokens=3)  # the socket goes on


async def test_reconnects_after_the_socket_is_cut(realm_gw: RealmGateway) -> None:
    port = int(realm_gw.url.rsplit(":", 1)[1])
    async with FaultProxy("127.0.0.1", port) as proxy:
        client = RealmClient(f"ws://127.0.0.1:{proxy.port}", api_key=REALM_KEY,
                             reconnect_interval=0.05)
        await client.connect()
        reconnected = asyncio.Event()
        client.on("connected", lambda _tenant: reconnected.set())
        try:
            stream = client.generate_stream("cut me off mid answer")
            assert await anext(stream)
            await proxy.cut_all()
            with pytest.raises(RealmConnectionError):
                async for _ in stream:
                    pass
            await asyncio.wait_for(reconnected.wait(), 10)
            assert client.reconnects == 1
            result = await client.generate("after the cut", max_tokens=None)
            assert result.text == scripted("after the cut")
        finally:
            await client.disconnect()


async def test_rate_limit_is_typed_with_retry_after_and_auth_can_be_off(
    realm_gateways: tuple[RealmGateway, RealmGateway],
) -> None:
    limited = realm_gateways[1]
    assert "(auth off, rate limit 2 calls/minute per tenant" in limited.gateway.process.output
    async with RealmClient(limited.url) as client:  # no key: auth off
        for _ in range(2):
            assert (await client.generate("quick", max_tokens=2)).tokens_generated == 2
        with pytest.raises(RealmRateLimitError) as info:
            await client.generate("one too many", max_tokens=2)
    assert isinstance(info.value, RateLimitError)
    assert info.value.retry_after is not None and 1 <= info.value.retry_after <= 30
    assert "warning: the Realm endpoint runs without authentication" in limited.gateway.process.output
