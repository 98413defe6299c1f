"""``chat_interface()``: a ready ``gr.ChatInterface`` around ``modelriver_chat()``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import gradio as gr
from gradio.context import Context
from gradio.events import Dependency

from gradio_modelriver._chat import DEFAULT_MAX_MESSAGE_BYTES, Metadata, WebhookURL, modelriver_chat
from gradio_modelriver._view import Structured
from modelriver.upstream import AsyncUpstream

__all__ = ["DEFAULT_EXAMPLES", "DEFAULT_WORKFLOWS", "chat_interface", "settle_chat_interface"]

DEFAULT_WORKFLOWS = (
    "demo-chat", "demo-structured", "demo-tools", "demo-events", "demo-failover", "demo-error",
)
"""The embedded gateway's built-in workflows, offered when no ``workflow`` is fixed."""

DEFAULT_EXAMPLES = (
    "Hello! What can you do?",
    "Explain token streaming in two sentences.",
    "Plan a release checklist for a small web app.",
)


def chat_interface(
    *,
    workflow: str | None = None,
    workflows: Sequence[str] = DEFAULT_WORKFLOWS,
    client: AsyncUpstream | None = None,
    show_steps: bool = True,
    structured: Structured = "json",
    history: bool = True,
    additional_outputs: bool = False,
    metadata_input: bool = False,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    metadata: Metadata = None,
    events: Sequence[str] | None = None,
    webhook_url: WebhookURL = None,
    title: str | None = "ModelRiver chat",
    description: str | None = None,
    examples: Sequence[str] | None = DEFAULT_EXAMPLES,
    concurrency_limit: int | None = 64,
    api_name: str = "chat",
    allow_remote_media: bool = False,
    **interface_options: Any,
) -> gr.Blocks:
    """Build a ready chat UI streaming ModelRiver answers.

    Args:
        workflow: the workflow to call; None shows a "Workflow" dropdown of ``workflows``.
        workflows: the dropdown's choices (the first is selected).
        client: any ``AsyncUpstream`` (default ``upstream_from_env()``), as for ``modelriver_chat``.
        show_steps: as for ``modelriver_chat``.
        structured: as for ``modelriver_chat``.
        history: as for ``modelriver_chat``.
        max_message_bytes: as for ``modelriver_chat``.
        metadata: as for ``modelriver_chat``.
        events: as for ``modelriver_chat``.
        webhook_url: as for ``modelriver_chat``.
        allow_remote_media: as for ``modelriver_chat``.
        additional_outputs: also show the structured output (or enriched data) in a
            ``gr.JSON`` beside the chat.
        metadata_input: add a "Request metadata (JSON)" box to the additional inputs, merged
            over ``metadata`` per message (e.g. the dev gateway's ``scripted`` overrides).
        title: shown by the ``ChatInterface``.
        description: shown by the ``ChatInterface``.
        examples: shown by the ``ChatInterface``.
        concurrency_limit: chats running at once in this process (None: no limit). Each one
            mostly waits on the network, so the default is far above Gradio's 1.
        api_name: the API endpoint's name (``/chat``), for ``gradio_client``.
        **interface_options: passed on to ``gr.ChatInterface`` (it rejects unknown names).

    Returns:
        The ``gr.ChatInterface``; with ``additional_outputs``, a ``gr.Blocks`` holding it
        (``.chat_interface``) and the ``gr.JSON`` (``.structured_output``) side by side.
    """
    if not workflow and not workflows:
        raise ValueError("give a workflow, or workflows to choose from")
    names: list[str] = []
    inputs: list[gr.components.Component] = []
    if workflow is None:
        names.append("workflow")
        inputs.append(gr.Dropdown(list(workflows), value=workflows[0], label="Workflow",
                                  render=False))
    if metadata_input:
        names.append("metadata")
        shown = json.dumps(metadata) if isinstance(metadata, Mapping) else ""
        inputs.append(gr.Textbox(shown, label="Request metadata (JSON)", lines=2, render=False,
                                 placeholder='{"scripted": {"tokens_per_second": 10}}'))
    fn = modelriver_chat(
        workflow=workflow, client=client, show_steps=show_steps, structured=structured,
        history=history, data_output=additional_outputs, max_message_bytes=max_message_bytes,
        metadata=metadata, events=events, webhook_url=webhook_url, extra_inputs=names,
        allow_remote_media=allow_remote_media,
    )
    example_rows: list[Any] | None = list(examples) if examples else None
    if example_rows and inputs:
        example_rows = [[text, *(None for _ in inputs)] for text in example_rows]
    options: dict[str, Any] = {
        "title": title, "description": description, "examples": example_rows,
        "concurrency_limit": concurrency_limit, "api_name": api_name,
        "additional_inputs": inputs or None, "fill_height": True,
        **interface_options,
    }
    if not additional_outputs:
        interface = gr.ChatInterface(fn, **options)
        settle_chat_interface(interface)
        return interface
    with gr.Blocks(title=title or "ModelRiver chat", fill_height=True) as blocks:
        output = gr.JSON(label="Structured output", render=False)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                interface = gr.ChatInterface(fn, additional_outputs=[output], **options)
                settle_chat_interface(interface)
            with gr.Column(scale=2):
                output.render()  # type: ignore[no-untyped-call]
    blocks.chat_interface = interface
    blocks.structured_output = output
    return blocks  # type: ignore[no-any-return]


