"""``modelriver_chat()``: the async generator function that ``gr.ChatInterface`` calls."""

from __future__ import annotations

import asyncio
import contextlib
import html
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeAlias

import gradio as gr

from gradio_modelriver._view import STRUCTURED_ID_PREFIX, ChatView, Structured
from modelriver.events import StreamEvent
from modelriver.exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    InvalidInputError,
    JoinError,
    ModelRiverError,
    RateLimitError,
    RequestTimeoutError,
)
from modelriver.text import unencodable_path
from modelriver.types import AIResponse, AsyncRequest
from modelriver.upstream import AsyncUpstream, AsyncUpstreamStream, upstream_from_env

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "ChatFn", "modelriver_chat"]

logger = logging.getLogger("gradio_modelriver")

DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024
"""The largest message (UTF-8 bytes) a user may send unless ``max_message_bytes`` says otherwise."""

ChatFn: TypeAlias = Callable[..., AsyncIterator[Any]]
"""What ``modelriver_chat`` returns: ``fn(message, history[, workflow])``, an async generator."""

Metadata: TypeAlias = Mapping[str, Any] | Callable[[], Mapping[str, Any] | None] | None
WebhookURL: TypeAlias = str | Callable[[], str | None] | None

_ERROR_TITLE = "ModelRiver"
_FIRST_VIEW_GRACE = 0.1  # seconds the first view (the steps' thought) waits for the first news
_STREAM_EVENTS = ("token", "status", "tool_call", "step", "response", "error")


