"""The gateway's configuration: frozen dataclasses, TOML loading and the built-in workflows.

``GatewayConfig()`` serves the six built-in ``demo-*`` workflows with no file at all;
``load_config(path)`` adds (or replaces) workflows and providers from a TOML file
(see docs/gateway.md for its layout). Per-request ``metadata.scripted`` overrides are parsed
here too (``parse_overrides``), so every rule about what may be configured lives in one module.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

__all__ = [
    "BUILTIN_PROVIDERS",
    "BUILTIN_WORKFLOWS",
    "CHATBOT_RESPONSE_SCHEMA",
    "DEFAULT_WEBHOOK_SECRET",
    "ConfigError",
    "GatewayConfig",
    "OpenAIProviderConfig",
    "ProviderConfig",
    "RealmEndpointConfig",
    "ScriptedOverrides",
    "ScriptedProviderConfig",
    "ServerConfig",
    "WorkflowConfig",
    "load_config",
    "parse_overrides",
]

DEFAULT_WEBHOOK_SECRET = "whsec_dev"


class ConfigError(ValueError):
    """The configuration (file or per-request overrides) is invalid; the message names the fix."""


ScriptedFormat = Literal["text", "chatbot_response"]
FailoverMode = Literal["continue", "restart"]


@dataclass(frozen=True, slots=True)
class ScriptedProviderConfig:
    """A deterministic provider: streams a prompt-dependent text at a set pace, with faults on demand.

    Attributes:
        name: the provider's name (as workflows list it).
        text: the answer; ``{prompt}`` stands for the last user message. None: a default
            answer that echoes a short form of the prompt (or, with ``format``
            ``chatbot_response``, a JSON object for that schema).
        format: ``text`` or ``chatbot_response`` (the structured demo's JSON).
        model: the model name reported in events.
        tokens_per_second: pace of the tokens; 0 streams as fast as possible.
        first_token_ms: delay before the first token.
        usage: ``{prompt_tokens, completion_tokens}`` to report instead of the counted ones.
        fail_after: after this many tokens the provider fails (or hangs, with ``hang``); 0 with
            ``error`` set or ``hang`` true: before the first token; 0 otherwise: never.
        error: the failure's message.
        hang: go silent forever instead of failing (until cancelled or the upstream timeout).
        drop_socket_after: close every socket of the channel once after this many tokens.
        invalid_output: produce output that fails the workflow's schema.
        tool_call: ``{name, arguments}`` of a tool call sent before the tokens.
    """

    type: ClassVar[str] = "scripted"

    name: str
    text: str | None = None
    format: ScriptedFormat = "text"
    model: str = "scripted-1"
    tokens_per_second: float = 50.0
    first_token_ms: float = 100.0
    usage: Mapping[str, int] | None = None
    fail_after: int = 0
    error: str | None = None
    hang: bool = False
    drop_socket_after: int = 0
    invalid_output: bool = False
    tool_call: Mapping[str, Any] | None = None

    @property
    def fails(self) -> bool:
        """True when this provider is set to fail or hang at some point."""
        return self.hang or self.error is not None or self.fail_after > 0


@dataclass(frozen=True, slots=True)
class OpenAIProviderConfig:
    """Any OpenAI-compatible chat completions endpoint (OpenAI, Ollama, vLLM, llama.cpp server).

    Attributes:
        name: the provider's name.
        base_url: e.g. ``http://localhost:11434/v1`` (``/chat/completions`` is appended).
        model: the model to ask for.
        api_key_env: the environment variable holding its key, if it needs one.
        connect_timeout: seconds to connect (silence afterwards is the upstream timeout's job).
        options: extra request fields (``temperature``, ``max_tokens``...).
    """

    type: ClassVar[str] = "openai"

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    connect_timeout: float = 10.0
    options: Mapping[str, Any] = field(default_factory=dict)


ProviderConfig = ScriptedProviderConfig | OpenAIProviderConfig


@dataclass(frozen=True, slots=True)
class WorkflowConfig:
    """A named workflow: providers tried in order (failover), optional schema and events.

    Attributes:
        name: the workflow's name, as requests send it.
        providers: provider names, in failover order.
        schema: a JSON Schema the structured output must match (the answer is parsed as JSON).
        events: default event names (non-empty: event-driven, waits for a callback).
        webhook_url: default webhook URL.
        description: one line for logs and the HTML view.
        failover: ``continue`` (the next provider continues the partial answer: ``status
            failover`` with ``reset: false``) or ``restart`` (it answers from the start:
            ``reset: true``).
    """

    name: str
    providers: tuple[str, ...]
    schema: Mapping[str, Any] | None = None
    events: tuple[str, ...] = ()
    webhook_url: str | None = None
    description: str = ""
    failover: FailoverMode = "continue"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Server-wide settings (the TOML ``[server]`` table).

    Attributes:
        rate_limit: async requests per minute per API key; 0 = off.
        callback_timeout: seconds an event-driven request waits for its callback.
        webhook_retries: retries after a failed webhook attempt.
        upstream_timeout: seconds a provider may stay silent before it counts as failed.
        retention: seconds a finished request (and its events) stays replayable.
        max_requests: finished requests kept at most (oldest dropped first).
        token_ttl: lifetime of a ``ws_token``, seconds.
        token_grace: seconds a token is still accepted after its request ended.
        max_body: largest accepted HTTP body, bytes.
        max_frame: largest accepted WebSocket frame, bytes.
        max_events: events kept per channel for replay.
        max_topics: topics one socket may join at once (a join past it: ``too_many_topics``).
        max_buffer: bytes of output a socket may have unsent before the gateway stops producing
            for it (it catches up from the replay log once the client reads again).
        buffer_grace: seconds a socket may stay over ``max_buffer`` before it is closed (1008).
    """

    rate_limit: int = 0
    callback_timeout: float = 300.0
    webhook_retries: int = 3
    upstream_timeout: float = 120.0
    retention: float = 600.0
    max_requests: int = 1000
    token_ttl: int = 300
    token_grace: float = 60.0
    max_body: int = 1 << 20
    max_frame: int = 1 << 20
    max_events: int = 50_000
    max_topics: int = 16
    max_buffer: int = 1 << 20
    buffer_grace: float = 10.0


@dataclass(frozen=True, slots=True)
class RealmEndpointConfig:
    """The gateway's Realm-protocol endpoint (``modelriver dev --realm-port``).

    Attributes:
        port: the port it listens on (0: any free port, logged at start).
        host: the interface it binds.
        api_key: the key Realm clients must send in ``{type: "auth"}``; None: the gateway's
            API key.
        auth: False for an open endpoint (no key at all; logged as a warning).
    """

    port: int = 8080
    host: str = "127.0.0.1"
    api_key: str | None = field(default=None, repr=False)
    auth: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"the Realm port must be from 0 to 65535, not {self.port}")
        if self.api_key is not None and not self.api_key:
            raise ConfigError("the Realm API key is empty")
        if self.api_key is not None and not self.auth:
            raise ConfigError("a Realm API key was given for an endpoint without authentication")


CHATBOT_RESPONSE_SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "chatbot_response",
    "type": "object",
    "required": ["reply", "summary", "sentiment", "confidence", "topics", "action_items"],
    "additionalProperties": False,
    "properties": {
        "reply": {"type": "string"},
        "summary": {"type": "string"},
        "sentiment": {"enum": ["positive", "negative", "neutral", "mixed"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "topics": {"type": "array", "items": {"type": "string"}},
        "action_items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["task", "priority"],
                "additionalProperties": False,
                "properties": {
                    "task": {"type": "string"},
                    "priority": {"enum": ["high", "medium", "low"]},
                },
            },
        },
    },
}

