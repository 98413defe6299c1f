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
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from typing import Any, TypeVar

from modelriver._portal import Portal
from modelriver.events import StreamEvent
from modelriver.realm.client import Callback, RealmClient
from modelriver.realm.protocol import AUTH_TIMEOUT, DEFAULT_MAX_FRAME, DEFAULT_URL, GenerateResult

__all__ = ["SyncRealmClient"]

T = TypeVar("T")


class SyncRealmClient:
    """The same client as ``RealmClient``, with blocking methods. Arguments as ``RealmClient``.

    Construction does not connect: call ``connect()`` or use it as a context manager.
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
        self._client = RealmClient(
            url, model=model, api_key=api_key, tenant_id=tenant_id, reconnect=reconnect,
            reconnect_interval=reconnect_interval, timeout=timeout, auth_timeout=auth_timeout,
            open_timeout=open_timeout, max_frame_size=max_frame_size, ping_interval=ping_interval,
        )

    @property
    def client(self) -> RealmClient:
        """The async client underneath (use it only from the portal's loop)."""
        return self._client

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected

    @property
    def tenant_id(self) -> str:
        return self._client.tenant_id

    @property
    def capabilities(self) -> tuple[str, ...]:
        """See ``RealmClient.capabilities``."""
        return self._client.capabilities

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """See ``RealmClient.on``; the callback runs on the client's loop thread."""
        return self._client.on(event, callback)

    def off(self, event: str | None = None, callback: Callback | None = None) -> None:
        self._client.off(event, callback)

    def connect(self) -> SyncRealmClient:
        """Open the socket and authenticate; see ``RealmClient.connect``."""
        self._portal.call(self._client.connect())
        return self

    def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = 100,
        temperature: float | None = 0.7,
        top_p: float | None = None,
        params: Mapping[str, Any] | None = None,
        call_timeout: float | None = None,
    ) -> GenerateResult:
        """See ``RealmClient.generate``."""
        return self._portal.call(self._client.generate(
            prompt, model=model, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            params=params, call_timeout=call_timeout,
        ))

    def generate_stream(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = 100,
        temperature: float | None = 0.7,
        top_p: float | None = None,
        params: Mapping[str, Any] | None = None,
        call_timeout: float | None = None,
    ) -> Iterator[str]:
        """See ``RealmClient.generate_stream``; closing the iterator early cancels the call."""
        return self._iterate(self._client.generate_stream(
            prompt, model=model, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            params=params, call_timeout=call_timeout,
        ))

    def generate_events(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = 100,
        temperature: float | None = 0.7,
        top_p: float | None = None,
        params: Mapping[str, Any] | None = None,
        call_timeout: float | None = None,
    ) -> Iterator[StreamEvent]:
        """See ``RealmClient.generate_events``."""
        return self._iterate(self._client.generate_events(
            prompt, model=model, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            params=params, call_timeout=call_timeout,
        ))

    def execute_pipeline(self, name: str, input: Any = None, *, call_timeout: float | None = None) -> Any:
        """See ``RealmClient.execute_pipeline``."""
        return self._portal.call(self._client.execute_pipeline(name, input, call_timeout=call_timeout))

    def health(self, *, call_timeout: float | None = None) -> dict[str, Any]:
        return self._portal.call(self._client.health(call_timeout=call_timeout))

    def metadata(self, *, call_timeout: float | None = None) -> dict[str, Any]:
        return self._portal.call(self._client.metadata(call_timeout=call_timeout))

    def call(
        self, function: str, params: Mapping[str, Any] | None = None, *, call_timeout: float | None = None
    ) -> Any:
        """See ``RealmClient.call``."""
        return self._portal.call(self._client.call(function, params, call_timeout=call_timeout))

    def disconnect(self) -> None:
        """Close the socket (the loop thread stays, so ``connect()`` works again)."""
        self._portal.call(self._client.disconnect())

    def close(self) -> None:
        """Disconnect and stop the loop thread. Idempotent."""
        if self._portal.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            self._portal.call(self._client.disconnect())
        self._portal.close()

    def __enter__(self) -> SyncRealmClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _iterate(self, agen: AsyncGenerator[T, None]) -> Iterator[T]:
        portal = self._portal
        try:
            while True:
                try:
                    item = portal.call(anext(agen))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            if not portal.loop.is_closed():
                with contextlib.suppress(Exception):
                    portal.call(agen.aclose())
