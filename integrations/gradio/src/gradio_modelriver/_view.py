"""What the chat shows for one request: stream events in, Gradio chat messages out (no I/O).

``ChatView.apply(event)`` folds a core ``StreamEvent`` into the view and says whether anything
visible changed; ``ChatView.messages()`` renders the assistant's turn as a list of
``gr.ChatMessage``: the workflow-steps thought (with one nested thought per step and per
failover), one thought per tool call, the answer, and the structured output.

Model and gateway text is untrusted: the answer and the Markdown card go through
``safe_markdown`` (no remote image unless ``allow_remote_media``, no raw HTML; links stay links),
names in thought titles are escaped or put in a code span no backtick can close.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import gradio as gr
from gradio.components.chatbot import MetadataDict

from modelriver.events import StreamEvent, ToolCall
from modelriver.markdown import SafeMarkdown, escape_markdown, safe_markdown
from modelriver.partial import parse_partial, prose_key
from modelriver.state import Failover, RequestState
from modelriver.steps import INITIAL_STEPS, STEP_ORDER
from modelriver.types import AIResponse, WorkflowStep

__all__ = ["STRUCTURED_ID_PREFIX", "ChatView", "Structured", "code_span", "markdown_card", "partial_json_string"]

Structured = Literal["json", "markdown"] | None

STRUCTURED_ID_PREFIX = "modelriver-structured"
"""``metadata.id`` prefix of the structured-output message; it is never sent back as history."""

_CONTEXT_KEYS = ("summary", "sentiment", "confidence", "topics", "action_items")
_BACKTICKS = re.compile("`+")
_CONTROL = re.compile("[\x00-\x1f]")


@dataclass(slots=True)
class _StepState:
    step: WorkflowStep
    since: float
    duration: float | None = None


@dataclass(slots=True)
class ChatView:
    """The assistant's turn for one request, rebuilt from the events seen so far.

    Args:
        workflow: the workflow's name (shown in the steps thought's title).
        show_steps: render the workflow steps and failovers as thoughts.
        structured: how to render structured output: a JSON block (``"json"``), a Markdown
            card (``"markdown"``), or not at all (``None``: the answer text as it came).
        clock: monotonic seconds, for the step durations (injected by tests).
        allow_remote_media: show images of the answer's Markdown as images (the browser fetches
            them). Default False: each image shows as a link (alt text and URL).

    The events fold into ``state`` (core's ``RequestState``: text, steps, notes, outcome); the
    view adds what only it shows: step durations on its clock, and the rendering.
    """

    workflow: str
    show_steps: bool = True
    structured: Structured = "json"
    clock: Callable[[], float] = time.monotonic
    allow_remote_media: bool = False
    state: RequestState = field(default_factory=RequestState)
    channel_id: str | None = None
    cancelled: bool = False
    _steps: dict[str, _StepState] = field(default_factory=dict)
    _started: float = 0.0
    _ended: float | None = None
    _uid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _safe: SafeMarkdown = field(default_factory=SafeMarkdown)

    def __post_init__(self) -> None:
        self._safe = SafeMarkdown(allow_remote_media=self.allow_remote_media)
        self._started = self.clock()
        self._steps = {s.id: _StepState(s, self._started) for s in INITIAL_STEPS}

    # --- state -----------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The raw answer streamed so far (restarted on failover), else what ``ai_generated`` carried."""
        state = self.state
        if state.part_count or state.intermediate is None:
            return state.text
        return state.intermediate.content or ""

    @property
    def response(self) -> AIResponse | None:
        """The terminal response, once it came."""
        return self.state.response

    @property
    def error(self) -> str | None:
        """Why the request failed (the stream's error, an error response, or ``fail``)."""
        return self.state.error

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [note for note in self.state.notes if isinstance(note, ToolCall)]

    @property
    def failovers(self) -> list[Failover]:
        return [note for note in self.state.notes if isinstance(note, Failover)]

    @property
    def done(self) -> bool:
        """True once the request ended (answer, error or cancel)."""
        return self._ended is not None

    @property
    def data(self) -> Any:
        """The structured output (or a callback's enriched data), once the answer is final."""
        return self.response.data if self.response is not None else None

    def apply(self, event: StreamEvent) -> bool:
        """Fold one stream event into the view.

        Returns:
            True when what ``messages()`` renders changed (the caller yields it then).
        """
        changes = self.state.feed(event)
        for step in changes.steps:
            self._on_step(step)
        response = changes.response
        if response is not None and response.status == "cancelled":
            self.cancelled = True
        if changes.done:
            self._end()
        return bool(changes.text or changes.partial or changes.steps or changes.notes
                    or response is not None or changes.done)

    def fail(self, message: str, *, cancelled: bool = False) -> None:
        """End the view with an error that did not come from the stream (e.g. a lost socket).

        Pending steps turn to error; a view that already ended keeps its outcome.
        """
        changes = self.state.fail(message)
        if changes.done:
            self.cancelled = cancelled
        for step in changes.steps:
            self._on_step(step)
        self._end()

    def _end(self) -> None:
        if self._ended is None:
            self._ended = self.clock()

    def _on_step(self, step: WorkflowStep) -> bool:
        now = self.clock()
        state = self._steps.get(step.id)
        if state is None:
            self._steps[step.id] = state = _StepState(step, now)
        elif state.step.status in ("pending", "loading") and step.status in ("success", "error"):
            state.duration = now - state.since
        elif step.status in ("pending", "loading"):
            state.since, state.duration = now, None
        changed = state.step != step
        state.step = step
        return changed

    # --- rendering -------------------------------------------------------------------------

    def partial(self) -> Any:
        """The structured answer so far: the final data, else the object parsed from the stream
        (the gateway said it is structured, or the text is a JSON object); None for a text answer."""
        if self.structured is None:
            return None
        data = self.data
        if data is not None:
            return data
        if self.state.structured:
            return self.state.partial
        if self.response is None and self.text.lstrip().startswith("{"):
            return _lenient_partial(self.text)
        return None

    def answer_text(self) -> str:
        """The chat text: the answer, or the prose (``reply``...) of a structured answer, as far
        as it came; never the raw JSON of a structured answer while it streams."""
        if self.structured is None:
            return self.text
        data = self.data
        if isinstance(data, Mapping):
            key = self._prose_key(data)
            if key is not None:
                return str(data[key])
            if self.state.structured and self.response is not None and self.response.kind != "completed":
                return ""  # a schema without prose: the card shows it all, never the JSON
        if self.response is None:
            value = self.partial()
            if value is not None or self.state.structured:
                key = self._prose_key(value)
                return str(value[key]) if key is not None else ""
        if self.response is not None and not self.text and self.response.content:
            return self.response.content
        return self.text

    def _prose_key(self, value: Any) -> str | None:
        """The prose field of ``value``: the one the gateway announced, else the first obvious one."""
        if not isinstance(value, Mapping):
            return None
        announced = self.state.prose_field
        if announced is not None and isinstance(value.get(announced), str):
            return announced
        return prose_key(dict(value))

    def messages(self) -> list[gr.ChatMessage]:
        """The assistant's turn as Gradio chat messages, in display order."""
        out: list[gr.ChatMessage] = []
        if self.show_steps:
            out.extend(self._step_messages())
        for index, call in enumerate(self.tool_calls):
            out.append(gr.ChatMessage(
                content=_code_block(call.arguments),
                metadata=MetadataDict(title=f"🛠️ Used tool {code_span(call.name)}",
                                      id=f"modelriver-tool-{self._uid}-{index}", status="done"),
            ))
        answer = self.answer_text()
        if answer or not out or (self.done and self.error is None):
            out.append(gr.ChatMessage(content=self._safe(answer, final=self.done)))
        card = self._structured_message()
        if card is not None:
            out.append(card)
        return out

    def _step_messages(self) -> list[gr.ChatMessage]:
        parent_id = f"modelriver-steps-{self._uid}"
        ended = self._ended
        total = (ended if ended is not None else self.clock()) - self._started
        if self.cancelled:
            log = "cancelled"
        elif self.error is not None:
            log = "failed"
        else:
            log = f"{sum(s.step.status == 'success' for s in self._steps.values())}/{len(self._steps)}"
        parent = MetadataDict(title=f"Workflow {code_span(self.workflow)}", id=parent_id, log=log,
                              status="done" if ended is not None else "pending")
        if ended is not None:
            parent["duration"] = round(total, 3)
        content = f"request {code_span(self.channel_id)}" if self.channel_id else ""
        out = [gr.ChatMessage(content=content, metadata=parent)]
        for step_id in STEP_ORDER:
            state = self._steps.get(step_id)
            if state is None:
                continue
            step = state.step
            meta = MetadataDict(
                title=_step_title(step), id=f"{parent_id}-{step.id}", parent_id=parent_id,
                status="done" if step.status in ("success", "error") else "pending",
            )
            duration = step.duration / 1000 if step.duration is not None else state.duration
            if duration is not None and meta["status"] == "done":
                meta["duration"] = round(duration, 3)
            if step.error_message:
                meta["log"] = step.error_message
            elif step.status == "loading":  # Gradio spins every pending thought: say which one runs
                meta["log"] = "running"
            out.append(gr.ChatMessage(content="", metadata=meta))
            if step_id == "process":
                out.extend(self._failover_messages(parent_id))
        return out

    def _failover_messages(self, parent_id: str) -> list[gr.ChatMessage]:
        out = []
        for index, failover in enumerate(self.failovers):
            names = (escape_markdown(name or "?") for name in (failover.from_provider, failover.to_provider))
            title = "Failover: {} → {}".format(*names)
            meta = MetadataDict(title=title, id=f"{parent_id}-failover-{index}",
                                parent_id=parent_id, status="done")
            if failover.reason:
                meta["log"] = failover.reason
            out.append(gr.ChatMessage(content="", metadata=meta))
        return out

    def _structured_message(self) -> gr.ChatMessage | None:
        if self.error is not None:
            return None
        data = self.data
        live = data is None
        if live:  # still streaming: the fields so far (a partial object, never the raw text)
            data = self.partial()
        if self.structured is None or data is None:
            return None
        enriched = self.response is not None and self.response.kind == "completed"
        rest = data
        key = self._prose_key(data)
        if isinstance(data, Mapping):
            rest = {k: v for k, v in data.items() if k != key}
        if not rest:
            return None
        title = "Enriched data" if enriched else "Structured output"
        msg_id = f"{STRUCTURED_ID_PREFIX}-{self._uid}"
        if self.structured == "json":
            # Final: no status, the thought opens expanded without a spinner; live: pending.
            meta = MetadataDict(title=title, id=msg_id)
            if live:
                meta["status"] = "pending"
            return gr.ChatMessage(content=_code_block(rest), metadata=meta)
        card = markdown_card(rest, allow_remote_media=self.allow_remote_media)
        return gr.ChatMessage(content=f"**{title}**\n\n{card}", metadata=MetadataDict(id=msg_id))


def markdown_card(data: Any, *, allow_remote_media: bool = False) -> str:
    """Structured output as Markdown: the ``chatbot_response`` fields first, then the rest.

    The values are the model's: the card is ``safe_markdown`` (images as links unless
    ``allow_remote_media``, no raw HTML); field names and topics show as typed.
    """
    if not isinstance(data, Mapping):
        return _code_block(data)
    return safe_markdown(_card(data), allow_remote_media=allow_remote_media)


def _card(data: Mapping[str, Any]) -> str:
    lines: list[str] = []
    if isinstance(data.get("summary"), str):
        lines.append(f"**Summary:** {data['summary']}")
    if data.get("sentiment") is not None:
        sentiment = f"**Sentiment:** {data['sentiment']}"
        if isinstance(data.get("confidence"), int | float):
            sentiment += f" (confidence {float(data['confidence']):.0%})"
        lines.append(sentiment)
    elif isinstance(data.get("confidence"), int | float):
        lines.append(f"**Confidence:** {float(data['confidence']):.0%}")
    if isinstance(data.get("topics"), list) and data["topics"]:
        lines.append("**Topics:** " + ", ".join(code_span(str(t)) for t in data["topics"]))
    if isinstance(data.get("action_items"), list) and data["action_items"]:
        lines.append("**Action items:**")
        for item in data["action_items"]:
            if isinstance(item, Mapping):
                lines.append(f"- {item.get('task', '')} _({item.get('priority', 'n/a')})_")
            else:
                lines.append(f"- {item}")
    for key, value in data.items():
        if key in _CONTEXT_KEYS or key == "reply":
            continue
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f"**{escape_markdown(str(key))}:** {shown}")
    return "\n\n".join(lines)


