"""Settings and the cached clients: ``st.secrets`` first, then the environment.

``streamlit_settings()`` merges ``st.secrets`` over core's ``modelriver.settings.Settings.from_env()``
(core reads the environment; this module does not). ``modelriver_client()`` is the ModelRiver HTTP
client; ``upstream_client()`` is where ``st_modelriver`` sends requests by default, as core's
``modelriver.upstream.sync_upstream_from_settings`` chooses: ModelRiver, or a Realm server when
``MODELRIVER_UPSTREAM=realm`` (``REALM_URL``, ``REALM_API_KEY``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import streamlit as st

from modelriver import ModelRiver
from modelriver.settings import (
    ENV_API_BASE,
    ENV_API_KEY,
    ENV_REALM_API_KEY,
    ENV_REALM_URL,
    ENV_UPSTREAM,
    Settings,
)
from modelriver.upstream import Upstream, sync_upstream_from_settings

__all__ = [
    "modelriver_client",
    "resolve_settings",
    "resolve_upstream_settings",
    "streamlit_settings",
    "upstream_client",
]

logger = logging.getLogger("streamlit_modelriver")

SECRET_NAMES = {
    "api_key": (ENV_API_KEY, "api_key"),
    "api_base": (ENV_API_BASE, "api_base"),
    "upstream": (ENV_UPSTREAM, "upstream"),
    "realm_url": (ENV_REALM_URL, "realm_url"),
    "realm_api_key": (ENV_REALM_API_KEY, "realm_api_key"),
}
"""Each core setting's names in ``st.secrets``: at the top level, and in its ``[modelriver]`` table."""


def _secrets() -> Mapping[str, Any]:
    """``st.secrets`` when a secrets.toml exists, else an empty mapping (never an error)."""
    try:
        if st.secrets.load_if_toml_exists():
            return st.secrets
    except Exception:  # a malformed secrets file must not break the app's chat
        logger.warning("could not read st.secrets; using the environment")
    return {}


def _table(secrets: Mapping[str, Any]) -> Mapping[str, Any]:
    table = secrets.get("modelriver")
    return table if isinstance(table, Mapping) else {}


def streamlit_settings(*, api_key: str | None = None, api_base: str | None = None) -> Settings:
    """Core's settings: explicit values, then ``st.secrets``, then the environment.

    ``st.secrets`` may hold each setting under its environment variable's name at the top level
    (``MODELRIVER_API_KEY``...) or under its short name in a ``[modelriver]`` table (``api_key``,
    ``api_base``, ``upstream``, ``realm_url``, ``realm_api_key``).

    Returns:
        A frozen ``modelriver.settings.Settings``.
    """
    secrets = _secrets()
    table = _table(secrets)
    explicit = {"api_key": api_key, "api_base": api_base}
    found: dict[str, str | None] = {}
    for field, (name, short) in SECRET_NAMES.items():
        value = explicit.get(field) or table.get(short) or secrets.get(name)
        if value:
            found[field] = str(value)
    return Settings.from_env().merged(**found)


def resolve_settings(api_key: str | None = None, api_base: str | None = None) -> tuple[str | None, str]:
    """The API key and base to use: explicit values, then ``st.secrets``, then the environment.

    Returns:
        ``(api_key or None, api_base)``.
    """
    settings = streamlit_settings(api_key=api_key, api_base=api_base)
    return settings.api_key, settings.api_base


def resolve_upstream_settings() -> dict[str, str]:
    """The upstream choice: ``MODELRIVER_UPSTREAM``, ``REALM_URL``, ``REALM_API_KEY``.

    Each from ``st.secrets`` (top level, or ``upstream`` / ``realm_url`` / ``realm_api_key`` in
    the ``[modelriver]`` table), else the environment; unset ones are left out.
    """
    settings = streamlit_settings()
    found = {name: getattr(settings, field) for field, (name, _) in SECRET_NAMES.items()
             if name in (ENV_UPSTREAM, ENV_REALM_URL, ENV_REALM_API_KEY)}
    return {name: value for name, value in found.items() if value}


@st.cache_resource(show_spinner=False, max_entries=8)
def _cached_client(api_key: str | None, api_base: str) -> ModelRiver:
    logger.debug("creating a ModelRiver client for %s", api_base)
    return ModelRiver(api_key, api_base=api_base)


def modelriver_client(*, api_key: str | None = None, api_base: str | None = None) -> ModelRiver:
    """One ``ModelRiver`` HTTP client per process and settings, cached with ``st.cache_resource``.

    Args:
        api_key: the API key; default from ``st.secrets`` or ``MODELRIVER_API_KEY``.
        api_base: the API base URL; default from ``st.secrets`` or ``MODELRIVER_API_BASE``.

    Returns:
        A shared client (thread-safe; do not close it).
    """
    key, base = resolve_settings(api_key, api_base)
    return _cached_client(key, base)


@st.cache_resource(show_spinner=False, max_entries=8)
def _cached_upstream(fields: tuple[tuple[str, str | None], ...]) -> Upstream:
    upstream = sync_upstream_from_settings(Settings().replace(**dict(fields)))
    logger.debug("created the upstream for %s", upstream.api_base)
    return upstream


def upstream_client() -> Upstream:
    """Where requests go by default: one upstream per process and settings (``st.cache_resource``).

    Core's ``sync_upstream_from_settings`` chooses, over ``streamlit_settings()``:
    ``MODELRIVER_UPSTREAM=realm`` selects a Realm server (``REALM_URL``, ``REALM_API_KEY``);
    otherwise a ``ModelRiver`` client with its key and base.

    Returns:
        A shared ``modelriver.upstream.Upstream`` (thread-safe; do not close it).
    """
    settings = streamlit_settings()
    fields = tuple((f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings))
    return _cached_upstream(fields)
