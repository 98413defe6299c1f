"""``Upstream``: where an adapter test's requests go, ModelRiver or Realm, on a real gateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from support import Gateway, free_port

REALM_KEY = "sk_realm_adapter_0123456789"
"""The Realm endpoint's API key in adapter tests (``modelriver dev --realm-api-key``)."""


@dataclass
class Upstream:
    """Where a test's requests go: the gateway that runs them, and how the demo reaches it."""

    name: str
    gateway: Gateway
    realm_url: str | None = None

    @property
    def realm(self) -> bool:
        return self.realm_url is not None

    def env(self, *, down: bool = False) -> dict[str, str]:
        """The demo's environment (``down``: an upstream URL where nothing listens)."""
        nowhere = free_port()
        env = {**self.gateway.env, "MODELRIVER_WEBHOOK_SECRET": self.gateway.webhook_secret}
        if self.realm_url is None:
            return {**env, "MODELRIVER_API_BASE": f"http://127.0.0.1:{nowhere}" if down
                    else self.gateway.url}
        return {**env, "MODELRIVER_UPSTREAM": "realm", "REALM_API_KEY": REALM_KEY,
                "REALM_URL": f"ws://127.0.0.1:{nowhere}" if down else self.realm_url}

    def log(self, channel_id: str, prompt: str) -> dict[str, Any]:
        """The gateway's log of the request the chat showed as ``channel_id`` for ``prompt``.

        On Realm the chat's id is the upstream's own (Realm calls have none the gateway knows),
        so the request is found by its prompt: each test sends its own, and the answers it
        compares with (``oracle``) come from the other gateway.
        """
        if self.realm_url is None:
            return self.gateway.request_log(channel_id)
        found = [r for r in self.gateway.requests() if r["prompt"] == prompt]
        assert len(found) == 1, (prompt, found)
        return self.gateway.request_log(found[0]["channel_id"])
