"""Settings and the cached clients: ``st.secrets`` first, then the environment.

``modelriver_client()`` is the ModelRiver HTTP client; ``upstream_client()`` is where
``st_modelriver`` sends requests by default, as core's ``modelriver.upstream.sync_upstream_from_env``
chooses: ModelRiver, or a Realm server when ``MODELRIVER_UPSTREAM=realm`` (``REALM_URL``,
``REALM_API_KEY``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import streamlit as st

from modelriver import ModelRiver
from modelriver.upstream import (
    ENV_REALM_API_KEY,
    ENV_REALM_URL,
    ENV_UPSTREAM,
    Upstream,
    sync_upstream_from_env,
)

__all__ = ["modelriver_client", "resolve_settings", "resolve_upstream_settings", "upstream_client"]

logger = logging.getLogger("streamlit_modelriver")

ENV_API_KEY = "MODELRIVER_API_KEY"
ENV_API_BASE = "MODELRIVER_API_BASE"
DEFAULT_API_BASE = "https://api.modelriver.com"

UPSTREAM_SETTINGS = {ENV_UPSTREAM: "upstream", ENV_REALM_URL: "realm_url", ENV_REALM_API_KEY: "realm_api_key"}
"""The seam's variables, with their names in the ``[modelriver]`` table of ``st.secrets``."""


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


def resolve_settings(api_key: str | None = None, api_base: str | None = None) -> tuple[str | None, str]:
    """The API key and base to use: explicit values, then ``st.secrets``, then the environment.

    ``st.secrets`` may hold ``MODELRIVER_API_KEY`` / ``MODELRIVER_API_BASE`` at the top level or
    ``api_key`` / ``api_base`` in a ``[modelriver]`` table.

    Returns:
        ``(api_key or None, api_base)``.
    """
    secrets = _secrets()
    table = _table(secrets)
    key = (api_key or table.get("api_key") or secrets.get(ENV_API_KEY)
           or os.environ.get(ENV_API_KEY) or None)
    base = (api_base or table.get("api_base") or secrets.get(ENV_API_BASE)
            or os.environ.get(ENV_API_BASE) or DEFAULT_API_BASE)
    return (str(key) if key else None), str(base)


def resolve_upstream_settings() -> dict[str, str]:
    """The upstream choice: ``MODELRIVER_UPSTREAM``, ``REALM_URL``, ``REALM_API_KEY``.

    Each from ``st.secrets`` (top level, or ``upstream`` / ``realm_url`` / ``realm_api_key`` in
    the ``[modelriver]`` table), else the environment; unset ones are left out.
    """
    secrets = _secrets()
    table = _table(secrets)
    found = {}
    for name, short in UPSTREAM_SETTINGS.items():
        value = table.get(short) or secrets.get(name) or os.environ.get(name)
        if value:
            found[name] = str(value)
    return found


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
def _cached_upstream(settings: tuple[tuple[str, str], ...]) -> Upstream:
    upstream = sync_upstream_from_env(dict(settings))
    logger.debug("created the upstream for %s", upstream.api_base)
    return upstream


def upstream_client() -> Upstream:
    """Where requests go by default: one upstream per process and settings (``st.cache_resource``).

    Core's ``sync_upstream_from_env`` chooses, over ``st.secrets`` and the environment:
    ``MODELRIVER_UPSTREAM=realm`` selects a Realm server (``REALM_URL``, ``REALM_API_KEY``);
    otherwise a ``ModelRiver`` client with ``resolve_settings()``'s key and base.

    Returns:
        A shared ``modelriver.upstream.Upstream`` (thread-safe; do not close it).
    """
    key, base = resolve_settings()
    settings = {**resolve_upstream_settings(), ENV_API_KEY: key or "", ENV_API_BASE: base}
    return _cached_upstream(tuple(sorted(settings.items())))
