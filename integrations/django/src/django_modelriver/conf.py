"""The app's settings: one ``MODELRIVER`` dict, read lazily, dropped on ``setting_changed``.

    MODELRIVER = {
        "API_KEY": "mr_live_...",           # default: $MODELRIVER_API_KEY (server side only)
        "API_BASE": "https://api.modelriver.com",  # default: $MODELRIVER_API_BASE
        "WEBHOOK_SECRET": "whsec_...",      # default: $MODELRIVER_WEBHOOK_SECRET
        "DEFAULT_WORKFLOW": "my-chat",      # used when the browser names none
        "WORKFLOWS": None,                  # None: any; or {"name": {"events": [...], "metadata": {...}}}
        "PERMISSION": "django_modelriver.permissions.allow_any",  # callable(request | scope) -> bool
        "REPLAY_BUFFER_SIZE": 10_000,       # events kept per request for rejoins and reloads
        "REPLAY_RETENTION": 600,            # seconds they stay after the request ends
        "TOKEN_LIFETIME": 300,              # seconds a socket token is valid
        "BIND_TOKEN_TO_SESSION": True,      # a token opens a socket only with the session it was issued to
        "START_RATE": 20,                   # starts a minute per session (and per user); 0/None: no limit
        "MAX_IN_FLIGHT": 4,                 # requests not yet ended per session (and per user); 0/None: no limit
        "LIMIT_CACHE": "default",           # the CACHES alias keeping the start limits' counters
        "WEBHOOK_URL": None,                # absolute URL the gateway posts webhooks to (default: derived)
        "AUTO_CALLBACK": True,              # the webhook view calls back after the signal
        "REDIS_URL": None,                  # default: the channels_redis layer's first host
        "PUMP_LOCK_TTL": 10.0,              # seconds before another process takes a dead pump over
        "FANOUT_INTERVAL": 0.02,            # seconds events are batched for other processes
        "TUNE_DAPHNE": True,                # see django_modelriver._daphne
        "MAX_TOPICS": 16,                   # topics one socket may join at once
        "MAX_BUFFER": 1048576,              # bytes unsent to a socket before the relay stops producing for it
        "BUFFER_GRACE": 10.0,               # seconds such a socket may read nothing before it is closed (4008)
        "UPSTREAM": "django_modelriver.conf.default_upstream",  # factory() -> AsyncUpstream
    }

Core reads the environment in one place (``modelriver.settings.Settings.from_env``); the key,
base and webhook secret default to it, and these settings are merged over it.
``modelriver_settings()`` returns a frozen ``AppSettings``.

``UPSTREAM`` names a factory, called once per event loop with no arguments, that returns where
requests go: any ``modelriver.upstream.AsyncUpstream`` (``AsyncModelRiver``, ``RealmUpstream``,
your own). The default, ``default_upstream``, is core's ``upstream_from_settings()`` with
``API_KEY`` and ``API_BASE`` merged over the environment's settings: the ModelRiver client,
unless ``MODELRIVER_UPSTREAM`` selects another upstream (``realm``, with ``REALM_URL`` / ``REALM_API_KEY``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from django_modelriver.limits import StartLimits
from modelriver.settings import Settings as CoreSettings
from modelriver.settings import mask_secret
from modelriver.upstream import AsyncUpstream, upstream_from_settings

__all__ = ["DEFAULTS", "AppSettings", "WorkflowOptions", "default_upstream", "modelriver_settings"]

DEFAULTS: dict[str, Any] = {
    "API_KEY": None,
    "API_BASE": None,
    "WEBHOOK_SECRET": None,
    "DEFAULT_WORKFLOW": None,
    "WORKFLOWS": None,
    "PERMISSION": "django_modelriver.permissions.allow_any",
    "REPLAY_BUFFER_SIZE": 10_000,
    "REPLAY_RETENTION": 600,
    "TOKEN_LIFETIME": 300,
    "BIND_TOKEN_TO_SESSION": True,
    "START_RATE": 20,
    "MAX_IN_FLIGHT": 4,
    "LIMIT_CACHE": "default",
    "WEBHOOK_URL": None,
    "AUTO_CALLBACK": True,
    "REDIS_URL": None,
    "PUMP_LOCK_TTL": 10.0,
    "FANOUT_INTERVAL": 0.02,
    "TUNE_DAPHNE": True,
    "MAX_TOPICS": 16,
    "MAX_BUFFER": 1 << 20,
    "BUFFER_GRACE": 10.0,
    "UPSTREAM": "django_modelriver.conf.default_upstream",
}


@dataclass(frozen=True, slots=True)
class WorkflowOptions:
    """What the server adds to a request of one workflow (the browser cannot choose these)."""

    events: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppSettings:
    """The validated ``MODELRIVER`` settings. ``raw`` keeps the dict as given (for checks)."""

    api_key: str | None
    api_base: str
    webhook_secret: str | None
    default_workflow: str | None
    workflows: Mapping[str, WorkflowOptions] | None
    permission_path: str
    replay_buffer_size: int
    replay_retention: float
    token_lifetime: float
    webhook_url: str | None
    auto_callback: bool
    redis_url: str | None
    pump_lock_ttl: float
    fanout_interval: float
    tune_daphne: bool
    upstream_path: str = DEFAULTS["UPSTREAM"]
    bind_token_to_session: bool = True
    start_rate: int = DEFAULTS["START_RATE"]
    max_in_flight: int = DEFAULTS["MAX_IN_FLIGHT"]
    limit_cache: str = DEFAULTS["LIMIT_CACHE"]
    max_topics: int = DEFAULTS["MAX_TOPICS"]
    max_buffer: int = DEFAULTS["MAX_BUFFER"]
    buffer_grace: float = DEFAULTS["BUFFER_GRACE"]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        return (f"AppSettings(api_base={self.api_base!r}, api_key={mask_secret(self.api_key)!r}, "
                f"default_workflow={self.default_workflow!r})")

    def permission(self) -> Callable[[Any], Any]:
        """The ``PERMISSION`` callable (import errors surface as ``django_modelriver.E004``)."""
        func: Callable[[Any], Any] = import_string(self.permission_path)
        return func

    def upstream_factory(self) -> Callable[[], AsyncUpstream]:
        """The ``UPSTREAM`` factory (import errors surface as ``django_modelriver.E009``)."""
        func: Callable[[], AsyncUpstream] = import_string(self.upstream_path)
        return func

    def start_limits(self) -> StartLimits:
        """The limits on starts (``START_RATE``, ``MAX_IN_FLIGHT`` in ``LIMIT_CACHE``)."""
        return StartLimits(self.start_rate, self.max_in_flight, self.limit_cache)

    def workflow_options(self, name: str) -> WorkflowOptions | None:
        """The options of ``name``; None when ``WORKFLOWS`` is set and does not list it."""
        if self.workflows is None:
            return WorkflowOptions()
        return self.workflows.get(name)


_cache: AppSettings | None = None


def modelriver_settings() -> AppSettings:
    """The app's settings, built on first use and cached until ``MODELRIVER`` changes.

    Raises:
        django.core.exceptions.ImproperlyConfigured: never; bad values are reported by the
            system checks (``manage.py check``) and replaced by defaults here.
    """
    global _cache
    if _cache is None:
        _cache = _build(getattr(settings, "MODELRIVER", None) or {})
    return _cache


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    global _cache
    if setting in ("MODELRIVER", "CHANNEL_LAYERS"):  # the hubs reset themselves (hub.py)
        _cache = None


def default_upstream() -> AsyncUpstream:
    """The default ``UPSTREAM``: core's ``upstream_from_settings()`` with ``API_KEY`` / ``API_BASE``.

    Returns:
        An ``AsyncModelRiver`` on the settings' key and base, or the upstream that core's
        ``MODELRIVER_UPSTREAM`` variable selects (read from the environment, as core does).
    """
    conf = modelriver_settings()
    return upstream_from_settings(CoreSettings.from_env().replace(api_key=conf.api_key, api_base=conf.api_base))


def _build(raw: Mapping[str, Any]) -> AppSettings:
    values = {**DEFAULTS, **(raw if isinstance(raw, Mapping) else {})}
    core = CoreSettings.from_env().merged(
        api_key=_opt_str(values["API_KEY"]), api_base=_opt_str(values["API_BASE"])
    )
    return AppSettings(
        api_key=core.api_key,
        api_base=core.api_base,
        webhook_secret=_opt_str(values["WEBHOOK_SECRET"]) or core.webhook_secret,
        default_workflow=_opt_str(values["DEFAULT_WORKFLOW"]),
        workflows=_workflows(values["WORKFLOWS"]),
        permission_path=str(values["PERMISSION"]),
        replay_buffer_size=_number(values["REPLAY_BUFFER_SIZE"], DEFAULTS["REPLAY_BUFFER_SIZE"], int),
        replay_retention=_number(values["REPLAY_RETENTION"], DEFAULTS["REPLAY_RETENTION"], float),
        token_lifetime=_number(values["TOKEN_LIFETIME"], DEFAULTS["TOKEN_LIFETIME"], float),
        webhook_url=_opt_str(values["WEBHOOK_URL"]),
        auto_callback=bool(values["AUTO_CALLBACK"]),
        redis_url=_opt_str(values["REDIS_URL"]),
        pump_lock_ttl=_number(values["PUMP_LOCK_TTL"], DEFAULTS["PUMP_LOCK_TTL"], float),
        fanout_interval=max(0.0, _number(values["FANOUT_INTERVAL"], DEFAULTS["FANOUT_INTERVAL"], float)),
        tune_daphne=bool(values["TUNE_DAPHNE"]),
        upstream_path=_opt_str(values["UPSTREAM"]) or DEFAULTS["UPSTREAM"],
        bind_token_to_session=bool(values["BIND_TOKEN_TO_SESSION"]),
        start_rate=_limit(values["START_RATE"], DEFAULTS["START_RATE"]),
        max_in_flight=_limit(values["MAX_IN_FLIGHT"], DEFAULTS["MAX_IN_FLIGHT"]),
        limit_cache=_opt_str(values["LIMIT_CACHE"]) or DEFAULTS["LIMIT_CACHE"],
        max_topics=_number(values["MAX_TOPICS"], DEFAULTS["MAX_TOPICS"], int),
        max_buffer=_number(values["MAX_BUFFER"], DEFAULTS["MAX_BUFFER"], int),
        buffer_grace=_number(values["BUFFER_GRACE"], DEFAULTS["BUFFER_GRACE"], float),
        raw=dict(raw) if isinstance(raw, Mapping) else {},
    )


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _number(value: object, default: Any, kind: type) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return kind(value)
    return kind(default)


def _limit(value: object, default: int) -> int:
    """A limit: a whole number > 0, or 0 for none (``None`` and ``0`` turn it off)."""
    if value is None or value == 0:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return default


def _workflows(value: object) -> dict[str, WorkflowOptions] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple | set | frozenset):
        return {str(name): WorkflowOptions() for name in value}
    if not isinstance(value, Mapping):
        return None
    result: dict[str, WorkflowOptions] = {}
    for name, options in value.items():
        opts = options if isinstance(options, Mapping) else {}
        events = opts.get("events") or ()
        metadata = opts.get("metadata") or {}
        result[str(name)] = WorkflowOptions(
            events=tuple(str(e) for e in events) if isinstance(events, list | tuple) else (),
            metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        )
    return result
