"""The SDK's workflow-step model (PROTOCOL §4) as a pure state machine.

Feed it what happened (joined, the first token, a response, an error); each call returns the steps that changed,
in display order. No I/O; adapters render what it returns. ``modelriver.state.RequestState``
drives one per request.
"""

from __future__ import annotations

from dataclasses import replace

from modelriver.types import AIResponse, StepStatus, WorkflowStep

__all__ = ["INITIAL_STEPS", "STEP_ORDER", "StepTracker"]

INITIAL_STEPS: tuple[WorkflowStep, ...] = (
    WorkflowStep("queue", "Queueing request"),
    WorkflowStep("process", "Processing AI request"),
    WorkflowStep("receive", "Waiting for response"),
    WorkflowStep("complete", "Response received"),
)

STEP_ORDER: tuple[str, ...] = ("queue", "process", "backend", "receive", "complete")
"""Display order of the step ids (``backend`` exists only in event-driven requests)."""


class StepTracker:
    """Tracks the four (or five, with ``backend``) steps of one request."""

    def __init__(self) -> None:
        self._steps: dict[str, WorkflowStep] = {s.id: s for s in INITIAL_STEPS}

    @property
    def steps(self) -> list[WorkflowStep]:
        """Every step, in display order (``backend`` sits before ``receive``)."""
        steps = self._steps
        return [steps[i] for i in STEP_ORDER if i in steps]

    def joined(self) -> list[WorkflowStep]:
        """The channel join succeeded: queue done, the rest pending."""
        return self._set(("queue", "success"))

    def streaming(self) -> list[WorkflowStep]:
        """A token arrived: ``process`` turns ``loading`` (when still pending) until the response."""
        if self._steps["process"].status != "pending":
            return []
        return self._set(("process", "loading"))

    def response(self, response: AIResponse) -> list[WorkflowStep]:
        """A ``response`` arrived; returns the steps it changed."""
        kind = response.kind
        duration = response.duration_ms
        if kind == "ai_generated":
            changed = self._set(("process", "success"), duration=duration)
            return changed + self._set(("backend", "pending"), name="Waiting for backend callback...")
        if kind == "error":
            return self.error(response.error_message or "request failed")
        changed = self._set(("queue", "success"))
        changed += self._set(("process", "success"), duration=duration)
        if kind == "completed":
            changed += self._set(("backend", "success"), name="Backend processed")
        elif "backend" in self._steps:
            changed += self._set(("backend", "success"), name="No backend processing needed")
        return changed + self._set(("receive", "success"), ("complete", "success"))

    def error(self, message: str) -> list[WorkflowStep]:
        """The request failed: process, receive and complete turn to error."""
        return self._set(("process", "error"), ("receive", "error"), ("complete", "error"),
                         error_message=message)

    def fail(self, message: str) -> list[WorkflowStep]:
        """The request ended without the server's word: pending process/receive/complete fail.

        Steps that already finished keep their status (a lost socket after ``ai_generated``
        leaves process a success).
        """
        waiting: list[tuple[str, StepStatus]] = [
            (i, "error") for i in ("process", "receive", "complete")
            if self._steps[i].status in ("pending", "loading")]
        return self._set(*waiting, error_message=message)

    def absorb(self, step: WorkflowStep) -> list[WorkflowStep]:
        """Take a step as another tracker reported it (a ``Step`` event); returns it if it changed."""
        if self._steps.get(step.id) == step:
            return []
        self._steps[step.id] = step
        return [step]

    def _set(
        self,
        *changes: tuple[str, StepStatus],
        name: str | None = None,
        duration: int | None = None,
        error_message: str | None = None,
    ) -> list[WorkflowStep]:
        changed = []
        for step_id, status in changes:
            old = self._steps.get(step_id) or WorkflowStep(step_id, name or step_id)
            new = replace(
                old,
                status=status,
                name=name or old.name,
                duration=duration if duration is not None else old.duration,
                error_message=error_message,
            )
            if new != self._steps.get(step_id):
                self._steps[step_id] = new
                changed.append(new)
        return changed
