"""Realm, a second upstream: its WebSocket inference protocol (PROTOCOL §7), client and server.

    from modelriver.realm import RealmClient

    async with RealmClient("ws://localhost:8080", api_key="sk_...") as realm:
        async for event in realm.generate_events("Hello"):   # Token..., then Response (or Error)
            ...

Modules: ``protocol`` (sans-I/O frames), ``client`` (``RealmClient``, asyncio), ``sync``
(``SyncRealmClient``), ``server`` (``RealmServer`` / ``serve``: a Realm endpoint over any
generator of text chunks), ``upstream`` (``RealmUpstream``: a Realm server behind
``modelriver.upstream``'s seam), ``exceptions``; the rate limit is core's ``modelriver.ratelimit``.

Ours, beyond Realm's server (which ``RealmClient`` also speaks to, as PROTOCOL §7 describes it):
``{type: "cancel", id}`` stops a call (answered ``{id, status: "cancelled"}``), announced by
``capabilities: ["cancel"]`` in the welcome frame; calls on one socket run concurrently; a
rate-limit error carries ``retry_after`` (seconds) next to Realm's message text; ``pipeline``
accepts ``name`` for ``pipeline``; an endpoint bills the key's tenant whatever a call's
``tenant_id`` says.
"""

from modelriver.realm import exceptions
from modelriver.realm.client import EVENTS, RealmClient
from modelriver.realm.exceptions import *  # noqa: F403 (the errors and their codes: exceptions.__all__)
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
    "RealmClient",
    "RealmServer",
    "SyncRealmClient",
    "TokenRecord",
    "builtin_pipelines",
    "echo_generator",
    "serve",
]
__all__ += exceptions.__all__  # every Realm error and code, as ``exceptions`` lists them
