"""Django-issued socket tokens: short-lived, bound to one channel and its owner (PROTOCOL §2).

A token is ``django.core.signing.dumps({"c": channel_id, "o": owner, "j": jti})`` with this
module's salt: signed with ``SECRET_KEY``, timestamped, valid for ``TOKEN_LIFETIME`` seconds.
It opens only its own channel, by at most one live socket at a time (the ``jti`` is claimed
while a socket is open), and is accepted again for reconnects until it expires or
``END_GRACE`` seconds after its request ended. It is not the API key and says nothing about it.

``owner`` is the random id the start view keeps in the session (``SESSION_KEY``): with
``BIND_TOKEN_TO_SESSION`` (the default) the socket opens only when the connecting request's
session holds that same id (``session_owner``), so a token is worthless with another session's
cookie or none. This holds for every session engine (a session key would not: signed-cookie
sessions change theirs on each save, and login cycles it).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signing

__all__ = ["END_GRACE", "SALT", "SESSION_KEY", "SocketClaims", "issue_token", "session_owner",
           "verify_token"]

logger = logging.getLogger("django_modelriver")

SESSION_KEY = "_modelriver_owner"
"""Session key of the owner id the start view gives a session (a random string)."""

SALT = "django_modelriver.socket"
END_GRACE = 60.0
"""Seconds after its request ended that a token still opens a socket (for late reconnects)."""


@dataclass(frozen=True, slots=True)
class SocketClaims:
    """What a valid token says: its channel, the owner it was issued to, and its id."""

    channel_id: str
    owner: str
    jti: str


def issue_token(channel_id: str, owner: str) -> str:
    """A fresh token for ``owner`` to open ``channel_id``'s socket."""
    token: str = signing.dumps({"c": channel_id, "o": owner, "j": secrets.token_urlsafe(12)},
                               salt=SALT, compress=False)
    return token


def verify_token(token: str | None, *, max_age: float) -> SocketClaims | None:
    """The claims of a genuine, unexpired token; None for anything else (never raises)."""
    if not token or len(token) > 4096:
        return None
    try:
        value = signing.loads(token, salt=SALT, max_age=timedelta(seconds=max_age))
    except (signing.BadSignature, ValueError, TypeError):  # SignatureExpired is a BadSignature
        return None
    if not isinstance(value, dict):
        return None
    channel_id, owner, jti = value.get("c"), value.get("o"), value.get("j")
    if not (isinstance(channel_id, str) and isinstance(owner, str) and isinstance(jti, str)):
        return None
    return SocketClaims(channel_id, owner, jti)


async def session_owner(scope: Mapping[str, Any]) -> str | None:
    """The owner id in a socket's session (Channels' ``SessionMiddleware`` puts it in the scope).

    Returns:
        The id, or None without a session, without one in it, or when the session store fails.
    """
    session = scope.get("session")
    if session is None:
        return None
    try:
        owner = await sync_to_async(session.get)(SESSION_KEY)
    except Exception:  # the store is down, or the table missing: no owner, no socket
        logger.warning("the session store failed at socket connect", exc_info=True)
        return None
    return owner if isinstance(owner, str) else None
