"""The demo's app: the page, and the webhook enrichment receiver."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        from chat import receivers  # noqa: F401  (connects the signal receiver)