def settle_chat_interface(interface: gr.ChatInterface) -> None:
    """Leave the chat usable and its thoughts settled after a stop or an error.

    - Stop: a cancelled generator cannot yield its last state, so the thoughts still pending
      (the workflow's spinner) are turned to done, with ``log="stopped"``.
    - Error: Gradio 6 runs only ``.failure()`` listeners after an event raised (its
      ``ChatInterface`` re-enables the textbox in a ``.then()``), so after a ``gr.Error`` the
      textbox would stay disabled behind a stop button. This adds the ``.failure()`` listener
      that gives the textbox back, settles the thoughts (``log="failed"``) and keeps the
      conversation state in step with what is shown.

    ``chat_interface`` calls it; call it on a ``gr.ChatInterface(fn=modelriver_chat(...))`` you
    build yourself. Safe to call once per interface.
    """
    chatbot, textbox, state = interface.chatbot, interface.textbox, interface.chatbot_state
    submit_btn = textbox.submit_btn

    def stopped(history: list[Any] | None) -> list[Any]:
        return _settle(history, "stopped")

    def failed(history: list[Any] | None) -> tuple[Any, list[Any], list[Any]]:
        settled = _settle(history, "failed")
        return gr.update(interactive=True, submit_btn=submit_btn, stop_btn=False), settled, settled

    def listen() -> None:
        textbox.stop(stopped, [chatbot], [chatbot], queue=False, api_visibility="private")
        root = Context.root_block or interface  # nested: the events live on the outer Blocks
        for fn_id, block_fn in list(root.fns.items()):
            if getattr(block_fn.fn, "__name__", None) == "_submit_fn":  # ChatInterface's runs
                Dependency(None, {}, fn_id, block_fn.fn).failure(
                    failed, [chatbot], [textbox, chatbot, state], queue=False,
                    api_visibility="private")

    if Context.root_block is not None:  # inside a gr.Blocks (re-entering would render it twice)
        listen()
    else:
        with interface:
            listen()


def _settle(history: list[Any] | None, log: str) -> list[Any]:
    settled = []
    for message in history or []:
        meta = message.get("metadata") if isinstance(message, Mapping) else None
        if isinstance(meta, Mapping) and meta.get("status") == "pending":
            message = {**message, "metadata": {**meta, "status": "done", "log": log}}
        settled.append(message)
    return settled
