"""The public settings object: the one place ``modelriver`` (core and integrations) reads the environment.

    from modelriver.settings import Settings

    settings = Settings.from_env()                      # MODELRIVER_*, REALM_* below
    settings = settings.merged(api_key="mr_live_...")   # explicit values (a framework's settings) win

``Settings.from_env()`` reads:

- ``MODELRIVER_API_KEY``: the project's API key (server side only; never sent to a browser).
- ``MODELRIVER_API_BASE``: the HTTP API base URL, default ``https://api.modelriver.com``.
- ``MODELRIVER_WEBHOOK_SECRET``: the secret webhooks are signed with.
- ``MODELRIVER_UPSTREAM``: where requests go, ``modelriver`` (default) or ``realm``.
- ``REALM_URL`` / ``REALM_API_KEY``: the Realm server, when ``MODELRIVER_UPSTREAM=realm``.

Empty values count as unset. Integrations never read the environment: they pass their
framework's settings (Django's ``MODELRIVER`` dict, ``st.secrets``, a Gradio argument) to
``merged()`` over ``from_env()``. Secrets never show in ``repr()``: only a key's last four
characters do, and only when it is long enough for that to reveal nothing useful.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_API_BASE",
    "ENV_API_BASE",
    "ENV_API_KEY",
    "ENV_REALM_API_KEY",
    "ENV_REALM_URL",
    "ENV_UPSTREAM",
    "ENV_WEBHOOK_SECRET",
    "Settings",
    "UpstreamName",
    "env_value",
    "mask_secret",
]

DEFAULT_API_BASE = "https://api.modelriver.com"
ENV_API_KEY = "MODELRIVER_API_KEY"
ENV_API_BASE = "MODELRIVER_API_BASE"
ENV_WEBHOOK_SECRET = "MODELRIVER_WEBHOOK_SECRET"
ENV_UPSTREAM = "MODELRIVER_UPSTREAM"
"""``realm`` selects Realm; unset or ``modelriver``: ModelRiver; anything else is an error."""
ENV_REALM_URL = "REALM_URL"
ENV_REALM_API_KEY = "REALM_API_KEY"

UpstreamName = Literal["modelriver", "realm"]

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


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """One environment variable that a configuration file names (a provider's ``api_key_env``).

    Args:
        name: the variable's name.
        environ: the mapping to read; ``os.environ`` (at call time) when None.

    Returns:
        Its value, or None when unset or empty.
    """
    return (os.environ if environ is None else environ).get(name) or None


def _blank_to_none(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


@dataclass(frozen=True, slots=True)
class Settings:
    """Core settings, frozen; make changed copies with ``merged()`` or ``replace()``.

    Attributes:
        api_key: the API key, or None when not configured.
        api_base: the API base URL, without a trailing slash.
        webhook_secret: the webhook signing secret, or None.
        upstream: ``MODELRIVER_UPSTREAM`` as given (``upstream_name()`` checks it).
        realm_url: the Realm server's URL, or None for Realm's default.
        realm_api_key: the Realm server's key, or None.
    """

    api_key: str | None = None
    api_base: str = DEFAULT_API_BASE
    webhook_secret: str | None = None
    upstream: str | None = None
    realm_url: str | None = None
    realm_api_key: str | None = None

    def __post_init__(self) -> None:
        base = self.api_base.strip().rstrip("/") or DEFAULT_API_BASE
        object.__setattr__(self, "api_base", base)
        for name in ("api_key", "webhook_secret", "upstream", "realm_url", "realm_api_key"):
            object.__setattr__(self, name, _blank_to_none(getattr(self, name)))

    def __repr__(self) -> str:
        shown = [f"api_key={mask_secret(self.api_key)!r}", f"api_base={self.api_base!r}"]
        extra = {"webhook_secret": mask_secret(self.webhook_secret), "upstream": self.upstream,
                 "realm_url": self.realm_url, "realm_api_key": mask_secret(self.realm_api_key)}
        shown += [f"{name}={value!r}" for name, value in extra.items() if value is not None]
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from environment variables.

        Args:
            environ: the mapping to read; ``os.environ`` (at call time) when None.

        Returns:
            The settings; unset or empty variables give None / the default base.
        """
        env = os.environ if environ is None else environ
        return cls(
            api_key=env.get(ENV_API_KEY) or None,
            api_base=env.get(ENV_API_BASE) or DEFAULT_API_BASE,
            webhook_secret=env.get(ENV_WEBHOOK_SECRET) or None,
            upstream=env.get(ENV_UPSTREAM) or None,
            realm_url=env.get(ENV_REALM_URL) or None,
            realm_api_key=env.get(ENV_REALM_API_KEY) or None,
        )

    def merged(self, **overrides: str | None) -> Settings:
        """These settings with the given values taking precedence where they are set.

        Args:
            **overrides: field values; None ones leave the field as it is.

        Returns:
            A new ``Settings``.

        Raises:
            TypeError: an override names no field.
        """
        return self.replace(**{name: value for name, value in overrides.items() if value is not None})

    def replace(self, **changes: str | None) -> Settings:
        """These settings with the given fields replaced, None included.

        Raises:
            TypeError: a change names no field.
        """
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]  # checked at run time

    def upstream_name(self) -> UpstreamName:
        """Which upstream ``upstream`` names: ``modelriver`` (also when unset) or ``realm``.

        Raises:
            ValueError: any other value (a typo would otherwise send requests somewhere else silently).
        """
        value = (self.upstream or "").strip().lower()
        if value in ("", "modelriver"):
            return "modelriver"
        if value == "realm":
            return "realm"
        raise ValueError(f"{ENV_UPSTREAM}={self.upstream!r}: expected 'modelriver' or 'realm'")
