"""``modelriver dev``: the embedded, ModelRiver-compatible gateway (docs/gateway.md).

    from modelriver.devserver import GatewayConfig, create_app, run

    run(GatewayConfig(api_key="mr_dev_..."), port=8787)      # blocking, like the CLI
    app = create_app(GatewayConfig(api_key="..."))           # or any ASGI server (lifespan on)

Modules: ``config`` (settings, TOML, built-in workflows), ``providers`` (scripted and
OpenAI-compatible), ``tokens`` (socket JWTs, topic rules), ``requests`` (one request's run and
the replay store), ``socket`` (the Phoenix endpoint), ``http`` (routes), ``webhook_delivery``,
``gateway`` (the state), ``app`` (``create_app``), ``server`` (uvicorn).
Needs the ``dev`` extra: ``pip install 'modelriver[dev]'``.
"""

from __future__ import annotations

try:
    import jsonschema  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"modelriver.devserver needs the 'dev' extra ({exc.name} is missing): "
        "pip install 'modelriver[dev]'"
    ) from exc

from modelriver.devserver.app import create_app
from modelriver.devserver.config import (
    ConfigError,
    GatewayConfig,
    OpenAIProviderConfig,
    ScriptedProviderConfig,
    ServerConfig,
    WorkflowConfig,
    load_config,
)
from modelriver.devserver.server import run, serve

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "OpenAIProviderConfig",
    "ScriptedProviderConfig",
    "ServerConfig",
    "WorkflowConfig",
    "create_app",
    "load_config",
    "run",
    "serve",
]
