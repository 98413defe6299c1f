"""``modelriver_chat``'s function called directly (no Gradio server) on the real gateway.

Both ways Gradio can stop a generator reach the gateway as a cancel: closing it at a ``yield``
(``aclose()``, what Gradio's ``/cancel`` does) and cancelling the task that awaits it (what its
stop button does mid-await). Also: per-message metadata, ``data_output`` pairs, history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr
import pytest

from gradio_modelriver import modelriver_chat
from modelriver import AsyncModelRiver
from support import Gateway

SLOW = {"scripted": {"tokens_per_second": 5}}


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[AsyncModelRiver]:
    async with AsyncModelRiver(api_key=gateway.api_key, api_base=gateway.url) as client:
        yield client


def answer(messages: list[gr.ChatMessage]) -> str:
    return "".join(str(m.content) for m in messages if not m.metadata)


async def cancelled_in_log(gateway: Gateway, channel_id: str) -> dict[str, Any]:
    """Poll the gateway's log (another process) until it shows the cancel; bounded."""
    async with asyncio.timeout(15):
        while True:
            log = await asyncio.to_thread(gateway.request_log, channel_id)
            if log["status"] == "cancelled":
                return log
            await asyncio.sleep(0.05)


async def test_closing_the_generator_cancels_the_request(
    client: AsyncModelRiver, gateway: Gateway, channel_id_of: Callable[..., str],
) -> None:
    chat = modelriver_chat(workflow="demo-chat", client=client, metadata=SLOW)
    gen = chat("tell me a long story", [])
    async for messages in gen:
        if len(answer(messages)) > 10:
            break
    channel_id = channel_id_of([{"content": m.content} for m in messages])
    await gen.aclose()  # what Gradio's /cancel does to a generator parked at a yield
    log = await cancelled_in_log(gateway, channel_id)
    assert log["cancelled"] is True and log["tokens"] < 20


async def test_cancelling_the_task_cancels_the_request(
    client: AsyncModelRiver, gateway: Gateway, channel_id_of: Callable[..., str],
) -> None:
    chat = modelriver_chat(workflow="demo-chat", client=client, metadata=SLOW)
    seen: list[list[gr.ChatMessage]] = []
    started = asyncio.Event()

    async def consume() -> None:
        async for messages in chat("tell me another long story", []):
            seen.append(messages)
            if len(answer(messages)) > 10:
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 15)
    task.cancel()  # what Gradio's stop does to the task awaiting the next token
    with pytest.raises(asyncio.CancelledError):
        await task
    channel_id = channel_id_of([{"content": m.content} for m in seen[-1]])
    log = await cancelled_in_log(gateway, channel_id)
    assert log["cancelled"] is True


async def test_stop_while_the_request_is_being_created_cancels_it_once_created(
    client: AsyncModelRiver, gateway: Gateway,
) -> None:
    before = {r["channel_id"] for r in await asyncio.to_thread(gateway.requests)}
    chat = modelriver_chat(workflow="demo-chat", client=client, metadata=SLOW)
    gen = chat("stop me before I start", [])
    await anext(gen)  # the first view is yielded before the request is created
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

    log = await new_request()
    assert log["cancelled"] is True and log["tokens"] < 20


async def test_metadata_input_data_output_and_history(client: AsyncModelRiver) -> None:
    chat = modelriver_chat(client=client, data_output=True, extra_inputs=("workflow", "metadata"))
    history = [{"role": "user", "content": "earlier question"},
               {"role": "assistant", "content": "earlier answer"}]
    outputs = [o async for o in chat("what now?", history, "demo-structured",
                                     '{"scripted": {"tokens_per_second": 0}}')]
    messages, data = outputs[-1]
    assert data["reply"] == answer(messages)
    assert data["reply"].startswith('You said: "what now?"')  # the last user message, not history
    partial = [o for o in outputs if o[1] is None]
    assert partial and all(d == data for _, d in outputs[len(partial):])  # data once final

    with pytest.raises(gr.Error, match="not valid JSON"):
        await anext(chat("hi", [], "demo-chat", "{not json"))
    with pytest.raises(gr.Error, match="must be a JSON object"):
        await anext(chat("hi", [], "demo-chat", "[1, 2]"))
    with pytest.raises(gr.Error, match="No workflow"):
        await anext(chat("hi", [], None, ""))
