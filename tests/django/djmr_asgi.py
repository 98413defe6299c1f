"""ASGI app of the in-process tests (the websocket side, as a project writes it)."""

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

from django_modelriver.routing import websocket_application

application = ProtocolTypeRouter({"http": get_asgi_application(), "websocket": websocket_application()})
