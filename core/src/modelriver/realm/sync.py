"""``SyncRealmClient``: ``RealmClient`` for sync code, run on a private loop thread (``Portal``).

    with SyncRealmClient("ws://localhost:8080", api_key="sk_...") as realm:
        print(realm.generate("Hello").text)
        for text in realm.generate_stream("Tell me a story"):
            print(text, end="")

Callbacks registered with ``on()`` run on the client's loop thread: they must not call back into
the sync client (that would wait on the thread that has to answer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from modelriver._portal import Portal, forward, forward_iter
from modelriver.realm.client import Callback, RealmClient
from modelriver.realm.protocol import AUTH_TIMEOUT, DEFAULT_MAX_FRAME, DEFAULT_URL

__all__ = ["SyncRealmClient"]


class SyncRealmClient:
    """The same client as ``RealmClient``, with blocking methods. Arguments as ``RealmClient``.

    Construction does not connect: call ``connect()`` or use it as a context manager. Each
    method runs ``RealmClient``'s of the same name (same arguments, see there) on the loop thread;
    ``generate_stream`` and ``generate_events`` return iterators (closing one early cancels the call).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        model: str | None = None,
        api_key: str | None = None,
        tenant_id: str | None = None,
        reconnect: bool = True,
        reconnect_interval: float = 5.0,
        timeout: float | None = 30.0,
        auth_timeout: float = AUTH_TIMEOUT,
        open_timeout: float = 10.0,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        ping_interval: float | None = 20.0,
    ) -> None:
        self._portal = Portal("modelriver-realm")
        self._twin = RealmClient(
            url, model=model, api_key=api_key, tenant_id=tenant_id, reconnect=reconnect,
            reconnect_interval=reconnect_interval, timeout=timeout, auth_timeout=auth_timeout,
            open_timeout=open_timeout, max_frame_size=max_frame_size, ping_interval=ping_interval,
        )

    @property
    def client(self) -> RealmClient:
        """The async client underneath (use it only from the portal's loop)."""
        return self._twin

    @property
    def is_connected(self) -> bool:
        return self._twin.is_connected

    @property
    def tenant_id(self) -> str:
        return self._twin.tenant_id

    @property
    def capabilities(self) -> tuple[str, ...]:
        """See ``RealmClient.capabilities``."""
        return self._twin.capabilities

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
        if self._portal.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            self._portal.call(self._twin.disconnect())
        self._portal.close()

    def __enter__(self) -> SyncRealmClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()
