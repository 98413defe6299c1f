"""Settings and the cached ``ModelRiver`` client: ``st.secrets`` first, then the environment."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import streamlit as st

from modelriver import ModelRiver

__all__ = ["modelriver_client", "resolve_settings"]

logger = logging.getLogger("streamlit_modelriver")

ENV_API_KEY = "MODELRIVER_API_KEY"
ENV_API_BASE = "MODELRIVER_API_BASE"
DEFAULT_API_BASE = "https://api.modelriver.com"


def _secrets() -> Mapping[str, Any]:
    """``st.secrets`` when a secrets.toml exists, else an empty mapping (never an error)."""
    try:
        if st.secrets.load_if_toml_exists():
            return st.secrets
    except Exception:  # a malformed secrets file must not break the app's chat
        logger.warning("could not read st.secrets; using the environment")
    return {}


def resolve_settings(api_key: str | None = None, api_base: str | None = None) -> tuple[str | None, str]:
    """The API key and base to use: explicit values, then ``st.secrets``, then the environment.

    ``st.secrets`` may hold ``MODELRIVER_API_KEY`` / ``MODELRIVER_API_BASE`` at the top level or
    ``api_key`` / ``api_base`` in a ``[modelriver]`` table.

    Returns:
        ``(api_key or None, api_base)``.
    """
    secrets = _secrets()
    table = secrets.get("modelriver") if isinstance(secrets.get("modelriver"), Mapping) else {}
    assert isinstance(table, Mapping)
    key = (api_key or table.get("api_key") or secrets.get(ENV_API_KEY)
           or os.environ.get(ENV_API_KEY) or None)
    base = (api_base or table.get("api_base") or secrets.get(ENV_API_BASE)
            or os.environ.get(ENV_API_BASE) or DEFAULT_API_BASE)
    return (str(key) if key else None), str(base)


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
