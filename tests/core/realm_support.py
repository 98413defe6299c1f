"""Gateways with a Realm endpoint, shared by test_realm_gateway.py and test_upstream.py.

Both modules' session fixtures call ``acquire()`` / ``release()``: the gateways start once (side by
side) for the first and stop after the last, however the two modules are collected.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from modelriver.devserver.config import BUILTIN_PROVIDERS, ScriptedProviderConfig
from modelriver.devserver.providers import GenerationRequest, ScriptedProvider
from support import Gateway, free_port, start_gateway

REALM_KEY = "sk_realm_test_0123456789"
RESTART_CONFIG = Path(__file__).with_name("failover_restart.toml")  # demo-failover: failover = "restart"


def scripted(prompt: str, provider: str = "demo-chat") -> str:
    """The text the built-in scripted provider answers for ``prompt``."""
    config = BUILTIN_PROVIDERS[provider]
    assert isinstance(config, ScriptedProviderConfig)
    return ScriptedProvider(config).answer(GenerationRequest([{"role": "user", "content": prompt}]))


class RealmGateway:
    """A `modelriver dev --realm-port` process: its gateway and its Realm URL."""

    def __init__(self, gateway: Gateway, port: int) -> None:
        self.gateway = gateway
        self.url = f"ws://127.0.0.1:{port}"

    def log_for(self, prompt: str) -> dict[str, object]:
        found = [r for r in self.gateway.requests() if r["prompt"] == prompt]
        assert len(found) == 1, found
        return found[0]


class _Shared:
    def __init__(self) -> None:
        self.users = 0
        self.gateways: tuple[RealmGateway, RealmGateway] | None = None


_shared = _Shared()


def acquire() -> tuple[RealmGateway, RealmGateway]:
    """(auth on with ``REALM_KEY``, auth off (``--realm-no-auth``) with a rate limit of 2 a minute)."""
    _shared.users += 1
    if _shared.gateways is None:
        ports = [free_port(), free_port()]
        restart = ("--config", str(RESTART_CONFIG))  # test_realm_gateway: a restarted stream fails
        with ThreadPoolExecutor(2) as pool:
            started = list(pool.map(lambda args: start_gateway(*args), [
                ("--realm-port", str(ports[0]), "--realm-api-key", REALM_KEY, *restart),
                ("--realm-port", str(ports[1]), "--realm-no-auth", "--rate-limit", "2", *restart),
            ]))
        _shared.gateways = RealmGateway(started[0], ports[0]), RealmGateway(started[1], ports[1])
    return _shared.gateways


def release() -> None:
    _shared.users -= 1
    if _shared.users == 0 and _shared.gateways is not None:
        gateways, _shared.gateways = _shared.gateways, None
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda g: g.gateway.process.stop(), gateways))
