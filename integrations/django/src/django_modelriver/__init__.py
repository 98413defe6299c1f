"""django_modelriver: stream ModelRiver answers to your users through Django Channels.

The browser talks only to Django; the API key stays on the server. Setup (30 seconds)::

    # settings.py
    INSTALLED_APPS = ["daphne", ..., "channels", "django_modelriver"]
    ASGI_APPLICATION = "mysite.asgi.application"
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    MODELRIVER = {"DEFAULT_WORKFLOW": "my-chat"}   # key from MODELRIVER_API_KEY

    # urls.py
    path("modelriver/", include("django_modelriver.urls"))

    # asgi.py
    django_asgi = get_asgi_application()
    from django_modelriver.routing import websocket_application
    application = ProtocolTypeRouter({"http": django_asgi, "websocket": websocket_application()})

    # a template
    {% load modelriver %}{% modelriver_chat %}

``POST /modelriver/start`` ``{message}`` answers ModelRiver's async shape pointing at Django's
own Phoenix socket (``/modelriver/socket``), so ``modelriver.js`` (shipped here), phoenix.js or
the official ModelRiver SDK (``apiBaseUrl: "/modelriver"``) connect unchanged. One upstream
pump per request relays every event to every tab; reloads resume from the replay buffer. For
several processes use ``channels_redis``: the pump lock, the replay buffer and the fan-out move
to Redis. Webhooks: ``/modelriver/webhook`` verifies and sends ``signals.webhook_received``.
Requests go to ModelRiver by default; ``MODELRIVER_UPSTREAM=realm`` (core's switch) or
``MODELRIVER['UPSTREAM']`` (a factory of any ``modelriver.upstream.AsyncUpstream``) sends them
elsewhere, e.g. to a Realm server (no webhooks there).

Modules: ``conf`` (settings), ``checks``, ``views``, ``consumers``, ``routing``, ``hub`` and
``pump`` (the relay), ``store`` (memory / Redis state), ``tokens``, ``signals``, ``callbacks``,
``permissions``, ``templatetags.modelriver``.
"""

from typing import Any

from django_modelriver._version import __version__

__all__ = ["DEFER_CALLBACK", "__version__", "asend_callback", "send_callback"]

_LAZY = {
    "DEFER_CALLBACK": "django_modelriver.signals",
    "asend_callback": "django_modelriver.callbacks",
    "send_callback": "django_modelriver.callbacks",
}


def __getattr__(name: str) -> Any:
    # Lazy: this package is imported by INSTALLED_APPS before Django is set up.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'django_modelriver' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