BUILTIN_PROVIDERS: Mapping[str, ProviderConfig] = {
    p.name: p
    for p in (
        ScriptedProviderConfig("demo-chat", model="scripted-chat"),
        ScriptedProviderConfig("demo-structured", format="chatbot_response", model="scripted-json"),
        ScriptedProviderConfig(
            "demo-flaky", model="scripted-flaky", fail_after=5,
            error="scripted provider failure after 5 tokens",
        ),
        ScriptedProviderConfig("demo-backup", model="scripted-backup"),
        ScriptedProviderConfig(
            "demo-broken", model="scripted-broken", error="upstream unavailable (scripted)"
        ),
        ScriptedProviderConfig(
            "demo-tools", model="scripted-tools",
            tool_call={"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius"}},
        ),
    )
}

BUILTIN_WORKFLOWS: Mapping[str, WorkflowConfig] = {
    w.name: w
    for w in (
        WorkflowConfig("demo-chat", ("demo-chat",),
                       description="scripted streaming answer that depends on the prompt"),
        WorkflowConfig("demo-structured", ("demo-structured",), schema=CHATBOT_RESPONSE_SCHEMA,
                       description="structured chatbot_response JSON, validated against its schema"),
        WorkflowConfig("demo-events", ("demo-structured",), schema=CHATBOT_RESPONSE_SCHEMA,
                       events=("webhook_received",),
                       description="event-driven: ai_generated, signed webhook, callback, completed"),
        WorkflowConfig("demo-failover", ("demo-flaky", "demo-backup"),
                       description="first provider fails after 5 tokens, the second finishes"),
        WorkflowConfig("demo-error", ("demo-broken",),
                       description="the only provider fails at once"),
        WorkflowConfig("demo-tools", ("demo-tools",),
                       description="one tool_call, then a scripted answer"),
    )
}


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the gateway needs. Secrets never show in ``repr()``.

    Attributes:
        api_key: the API key clients must send as ``Authorization: Bearer``.
        webhook_secret: signs webhooks (HMAC-SHA256).
        public_url: the public base URL (``websocket_url`` and ``callback_url`` derive from
            it); None: derived from each request's scheme and host.
        server: server-wide settings.
        workflows: workflows by name (the built-ins unless replaced).
        providers: providers by name.
        realm: the Realm-protocol endpoint, or None for none (the default).

    Raises:
        ConfigError: a workflow names an unknown provider, or a setting is out of range.
    """

    api_key: str = field(repr=False)
    webhook_secret: str = field(default=DEFAULT_WEBHOOK_SECRET, repr=False)
    public_url: str | None = None
    server: ServerConfig = field(default_factory=ServerConfig)
    workflows: Mapping[str, WorkflowConfig] = field(default_factory=lambda: dict(BUILTIN_WORKFLOWS))
    providers: Mapping[str, ProviderConfig] = field(default_factory=lambda: dict(BUILTIN_PROVIDERS))
    realm: RealmEndpointConfig | None = None

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ConfigError("the API key is empty")
        if not self.webhook_secret:
            raise ConfigError("the webhook secret is empty")
        if self.public_url is not None and not self.public_url.startswith(
            ("http://", "https://", "ws://", "wss://")
        ):
            raise ConfigError(f"public URL must start with http(s):// or ws(s)://: {self.public_url!r}")
        for workflow in self.workflows.values():
            if not workflow.providers:
                raise ConfigError(f"workflow {workflow.name!r} lists no providers")
            for name in workflow.providers:
                if name not in self.providers:
                    raise ConfigError(f"workflow {workflow.name!r} names unknown provider {name!r}")
        server = self.server
        if server.rate_limit < 0 or server.webhook_retries < 0:
            raise ConfigError("rate_limit and webhook_retries must not be negative")
        for key in ("callback_timeout", "upstream_timeout", "retention", "token_ttl",
                    "max_topics", "max_buffer", "buffer_grace"):
            if not getattr(server, key) > 0:
                raise ConfigError(f"server.{key} must be positive")

    def with_options(
        self,
        *,
        api_key: str | None = None,
        webhook_secret: str | None = None,
        public_url: str | None = None,
        rate_limit: int | None = None,
        realm: RealmEndpointConfig | None = None,
    ) -> GatewayConfig:
        """This configuration with the given command-line options taking precedence."""
        server = self.server if rate_limit is None else replace(self.server, rate_limit=rate_limit)
        return replace(
            self,
            api_key=api_key if api_key is not None else self.api_key,
            webhook_secret=webhook_secret if webhook_secret is not None else self.webhook_secret,
            public_url=public_url if public_url is not None else self.public_url,
            server=server,
            realm=realm if realm is not None else self.realm,
        )


# -- TOML ----------------------------------------------------------------------------------------


def load_config(path: str | Path, *, api_key: str, webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
                public_url: str | None = None) -> GatewayConfig:
    """Read a TOML config file on top of the built-ins.

    Args:
        path: the TOML file; relative schema paths in it are read from its folder.
        api_key: the API key (never read from the file).
        webhook_secret: the webhook secret.
        public_url: the public base URL, if any.

    Returns:
        The built-in workflows and providers plus (or replaced by) the file's.

    Raises:
        ConfigError: the file is missing, not TOML, or holds an invalid or unknown setting.
    """
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {file}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {file} is not valid TOML: {exc}") from exc
    return parse_config(data, base_dir=file.parent, api_key=api_key,
                        webhook_secret=webhook_secret, public_url=public_url)


def parse_config(data: Mapping[str, Any], *, base_dir: Path, api_key: str,
                 webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
                 public_url: str | None = None) -> GatewayConfig:
    """``load_config`` for already parsed TOML data.

    Raises:
        ConfigError: an invalid or unknown setting.
    """
    _only(data, {"server", "workflows", "providers"}, "the config file")
    server = _server(_table(data.get("server", {}), "[server]"))
    providers: dict[str, ProviderConfig] = dict(BUILTIN_PROVIDERS)
    for name, table in _table(data.get("providers", {}), "[providers]").items():
        providers[name] = _provider(name, _table(table, f"[providers.{name}]"))
    workflows: dict[str, WorkflowConfig] = dict(BUILTIN_WORKFLOWS)
    for name, table in _table(data.get("workflows", {}), "[workflows]").items():
        workflows[name] = _workflow(name, _table(table, f"[workflows.{name}]"), base_dir)
    return GatewayConfig(api_key=api_key, webhook_secret=webhook_secret, public_url=public_url,
                         server=server, workflows=workflows, providers=providers)


def _server(table: Mapping[str, Any]) -> ServerConfig:
    known = {f.name: f for f in fields(ServerConfig)}
    _only(table, set(known), "[server]")
    values: dict[str, Any] = {}
    for key, value in table.items():
        kind = int if isinstance(getattr(ServerConfig(), key), int) else float
        values[key] = _number(value, f"server.{key}", integer=kind is int)
    return ServerConfig(**values)


def _provider(name: str, table: Mapping[str, Any]) -> ProviderConfig:
    where = f"providers.{name}"
    kind = table.get("type", "scripted")
    body = {k: v for k, v in table.items() if k != "type"}
    if kind == "scripted":
        _only(body, {f.name for f in fields(ScriptedProviderConfig)} - {"name"}, f"[{where}]")
        values: dict[str, Any] = {}
        for key, value in body.items():
            values[key] = _scripted_value(key, value, where)
        return ScriptedProviderConfig(name, **values)
    if kind == "openai":
        allowed = {"base_url", "model", "api_key_env", "connect_timeout", "options"}
        _only(body, allowed, f"[{where}]")
        for key in ("base_url", "model"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ConfigError(f"{where}.{key} is required (a string)")
        if not str(body["base_url"]).startswith(("http://", "https://")):
            raise ConfigError(f"{where}.base_url must be an http(s) URL")
        env = body.get("api_key_env")
        if env is not None and (not isinstance(env, str) or not env):
            raise ConfigError(f"{where}.api_key_env must be a variable name")
        options = body.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{where}.options must be a table")
        return OpenAIProviderConfig(
            name, base_url=str(body["base_url"]).rstrip("/"), model=str(body["model"]),
            api_key_env=env or None,
            connect_timeout=_number(body.get("connect_timeout", 10.0), f"{where}.connect_timeout"),
            options=dict(options),
        )
    raise ConfigError(f"{where}.type must be 'scripted' or 'openai', not {kind!r}")


def _workflow(name: str, table: Mapping[str, Any], base_dir: Path) -> WorkflowConfig:
    where = f"workflows.{name}"
    _only(table, {"providers", "schema", "events", "webhook_url", "description", "failover"},
          f"[{where}]")
    providers = table.get("providers")
    if not isinstance(providers, list) or not providers or not all(
        isinstance(p, str) and p for p in providers
    ):
        raise ConfigError(f"{where}.providers must be a non-empty list of provider names")
    events = table.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) and e for e in events):
        raise ConfigError(f"{where}.events must be a list of event names")
    webhook_url = table.get("webhook_url") or None
    if webhook_url is not None and (
        not isinstance(webhook_url, str) or not webhook_url.startswith(("http://", "https://"))
    ):
        raise ConfigError(f"{where}.webhook_url must be an http(s) URL")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}.description must be a string")
    failover = table.get("failover", "continue")
    if failover not in ("continue", "restart"):
        raise ConfigError(f"{where}.failover must be 'continue' or 'restart'")
    schema = _schema(table.get("schema"), base_dir, where)
    return WorkflowConfig(name, tuple(providers), schema=schema, events=tuple(events),
                          webhook_url=webhook_url, description=description, failover=failover)


def _schema(value: Any, base_dir: Path, where: str) -> Mapping[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        path = base_dir / value
        try:
            value = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"{where}.schema: cannot read {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"{where}.schema: {path} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.schema must be a path to a JSON file or an inline table")
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
    from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped, unused-ignore]

    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise ConfigError(f"{where}.schema is not a valid JSON Schema: {exc.message}") from exc
    return value


# -- values shared by TOML and metadata.scripted -------------------------------------------------


def _scripted_value(key: str, value: Any, where: str) -> Any:
    """Check one scripted-provider setting; returns the value to store."""
    name = f"{where}.{key}"
    if key in ("text", "error"):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string")
        return value
    if key == "model":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string")
        return value
    if key == "format":
        if value not in ("text", "chatbot_response"):
            raise ConfigError(f"{name} must be 'text' or 'chatbot_response'")
        return value
    if key in ("tokens_per_second", "first_token_ms"):
        return _number(value, name)
    if key in ("fail_after", "drop_socket_after"):
        return _number(value, name, integer=True)
    if key in ("hang", "invalid_output"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false")
        return value
    if key == "usage":
        if not isinstance(value, dict) or not set(value) <= {"prompt_tokens", "completion_tokens"}:
            raise ConfigError(f"{name} must be a table of prompt_tokens and completion_tokens")
        return {k: _number(v, f"{name}.{k}", integer=True) for k, v in value.items()}
    if key == "tool_call":
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise ConfigError(f"{name} must be a table with a name and arguments")
        return {"name": value["name"], "arguments": value.get("arguments", {})}
    raise ConfigError(f"unknown setting {name}")  # pragma: no cover - callers filter keys


def _number(value: Any, name: str, *, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number")
    if isinstance(value, int) and value.bit_length() > 64:  # float() of it would overflow
        raise ConfigError(f"{name} is too large")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0")
    if integer:
        if value != int(value):
            raise ConfigError(f"{name} must be a whole number")
        return int(value)
    return float(value)


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in {where}: {', '.join(unknown)} (known: {', '.join(sorted(allowed))})"
        )


# -- per-request overrides (metadata.scripted) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScriptedOverrides:
    """A request's ``metadata.scripted``: dev-only shaping of one request.

    ``text``, ``tokens_per_second``, ``first_token_ms`` and ``invalid_output`` apply to every
    scripted provider of the workflow; the faults ``fail_after``, ``error`` and ``hang`` to the
    first scripted provider only (so a failover workflow keeps a healthy fallback).
    ``drop_socket_after``, ``upstream_timeout`` and ``callback_timeout`` apply to the request.
    """

    _SHARED: ClassVar[tuple[str, ...]] = ("text", "tokens_per_second", "first_token_ms",
                                          "invalid_output")
    _FAULTS: ClassVar[tuple[str, ...]] = ("fail_after", "error", "hang")

    provider: Mapping[str, Any] = field(default_factory=dict)
    drop_socket_after: int | None = None
    upstream_timeout: float | None = None
    callback_timeout: float | None = None

    def apply(self, providers: list[ProviderConfig]) -> list[ProviderConfig]:
        """The workflow's providers with these overrides applied."""
        shared = {k: v for k, v in self.provider.items() if k in self._SHARED}
        faults = {k: v for k, v in self.provider.items() if k in self._FAULTS}
        out: list[ProviderConfig] = []
        first = True
        for provider in providers:
            if isinstance(provider, ScriptedProviderConfig):
                provider = replace(provider, **shared, **(faults if first else {}))
                first = False
            out.append(provider)
        return out


