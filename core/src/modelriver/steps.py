"""The SDK's workflow-step model (PROTOCOL §4) as a pure state machine.

Feed it what happened (joined, a response, an error); each call returns the steps that changed,
in display order. No I/O; adapters render what it returns.
"""

from __future__ import annotations

from dataclasses import replace

from modelriver.types import AIResponse, StepStatus, WorkflowStep

__all__ = ["INITIAL_STEPS", "StepTracker"]

INITIAL_STEPS: tuple[WorkflowStep, ...] = (
    WorkflowStep("queue", "Queueing request"),
    WorkflowStep("process", "Processing AI request"),
    WorkflowStep("receive", "Waiting for response"),
    WorkflowStep("complete", "Response received"),
)


class StepTracker:
    """Tracks the four (or five, with ``backend``) steps of one request."""

    def __init__(self) -> None:
        self._steps: dict[str, WorkflowStep] = {s.id: s for s in INITIAL_STEPS}

    @property
    def steps(self) -> list[WorkflowStep]:
        """Every step, in display order (``backend`` sits before ``receive``)."""
        order = ["queue", "process", "backend", "receive", "complete"]
        return [self._steps[i] for i in order if i in self._steps]

    def joined(self) -> list[WorkflowStep]:
        """The channel join succeeded: queue done, the rest pending."""
        return self._set(("queue", "success"))

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
