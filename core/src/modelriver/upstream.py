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
``RealmClient``. This module holds the seam and the factories that choose by settings
(``modelriver.settings.Settings``; the ``_from_env`` ones read it from the environment); they
import the implementations lazily, so it imports neither HTTP nor Realm code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from modelriver._emitter import Callback
from modelriver.events import StreamEvent
from modelriver.exceptions import UpstreamError
from modelriver.settings import ENV_REALM_API_KEY, ENV_REALM_URL, ENV_UPSTREAM, Settings
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
    "sync_upstream_from_settings",
    "upstream_from_env",
    "upstream_from_settings",
    "upstream_name",
]


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


# -- choosing by settings ---------------------------------------------------------------------------


def upstream_name(environ: Mapping[str, str] | None = None) -> Literal["modelriver", "realm"]:
    """Which upstream ``MODELRIVER_UPSTREAM`` names: ``modelriver`` (also when unset) or ``realm``.

    Args:
        environ: the mapping to read; the environment when None (``Settings.from_env``).

    Raises:
        ValueError: any other value (a typo would otherwise send requests somewhere else silently).
    """
    return Settings.from_env(environ).upstream_name()


def _realm_target(settings: Settings) -> tuple[str, str | None] | None:
    if settings.upstream_name() != "realm":
        return None
    from modelriver.realm.protocol import DEFAULT_URL

    return (settings.realm_url or DEFAULT_URL), settings.realm_api_key


def upstream_from_settings(settings: Settings) -> AsyncUpstream:
    """The async upstream the settings select.

    ``upstream="realm"``: a ``RealmUpstream`` on ``realm_url`` (default ``ws://localhost:8080``)
    with ``realm_api_key``; unset or ``modelriver``: an ``AsyncModelRiver`` on ``api_key`` /
    ``api_base``.

    Raises:
        ValueError: ``settings.upstream`` names no known upstream.
    """
    realm = _realm_target(settings)
    if realm is not None:
        from modelriver.realm.upstream import RealmUpstream

        return RealmUpstream(realm[0], api_key=realm[1])
    from modelriver.api import AsyncModelRiver

    return AsyncModelRiver(settings.api_key, api_base=settings.api_base)


def sync_upstream_from_settings(settings: Settings) -> Upstream:
    """``upstream_from_settings`` for sync code: ``SyncRealmUpstream`` or ``ModelRiver``."""
    realm = _realm_target(settings)
    if realm is not None:
        from modelriver.realm.upstream import SyncRealmUpstream

        return SyncRealmUpstream(realm[0], api_key=realm[1])
    from modelriver.api import ModelRiver

    return ModelRiver(settings.api_key, api_base=settings.api_base)


def upstream_from_env(environ: Mapping[str, str] | None = None) -> AsyncUpstream:
    """``upstream_from_settings(Settings.from_env(environ))``: ``MODELRIVER_UPSTREAM=realm`` selects
    Realm (``REALM_URL``, ``REALM_API_KEY``), else ModelRiver (``MODELRIVER_API_KEY`` / ``_BASE``).

    Raises:
        ValueError: ``MODELRIVER_UPSTREAM`` names no known upstream.
    """
    return upstream_from_settings(Settings.from_env(environ))


def sync_upstream_from_env(environ: Mapping[str, str] | None = None) -> Upstream:
    """``upstream_from_env`` for sync code: ``SyncRealmUpstream`` or ``ModelRiver``."""
    return sync_upstream_from_settings(Settings.from_env(environ))


if TYPE_CHECKING:  # the seam's implementations, checked by mypy
    from modelriver.api import AsyncModelRiver, ModelRiver

    def _conforms(a: AsyncModelRiver, b: ModelRiver, c: RealmUpstream, d: SyncRealmUpstream) -> None:
        _a: AsyncUpstream = a
        _b: Upstream = b
        _c: AsyncUpstream = c
        _d: Upstream = d

