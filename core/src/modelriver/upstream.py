"""The ``Upstream`` seam: where requests go, ModelRiver or Realm, behind one small interface.

    from modelriver.upstream import upstream_from_env

    upstream = upstream_from_env()          # AsyncModelRiver, or RealmUpstream when
                                            # MODELRIVER_UPSTREAM=realm (REALM_URL, REALM_API_KEY)
    request = await upstream.create_request("demo-chat", [{"role": "user", "content": "Hi"}])
    stream = await upstream.connect(request)
    async for event in stream:              # core StreamEvents: Token, Status, Step, Response...
        ...
    await stream.close()

The interface is what the adapters call on a ModelRiver client: ``create_request``, ``connect``
(a stream of core ``StreamEvent``s with ``.text``, ``.response``, ``close()``), ``reconnect``,
``cancel``. ``AsyncModelRiver`` and ``ModelRiver`` (``modelriver.api``) implement
``AsyncUpstream`` / ``Upstream`` as they are; ``RealmUpstream`` and ``SyncRealmUpstream``
(``modelriver.realm.upstream``, which says how a request maps onto Realm) implement them over a
``RealmClient``. This module holds the seam and the factories that choose by environment; they
import the implementations lazily, so it imports neither HTTP nor Realm code.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from modelriver._emitter import Callback
from modelriver.events import StreamEvent
from modelriver.exceptions import UpstreamError
from modelriver.stream import AsyncUpstreamStream
from modelriver.types import AIResponse, AsyncRequest

if TYPE_CHECKING:
    from modelriver.api import Messages
    from modelriver.realm.upstream import PromptMode, RealmStream, RealmUpstream, SyncRealmUpstream

__all__ = [
    "ENV_REALM_API_KEY",
    "ENV_REALM_URL",
    "ENV_UPSTREAM",
    "AsyncUpstream",
    "AsyncUpstreamStream",
    "PromptMode",
    "RealmStream",
    "RealmUpstream",
    "SyncRealmUpstream",
    "SyncUpstreamStream",
    "Upstream",
    "UpstreamError",
    "sync_upstream_from_env",
    "upstream_from_env",
    "upstream_name",
]

ENV_UPSTREAM = "MODELRIVER_UPSTREAM"
"""``realm`` selects Realm in ``upstream_from_env()``; unset or ``modelriver``: ModelRiver; else an error."""
ENV_REALM_URL = "REALM_URL"
ENV_REALM_API_KEY = "REALM_API_KEY"

_REALM_NAMES = ("PromptMode", "RealmStream", "RealmUpstream", "SyncRealmUpstream")


def __getattr__(name: str) -> Any:
    """The Realm adapter's names, at their former home (they live in ``modelriver.realm.upstream``)."""
    if name in _REALM_NAMES:
        return getattr(importlib.import_module("modelriver.realm.upstream"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the seam ---------------------------------------------------------------------------------------


class AsyncUpstream(Protocol):
    """Where requests go, asyncio (``AsyncModelRiver`` is one, ``RealmUpstream`` another)."""

    @property
    def api_base(self) -> str:
        """Where requests go (an HTTP API base, or a Realm URL): for messages and logs."""
        ...

    async def create_request(self, workflow: str, messages: Messages, *, events: Sequence[str] | None = None,
                             webhook_url: str | None = None,
                             metadata: Mapping[str, Any] | None = None) -> AsyncRequest: ...

    async def connect(self, request: AsyncRequest, *, last_seq: int | None = None,
                      request_timeout: float | None = 300.0, coalesce: bool = False) -> AsyncUpstreamStream: ...

    async def reconnect(self, channel_id: str) -> AsyncRequest: ...

    async def cancel(self, channel_id: str) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class SyncUpstreamStream(Protocol):
    """One request's events, for sync code (``modelriver.stream.SyncStream`` is one)."""

    @property
    def response(self) -> AIResponse | None: ...

    @property
    def text(self) -> str: ...

    def on(self, event: str, callback: Callback) -> Callable[[], None]: ...

    def __iter__(self) -> Iterator[StreamEvent]: ...

    def close(self) -> None: ...


class Upstream(Protocol):
    """Where requests go, sync (``ModelRiver`` is one, ``SyncRealmUpstream`` another)."""

    @property
    def api_base(self) -> str:
        """Where requests go (an HTTP API base, or a Realm URL): for messages and logs."""
        ...

    def create_request(self, workflow: str, messages: Messages, *, events: Sequence[str] | None = None,
                       webhook_url: str | None = None,
                       metadata: Mapping[str, Any] | None = None) -> AsyncRequest: ...

    def connect(self, request: AsyncRequest, *, last_seq: int | None = None,
                request_timeout: float | None = 300.0, coalesce: bool = False) -> SyncUpstreamStream: ...

    def reconnect(self, channel_id: str) -> AsyncRequest: ...

    def cancel(self, channel_id: str) -> dict[str, Any]: ...

    def close(self) -> None: ...


# -- choosing by environment ------------------------------------------------------------------------


def upstream_name(environ: Mapping[str, str] = os.environ) -> Literal["modelriver", "realm"]:
    """Which upstream ``MODELRIVER_UPSTREAM`` names: ``modelriver`` (also when unset) or ``realm``.

    Raises:
        ValueError: any other value (a typo would otherwise send requests somewhere else silently).
    """
    value = (environ.get(ENV_UPSTREAM) or "").strip().lower()
    if value in ("", "modelriver"):
        return "modelriver"
    if value == "realm":
        return "realm"
    raise ValueError(f"{ENV_UPSTREAM}={environ.get(ENV_UPSTREAM)!r}: expected 'modelriver' or 'realm'")


def _realm_settings(environ: Mapping[str, str]) -> tuple[str, str | None] | None:
    if upstream_name(environ) != "realm":
        return None
    from modelriver.realm.protocol import DEFAULT_URL

    return (environ.get(ENV_REALM_URL) or DEFAULT_URL), (environ.get(ENV_REALM_API_KEY) or None)


def upstream_from_env(environ: Mapping[str, str] = os.environ) -> AsyncUpstream:
    """The async upstream the environment selects.

    ``MODELRIVER_UPSTREAM=realm``: a ``RealmUpstream`` on ``REALM_URL`` (default
    ``ws://localhost:8080``) with ``REALM_API_KEY``; unset or ``modelriver``: an ``AsyncModelRiver``
    (which reads ``MODELRIVER_API_KEY`` / ``MODELRIVER_API_BASE``).

    Raises:
        ValueError: ``MODELRIVER_UPSTREAM`` names no known upstream.
    """
    realm = _realm_settings(environ)
    if realm is not None:
        from modelriver.realm.upstream import RealmUpstream

        return RealmUpstream(realm[0], api_key=realm[1])
    from modelriver._config import Settings
    from modelriver.api import AsyncModelRiver

    settings = Settings.from_env(environ)
    return AsyncModelRiver(settings.api_key, api_base=settings.api_base)


def sync_upstream_from_env(environ: Mapping[str, str] = os.environ) -> Upstream:
    """``upstream_from_env`` for sync code: ``SyncRealmUpstream`` or ``ModelRiver``."""
    realm = _realm_settings(environ)
    if realm is not None:
        from modelriver.realm.upstream import SyncRealmUpstream

        return SyncRealmUpstream(realm[0], api_key=realm[1])
    from modelriver._config import Settings
    from modelriver.api import ModelRiver

    settings = Settings.from_env(environ)
    return ModelRiver(settings.api_key, api_base=settings.api_base)


if TYPE_CHECKING:  # the seam's implementations, checked by mypy
    from modelriver.api import AsyncModelRiver, ModelRiver

    def _conforms(a: AsyncModelRiver, b: ModelRiver, c: RealmUpstream, d: SyncRealmUpstream) -> None:
        _a: AsyncUpstream = a
        _b: Upstream = b
        _c: AsyncUpstream = c
        _d: Upstream = d