def _lenient_partial(text: str) -> Any:
    """``parse_partial``, reading a raw control character (invalid JSON, but models write raw
    newlines in strings) as a space rather than losing the whole object."""
    value = parse_partial(text)
    if value is None:
        value = parse_partial(_CONTROL.sub(" ", text))
    return value


def _step_title(step: WorkflowStep) -> str:
    # A step's name is the gateway's (a fixed set); its error message goes to ``log``: plain text.
    return f"❌ {step.name}" if step.status == "error" else step.name


def code_span(text: str) -> str:
    """``text`` as one Markdown code span, whatever backticks it holds.

    The fence is one backtick longer than the longest run inside, padded with a space when the
    text starts or ends with a backtick or a space (CommonMark strips one space each side);
    newlines become spaces. ``code_span("a`b")`` is ``"`` a`b ``"``.

    Returns:
        Markdown that renders as ``text`` in code font.
    """
    text = " ".join(text.splitlines()) or " "
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text.strip(" ") and (text[0] in "` " or text[-1] in "` ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _code_block(value: Any) -> str:
    """A fenced JSON block; the fence is longer than any backtick run inside (model text)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    fence = "`" * max(3, max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    return f"{fence}json\n{text}\n{fence}"


def partial_json_string(text: str, key: str) -> str | None:
    """The value of string field ``key`` in a JSON object that may still be arriving.

    ``partial_json_string('{"reply": "Hel', "reply")`` gives ``"Hel"``: what can be decoded so
    far (an escape cut in half is left out). Only a top-level-looking ``"key":`` is searched;
    good enough for streaming a ``reply`` field into the chat before the JSON is complete.

    Returns:
        The decoded prefix, or None when the field has not started yet.
    """
    marker = f'"{key}"'
    start = text.find(marker)
    while start != -1:
        pos = start + len(marker)
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and text[pos] == ":":
            pos += 1
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos >= len(text):
                return None
            if text[pos] != '"':
                return None
            return _decode_prefix(text, pos + 1)
        start = text.find(marker, start + 1)
    return None


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _decode_prefix(text: str, pos: int) -> str:
    out: list[str] = []
    end = len(text)
    while pos < end:
        char = text[pos]
        if char == '"':
            break
        if char != "\\":
            out.append(char)
            pos += 1
            continue
        if pos + 1 >= end:
            break
        code = text[pos + 1]
        if code == "u":
            hex_digits = text[pos + 2 : pos + 6]
            if len(hex_digits) < 4:
                break
            try:
                out.append(chr(int(hex_digits, 16)))
            except ValueError:
                break
            pos += 6
            continue
        out.append(_ESCAPES.get(code, code))
        pos += 2
    joined = "".join(out)
    # Pair surrogates written as two \\u escapes (emoji); a lone half is dropped.
    return joined.encode("utf-16", "surrogatepass").decode("utf-16", "ignore")
