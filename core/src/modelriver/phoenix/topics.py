"""ModelRiver's channel topics: which spellings a socket token may join (one rule, every server).

A request's channel is joined as its issued ``websocket_channel`` (``ai_response:<project>:<channel>``)
or as the SDK's fallback ``ai_response:<channel>``, spelled exactly as issued. Other spellings of the
same channel (upper case, braces, another project part) are refused, so a client cannot subscribe
once per spelling and have every event sent again for each.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

__all__ = ["channel_topics", "parse_topic", "topic_refusal"]


def _is_uuid(text: str) -> bool:
    if len(text) != 36:
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def parse_topic(topic: str) -> tuple[str | None, str] | str:
    """Split ``ai_response:<project>:<channel>`` or ``ai_response:<channel>``.

    Returns:
        ``(project_id or None, channel_id)``, or the refusal reason for a malformed topic:
        ``invalid_channel_format``, ``invalid_project_uuid`` or ``invalid_channel_uuid``.
    """
    parts = topic.split(":")
    if parts[0] != "ai_response" or len(parts) not in (2, 3):
        return "invalid_channel_format"
    project = parts[1] if len(parts) == 3 else None
    channel = parts[-1]
    if project is not None and not _is_uuid(project):
        return "invalid_project_uuid"
    if not _is_uuid(channel):
        return "invalid_channel_uuid"
    return project, channel


def channel_topics(channel_id: str, topic: str | None) -> tuple[str, ...]:
    """The topics a token for ``channel_id`` may join: its issued ``topic`` and the fallback."""
    fallback = f"ai_response:{channel_id}"
    return (topic, fallback) if topic and topic != fallback else (fallback,)


def topic_refusal(topic: str, allowed: Collection[str]) -> str | None:
    """None when ``topic`` is one of ``allowed`` (``channel_topics``), else the refusal reason.

    Reasons: ``parse_topic``'s for a malformed topic; ``noncanonical_topic`` for another spelling
    of an allowed channel; ``unauthorized_project_access`` for any other channel.
    """
    if topic in allowed:
        return None
    parsed = parse_topic(topic)
    if isinstance(parsed, str):
        return parsed
    channel = uuid.UUID(parsed[1])
    for own in allowed:
        own_parsed = parse_topic(own)
        if not isinstance(own_parsed, str) and uuid.UUID(own_parsed[1]) == channel and (
                parsed[0] is None or (own_parsed[0] is not None
                and uuid.UUID(own_parsed[0]) == uuid.UUID(parsed[0]))):
            return "noncanonical_topic"
    return "unauthorized_project_access"
