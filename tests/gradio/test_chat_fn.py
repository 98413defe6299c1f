"""``modelriver_chat``'s function called directly (no Gradio server) on the real gateway.

Both ways Gradio can stop a generator reach the gateway as a cancel: closing it at a ``yield``
(``aclose()``, what Gradio's ``/cancel`` does) and cancelling the task that awaits it (what its
stop button does mid-await). Also: per-message metadata, ``data_output`` pairs, history.
Each test runs on both upstreams (conftest): an ``AsyncModelRiver`` on the session's gateway, and
a ``RealmUpstream`` on a second gateway's Realm endpoint (paced by its config: a Realm call
carries no per-message metadata). Webhooks stay ModelRiver-only: on Realm they are a clear error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr
import pytest

from gradio_modelriver import modelriver_chat
from modelriver import AsyncModelRiver
from modelriver.upstream import AsyncUpstream, RealmUpstream
from support import free_port
from support.upstreams import REALM_KEY, Upstream

SLOW = {"scripted": {"tokens_per_second": 5}}


@pytest.fixture
async def client(upstream: Upstream) -> AsyncIterator[AsyncUpstream]:
    client: AsyncUpstream
    if upstream.realm_url is not None:
        client = RealmUpstream(upstream.realm_url, api_key=REALM_KEY)
    else:
        client = AsyncModelRiver(api_key=upstream.gateway.api_key, api_base=upstream.gateway.url)
    try:
        yield client
    finally:
        await client.aclose()


def answer(messages: list[gr.ChatMessage]) -> str:
    return "".join(str(m.content) for m in messages if not m.metadata)


async def cancelled_in_log(upstream: Upstream, channel_id: str, prompt: str) -> dict[str, Any]:
    """Poll the gateway's log (another process) until it shows the cancel; bounded."""
    async with asyncio.timeout(15):
        while True:
            log = await asyncio.to_thread(upstream.log, channel_id, prompt)
            if log["status"] == "cancelled":
                return log
            await asyncio.sleep(0.05)


async def test_closing_the_generator_cancels_the_request(
    client: AsyncUpstream, upstream: Upstream, channel_id_of: Callable[..., str],
) -> None:
    chat = modelriver_chat(workflow="demo-chat", client=client, metadata=SLOW)
    prompt = "tell me a long story"
    gen = chat(prompt, [])
    async for messages in gen:
        if len(answer(messages)) > 10:
            break
    channel_id = channel_id_of([{"content": m.content} for m in messages])
    await gen.aclose()  # what Gradio's /cancel does to a generator parked at a yield
    log = await cancelled_in_log(upstream, channel_id, prompt)
    assert log["cancelled"] is True and log["tokens"] < 20


async def test_cancelling_the_task_cancels_the_request(
    client: AsyncUpstream, upstream: Upstream, channel_id_of: Callable[..., str],
) -> None:
    chat = modelriver_chat(workflow="demo-chat", client=client, metadata=SLOW)
    prompt = "tell me another long story"
    seen: list[list[gr.ChatMessage]] = []
    started = asyncio.Event()

    async def consume() -> None:
        async for messages in chat(prompt, []):
            seen.append(messages)
            if len(answer(messages)) > 10:
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 15)
    task.cancel()  # what Gradio's stop does to the task awaiting the next token
    with pytest.raises(asyncio.CancelledError):
        await task
    channel_id = channel_id_of([{"content": m.content} for m in seen[-1]])
    log = await cancelled_in_log(upstream, channel_id, prompt)
    assert log["cancelled"] is True


async def test_stop_while_the_request_is_being_created_cancels_it_once_created(
    client: AsyncUpstream, upstream: Upstream,
) -> None:
    gateway = upstream.gateway
    before = {r["channel_id"] for r in await asyncio.to_thread(gateway.requests)}
    chat = modelriver_chat(workflow="demo-chat", client=client, metadata=SLOW)
    gen = chat("stop me before I start", [])
    task = asyncio.create_task(anext(gen))
    await asyncio.sleep(0)  # let it start creating the request, then stop it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def new_request() -> dict[str, Any]:
        async with asyncio.timeout(15):
            while True:
                fresh = [r for r in await asyncio.to_thread(gateway.requests)
                         if r["channel_id"] not in before]
                if fresh and fresh[0]["status"] == "cancelled":
                    return fresh[0]
                await asyncio.sleep(0.05)

    if isinstance(client, RealmUpstream):
        await realm_stop_before_start(client, upstream, before)
        return
    log = await new_request()
    assert log["cancelled"] is True and log["tokens"] < 20


async def realm_stop_before_start(client: RealmUpstream, upstream: Upstream,
                                  before: set[str]) -> None:
    """On Realm the stop may land before the call is even sent, so the gateway may never see a
    request: what must hold is that the upstream ended its request ``cancelled`` and that
    nothing runs on at the gateway (a request it did start is cancelled)."""
    runs = client._runs  # the upstream's own record of its requests
    async with asyncio.timeout(15):
        while True:  # the request is created (and cancelled) in the background
            if runs and all(r.task is not None and r.task.done() for r in runs.values()):
                break
            await asyncio.sleep(0.05)
    assert [r.cancelled for r in runs.values()] == [True]
    await client.health()  # a later call on the same socket: the server has read the cancel
    async with asyncio.timeout(15):
        while True:
            fresh = [r for r in await asyncio.to_thread(upstream.gateway.requests)
                     if r["channel_id"] not in before]
            if all(r["status"] == "cancelled" for r in fresh):
                break
            await asyncio.sleep(0.05)
    assert len(fresh) <= 1 and all(r["cancelled"] for r in fresh)