def modelriver_chat(
    *,
    workflow: str | None = None,
    client: AsyncUpstream | None = None,
    show_steps: bool = True,
    structured: Structured = "json",
    history: bool = True,
    data_output: bool = False,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    metadata: Metadata = None,
    events: Sequence[str] | None = None,
    webhook_url: WebhookURL = None,
    request_timeout: float | None = 300.0,
    extra_inputs: Sequence[str] | None = None,
    allow_remote_media: bool = False,
) -> ChatFn:
    """Build the chat function for ``gr.ChatInterface(fn=...)``.

    The function sends the conversation to ``workflow`` and yields the assistant's turn as it
    grows: the workflow-steps thought, tool calls, the answer token by token and the
    structured output. Each call is its own request; the only state shared between calls is
    the client, created on first use when not given (one per returned function).

    Args:
        workflow: the workflow to call. None: the function takes the workflow as a third
            argument (e.g. from a ``gr.Dropdown`` in ``additional_inputs``).
        client: the upstream to share: any ``modelriver.upstream.AsyncUpstream`` (an
            ``AsyncModelRiver``, a ``RealmUpstream``...); default ``upstream_from_env()``,
            created on first use: ``AsyncModelRiver`` (``MODELRIVER_API_KEY`` /
            ``MODELRIVER_API_BASE``), or with ``MODELRIVER_UPSTREAM=realm`` a ``RealmUpstream``
            (``REALM_URL`` / ``REALM_API_KEY``).
        show_steps: show the workflow steps (and failovers) as a thought with one nested
            thought per step.
        structured: render structured output as a JSON block (``"json"``), a Markdown card
            (``"markdown"``), or not at all (``None``: the raw answer text). A ``reply``
            field is shown as the chat text either way (unless None).
        allow_remote_media: show images of the answer's Markdown as images. Default False:
            the answer is untrusted (a prompt injection could make the browser fetch an image
            URL carrying the chat), so each image shows as a link (alt text and URL); raw HTML
            is always shown as text, and error messages are shown as typed.
        history: send the earlier turns along; False sends only the new message.
        data_output: yield ``(messages, data)`` pairs instead of messages, for
            ``gr.ChatInterface(additional_outputs=[gr.JSON()])``.
        max_message_bytes: the largest message accepted, in UTF-8 bytes.
        metadata: request ``metadata``: a mapping, or a callable giving one per request.
        events: event names for event-driven workflows, e.g. ``["webhook_received"]``
            (ModelRiver only: an upstream without webhooks refuses them with a clear error).
        webhook_url: where the gateway posts webhooks: a URL, or a callable giving one.
        request_timeout: seconds to wait for the final answer (None: forever).
        extra_inputs: what the arguments after ``history`` are, in order (the values of
            ``additional_inputs``): ``"workflow"`` (a name) and ``"metadata"`` (a mapping or a
            JSON string, merged over ``metadata``). Default: ``("workflow",)`` when
            ``workflow`` is None, else nothing.

    Returns:
        An async generator function ``fn(message, history, *extra_inputs)``.

    Raises:
        ValueError: a bad option (``structured``, ``max_message_bytes``, ``extra_inputs``).
    """
    if structured not in ("json", "markdown", None):
        raise ValueError(f"structured must be 'json', 'markdown' or None, not {structured!r}")
    if max_message_bytes <= 0:
        raise ValueError("max_message_bytes must be positive")
    names = tuple(extra_inputs) if extra_inputs is not None else (
        ("workflow",) if workflow is None else ())
    unknown = set(names) - {"workflow", "metadata"}
    if unknown:
        raise ValueError(f"extra_inputs may name 'workflow' and 'metadata', not {sorted(unknown)}")
    holder: list[AsyncUpstream] = [client] if client is not None else []
    cancels: set[asyncio.Task[Any]] = set()

    def get_client() -> AsyncUpstream:
        # No await between the check and the append: concurrent first calls share one client.
        if not holder:
            holder.append(upstream_from_env())
        return holder[0]

    async def chat(message: Any, history_: list[Any] | None, *args: Any) -> AsyncIterator[Any]:
        """Stream a ModelRiver answer (gradio-modelriver)."""
        extra = dict(zip(names, args, strict=False))
        name = workflow if workflow is not None else extra.get("workflow")
        if not name:
            raise gr.Error("No workflow selected.", title=_ERROR_TITLE)
        text = _message_text(message)
        _validate(text, max_message_bytes)
        request_metadata = _merge(_resolve(metadata), _parse_metadata(extra.get("metadata")))
        messages = [*(_history_messages(history_ or []) if history else []),
                    {"role": "user", "content": text}]
        _check_text({"messages": messages, "metadata": request_metadata})
        view = ChatView(name, show_steps=show_steps, structured=structured,
                        allow_remote_media=allow_remote_media)

        def out() -> Any:
            rendered = view.messages()
            return (rendered, view.data) if data_output else rendered

        api = get_client()

        def cancel_upstream(channel_id: str) -> None:
            logger.info("request %s stopped: cancelling it upstream", channel_id)
            task = asyncio.get_running_loop().create_task(_cancel(api, channel_id))
            cancels.add(task)
            task.add_done_callback(cancels.discard)

        # The first view (the steps' thought) waits for the request's first news, up to
        # _FIRST_VIEW_GRACE: sent at once, a view without the answer lands just before a fast
        # model's first token, and every client handles it first (gradio_client then looks again
        # only 50 ms later; a browser redraws the chat once more).
        view_due = asyncio.get_running_loop().time() + _FIRST_VIEW_GRACE
        yielded = False
        creating = asyncio.ensure_future(_create(
            api, name, messages, metadata=request_metadata, events=events,
            webhook_url=_resolve(webhook_url)))
        try:
            await asyncio.wait({creating}, timeout=_FIRST_VIEW_GRACE)
            if not creating.done():
                yielded = True
                yield out()
            request = await asyncio.shield(creating)
        except (asyncio.CancelledError, GeneratorExit):
            # Stopped while the request was being created: cancel it once it exists.
            def created(task: asyncio.Future[AsyncRequest]) -> None:
                if not task.cancelled() and task.exception() is None:
                    cancel_upstream(task.result().channel_id)

            creating.add_done_callback(created)
            raise
        logger.debug("request %s started on %s", request.channel_id, name)
        view.channel_id = request.channel_id
        stream = await api.connect(request, request_timeout=request_timeout, coalesce=True)
        # Events fold into the view as they come (callbacks); the generator yields the view's
        # latest state whenever Gradio asks for the next one. Token by token while Gradio keeps
        # up; when it falls behind, what arrived meanwhile goes out in one yield (and the
        # gateway coalesces the tokens queued for our socket), so a slow UI never lags further.
        changed = asyncio.Event()
        versions = [0, 0]  # [view changes, view changes already yielded]

        def on_event(event: StreamEvent) -> None:
            if view.apply(event):
                versions[0] += 1
                changed.set()

        for name_ in _STREAM_EVENTS:
            stream.on(name_, on_event)
        ended = asyncio.ensure_future(_drain(stream))
        ended.add_done_callback(lambda task: task.cancelled() or task.exception())
        ended.add_done_callback(lambda _: changed.set())
        try:
            while True:
                if yielded:
                    await changed.wait()
                else:  # the first view: with the first news, or once due
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, view_due - asyncio.get_running_loop().time())):
                            await changed.wait()
                    yielded = True
                changed.clear()
                if ended.done():
                    break
                versions[1] = versions[0]
                yield out()
            try:
                ended.result()
            except ModelRiverError as exc:
                view.fail(_stream_error(exc))
                yield out()
                raise gr.Error(html.escape(view.error or str(exc)), title=_ERROR_TITLE) from exc
            if stream.response is None and view.error is None:
                view.fail("The stream ended without an answer.")
            if view.error is not None:
                yield out()
                logger.info("request %s failed: %s", request.channel_id, view.error)
                raise gr.Error(html.escape(view.error), title=_ERROR_TITLE)  # Gradio renders HTML
            if versions[1] != versions[0]:  # the last events came with the end: show them
                yield out()
        finally:
            # Stopped (Gradio cancelled the task or closed the generator) or failed locally:
            # the request still runs upstream, so cancel it there too.
            ended.cancel()
            await asyncio.shield(stream.close())
            if not view.done:
                cancel_upstream(request.channel_id)

    chat.__name__ = "chat"  # gr.ChatInterface(fn=...) then serves it as "/chat"
    # Named parameters for Gradio's API (``workflow``, ``metadata``, not ``param_2``).
    chat.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("message", "history", *names)])
    return chat


