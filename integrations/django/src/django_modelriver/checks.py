"""System checks (``manage.py check``) for the ``MODELRIVER`` settings and the app's needs.

=====================  ===================================================================
``E001``               ``MODELRIVER`` is not a dict
``E002``               a numeric setting is not a positive number
``E003``               ``API_BASE`` is not an http(s) URL
``E004``               ``PERMISSION`` is not an importable callable
``E005``               Redis mode (``REDIS_URL``) without a ``channels_redis`` channel layer
``E006``               sessions are not enabled (requests are bound to the session)
``E007``               ``WORKFLOWS`` is malformed, or ``DEFAULT_WORKFLOW`` is not in it
``E008``               ``channels_redis`` configured but the ``redis`` package is missing
``E009``               ``UPSTREAM`` is not an importable callable that takes no arguments
``E010``               ``MODELRIVER_UPSTREAM`` (environment) names no known upstream
``W001``               no API key (``API_KEY`` or ``MODELRIVER_API_KEY``) for the ModelRiver upstream
``W002``               no webhook secret: webhooks will be refused
``W003``               an unknown key in ``MODELRIVER`` (a typo?)
``E011``               ``START_RATE`` / ``MAX_IN_FLIGHT`` is not a whole number >= 0 (or None), or
                       ``LIMIT_CACHE`` names no cache in ``CACHES``
``W004``               no ``ASGI_APPLICATION``: the socket and the pump need an ASGI server
``W007``               the start limits' cache keeps nothing (``DummyCache``), or is per process
                       (``LocMemCache``) while several processes share a channels_redis layer
``E012``               ``manage.py runserver`` runs and is not Daphne's (``serving``: WSGI, the socket 404s)
``W005``               the same under ``DEBUG``, for ``manage.py check``
``W006``               the sessions' table is missing: ``migrate`` (a ``database`` check, ``serving``)
=====================  ===================================================================
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from django_modelriver.conf import DEFAULTS, modelriver_settings
from modelriver.upstream import upstream_name

__all__ = ["check_settings"]

_HINT_DICT = "Set MODELRIVER = {'API_KEY': ..., 'WEBHOOK_SECRET': ...} in settings.py."


def _id(n: int, kind: str = "E") -> str:
    return f"django_modelriver.{kind}{n:03d}"


@register("modelriver")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every check of this module."""
    raw = getattr(settings, "MODELRIVER", None)
    if raw is not None and not isinstance(raw, Mapping):
        return [Error("MODELRIVER must be a dict.", hint=_HINT_DICT, id=_id(1))]
    raw = raw or {}
    messages: list[CheckMessage] = []
    for key in raw:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(DEFAULTS)}."
            messages.append(Warning(f"MODELRIVER[{key!r}] is not a known setting.", hint=hint,
                                    id=_id(3, "W")))
    for key in ("REPLAY_BUFFER_SIZE", "REPLAY_RETENTION", "TOKEN_LIFETIME", "PUMP_LOCK_TTL"):
        value = raw.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            messages.append(Error(f"MODELRIVER[{key!r}] must be a positive number, not {value!r}.",
                                  id=_id(2)))
    fanout = raw.get("FANOUT_INTERVAL", DEFAULTS["FANOUT_INTERVAL"])
    if isinstance(fanout, bool) or not isinstance(fanout, int | float) or fanout < 0:
        messages.append(Error(f"MODELRIVER['FANOUT_INTERVAL'] must be a number >= 0, not {fanout!r}.",
                              id=_id(2)))
    conf = modelriver_settings()
    if not conf.api_base.startswith(("http://", "https://")):
        messages.append(Error(f"MODELRIVER['API_BASE'] must be an http(s) URL, not {conf.api_base!r}.",
                              id=_id(3)))
    messages += _check_permission(conf.permission_path)
    messages += _check_upstream(conf.upstream_path)
    messages += _check_upstream_env(conf.upstream_path)
    messages += _check_layers(raw)
    if not (apps.is_installed("django.contrib.sessions")
            and "django.contrib.sessions.middleware.SessionMiddleware" in settings.MIDDLEWARE):
        messages.append(Error(
            "django_modelriver binds each request to the session that started it.",
            hint="Add 'django.contrib.sessions' to INSTALLED_APPS and its SessionMiddleware to MIDDLEWARE.",
            id=_id(6)))
    messages += _check_workflows(raw)
    messages += _check_limits(raw)
    if not conf.api_key and _modelriver_upstream(conf.upstream_path):
        messages.append(Warning(
            "No ModelRiver API key: starting requests will fail.",
            hint="Set MODELRIVER['API_KEY'] or the MODELRIVER_API_KEY environment variable.", id=_id(1, "W")))
    if not conf.webhook_secret:
        messages.append(Warning(
            "No webhook secret: the webhook view will refuse every webhook (401).",
            hint="Set MODELRIVER['WEBHOOK_SECRET'] or MODELRIVER_WEBHOOK_SECRET.", id=_id(2, "W")))
    if not getattr(settings, "ASGI_APPLICATION", None):
        messages.append(Warning(
            "ASGI_APPLICATION is not set: the socket and the upstream pump need an ASGI server.",
            hint="Put 'daphne' first in INSTALLED_APPS; set ASGI_APPLICATION = 'project.asgi.application'.",
            id=_id(4, "W")))
    return messages


