"""``chat_interface()``: a ready ``gr.ChatInterface`` around ``modelriver_chat()``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from gradio_modelriver._chat import DEFAULT_MAX_MESSAGE_BYTES, Metadata, WebhookURL, modelriver_chat
from gradio_modelriver._view import Structured
from modelriver.api import AsyncModelRiver

__all__ = ["DEFAULT_EXAMPLES", "DEFAULT_WORKFLOWS", "chat_interface"]

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
    client: AsyncModelRiver | None = None,
    show_steps: bool = True,
    structured: Structured = "json",
    history: bool = True,
    additional_outputs: bool = False,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    metadata: Metadata = None,
    events: Sequence[str] | None = None,
    webhook_url: WebhookURL = None,
    title: str | None = "ModelRiver chat",
    description: str | None = None,
    examples: Sequence[str] | None = DEFAULT_EXAMPLES,
    concurrency_limit: int | None = 64,
    api_name: str = "chat",
    **interface_options: Any,
) -> gr.Blocks:
    """Build a ready chat UI streaming ModelRiver answers.

    Args:
        workflow: the workflow to call; None shows a "Workflow" dropdown of ``workflows``.
        workflows: the dropdown's choices (the first is selected).
        client, show_steps, structured, history, max_message_bytes, metadata, events,
            webhook_url: as for ``modelriver_chat``.
        additional_outputs: also show the structured output (or enriched data) in a
            ``gr.JSON`` beside the chat.
        title, description, examples: shown by the ``ChatInterface``.
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
    fn = modelriver_chat(
        workflow=workflow, client=client, show_steps=show_steps, structured=structured,
        history=history, data_output=additional_outputs, max_message_bytes=max_message_bytes,
        metadata=metadata, events=events, webhook_url=webhook_url,
    )
    inputs: list[gr.components.Component] = []
    example_rows: list[Any] | None = list(examples) if examples else None
    if workflow is None:
        inputs.append(gr.Dropdown(list(workflows), value=workflows[0], label="Workflow",
                                  render=False))
        if example_rows:
            example_rows = [[text, None] for text in example_rows]
    options: dict[str, Any] = {
        "title": title, "description": description, "examples": example_rows,
        "concurrency_limit": concurrency_limit, "api_name": api_name,
        "additional_inputs": inputs or None, "fill_height": True,
        **interface_options,
    }
    if not additional_outputs:
        return gr.ChatInterface(fn, **options)
    with gr.Blocks(title=title or "ModelRiver chat", fill_height=True) as blocks:
        output = gr.JSON(label="Structured output", render=False)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                interface = gr.ChatInterface(fn, additional_outputs=[output], **options)
            with gr.Column(scale=2):
                output.render()  # type: ignore[no-untyped-call]
    blocks.chat_interface = interface
    blocks.structured_output = output
    return blocks  # type: ignore[no-any-return]
