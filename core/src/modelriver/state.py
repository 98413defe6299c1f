"""One request's state, folded from its events: the single copy of PROTOCOL §3 and §4's client rules.

    state = RequestState(channel_id)
    for event in stream:                     # core StreamEvents, in order
        changes = state.feed(event)
        if changes.text:
            redraw_text(state.text)          # changes.reset: the text restarted (failover)
        if changes.partial:                  # a structured answer: the object so far
            redraw_card(state.partial, state.prose)
        if changes.steps:
            redraw_steps(state.steps)
        for note in changes.notes:           # a Failover or a ToolCall, as data
            show(note)
        if changes.done:
            finish(state.result)

``RequestState`` is pure: no I/O, no clock, no logging on the per-token path. It keeps the answer
streamed so far (the deltas since the last failover reset, joined lazily), the workflow steps
(``modelriver.steps.StepTracker``), the notes (failovers and tool calls), a one-word progress
``status``, and the terminal rules: ``success``/``SUCCESS``/``ok`` (or ``meta.status`` success)
and ``completed`` end the request, ``ai_generated`` is intermediate, anything else is an error;
an ``error`` event ends it too. After the end only ``Step`` events are still taken.
The stream client, the Realm stream and the Streamlit and Gradio adapters all fold through it;
``Changes`` tells each what a given event changed so it redraws only that.

Structured answers (the workflow has a schema: a ``status`` says ``structured: true``, or the
caller says so): ``partial`` is the object so far, parsed from ``text`` with
``modelriver.partial.parse_partial`` only when read and the text changed since the last parse
(and, given a clock, at most every ``parse_interval`` seconds until the end), never per token;
``prose`` is its prose field's text (the status's ``prose`` names it, else
``modelriver.partial.prose_key``), ``""`` when it has none. The terminal response's ``data``
replaces the partial object. Steps: ``process`` is ``loading`` from the first token until the
response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from modelriver.events import Error, Response, Status, Step, StreamEvent, Token, ToolCall
from modelriver.partial import parse_partial, prose_key
from modelriver.steps import StepTracker
from modelriver.types import AIResponse, WorkflowStep

__all__ = ["NOTHING", "Changes", "Failover", "Note", "RequestState"]


@dataclass(frozen=True, slots=True)
class Failover:
    """A ``status`` ``failover``: the gateway moved the request to its next provider.

    Attributes:
        from_provider: the provider that failed (the payload's ``from``), if named.
        to_provider: the provider tried next (``to``), if named.
        reason: why, as the gateway said it.
        reset: True when the answer restarted (the text streamed so far was dropped).
        seq: the event's ``seq``.
    """

    from_provider: str | None = None
    to_provider: str | None = None
    reason: str | None = None
    reset: bool = False
    seq: int | None = None


Note: TypeAlias = Failover | ToolCall
"""Something an adapter shows beside the answer: a failover, or a tool call with its arguments."""


@dataclass(frozen=True, slots=True)
class Changes:
    """What one event changed in a ``RequestState`` (false/empty: unchanged).

    Attributes:
        text: ``RequestState.text`` changed (grew, or restarted with ``reset``).
        reset: the text restarted from ``""`` (a failover with ``reset: true``); ``attempt`` grew.
        steps: the steps that changed, in the order they changed.
        notes: the notes this event added.
        partial: ``RequestState.partial`` (and ``prose``) may have changed (structured answers).
        status: ``RequestState.status`` changed.
        response: the ``response`` this event brought (``ai_generated`` or terminal).
        done: the request ended with this event; ``RequestState.result`` says how.
    """

    text: bool = False
    reset: bool = False
    steps: tuple[WorkflowStep, ...] = ()
    notes: tuple[Note, ...] = ()
    partial: bool = False
    status: bool = False
    response: AIResponse | None = None
    done: bool = False

    def __bool__(self) -> bool:
        return bool(self.text or self.steps or self.notes or self.partial or self.status
                    or self.response is not None or self.done)


NOTHING = Changes()
_TEXT = Changes(text=True)
_TEXT_PARTIAL = Changes(text=True, partial=True)
_STATUS = Changes(status=True)


class RequestState:
    """The state of one request, built by feeding it that request's events in order.

    Args:
        channel_id: the request's channel, put in the error response an ``error`` event makes.
        structured: the answer is structured output (JSON); None: as a ``status`` says.
        clock: seconds, monotonic (e.g. ``time.monotonic``); with it, ``partial`` is parsed
            at most every ``parse_interval`` seconds while the request runs (a read in between
            gets the previous parse). None: parsed on every read after a change.
        parse_interval: see ``clock``.

    Attributes:
        attempt: how many times the answer restarted (failover resets).
        status: a word for where the request is: the last ``status`` event's (``queued``,
            ``started``, ``failover``...), ``streaming`` once tokens flow, ``awaiting_callback``
            after ``ai_generated``, the response's kind (``success``, ``completed``, ``error``)
            at the end, ``error`` after an ``error`` event or ``fail``; None before any.
        notes: failovers and tool calls, in arrival order.
        intermediate: the ``ai_generated`` response while the backend's callback runs.
        response: the terminal ``response`` as received (None after an ``error`` event).
        result: how the request ended: ``response``, or an error ``AIResponse`` built from an
            ``error`` event or ``fail`` (what ``Stream.response`` holds). None while running.
        error: why the request failed (an error response's message, an ``error`` event's, or
            ``fail``'s), else None.
        structured: the answer is structured output (``partial`` and ``prose`` apply).
        prose_field: the structured answer's prose field, as a ``status`` named it.
    """

    __slots__ = ("_clock", "_flowing", "_joined", "_joined_count", "_parse_interval", "_parsed",
                 "_parsed_at", "_parsed_version", "_parts", "_prose_announced", "_token_changes",
                 "_tracker", "attempt", "channel_id", "error", "intermediate", "notes", "prose_field",
                 "response", "result", "status", "structured")

    def __init__(self, channel_id: str | None = None, *, structured: bool | None = None,
                 clock: Callable[[], float] | None = None, parse_interval: float = 0.04) -> None:
        self.channel_id = channel_id
        self.structured = bool(structured)
        self.prose_field: str | None = None
        self._prose_announced = False
        self._token_changes = _TEXT_PARTIAL if structured else _TEXT
        self._flowing = False
        self._clock = clock
        self._parse_interval = parse_interval
        self._parsed: Any = None
        self._parsed_version: tuple[int, int] = (0, 0)
        self._parsed_at = float("-inf")
        self.attempt = 0
        self.status: str | None = None
        self.notes: list[Note] = []
        self.intermediate: AIResponse | None = None
        self.response: AIResponse | None = None
        self.result: AIResponse | None = None
        self.error: str | None = None
        self._parts: list[str] = []
        self._joined = ""
        self._joined_count = 0
        self._tracker = StepTracker()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once the request ended (terminal response, ``error`` event or ``fail``)."""
        return self.result is not None

    @property
    def text(self) -> str:
        """The answer streamed so far: the deltas since the last reset, joined (cached)."""
        parts = self._parts
        count = len(parts)
        if count != self._joined_count:
            self._joined += "".join(parts[self._joined_count:])
            self._joined_count = count
        return self._joined

    @property
    def part_count(self) -> int:
        """How many deltas make ``text`` (a position for ``text_since``)."""
        return len(self._parts)

    def text_since(self, index: int) -> str:
        """The text of the deltas from position ``index`` on (``""`` when there are none)."""
        parts = self._parts
        if index <= 0:
            return self.text
        return "".join(parts[index:]) if index < len(parts) else ""

    @property
    def steps(self) -> list[WorkflowStep]:
        """The workflow steps, in display order (PROTOCOL §4)."""
        return self._tracker.steps

    @property
    def partial(self) -> Any:
        """A structured answer's value so far (usually a dict; None before any, or for text).

        Parsed from ``text`` when read after it changed (see ``clock``); the terminal
        response's ``data`` once it arrived.
        """
        if not self.structured:
            return None
        final = self._final_data()
        if final is not None:
            return final
        version = (self.attempt, len(self._parts))
        if version != self._parsed_version:
            clock = self._clock
            now = clock() if clock is not None else 0.0
            if clock is None or now - self._parsed_at >= self._parse_interval or self.done:
                self._parsed = parse_partial(self.text)
                self._parsed_version = version
                self._parsed_at = now
        return self._parsed

    def _final_data(self) -> Any:
        """The AI's object as a response delivered it: the terminal ``data`` (``ai_response.data``
        for ``completed``, whose ``data`` is the backend's), or the ``ai_generated`` one."""
        response = self.response
        if response is not None and not response.is_error:
            if response.kind != "completed":
                return response.data
            ai_response = response.raw.get("ai_response")
            if isinstance(ai_response, dict) and ai_response.get("data") is not None:
                return ai_response["data"]
        intermediate = self.intermediate
        return intermediate.data if intermediate is not None else None

    @property
    def prose(self) -> str:
        """The answer as prose: ``text`` for a text answer; a structured answer's prose field
        so far (``""`` when its schema has none: show ``partial`` as a card only)."""
        if not self.structured:
            return self.text
        value = self.partial
        if not isinstance(value, dict):
            return ""
        key = self.prose_field if self._prose_announced else prose_key(value)
        prose = value.get(key) if key is not None else None
        return prose if isinstance(prose, str) else ""

    # -- feeding ---------------------------------------------------------------------------------

    def joined(self) -> Changes:
        """The channel join succeeded (the queue step is done); call it on every join."""
        return self._changed_steps(self._tracker.joined())

    def feed(self, event: StreamEvent) -> Changes:
        """Fold one event in.

        Returns:
            What it changed (``NOTHING`` for an event that changed nothing, or one that came
            after the end). Token events return shared instances: no allocation per token.
        """
        if type(event) is Token:
            data = event.data
            if data and self._flowing:  # the hot path: no parse here (``partial`` is lazy)
                self._parts.append(data)
                return self._token_changes
            return self._first_token(data)
        if isinstance(event, Step):
            return self._changed_steps(self._tracker.absorb(event.step))
        if self.result is not None:
            return NOTHING
        if isinstance(event, Status):
            return self._on_status(event)
        if isinstance(event, ToolCall):
            self.notes.append(event)
            return Changes(notes=(event,))
        if isinstance(event, Response):
            return self._on_response(event.response)
        if isinstance(event, Error):
            return self._end_with_error(event.message, self._tracker.error(event.message))
        return NOTHING

    def _first_token(self, data: str) -> Changes:
        """A token that is not a plain append: the first after a status, empty, or too late."""
        if self.result is not None:
            return NOTHING
        if data:
            self._parts.append(data)
        status = self._set_status("streaming")
        steps = tuple(self._tracker.streaming())
        self._flowing = True
        if not steps:
            if data:
                return Changes(text=True, partial=self.structured, status=True) if status else self._token_changes
            return _STATUS if status else NOTHING
        return Changes(text=bool(data), partial=self.structured and bool(data), steps=steps, status=status)

    def fail(self, message: str) -> Changes:
        """End the request locally (the stream failed or ended without a terminal event).

        The steps still pending turn to error; nothing changes if the request already ended.
        """
        if self.result is not None:
            return NOTHING
        return self._end_with_error(message, self._tracker.fail(message))

    # -- the rules -------------------------------------------------------------------------------

    def _on_status(self, event: Status) -> Changes:
        payload = event.payload
        if payload.get("structured") is True and not self.structured:
            self.structured = True
            self._token_changes = _TEXT_PARTIAL
        if "prose" in payload and self.structured:
            prose = payload.get("prose")
            self.prose_field = prose if isinstance(prose, str) and prose else None
            self._prose_announced = True
        if event.status != "streaming":
            self._flowing = False
        reset = event.reset
        if reset:
            self._parts = []
            self._joined, self._joined_count = "", 0
            self.attempt += 1
        notes: tuple[Note, ...] = ()
        if event.status == "failover":
            note = Failover(_name(payload.get("from")), _name(payload.get("to")),
                            _name(payload.get("reason")), reset, event.seq)
            self.notes.append(note)
            notes = (note,)
        status_changed = self.status != event.status
        self.status = event.status
        if not (reset or notes):
            return _STATUS if status_changed else NOTHING
        return Changes(text=reset, reset=reset, notes=notes, partial=reset and self.structured,
                       status=status_changed)

    def _on_response(self, response: AIResponse) -> Changes:
        self._flowing = False
        steps = tuple(self._tracker.response(response))
        if not response.is_terminal:
            self.intermediate = response
            return Changes(steps=steps, response=response, status=self._set_status("awaiting_callback"))
        self.response = self.result = response
        if response.is_error:
            self.error = response.error_message
        return Changes(steps=steps, response=response, partial=self.structured,
                       status=self._set_status(response.kind), done=True)

    def _end_with_error(self, message: str, steps: list[WorkflowStep]) -> Changes:
        self._flowing = False
        self.error = message
        self.result = AIResponse(status="error", channel_id=self.channel_id,
                                 error={"message": message}, raw={"message": message})
        return Changes(steps=tuple(steps), status=self._set_status("error"), done=True)

    def _set_status(self, status: str) -> bool:
        changed = self.status != status
        self.status = status
        return changed

    def _changed_steps(self, steps: list[WorkflowStep]) -> Changes:
        return Changes(steps=tuple(steps)) if steps else NOTHING


def _name(value: object) -> str | None:
    """A payload field as text for display (None when missing or empty)."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
