"""Core settings: the one place ``modelriver`` reads environment variables.

``Settings.from_env()`` reads:

- ``MODELRIVER_API_KEY``: the project's API key (server side only; never sent to a browser).
- ``MODELRIVER_API_BASE``: the HTTP API base URL, default ``https://api.modelriver.com``.

Empty values count as unset. The key never shows in ``repr()``: only its last four characters
do, and only when it is long enough for that to reveal nothing useful.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_API_BASE",
    "ENV_API_BASE",
    "ENV_API_KEY",
    "Settings",
    "mask_secret",
]

DEFAULT_API_BASE = "https://api.modelriver.com"
ENV_API_KEY = "MODELRIVER_API_KEY"
ENV_API_BASE = "MODELRIVER_API_BASE"

# A key shorter than this is masked entirely: showing four characters of it would say too much.
_MIN_LEN_TO_HINT = 16


def mask_secret(secret: str | None) -> str | None:
    """A printable stand-in for a secret: ``'…1a2b'`` for a long one, ``'***'`` otherwise.

    Args:
        secret: the secret, or None.

    Returns:
        None when ``secret`` is None, else a string that does not contain the secret.
    """
    if secret is None:
        return None
    if len(secret) >= _MIN_LEN_TO_HINT:
        return f"…{secret[-4:]}"
    return "***"


@dataclass(frozen=True, slots=True)
class Settings:
    """Core settings of a client.

    Attributes:
        api_key: the API key, or None when not configured.
        api_base: the API base URL, without a trailing slash.
    """

    api_key: str | None = None
    api_base: str = DEFAULT_API_BASE

    def __post_init__(self) -> None:
        base = self.api_base.strip().rstrip("/") or DEFAULT_API_BASE
        object.__setattr__(self, "api_base", base)
        if self.api_key is not None and not self.api_key.strip():
            object.__setattr__(self, "api_key", None)

    def __repr__(self) -> str:
        return f"Settings(api_key={mask_secret(self.api_key)!r}, api_base={self.api_base!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read the settings from environment variables.

        Args:
            environ: the mapping to read; ``os.environ`` by default (read at call time).

        Returns:
            The settings; unset or empty variables give None / the default base.
        """
        return cls(
            api_key=environ.get(ENV_API_KEY) or None,
            api_base=environ.get(ENV_API_BASE) or DEFAULT_API_BASE,
        )

    def merged(self, *, api_key: str | None = None, api_base: str | None = None) -> Settings:
        """These settings with explicit values taking precedence.

        Args:
            api_key: overrides ``self.api_key`` when not None.
            api_base: overrides ``self.api_base`` when not None.

        Returns:
            A new ``Settings``.
        """
        return Settings(
            api_key=api_key if api_key is not None else self.api_key,
            api_base=api_base if api_base is not None else self.api_base,
        )
