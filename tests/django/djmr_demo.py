"""Run the demo project (demo_projects/django_chat) as real processes: Daphne via runserver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import ROOT, Gateway, Process, free_port

DEMO = ROOT / "demo_projects" / "django_chat"


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
