"""The npm ``phoenix`` client (real Node) streams through the relay from the start view's answer."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from djmr_demo import Demo

from support import NODE_DIR, Gateway

pytestmark = pytest.mark.node


def test_npm_phoenix_client_streams_through_django(demo: Demo, gateway: Gateway) -> None:
    node = shutil.which("node")
    assert node, "node is missing: run `make setup`"
    proc = subprocess.run([node, "django_client.mjs", demo.url, "hello from phoenix.js"], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=60)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, (result, proc.stderr)
    answer = result["answer"]
    assert answer["websocket_url"] == f"ws://127.0.0.1:{demo.port}/modelriver/socket"
    assert result["token_present"]
    final = result["final"]
    assert final["status"] == "success"
    assert result["text"] == final["content"]
    assert "hello from phoenix.js" in final["content"]
    assert result["seqs"] == list(range(1, len(result["seqs"]) + 1))
    log = gateway.request_log(answer["channel_id"])
    assert log["sockets"] == 1 and log["status"] == "success"
