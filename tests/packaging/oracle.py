"""What the quickstart's gateway itself answered: found by prompt in its request log, read back
through its reconnect API with the main venv's core client (an oracle beside the app under test)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from readme_quickstart import Quickstart

from modelriver import ModelRiver


def request_log(run: Quickstart, path: str) -> Any:
    req = urllib.request.Request(f"{run.server('gateway').url}{path}",
                                 headers={"Authorization": f"Bearer {run.env['MODELRIVER_API_KEY']}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def finished_answer(run: Quickstart, prompt: str, *, within: float = 90) -> tuple[dict[str, Any], str]:
    """The log entry of the request made with ``prompt`` once it ended, and its final content."""
    deadline = time.monotonic() + within
    while True:
        entries = [r for r in request_log(run, "/v1/requests")["requests"] if r["prompt"] == prompt]
        if entries and entries[0]["status"] in ("success", "error", "cancelled"):
            break
        assert time.monotonic() < deadline, f"no finished request for {prompt!r}: {entries}"
        time.sleep(0.1)
    entry = entries[0]
    with ModelRiver(run.env["MODELRIVER_API_KEY"], api_base=run.server("gateway").url) as client:
        stream = client.connect(client.reconnect(entry["channel_id"]), request_timeout=30)
        try:
            content = stream.wait().content
        finally:
            stream.close()
    return entry, content
