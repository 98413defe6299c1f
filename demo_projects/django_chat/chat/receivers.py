"""Event-driven mode: enrich the AI's answer before the callback (``webhook_received``).

The ``demo-events`` workflow answers with a ``chatbot_response`` object; the gateway then
posts a signed webhook to ``/modelriver/webhook``. django_modelriver verifies it and sends
``webhook_received``; this receiver validates the answer and adds a ticket id, and the app
calls back with the enriched data, which the browser receives in the ``completed`` response.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from django.dispatch import receiver

from django_modelriver.signals import webhook_received

logger = logging.getLogger("chat")

SENTIMENTS = {"positive", "negative", "neutral", "mixed"}


def validate(data: dict[str, Any]) -> list[str]:
    """Problems with a chatbot_response answer (empty when valid)."""
    problems = []
    if not isinstance(data.get("reply"), str) or not data.get("reply"):
        problems.append("reply is missing")
    if data.get("sentiment") not in SENTIMENTS:
        problems.append("sentiment is not one of " + ", ".join(sorted(SENTIMENTS)))
    confidence = data.get("confidence")
    if not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        problems.append("confidence is not between 0 and 1")
    return problems


@receiver(webhook_received)
def enrich(sender: Any, event: Any, data: dict[str, Any], channel_id: str | None, **kwargs: Any) -> None:
    if not event.is_event_driven:
        return  # a plain notification: nothing to call back
    problems = validate(data)
    digest = hashlib.sha256((channel_id or "").encode()).hexdigest()[:8].upper()
    data["ticket_id"] = f"TKT-{digest}"
    data["validated"] = not problems
    if problems:
        data["validation_errors"] = problems
    data["enriched_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    logger.info("enriched %s as %s (valid: %s)", channel_id, data["ticket_id"], not problems)
