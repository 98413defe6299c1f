"""A Gradio app tested with ``modelriver.testing``'s gateway: the chat function called directly,
and the app on a real Gradio server through ``gradio_client``, whose ``/chat`` endpoint names its
parameters (``message``, ``workflow``, ``metadata``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pytest
from gradio_client import Client

from gradio_modelriver import chat_interface, modelriver_chat
from modelriver.testing import EmbeddedGateway
from support import free_port


def answer(messages: list[Any]) -> str:
    return "".join(str(m.content if isinstance(m, gr.ChatMessage) else m["content"]) for m in messages
                   if not (m.metadata if isinstance(m, gr.ChatMessage) else m.get("metadata")))


async def test_the_chat_fn_streams_the_scripted_answer(modelriver_gateway: EmbeddedGateway) -> None:
    modelriver_gateway.script("support", reply="Scripted answer to {prompt}", tokens_per_second=100)
    chat = modelriver_chat(workflow="support")  # the upstream comes from the fixture's environment
    outputs = [o async for o in chat("my question", [])]
    assert answer(outputs[-1]) == "Scripted answer to my question"
    assert len({answer(o) for o in outputs}) > 3  # streamed, not one final blob
    [log] = modelriver_gateway.requests()
    assert (log["workflow"], log["prompt"], log["status"]) == ("support", "my question", "success")


async def test_a_failing_provider_is_a_gradio_error(modelriver_gateway: EmbeddedGateway) -> None:
    modelriver_gateway.fail("support", error="the model is down")
    chat = modelriver_chat(workflow="support")
    with pytest.raises(gr.Error, match="the model is down"):
        [o async for o in chat("hi", [])]


@pytest.fixture
def app_client(modelriver_gateway: EmbeddedGateway) -> Iterator[Client]:
    """``chat_interface`` with its workflow dropdown and metadata box, on a real Gradio server."""
    demo = chat_interface(metadata_input=True, workflows=("demo-chat", "support"))
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_the_api_names_its_endpoint_and_parameters(modelriver_gateway: EmbeddedGateway, app_client: Client) -> None:
    api = app_client.view_api(return_format="dict", print_info=False)
    chat = api["named_endpoints"]["/chat"]
    assert [p["parameter_name"] for p in chat["parameters"]] == ["message", "workflow", "metadata"]
    modelriver_gateway.script("support", reply="named and answered")
    result = app_client.predict(message="hello", workflow="support",
                                metadata=json.dumps({"ticket": "T-1"}), api_name="/chat")
    assert answer(result) == "named and answered"
    [log] = modelriver_gateway.requests()
    assert (log["workflow"], log["prompt"]) == ("support", "hello")
