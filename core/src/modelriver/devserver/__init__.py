"""``modelriver dev``: the embedded, ModelRiver-compatible gateway (docs/gateway.md).

    from modelriver.devserver import GatewayConfig, create_app, run

    run(GatewayConfig(api_key="mr_dev_..."), port=8787)      # blocking, like the CLI
    app = create_app(GatewayConfig(api_key="..."))           # or any ASGI server (lifespan on)

Modules: ``config`` (settings, TOML, built-in workflows), ``providers`` (scripted and
OpenAI-compatible), ``tokens`` (socket JWTs, topic rules), ``requests`` (one request's run and
the replay store), ``socket`` (the Phoenix endpoint), ``http`` (routes), ``webhook_delivery``,
``realm_endpoint`` (Realm's protocol over the workflows, ``--realm-port``),
``gateway`` (the state), ``app`` (``create_app``), ``server`` (uvicorn).
Needs the ``gateway`` extra: ``pip install 'modelriver[gateway]'``.
"""

from __future__ import annotations

import importlib.util

_missing = [name for name in ("starlette", "uvicorn", "jsonschema")
            if importlib.util.find_spec(name) is None]
if _missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"modelriver.devserver needs the 'gateway' extra ({', '.join(_missing)} missing): "
        "pip install 'modelriver[gateway]'"
    )

from modelriver.devserver.app import create_app  # noqa: E402
from modelriver.devserver.config import (  # noqa: E402
    ConfigError,
    GatewayConfig,
    OpenAIProviderConfig,
    RealmEndpointConfig,
    ScriptedProviderConfig,
    ServerConfig,
    WorkflowConfig,
    load_config,
)
from modelriver.devserver.server import run, serve  # noqa: E402

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "OpenAIProviderConfig",
    "RealmEndpointConfig",
    "ScriptedProviderConfig",
    "ServerConfig",
    "WorkflowConfig",
    "create_app",
    "load_config",
    "run",
    "serve",
]
