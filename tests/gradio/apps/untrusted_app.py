"""A ``gr.ChatInterface`` on ``modelriver_chat`` whose message names the workflow (tests only).

``"demo-tools: hello"`` runs ``demo-tools``. ``GRADIO_SERVER_PORT`` says where to listen;
``MODELRIVER_ALLOW_REMOTE_MEDIA=1`` passes ``allow_remote_media=True``.
"""

import os
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from gradio_modelriver import modelriver_chat, settle_chat_interface

options = {"allow_remote_media": True} if os.environ.get("MODELRIVER_ALLOW_REMOTE_MEDIA") == "1" else {}
chat = modelriver_chat(extra_inputs=["workflow"], **options)


async def routed(message: str, history: list[Any]) -> AsyncIterator[Any]:
    """Stream the answer of the workflow named before the message's first colon."""
    async for shown in chat(message, history, message.split(":", 1)[0].strip()):
        yield shown


demo = gr.ChatInterface(routed)
settle_chat_interface(demo)
demo.queue().launch(server_name="127.0.0.1", server_port=int(os.environ["GRADIO_SERVER_PORT"]))
