"""Server mode's engine: one background pump per request, followed by any number of script runs.

A Streamlit script run can be interrupted at any ``st.*`` call (a rerun, a stop, a closed tab),
so the run must not own the stream. A :class:`Pump` owns it instead: a daemon thread iterates
core's sync stream (the upstream's ``connect``: ModelRiver or Realm) and keeps the answer so
far, the steps and the final response. A script run *follows* the pump: it writes what is
there, then waits for more. A rerun, or a reload (a new session, same process) re-follows the
same pump: one socket, one upstream request, nothing lost.

Pumps live in a :class:`PumpRegistry` held by ``st.cache_resource`` (clear it with
``st.cache_resource.clear()``); finished ones are dropped ``keep`` seconds after they end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelriver import AIResponse, AsyncRequest, ModelRiverError, WorkflowStep
from modelriver.events import StreamEvent
from modelriver.state import Failover, Note, RequestState
from modelriver.upstream import Upstream

__all__ = ["Pump", "PumpRegistry", "Snapshot"]

logger = logging.getLogger("streamlit_modelriver")

STATUS_LABELS = {
    "queued": "Queued…",
    "started": "Generating…",
    "streaming": "Streaming…",
    "ai_generated": "AI answer ready",
    "awaiting_callback": "Waiting for backend callback…",
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What changed in a pump since a follower's cursor.

    Attributes:
        version: the pump's version at the time of the snapshot (pass it back to wait for more).
        attempt: bumped on a failover reset: the text restarts from ``""``.
        delta: the text added since the follower's ``(attempt, index)``; all of the current
            attempt's text when ``attempt`` changed.
        index: the follower's new position in the current attempt's parts.
        steps: the workflow steps, in display order.
        notes: failover and tool-call notes.
        label: a one-line status of the request.
        response: the terminal response, once it came.
        prose: a structured answer's prose so far (its ``reply``...; ``""`` when its schema has
            none); None for a text answer (use ``delta``).
        partial: a structured answer's object so far (the final ``data`` once in), else None.
    """

    version: int
    attempt: int
    delta: str
    index: int
    steps: tuple[WorkflowStep, ...]
    notes: tuple[str, ...]
    label: str
    response: AIResponse | None
    prose: str | None = None
    partial: Any = None

    @property
    def done(self) -> bool:
        return self.response is not None


class Pump:
    """One request's stream, consumed on a daemon thread.

    Args:
        client: the upstream (a ``ModelRiver`` client's ``connect`` renews refused socket
            tokens itself).
        request: the request to stream.
        on_end: called with the pump once the terminal response is in.
    """

    def __init__(self, client: Upstream, request: AsyncRequest,
                 on_end: Callable[[Pump], None] | None = None) -> None:
        self.client = client
        self.request = request
        self.channel_id = request.channel_id
        self.ended_at: float | None = None
        self.cancel_sent = False
        self._on_end = on_end
        self._cond = threading.Condition()
        self._version = 0
        self._state = RequestState(request.channel_id, clock=time.monotonic)
        self._notes: list[str] = []  # the state's notes, as the steps box shows them
        self._label = "Connecting…"
        self._response: AIResponse | None = None
        self._thread = threading.Thread(target=self._run, name=f"modelriver-pump-{self.channel_id}",
                                        daemon=True)

    def start(self) -> Pump:
        self._thread.start()
        return self

    @property
    def response(self) -> AIResponse | None:
        with self._cond:
            return self._response

    @property
    def text(self) -> str:
        with self._cond:
            return self._state.text

    def cancel(self) -> None:
        """Cancel the request upstream (once); the pump ends with the ``cancelled`` response.

        Raises:
            ModelRiverError: the cancel call failed.
        """
        if self.cancel_sent or self.response is not None:
            return
        self.cancel_sent = True
        with self._cond:
            self._label = "Stopping…"
            self._bump()
        self.client.cancel(self.channel_id)

    def wait(self, *, version: int, attempt: int, index: int, timeout: float) -> Snapshot:
        """Wait up to ``timeout`` seconds for a change after ``version``, then snapshot.

        Args:
            version: the version the follower has seen (-1 for none).
            attempt: the follower's attempt.
            index: how many parts of that attempt the follower has.
            timeout: the longest wait; the snapshot may then carry no change.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout)
            state = self._state
            if attempt != state.attempt:
                attempt, index = state.attempt, 0
            return Snapshot(
                version=self._version,
                attempt=attempt,
                delta=state.text_since(index),
                index=state.part_count,
                steps=tuple(state.steps),
                notes=tuple(self._notes),
                label=self._label,
                response=self._response,
                prose=state.prose if state.structured else None,
                partial=state.partial,
            )

    # -- the pump thread --------------------------------------------------------------------------

    def _bump(self) -> None:
        self._version += 1
        self._cond.notify_all()

    def _run(self) -> None:
        response: AIResponse | None = None
        try:
            stream = self.client.connect(self.request, coalesce=True)
            try:
                for event in stream:
                    self._apply(event)
                response = stream.response
            finally:
                stream.close()
        except ModelRiverError as exc:
            logger.warning("stream of %s failed: %s", self.channel_id, exc)
            response = _error_response(self.channel_id, str(exc))
        except Exception as exc:  # glue never crashes the host app: report it as the answer
            logger.exception("stream of %s crashed", self.channel_id)
            response = _error_response(self.channel_id, f"streaming failed: {exc}")
        if response is None:
            response = _error_response(self.channel_id, "the stream ended without a response")
        with self._cond:
            self._response = response
            self._label = (response.error_message or "Failed") if response.is_error else "Done"
            self.ended_at = time.monotonic()
            self._bump()
        if self._on_end is not None:
            self._on_end(self)

    def _apply(self, event: StreamEvent) -> None:
        with self._cond:
            state = self._state
            changes = state.feed(event)
            if not changes:
                return
            self._notes.extend(_note_text(note) for note in changes.notes)
            if changes.status:
                label = state.error if state.status == "error" else STATUS_LABELS.get(state.status or "")
                if label is not None:
                    self._label = label
            self._bump()


class PumpRegistry:
    """The live pumps of this process, by channel id; thread-safe.

    Args:
        keep: seconds a finished pump stays, so a rerun or reload right after the end still
            finds its answer.
    """

    def __init__(self, keep: float = 600.0) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._pumps: dict[str, Pump] = {}

    def get(self, channel_id: str) -> Pump | None:
        with self._lock:
            self._purge()
            return self._pumps.get(channel_id)

    def start(self, client: Upstream, request: AsyncRequest) -> Pump:
        """The pump of ``request``'s channel: the live one, or a new one started now."""
        with self._lock:
            self._purge()
            pump = self._pumps.get(request.channel_id)
            if pump is None:
                pump = Pump(client, request).start()
                self._pumps[request.channel_id] = pump
            return pump

    def __len__(self) -> int:
        with self._lock:
            return len(self._pumps)

    def _purge(self) -> None:
        now = time.monotonic()
        for channel_id, pump in list(self._pumps.items()):
            if pump.ended_at is not None and now - pump.ended_at > self.keep:
                del self._pumps[channel_id]


def _note_text(note: Note) -> str:
    if isinstance(note, Failover):
        reason = f" ({note.reason})" if note.reason else ""
        return f"Failover: {note.from_provider or 'provider'} → {note.to_provider or 'next provider'}{reason}"
    return f"Tool call: {note.name}({_short(note.arguments)})"


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_response(channel_id: str, message: str) -> AIResponse:
    return AIResponse(status="error", channel_id=channel_id, error={"message": message},
                      raw={"status": "error", "channel_id": channel_id, "error": {"message": message}})
