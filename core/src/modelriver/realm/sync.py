"""``SyncRealmClient``: ``RealmClient`` for sync code, run on a private loop thread (``Portal``).

    with SyncRealmClient("ws://localhost:8080", api_key="sk_...") as realm:
        print(realm.generate("Hello").text)
        for text in realm.generate_stream("Tell me a story"):
            print(text, end="")

Callbacks registered with ``on()`` run on the client's loop thread: they must not call back into
the sync client (that would wait on the thread that has to answer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelriver._portal import Portal, forward, forward_iter, forward_property, same_args
from modelriver.realm.client import Callback, RealmClient

__all__ = ["SyncRealmClient"]


class SyncRealmClient:
    """The same client as ``RealmClient``, with blocking methods. Arguments as ``RealmClient``.

    Construction does not connect: call ``connect()`` or use it as a context manager. Each
    method runs ``RealmClient``'s of the same name (same arguments, see there) on the loop thread;
    ``generate_stream`` and ``generate_events`` return iterators (closing one early cancels the call).
    """

    @same_args(RealmClient)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._twin = RealmClient(*args, **kwargs)
        self._portal = Portal("modelriver-realm")

    @property
    def client(self) -> RealmClient:
        """The async client underneath (use it only from the portal's loop)."""
        return self._twin

    is_connected = forward_property(RealmClient.is_connected)
    tenant_id = forward_property(RealmClient.tenant_id)
    capabilities = forward_property(RealmClient.capabilities)

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """See ``RealmClient.on``; the callback runs on the client's loop thread."""
        return self._twin.on(event, callback)

    def off(self, event: str | None = None, callback: Callback | None = None) -> None:
        self._twin.off(event, callback)

    def connect(self) -> SyncRealmClient:
        """Open the socket and authenticate; see ``RealmClient.connect``."""
        self._portal.call(self._twin.connect())
        return self

    generate = forward(RealmClient.generate)
    generate_stream = forward_iter(RealmClient.generate_stream)
    generate_events = forward_iter(RealmClient.generate_events)
    execute_pipeline = forward(RealmClient.execute_pipeline)
    health = forward(RealmClient.health)
    metadata = forward(RealmClient.metadata)
    call = forward(RealmClient.call)

    disconnect = forward(RealmClient.disconnect)
    """Close the socket (the loop thread stays, so ``connect()`` works again)."""

    def close(self) -> None:
        """Disconnect and stop the loop thread. Idempotent."""
        self._portal.close_after(self._twin.disconnect)

    def __enter__(self) -> SyncRealmClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()
