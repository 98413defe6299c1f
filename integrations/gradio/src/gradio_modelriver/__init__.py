"""Gradio chat backends that stream ModelRiver answers: ``modelriver_chat`` and ``chat_interface``.

The 30-second version (a running ``modelriver dev`` gateway, ``MODELRIVER_API_BASE`` and
``MODELRIVER_API_KEY`` set)::

    import gradio as gr
    from gradio_modelriver import modelriver_chat

    gr.ChatInterface(fn=modelriver_chat(workflow="demo-chat")).launch()

Or a ready UI with a workflow picker, examples, and the structured output beside the chat::

    from gradio_modelriver import chat_interface

    chat_interface(additional_outputs=True).launch()   # gradio_client: api_name="/chat"

The function's arguments after ``history`` are your ``additional_inputs``, named by
``extra_inputs`` (default: the workflow, when none is fixed; ``"metadata"`` takes per-message
request metadata as a mapping or JSON text).

What the chat function does, per message:

- sends the conversation (``history=True``) or the message alone to the workflow;
- yields the assistant's turn as it grows, token by token: a thought "Workflow `name`" with one
  nested thought per workflow step (``status`` pending, then done, with its ``duration``), one
  per failover, one thought per tool call, then the answer;
- structured output (the ``chatbot_response`` schema of ``demo-structured``): its ``reply`` is the
  chat text, the rest a JSON block (``structured="json"``) or a Markdown card
  (``structured="markdown"``); ``additional_outputs=True`` puts it in a ``gr.JSON`` too;
- event-driven workflows (``demo-events``): the "Waiting for backend callback..." step stays
  pending until ``completed``, then the enriched data shows; ``WebhookReceiver`` is the backend
  half (a route on Gradio's own app: verify, enrich, call back);
- errors (gateway down, bad key, provider failure, empty or oversized message) raise
  ``gr.Error`` with a clear message; the app keeps serving;
- Gradio's stop button cancels the generator, and the request is cancelled at the gateway too
  (``settle_chat_interface(interface)``, which ``chat_interface`` calls, stops the spinners
  and, after an error, gives the textbox back: Gradio 6 would leave it disabled).

One upstream client per returned function (created on first use by
``modelriver.upstream.upstream_from_env()``, or pass ``client=`` any ``AsyncUpstream``) serves
every user; each message is its own request, so concurrent users never share state. With
``MODELRIVER_UPSTREAM=realm`` (``REALM_URL``, ``REALM_API_KEY``) the answers come from a Realm
server instead; webhooks and callbacks stay ModelRiver-only. Log messages go to the
``gradio_modelriver`` logger.
"""

from gradio_modelriver._chat import DEFAULT_MAX_MESSAGE_BYTES, modelriver_chat
from gradio_modelriver._interface import DEFAULT_WORKFLOWS, chat_interface, settle_chat_interface
from gradio_modelriver._version import __version__
from gradio_modelriver._view import ChatView, markdown_card, partial_json_string
from gradio_modelriver._webhooks import WebhookReceiver

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_WORKFLOWS",
    "ChatView",
    "WebhookReceiver",
    "__version__",
    "chat_interface",
    "markdown_card",
    "modelriver_chat",
    "partial_json_string",
    "settle_chat_interface",
]