async def _drain(stream: AsyncUpstreamStream) -> AIResponse | None:
    """Run the stream to its end (its callbacks fold the events into the view)."""
    async for _ in stream:
        pass
    return stream.response


async def _create(
    api: AsyncUpstream,
    workflow: str,
    messages: list[dict[str, str]],
    *,
    metadata: Mapping[str, Any] | None,
    events: Sequence[str] | None,
    webhook_url: str | None,
) -> AsyncRequest:
    try:
        return await api.create_request(workflow, messages, metadata=metadata, events=events,
                                        webhook_url=webhook_url)
    except AuthenticationError as exc:
        raise gr.Error(f"The upstream at {api.api_base} refused the API key: check "
                       "MODELRIVER_API_KEY (REALM_API_KEY for Realm).", title=_ERROR_TITLE) from exc
    except RateLimitError as exc:
        wait = f" Try again in {exc.retry_after:.0f} s." if exc.retry_after else ""
        raise gr.Error(f"Too many requests.{wait}", title=_ERROR_TITLE) from exc
    except APITimeoutError as exc:
        raise gr.Error(f"The upstream at {api.api_base} did not answer in time.",
                       title=_ERROR_TITLE) from exc
    except APIConnectionError as exc:
        logger.warning("upstream unreachable at %s: %s", api.api_base, exc)
        raise gr.Error(f"Cannot reach the upstream at {api.api_base}. Is it running?",
                       title=_ERROR_TITLE) from exc
    except APIError as exc:
        raise gr.Error(f"The upstream refused the request: {html.escape(exc.message)} (HTTP {exc.status})",
                       title=_ERROR_TITLE) from exc
    except InvalidInputError as exc:
        raise gr.Error(f"The request cannot be sent: {exc}", title=_ERROR_TITLE) from exc
    except ModelRiverError as exc:  # e.g. a Realm server's INVALID_PARAMS (an unknown model)
        raise gr.Error(f"The upstream refused the request: {html.escape(str(exc))}",
                       title=_ERROR_TITLE) from exc