def parse_overrides(value: Any) -> ScriptedOverrides:
    """Parse ``metadata.scripted``.

    Raises:
        ConfigError: not an object, an unknown key, or a value of the wrong type.
    """
    if value is None:
        return ScriptedOverrides()
    if not isinstance(value, dict):
        raise ConfigError("metadata.scripted must be an object")
    provider_keys = set(ScriptedOverrides._SHARED) | set(ScriptedOverrides._FAULTS)
    request_keys = {"drop_socket_after", "upstream_timeout", "callback_timeout"}
    _only(value, provider_keys | request_keys, "metadata.scripted")
    provider = {k: _scripted_value(k, v, "metadata.scripted") for k, v in value.items()
                if k in provider_keys}
    drop = value.get("drop_socket_after")
    timeouts: dict[str, float | None] = {}
    for key in ("upstream_timeout", "callback_timeout"):
        raw = value.get(key)
        if raw is not None:
            number = _number(raw, f"metadata.scripted.{key}")
            if number <= 0:
                raise ConfigError(f"metadata.scripted.{key} must be positive")
            timeouts[key] = number
    return ScriptedOverrides(
        provider=provider,
        drop_socket_after=None if drop is None else _number(drop, "metadata.scripted.drop_socket_after",
                                                            integer=True),
        upstream_timeout=timeouts.get("upstream_timeout"),
        callback_timeout=timeouts.get("callback_timeout"),
    )
