"""WebSocket routing: the Phoenix socket at ``<mount>/socket/websocket``.

    # asgi.py
    from django.core.asgi import get_asgi_application
    django_asgi = get_asgi_application()

    from channels.routing import ProtocolTypeRouter
    from django_modelriver.routing import websocket_application

    application = ProtocolTypeRouter({"http": django_asgi, "websocket": websocket_application()})

``websocket_application()`` is ``AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))``
(the auth stack only when sessions and auth are installed). To combine with your own routes,
use ``websocket_urlpatterns`` in your ``URLRouter`` instead. The pattern accepts any mount
prefix, so it matches wherever ``django_modelriver.urls`` is included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django.urls import re_path

from django_modelriver.consumers import ModelRiverConsumer

__all__ = ["RAW_SEND", "websocket_application", "websocket_urlpatterns"]

# An ASGI app where django-stubs expects a view: Channels routes re_path()s of consumers.
websocket_urlpatterns: list[Any] = [
    re_path(r"^(?:.+/)?socket/websocket/?$", cast("Any", ModelRiverConsumer.as_asgi()), name="modelriver-socket"),
]


RAW_SEND = "django_modelriver.send"
"""Scope key of the server's own ``send``, for the relay's frames (see ``websocket_application``)."""


class _ServerSend:
    """Keeps the server's ``send`` in the scope, under the session and auth middlewares.

    Their ``send`` wrappers look at ``http.response.start`` only, yet cost a few microseconds on
    every ``websocket.send``; the consumer writes its frames with the server's own ``send``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await self.app({**scope, RAW_SEND: send}, receive, send)


def websocket_application(extra_patterns: Sequence[Any] = ()) -> Any:
    """The websocket ASGI app: Origin check, sessions and users, then the routes."""
    from channels.routing import URLRouter
    from channels.security.websocket import AllowedHostsOriginValidator
    from django.apps import apps

    app: Any = URLRouter([*extra_patterns, *websocket_urlpatterns])
    if apps.is_installed("django.contrib.sessions") and apps.is_installed("django.contrib.auth"):
        from channels.auth import AuthMiddlewareStack

        app = AuthMiddlewareStack(app)
    return AllowedHostsOriginValidator(_ServerSend(app))
