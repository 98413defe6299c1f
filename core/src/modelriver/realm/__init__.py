"""Realm, a second upstream: its WebSocket inference protocol (PROTOCOL §7), client and server.

    from modelriver.realm import RealmClient

    async with RealmClient("ws://localhost:8080", api_key="sk_...") as realm:
        async for event in realm.generate_events("Hello"):   # Token..., then Response (or Error)
            ...

Modules: ``protocol`` (sans-I/O frames), ``client`` (``RealmClient``, asyncio), ``sync``
(``SyncRealmClient``), ``server`` (``RealmServer`` / ``serve``: a Realm endpoint over any
generator of text chunks), ``ratelimit`` (per-tenant token bucket), ``exceptions``.

Ours, beyond Realm's published protocol: ``{type: "cancel", id}`` stops a call (answered
``{id, status: "cancelled"}``); frames the server cannot use get an ``INVALID_PARAMS`` error
answer (``id`` null when the frame named no call); rate-limit errors carry
``details.retry_after`` in seconds.
"""

from modelriver.realm.client import EVENTS, RealmClient
from modelriver.realm.exceptions import (
    RealmAuthenticationError,
    RealmCancelledError,
    RealmConnectionError,
    RealmError,
    RealmInternalError,
    RealmInvalidParamsError,
    RealmProtocolError,
    RealmRateLimitError,
    RealmTimeoutError,
)
from modelriver.realm.protocol import DEFAULT_URL, GenerateResult, TokenRecord
from modelriver.realm.server import (
    GenerateRequest,
    Generator,
    Pipeline,
    RealmServer,
    builtin_pipelines,
    echo_generator,
    serve,
)
from modelriver.realm.sync import SyncRealmClient

__all__ = [
    "DEFAULT_URL",
    "EVENTS",
    "GenerateRequest",
    "GenerateResult",
    "Generator",
    "Pipeline",
    "RealmAuthenticationError",
    "RealmCancelledError",
    "RealmClient",
    "RealmConnectionError",
    "RealmError",
    "RealmInternalError",
    "RealmInvalidParamsError",
    "RealmProtocolError",
    "RealmRateLimitError",
    "RealmServer",
    "RealmTimeoutError",
    "SyncRealmClient",
    "TokenRecord",
    "builtin_pipelines",
    "echo_generator",
    "serve",
]
