"""Run the demo project (demo_projects/django_chat) as real processes: Daphne via runserver.

Tests that run once per upstream take the ``chat`` fixture through ``upstreams()``: the demo on
ModelRiver (the session's gateway) or on Realm (``MODELRIVER_UPSTREAM=realm``, the requests on a
gateway's Realm endpoint, ``--realm-port``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import ROOT, Gateway, Process, free_port
from support.upstreams import Upstream
from support.wireclient import WireClient, wait_for

DEMO = ROOT / "demo_projects" / "django_chat"
UPSTREAMS = ("modelriver", "realm")
REALM_GATEWAY_CONFIG = """
# A Realm call carries no request metadata (the demo's per-request script): the same pace by config.
[providers.demo-chat]
model = "scripted-chat"
tokens_per_second = 30
"""


@dataclass
class Demo:
    url: str
    port: int
    process: Process
    env: dict[str, str]

    def stop(self, sig: int | None = None) -> None:
        if sig is None:
            self.process.stop()
        else:
            self.process.stop(sig)


def demo_env(gateway: Gateway, db: Path, **extra: str) -> dict[str, str]:
    return {**gateway.env, "MODELRIVER_WEBHOOK_SECRET": gateway.webhook_secret, "DJANGO_CHAT_DB": str(db),
            **extra}


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, str(DEMO / "manage.py"), "migrate", "--noinput", "-v", "0"],
                   env={**os.environ, **env}, check=True, timeout=60)


def start_demo(env: dict[str, str], *, port: int | None = None) -> Demo:
    """``manage.py runserver`` (Daphne, with static files) on a free port; waits until it listens."""
    port = port or free_port()
    proc = Process.start([sys.executable, str(DEMO / "manage.py"), "runserver", f"127.0.0.1:{port}",
                          "--noreload"], env=env)
    proc.wait_for("Listening on TCP address", timeout=30)
    return Demo(f"http://127.0.0.1:{port}", port, proc, env)


def scripted_env(**script: Any) -> dict[str, str]:
    return {"DJANGO_CHAT_SCRIPTED": json.dumps(script)}


def gateway_final(gateway: Gateway, channel_id: str) -> dict[str, Any]:
    """The gateway's own final response for a channel, read with core's client (an oracle)."""
    from modelriver.api import ModelRiver

    with ModelRiver(gateway.api_key, api_base=gateway.url) as client:
        stream = client.connect(client.reconnect(channel_id), request_timeout=30)
        try:
            response = stream.wait()
        finally:
            stream.close()
    return dict(response.raw)


def upstreams(*names: str, why: str = "", fixture: str = "chat") -> pytest.MarkDecorator:
    """Run a test once per upstream in ``names`` (default: all) through the module-scoped
    ``fixture`` that takes the upstream's name as its param; leaving one out needs ``why``."""
    names = names or UPSTREAMS
    assert set(names) <= set(UPSTREAMS) and (set(names) == set(UPSTREAMS) or why), names
    return pytest.mark.parametrize(fixture, names, indirect=True, scope="module")


@dataclass
class Chat:
    """The demo on one upstream, and the gateway behind it as the oracle."""

    upstream: Upstream
    demo: Demo
    secrets: tuple[str, ...]

    def log(self, channel_id: str, prompt: str) -> dict[str, Any]:
        """The gateway's log of the request (Realm: the one request it ran for ``prompt``)."""
        log = self.upstream.log(channel_id, prompt)
        assert (log["channel_id"] != channel_id) is self.upstream.realm  # Realm: the relay's own id
        return log

    def final(self, channel_id: str, prompt: str) -> dict[str, Any]:
        """The gateway's own final response (waits for it)."""
        return gateway_final(self.upstream.gateway, self.log(channel_id, prompt)["channel_id"])


def start_request(relay: Demo, message: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A request from a fresh browser session, and the headers its socket needs (the cookie)."""
    with httpx.Client(base_url=relay.url, timeout=10) as http:
        assert http.get("/").status_code == 200
        answer = http.post("/modelriver/start", json={"message": message}, headers={
            "X-CSRFToken": http.cookies.get("csrftoken") or "", "Referer": relay.url + "/"})
        assert answer.status_code == 200, answer.text
        cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
        created: dict[str, Any] = answer.json()
        return created, {"Cookie": cookie}


def open_socket(relay: Demo, created: dict[str, Any], headers: dict[str, str], **kwargs: Any) -> WireClient:
    """A socket on the request's token, retried while the relay still counts a closed one live."""

    def attempt() -> WireClient | None:
        try:
            return WireClient(created["websocket_url"], created["ws_token"], origin=relay.url,
                              headers=headers, **kwargs)
        except AssertionError:  # 403
            return None

    client: WireClient = wait_for(attempt, within=10)
    return client