async def test_metadata_input_data_output_and_history(
    client: AsyncUpstream, upstream: Upstream,
) -> None:
    chat = modelriver_chat(client=client, data_output=True, extra_inputs=("workflow", "metadata"))
    history = [{"role": "user", "content": "earlier question"},
               {"role": "assistant", "content": "earlier answer"}]
    outputs = [o async for o in chat("what now?", history, "demo-structured",
                                     '{"scripted": {"tokens_per_second": 0}}')]
    messages, data = outputs[-1]
    if upstream.realm:  # Realm answers text: the JSON is the answer, and there is no data
        assert all(d is None for _, d in outputs)
        data = json.loads(answer(messages))
    else:
        assert data["reply"] == answer(messages)
        partial = [o for o in outputs if o[1] is None]
        assert partial and all(d == data for _, d in outputs[len(partial):])  # data once final
    assert data["reply"].startswith('You said: "what now?"')  # the last user message, not history

    with pytest.raises(gr.Error, match="not valid JSON"):
        await anext(chat("hi", [], "demo-chat", "{not json"))
    with pytest.raises(gr.Error, match="must be a JSON object"):
        await anext(chat("hi", [], "demo-chat", "[1, 2]"))
    with pytest.raises(gr.Error, match="No workflow"):
        await anext(chat("hi", [], None, ""))


async def test_a_lone_surrogate_is_a_clear_gradio_error_and_sends_nothing(
    client: AsyncUpstream, upstream: Upstream,
) -> None:
    before = len(upstream.gateway.requests())
    chat = modelriver_chat(workflow="demo-chat", client=client)
    with pytest.raises(gr.Error, match="message holds a character that cannot be sent"):
        await anext(chat("hi \ud800", []))
    history = [{"role": "user", "content": "earlier \udfff"}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(gr.Error, match=r"messages\[0\]\.content holds a character"):
        await anext(chat("fine", history))
    with pytest.raises(gr.Error, match=r"metadata\.note holds a character"):
        await anext(modelriver_chat(workflow="demo-chat", client=client, metadata={"note": "\ud800"})("hi", []))
    assert len(upstream.gateway.requests()) == before


async def test_webhooks_are_modelriver_only_a_clear_error_on_realm(
    client: AsyncUpstream, upstream: Upstream,
) -> None:
    chat = modelriver_chat(workflow="demo-events", client=client, events=["webhook_received"],
                           webhook_url="http://127.0.0.1:9/modelriver/webhook")
    gen = chat("open a ticket", [])
    if upstream.realm:
        with pytest.raises(gr.Error, match="Realm cannot run event-driven requests"):
            await anext(gen)
        return
    # ModelRiver takes it: the request starts, waiting for the webhook's callback. The first view
    # may come before the request exists (its creation took longer than the first view's grace,
    # on a loaded machine): the request shows in the next one.
    async with asyncio.timeout(20):
        for _ in range(3):
            messages = await anext(gen)
            if any("request `" in str(m.content) for m in messages):
                break
    assert any("request `" in str(m.content) for m in messages), messages
    await gen.aclose()


async def _drain(gen: AsyncIterator[Any]) -> None:
    async for _ in gen:
        pass


async def test_upstream_down_gives_a_clear_error(upstream: Upstream) -> None:
    nowhere = free_port()
    client: AsyncUpstream
    if upstream.realm:
        client = RealmUpstream(f"ws://127.0.0.1:{nowhere}", api_key=REALM_KEY, timeout=5)
    else:
        client = AsyncModelRiver(api_key="mr_x", api_base=f"http://127.0.0.1:{nowhere}",
                                 max_retries=0)
    try:
        chat = modelriver_chat(workflow="demo-chat", client=client)
        gen = chat("anyone there?", [])
        # The first view (steps only) may come first when the refusal takes longer than its grace.
        with pytest.raises(gr.Error, match=rf"Cannot reach the upstream at .*:{nowhere}"):
            await asyncio.wait_for(_drain(gen), 20)
    finally:
        await client.aclose()


async def test_the_default_upstream_comes_from_the_environment(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, channel_id_of: Callable[..., str],
) -> None:
    for name, value in upstream.env().items():
        monkeypatch.setenv(name, value)
    if not upstream.realm:
        monkeypatch.delenv("MODELRIVER_UPSTREAM", raising=False)
    chat = modelriver_chat(workflow="demo-chat")  # no client: upstream_from_env() on first use
    prompt = f"which upstream answers, {upstream.name}?"
    outputs = [o async for o in chat(prompt, [])]
    assert answer(outputs[-1]).startswith(f'You said: "{prompt}"')
    channel_id = channel_id_of([{"content": m.content} for m in outputs[-1]])
    log = await asyncio.to_thread(upstream.log, channel_id, prompt)  # the upstream's own gateway
    assert log["status"] == "success"
