"""Call back later: for event-driven requests whose ``webhook_received`` receiver deferred.

    from django_modelriver.callbacks import asend_callback, send_callback

    await asend_callback(channel_id, {"approved": True})   # in async code
    send_callback(channel_id, {"approved": True})          # in sync code (views, tasks)

The ``callback_url`` (and ``task_id``) the webhook carried are remembered by the webhook view;
without them the API's ``/v1/callback/<channel_id>`` is used with the API key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asgiref.sync import async_to_sync

from django_modelriver.hub import get_hub

__all__ = ["asend_callback", "send_callback"]


async def asend_callback(channel_id: str, data: Mapping[str, Any], *, task_id: str | None = None
                         ) -> dict[str, Any]:
    """Post the enriched ``data`` for ``channel_id``; the channel then gets ``completed``.

    Raises:
        modelriver.upstream.UpstreamError: the upstream has no callback API (only ModelRiver's has).
        modelriver.exceptions.ModelRiverError: the callback failed (409: not waiting for one).
    """
    hub = get_hub()
    upstream = hub.callback_upstream()
    info = await hub.backend.get_callback(channel_id) or {}
    return await upstream.callback(
        channel_id, data, task_id=task_id or info.get("task_id"), callback_url=info.get("callback_url"))


def send_callback(channel_id: str, data: Mapping[str, Any], *, task_id: str | None = None
                  ) -> dict[str, Any]:
    """``asend_callback`` for sync code (under an ASGI server it runs on the server's loop)."""
    result: dict[str, Any] = async_to_sync(asend_callback)(channel_id, data, task_id=task_id)
    return result
