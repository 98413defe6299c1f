"""The Upstream seam: the same consumer code against ModelRiver and against Realm (one real gateway
serving both), the sync twins, choosing by environment, and `modelriver stream --realm`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from modelriver.api import AsyncModelRiver, ModelRiver
from modelriver.events import Response, Status, Step, Token
from modelriver.exceptions import APIError
from modelriver.realm.upstream import RealmUpstream, SyncRealmUpstream, realm_prompt
from modelriver.types import AIResponse
from modelriver.upstream import (
    AsyncUpstream,
    Upstream,
    UpstreamError,
    sync_upstream_from_env,
    upstream_from_env,
    upstream_name,
)
from support import Gateway
from tests.core.realm_support import REALM_KEY, acquire, release, scripted

MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "an earlier question"},
    {"role": "assistant", "content": "an earlier answer"},
]


class Both:
    def __init__(self, gateway: Gateway, realm_url: str) -> None:
        self.gateway = gateway
        self.realm_url = realm_url


@pytest.fixture(scope="session")
def both() -> Iterator[Both]:
    """One gateway: ModelRiver's HTTP API and socket, and its Realm endpoint (auth on)."""
    try:
        gateway = acquire()[0]
        yield Both(gateway.gateway, gateway.url)
    finally:
        release()


@pytest.fixture(params=["modelriver", "realm"])
async def upstream(request: pytest.FixtureRequest, both: Both) -> AsyncIterator[AsyncUpstream]:
    up: AsyncUpstream
    if request.param == "modelriver":
        up = AsyncModelRiver(both.gateway.api_key, api_base=both.gateway.url)
    else:
        up = RealmUpstream(both.realm_url, api_key=REALM_KEY)
    try:
        yield up
    finally:
        await up.aclose()


async def consume(upstream: AsyncUpstream, prompt: str) -> tuple[str, AIResponse | None, list[str]]:
    """Adapter-shaped consumer code: create, connect, iterate, close."""
    request = await upstream.create_request("demo-chat", [*MESSAGES, {"role": "user", "content": prompt}])
    stream = await upstream.connect(request, request_timeout=30, coalesce=False)
    kinds: list[str] = []
    tokens: list[str] = []
    try:
        async for event in stream:
            kinds.append(event.type)
            if isinstance(event, Token):
                tokens.append(event.data)
    finally:
        await stream.close()
    assert "".join(tokens) == stream.text
    return stream.text, stream.response, kinds


async def test_the_same_consumer_gets_the_same_text_from_both(both: Both) -> None:
    prompt = "the seam gives the same answer"
    mr = AsyncModelRiver(both.gateway.api_key, api_base=both.gateway.url)
    realm = RealmUpstream(both.realm_url, api_key=REALM_KEY)
    try:
        (mr_text, mr_resp, mr_kinds), (realm_text, realm_resp, realm_kinds) = await asyncio.gather(
            consume(mr, prompt), consume(realm, prompt))
    finally:
        await mr.aclose()
        await realm.aclose()
    assert mr_text == realm_text == scripted(prompt)
    assert mr_resp is not None and realm_resp is not None
    assert mr_resp.status == realm_resp.status == "success"
    assert mr_resp.content == realm_resp.content == scripted(prompt)
    assert realm_resp.meta["upstream"] == "realm" and realm_resp.meta["workflow"] == "demo-chat"
    # The same kinds of events, in the same order (steps and statuses included).
    assert squeeze(mr_kinds) == squeeze(realm_kinds)


def squeeze(kinds: list[str]) -> list[str]:
    """``kinds`` with repeats in a row collapsed (token counts may differ with pacing)."""
    return [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]


async def test_cancel_ends_the_request_cancelled_upstream(upstream: AsyncUpstream, both: Both) -> None:
    prompt = f"cancel through the seam {type(upstream).__name__}"
    request = await upstream.create_request("demo-chat", prompt)
    stream = await upstream.connect(request)
    events = stream.__aiter__()
    while not isinstance(await anext(events), Token):
        pass
    answer = await upstream.cancel(request.channel_id)
    assert answer["status"] == "cancelled"
    async for _ in events:
        pass
    assert stream.response is not None and stream.response.status == "cancelled"
    assert stream.response.is_error
    deadline = time.monotonic() + 10
    while not [r for r in both.gateway.requests() if r["prompt"] == prompt and r["cancelled"]]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_reconnect_and_resume_from_last_seq(upstream: AsyncUpstream) -> None:
    prompt = "resume me from where I was"
    request = await upstream.create_request("demo-chat", prompt)
    first = await upstream.connect(request)
    events = first.__aiter__()
    seen = 0
    while seen < 5:
        if isinstance(await anext(events), Token):
            seen += 1
    head, last_seq = first.text, first.last_seq
    await first.close()
    assert last_seq is not None
    again = await upstream.reconnect(request.channel_id)
    second = await upstream.connect(request.with_token(again), last_seq=last_seq)
    async for _ in second:
        pass
    await second.close()
    assert head + second.text == scripted(prompt)


async def test_realm_refusals_are_typed(both: Both) -> None:
    async with RealmUpstream(both.realm_url, api_key=REALM_KEY) as realm:
        with pytest.raises(UpstreamError, match="event-driven"):
            await realm.create_request("demo-events", "x", events=["webhook_received"])
        with pytest.raises(APIError) as info:
            await realm.reconnect("no-such-channel")
        assert info.value.status == 404
        stream = await realm.stream("demo-error", "fails")
        async for _ in stream:
            pass
        assert stream.response is not None and stream.response.is_error
        assert "upstream unavailable" in (stream.response.error_message or "")
        with pytest.raises(APIError) as info:
            await realm.cancel(stream.request.channel_id)
        assert info.value.status == 409
        short = await (await realm.stream("demo-chat", "short", metadata={"max_tokens": 3})).wait()
        assert short.content is not None and scripted("short").startswith(short.content)