async def _cancel(api: AsyncUpstream, channel_id: str) -> None:
    try:
        await api.cancel(channel_id)
    except ModelRiverError as exc:
        logger.warning("cancel of %s failed: %s", channel_id, exc)


def _stream_error(exc: ModelRiverError) -> str:
    if isinstance(exc, RequestTimeoutError):
        return "The upstream did not finish the answer in time."
    if isinstance(exc, JoinError):
        return f"The upstream refused the stream ({exc.reason})."
    return f"The stream broke: {exc}"


def _resolve(value: Any) -> Any:
    return value() if callable(value) else value


def _parse_metadata(value: Any) -> Mapping[str, Any] | None:
    """Per-message metadata from an input: a mapping, a JSON object string, or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise gr.Error(f"The request metadata is not valid JSON: {exc}",
                           title="Bad metadata") from exc
    if not isinstance(value, Mapping):
        raise gr.Error("The request metadata must be a JSON object.", title="Bad metadata")
    return value


def _merge(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> Any:
    """``override`` over ``base``, one level deep (``scripted`` settings merge key by key)."""
    if not override:
        return base
    merged = dict(base or {})
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _check_text(request: Mapping[str, Any]) -> None:
    """A clear error for text no upstream can be sent (a lone surrogate, e.g. from an API client)."""
    where = unencodable_path(request, "request")
    if where is not None:
        raise gr.Error(f"The {where.removeprefix('request.')} holds a character that cannot be sent "
                       "(a lone surrogate such as \\ud800): please remove it.", title="Invalid text")


def _validate(text: str, limit: int) -> None:
    if not text.strip():
        raise gr.Error("Please type a message first: it is empty.", title="Empty message")
    _check_text({"message": text})
    size = len(text.encode("utf-8"))
    if size > limit:
        raise gr.Error(
            f"Your message is too long: {size:,} bytes, the limit is {limit:,} bytes "
            f"({limit // 1024} KB). Please shorten it.",
            title="Message too long",
        )


def _message_text(message: Any) -> str:
    """The text of a Textbox (``str``) or MultimodalTextbox (``{"text", "files"}``) value."""
    if message is None:
        return ""
    if isinstance(message, Mapping):
        return str(message.get("text") or "")
    return str(message)


def _history_messages(history: list[Any]) -> list[dict[str, str]]:
    """Earlier turns as ``[{role, content}]``: text only, thoughts and cards left out."""
    out: list[dict[str, str]] = []
    for item in history:
        role: Any
        content: Any
        meta: Any
        if isinstance(item, gr.ChatMessage):
            role, content, meta = item.role, item.content, item.metadata
        elif isinstance(item, Mapping):
            role, content, meta = item.get("role"), item.get("content"), item.get("metadata")
        else:
            continue
        if role not in ("user", "assistant", "system"):
            continue
        if isinstance(meta, Mapping) and (
            meta.get("title") or str(meta.get("id", "")).startswith(STRUCTURED_ID_PREFIX)
        ):
            continue
        text = _content_text(content)
        if not text:
            continue
        if out and out[-1]["role"] == role:  # one message per turn, as a model expects
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": str(role), "content": text})
    return out


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        if content.get("type", "text") == "text" and isinstance(content.get("text"), str):
            return str(content["text"])
        return ""
    if isinstance(content, list | tuple):
        return "".join(_content_text(part) for part in content)
    return ""
