"""Signals: hook the app's work without subclassing anything.

``request_starting(sender, request, workflow, messages, options)``
    Sent by the start view before calling the API. ``options`` is a dict you may change:
    ``events`` (list), ``metadata`` (dict), ``webhook_url`` (str or None).

``webhook_received(sender, event, data, channel_id, request)``
    Sent by the webhook view for a verified webhook, once per webhook (redeliveries are not
    re-sent). ``event`` is a ``modelriver.webhooks.WebhookEvent``; ``data`` is a dict copy of
    its data that receivers enrich in place (or return a dict to merge in). For an event-driven
    request the view then calls back with ``data``; a receiver returning ``DEFER_CALLBACK``
    stops that, and the app calls ``django_modelriver.send_callback()`` later.

``stream_finished(sender, channel_id, event, payload)``
    Sent in the process that ran the upstream pump when a request ends (``event`` is
    ``"response"`` or ``"error"``; ``payload`` the final message). Handy to save history.

Receivers are called synchronously; one that raises is logged and skipped (never the view).
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["DEFER_CALLBACK", "request_starting", "stream_finished", "webhook_received"]

request_starting = Signal()
webhook_received = Signal()
stream_finished = Signal()


class _Defer:
    def __repr__(self) -> str:
        return "DEFER_CALLBACK"


DEFER_CALLBACK = _Defer()
"""Return this from a ``webhook_received`` receiver to call back later yourself."""
