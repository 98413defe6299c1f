"""The two Gradio apps of ``gradio_ttft.py``, served by one process on two ports.

    python benchmarks/_gradio_apps.py <ours port> <peer port>    # MODELRIVER_API_BASE / _API_KEY

* **ours**: ``gradio_modelriver.chat_interface(workflow="demo-chat")``, defaults otherwise (the
  workflow steps as a thought, then the answer).
* **peer**: what a competent user writes without this library: a plain ``gr.ChatInterface``
  whose async generator streams the answer with core's ``AsyncModelRiver`` and yields the text
  so far at each token.

``BENCH_SCRIPTED`` (JSON) is every request's ``metadata.scripted``. Prints ``apps ready`` once both
listen.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from gradio_modelriver import chat_interface
from modelriver import AsyncModelRiver, Token

SCRIPTED = json.loads(os.environ.get("BENCH_SCRIPTED") or "{}")


def peer_interface() -> gr.ChatInterface:
    client = AsyncModelRiver(os.environ["MODELRIVER_API_KEY"], api_base=os.environ["MODELRIVER_API_BASE"])

    async def chat(message: str, history: list[dict[str, Any]]) -> AsyncIterator[str]:
        messages = [{"role": m["role"], "content": m["content"]} for m in history
                    if isinstance(m.get("content"), str)]
        messages.append({"role": "user", "content": message})
        async with await client.stream("demo-chat", messages, metadata={"scripted": SCRIPTED}) as stream:
            text = ""
            async for event in stream:
                if isinstance(event, Token):
                    text += event.data
                    yield text

    return gr.ChatInterface(chat, title="Chat", api_name="chat")


def main() -> None:
    ours_port, peer_port = int(sys.argv[1]), int(sys.argv[2])
    ours = chat_interface(workflow="demo-chat", metadata={"scripted": SCRIPTED}, title="Chat", examples=None)
    peer = peer_interface()
    for app, port in ((ours, ours_port), (peer, peer_port)):
        app.queue(default_concurrency_limit=64)
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    print("apps ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
