"""A Django project served for the relay benchmarks by Daphne or by uvicorn, in a subprocess.

``start_django("daphne" | "uvicorn", port, api, script, app=DEMO_APP | PEERS_APP)``: the demo
(relaying through django_modelriver) or the hand-written peers (``benchmarks/_peers_django.py``),
one process, on the gateway at ``api`` with the dev gateway's per-request ``script``. Daphne runs
through ``_relaybench.py daphne`` (its probe and cProfile); uvicorn through this module:
``python benchmarks/_servers.py uvicorn APP PORT WS`` (``uvicorn[standard]``: uvloop, httptools,
and the WebSocket implementation ``WS``, ``websockets-sansio`` as the Django README serves it).
With ``profile``, cProfile runs from SIGUSR1 (sent after the warm-up) to the server's shutdown and
writes its stats there.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import django_relay as dr  # noqa: E402

DEMO_APP = "chatsite.asgi:application"
"""The demo project, relaying through django_modelriver."""
PEERS_APP = "_peers_django:application"
"""The peers a user would write by hand: per-browser proxy consumer and SSE view."""
SERVERS = ("daphne", "uvicorn")
UVICORN = {"loop": "uvloop", "http": "httptools", "lifespan": "off"}
"""uvicorn[standard] as served here (``--ws``: ``UVICORN_WS``, the Django README's choice by default)."""
UVICORN_WS = "websockets-sansio"


def start_django(server: str, port: int, api: str, script: dict[str, Any], *, app: str = DEMO_APP,
                 profile: str | None = None, ws: str = UVICORN_WS) -> dr.Server:
    """``app`` served by ``server`` on ``port`` (a subprocess, ready when it returns); ``ws``:
    uvicorn's WebSocket implementation."""
    demo = app == DEMO_APP
    where = dr.DEMO if demo else HERE
    env = {"MODELRIVER_API_BASE": api, "MODELRIVER_API_KEY": dr.API_KEY, "MODELRIVER_WEBHOOK_SECRET": dr.SECRET,
           "DJANGO_DEBUG": "0", "DJANGO_CHAT_SCRIPTED": json.dumps(script), "PYTHONPATH": str(where),
           "DJANGO_SETTINGS_MODULE": "chatsite.settings" if demo else "_peers_django", **dr.UNLIMITED_STARTS,
           **({"BENCH_PROFILE": profile} if profile else {})}
    if server == "daphne":
        args = [str(HERE / "_relaybench.py"), "daphne", "-b", "127.0.0.1", "-p", str(port), app]
        ready = "Listening on TCP address"
    else:
        args, ready = [str(Path(__file__).resolve()), "uvicorn", app, str(port), ws], "Uvicorn running on"
    return dr.Server.start([sys.executable, *args], ready, env=env, cwd=where)


def _uvicorn(app: str, port: int, ws: str) -> None:
    import cProfile

    import uvicorn

    path = os.environ.get("BENCH_PROFILE")
    if path:
        profiler = cProfile.Profile()

        def dump(*_: object) -> None:
            profiler.disable()
            profiler.dump_stats(path)
            sys.exit(0)

        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
        signal.signal(signal.SIGTERM, dump)  # uvicorn re-raises the SIGTERM after its graceful shutdown
    uvicorn.run(app, host="127.0.0.1", port=port, ws=ws, access_log=False, log_level="info",  # type: ignore[arg-type]
                timeout_graceful_shutdown=5, **UVICORN)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "uvicorn":
        _uvicorn(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)
