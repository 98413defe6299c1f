"""Ready-made ``MODELRIVER["PERMISSION"]`` callables.

A permission callable receives the ``HttpRequest`` (start, reconnect, cancel) or the ASGI
``scope`` dict (socket connect) and returns True to allow. It may be sync (it then runs in a
thread, so it may use the ORM) or ``async def``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["allow_any", "authenticated_only", "user_of"]


def user_of(request_or_scope: Any) -> Any:
    """The user of a request or a scope (``AuthMiddlewareStack`` puts it there), or None."""
    if isinstance(request_or_scope, dict):
        return request_or_scope.get("user")
    return getattr(request_or_scope, "user", None)


def allow_any(request_or_scope: Any) -> bool:
    """Everyone (the default): requests stay bound to the session that started them."""
    return True


def authenticated_only(request_or_scope: Any) -> bool:
    """Only logged-in users."""
    user = user_of(request_or_scope)
    return bool(getattr(user, "is_authenticated", False))
