"""URLs: ``path("modelriver/", include("django_modelriver.urls"))``.

``start``, ``cancel``, ``webhook``, ``api/v1/ai/reconnect`` (where the official SDK's
``reconnectWithBackend()`` posts when its ``apiBaseUrl`` is the mount) and ``socket`` (the
``websocket_url`` base; the socket itself is ``routing.websocket_urlpatterns``).
"""

from __future__ import annotations

from django.urls import path

from django_modelriver import views

app_name = "django_modelriver"

urlpatterns = [
    path("start", views.start, name="start"),
    path("cancel", views.cancel, name="cancel"),
    path("webhook", views.webhook, name="webhook"),
    path("api/v1/ai/reconnect", views.reconnect, name="reconnect"),
    path("socket", views.socket_info, name="socket"),
]