def sync_consume(upstream: Upstream, prompt: str) -> tuple[str, AIResponse | None, int]:
    stream = upstream.stream("demo-chat", prompt, coalesce=True)
    kinds = [type(e) for e in stream]
    stream.close()
    assert Response in kinds and Status in kinds and Step in kinds
    return stream.text, stream.response, kinds.count(Token)


async def test_the_sync_twins_agree(both: Both) -> None:
    prompt = "sync twins through the seam"

    def run() -> tuple[tuple[str, AIResponse | None, int], ...]:
        mr: Upstream = ModelRiver(both.gateway.api_key, api_base=both.gateway.url)
        realm: Upstream = SyncRealmUpstream(both.realm_url, api_key=REALM_KEY)
        try:
            return sync_consume(mr, prompt), sync_consume(realm, prompt)
        finally:
            mr.close()
            realm.close()

    (mr_text, mr_resp, _), (realm_text, realm_resp, realm_tokens) = await asyncio.to_thread(run)
    assert mr_text == realm_text == scripted(prompt)
    assert mr_resp is not None and realm_resp is not None and realm_resp.content == mr_resp.content
    assert realm_tokens >= 1


async def test_upstream_from_env_selects_realm_or_modelriver() -> None:
    realm = upstream_from_env({"MODELRIVER_UPSTREAM": "realm", "REALM_URL": "ws://h:1",
                               "REALM_API_KEY": "k"})
    assert isinstance(realm, RealmUpstream) and realm.client.url == "ws://h:1"
    assert realm.client.api_key == "k"
    default = upstream_from_env({"MODELRIVER_API_BASE": "http://x:2", "MODELRIVER_API_KEY": "mr_k"})
    assert isinstance(default, AsyncModelRiver) and default.api_base == "http://x:2"
    assert isinstance(upstream_from_env({"MODELRIVER_UPSTREAM": "modelriver"}), AsyncModelRiver)
    sync_realm = sync_upstream_from_env({"MODELRIVER_UPSTREAM": "Realm"})
    assert isinstance(sync_realm, SyncRealmUpstream) and sync_realm.api_base == "ws://localhost:8080"
    sync_realm.close()
    assert isinstance(sync_upstream_from_env({}), ModelRiver)
    await realm.aclose()
    await default.aclose()
    for typo in ("relam", "ModelRiverX", "1"):  # no silent fallback to ModelRiver
        with pytest.raises(ValueError, match=r"MODELRIVER_UPSTREAM='.*': expected 'modelriver' or 'realm'"):
            upstream_from_env({"MODELRIVER_UPSTREAM": typo})
        with pytest.raises(ValueError, match="expected 'modelriver' or 'realm'"):
            sync_upstream_from_env({"MODELRIVER_UPSTREAM": typo})
    assert upstream_name({}) == upstream_name({"MODELRIVER_UPSTREAM": " ModelRiver "}) == "modelriver"
    assert upstream_name({"MODELRIVER_UPSTREAM": "REALM"}) == "realm"


def test_realm_prompt_is_the_last_user_message_or_a_transcript() -> None:
    messages: list[dict[str, Any]] = [
        *MESSAGES, {"role": "user", "content": [{"type": "text", "text": "now"}]}]
    assert realm_prompt(messages) == "now"
    assert realm_prompt("plain") == "plain"
    assert realm_prompt(messages, "transcript") == (
        "user: an earlier question\nassistant: an earlier answer\nuser: now\nassistant:")
    assert realm_prompt([{"role": "system", "content": "only"}]) == "only"
    with pytest.raises(UpstreamError):
        realm_prompt([])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelriver", "stream", *args],
                          capture_output=True, text=True, timeout=30)


def test_cli_streams_through_realm(both: Both) -> None:
    prompt = "the cli through realm"
    text = run_cli(prompt, "--realm", both.realm_url, "--realm-api-key", REALM_KEY)
    assert text.returncode == 0, text.stderr
    assert text.stdout == scripted(prompt) + "\n"
    assert "[success in" in text.stderr
    lines = run_cli(prompt, "--realm", both.realm_url, "--realm-api-key", REALM_KEY, "--json")
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    assert lines.returncode == 0 and records[-1]["type"] == "response"
    assert "".join(r["data"] for r in records if r["type"] == "token") == scripted(prompt)
    failed = run_cli("x", "--realm", both.realm_url, "--realm-api-key", REALM_KEY,
                     "--workflow", "demo-error")
    assert failed.returncode == 1 and "upstream unavailable" in failed.stderr


def test_the_sync_realm_twins_take_the_async_twins_arguments() -> None:
    """``SyncRealmUpstream`` / ``SyncRealmClient`` hand their arguments to the async twin: the same
    signature, the same errors; a refused one leaves no loop thread behind."""
    import inspect
    import threading

    from modelriver.realm.client import RealmClient
    from modelriver.realm.sync import SyncRealmClient

    assert inspect.signature(SyncRealmClient) == inspect.signature(RealmClient)
    before = threading.active_count()
    with pytest.raises(TypeError, match="own client"):
        SyncRealmUpstream(client=RealmClient())
    with pytest.raises(ValueError, match="prompt"):
        SyncRealmUpstream(prompt="everything")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SyncRealmClient(modle="m")  # type: ignore[call-arg]
    assert threading.active_count() == before
    upstream = SyncRealmUpstream("ws://h:1", retention=5.0)
    try:
        assert upstream.api_base == "ws://h:1" and upstream._twin.retention == 5.0
    finally:
        upstream.close()