def _check_permission(path: str) -> list[CheckMessage]:
    from django.utils.module_loading import import_string

    try:
        func = import_string(path)
    except ImportError as exc:
        return [Error(f"MODELRIVER['PERMISSION'] {path!r} cannot be imported: {exc}", id=_id(4))]
    if not callable(func):
        return [Error(f"MODELRIVER['PERMISSION'] {path!r} is not callable.", id=_id(4))]
    return []


def _check_upstream(path: str) -> list[CheckMessage]:
    from django.utils.module_loading import import_string

    hint = "Name a function that returns an AsyncUpstream, e.g. 'myproject.upstreams.make'."
    try:
        factory = import_string(path)
    except ImportError as exc:
        return [Error(f"MODELRIVER['UPSTREAM'] {path!r} cannot be imported: {exc}", hint=hint, id=_id(9))]
    if not callable(factory):
        return [Error(f"MODELRIVER['UPSTREAM'] {path!r} is not callable.", hint=hint, id=_id(9))]
    try:
        inspect.signature(factory).bind()
    except TypeError:
        return [Error(f"MODELRIVER['UPSTREAM'] {path!r} must be callable with no arguments.", hint=hint,
                      id=_id(9))]
    except ValueError:  # no signature to inspect (a builtin): it is called and checked at first use
        pass
    return []


def _modelriver_upstream(path: str) -> bool:
    """True when requests go to ModelRiver (the default factory, no other upstream chosen by env)."""
    try:
        return path == DEFAULTS["UPSTREAM"] and upstream_name() == "modelriver"
    except ValueError:
        return False  # E010 says why


def _check_upstream_env(path: str) -> list[CheckMessage]:
    if path != DEFAULTS["UPSTREAM"]:
        return []  # a factory of the project's own does not read the switch
    try:
        upstream_name()
    except ValueError as exc:
        return [Error(str(exc), hint="Unset MODELRIVER_UPSTREAM for ModelRiver, or set it to 'realm'.",
                      id=_id(10))]
    return []


def _check_layers(raw: Mapping[str, Any]) -> list[CheckMessage]:
    backend = str(getattr(settings, "CHANNEL_LAYERS", {}).get("default", {}).get("BACKEND", ""))
    messages: list[CheckMessage] = []
    if raw.get("REDIS_URL") and "channels_redis" not in backend:
        messages.append(Error(
            "MODELRIVER['REDIS_URL'] is set but the default channel layer is not channels_redis: "
            "other processes would never see the events.",
            hint="Use channels_redis.core.RedisChannelLayer in CHANNEL_LAYERS, or drop REDIS_URL.",
            id=_id(5)))
    if "channels_redis" in backend:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            messages.append(Error("channels_redis is configured but the redis package is missing.",
                                  hint="pip install 'django-modelriver[redis]'", id=_id(8)))
    return messages


def _check_limits(raw: Mapping[str, Any]) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for key in ("START_RATE", "MAX_IN_FLIGHT"):
        value = raw.get(key, DEFAULTS[key])
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            messages.append(Error(f"MODELRIVER[{key!r}] must be a whole number >= 0 or None, not {value!r}.",
                                  hint="0 or None turns the limit off.", id=_id(11)))
    alias = raw.get("LIMIT_CACHE", DEFAULTS["LIMIT_CACHE"])
    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        messages.append(Error(f"MODELRIVER['LIMIT_CACHE'] {alias!r} is not a cache in CACHES.",
                              hint="Name a CACHES alias (a shared one, e.g. Redis, when several processes "
                                   "serve the site).", id=_id(11)))
        return messages
    backend = str(caches[alias].get("BACKEND", ""))
    layer = str(getattr(settings, "CHANNEL_LAYERS", {}).get("default", {}).get("BACKEND", ""))
    conf = modelriver_settings()
    if conf.start_limits().enabled and (
            backend.endswith("DummyCache") or (backend.endswith("LocMemCache") and "channels_redis" in layer)):
        what = "keeps nothing: the start limits never refuse" if backend.endswith("DummyCache") else \
            "counts per process: each process of the site allows the full limits"
        messages.append(Warning(f"MODELRIVER['LIMIT_CACHE'] {alias!r} ({backend.rsplit('.', 1)[-1]}) {what}.",
                                hint="Point LIMIT_CACHE at a cache the processes share (Redis, Memcached).",
                                id=_id(7, "W")))
    return messages


def _check_workflows(raw: Mapping[str, Any]) -> list[CheckMessage]:
    workflows = raw.get("WORKFLOWS")
    default = raw.get("DEFAULT_WORKFLOW")
    if workflows is None:
        return []
    if isinstance(workflows, Mapping):
        for name, options in workflows.items():
            if options is not None and not isinstance(options, Mapping):
                return [Error(f"MODELRIVER['WORKFLOWS'][{name!r}] must be a dict of options.", id=_id(7))]
            opts = options or {}
            if not isinstance(opts.get("events", []), list | tuple) or not isinstance(
                    opts.get("metadata", {}), Mapping):
                return [Error(f"MODELRIVER['WORKFLOWS'][{name!r}]: events must be a list, metadata a dict.",
                              id=_id(7))]
        names = set(workflows)
    elif isinstance(workflows, list | tuple | set | frozenset):
        names = {str(n) for n in workflows}
    else:
        return [Error("MODELRIVER['WORKFLOWS'] must be a list of names or a dict of options.", id=_id(7))]
    if default is not None and default not in names:
        return [Error(f"MODELRIVER['DEFAULT_WORKFLOW'] {default!r} is not in WORKFLOWS.", id=_id(7))]
    return []
