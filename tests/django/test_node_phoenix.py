"""The npm ``phoenix`` client (real Node) streams through the relay from the start view's answer,
on either upstream."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from djmr_demo import Chat, upstreams

from support import NODE_DIR

pytestmark = pytest.mark.node


@upstreams()
def test_npm_phoenix_client_streams_through_django(chat: Chat) -> None:
    node = shutil.which("node")
    assert node, "node is missing: run `make setup`"
    prompt = "hello from phoenix.js"
    proc = subprocess.run([node, "django_client.mjs", chat.demo.url, prompt], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=60)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, (result, proc.stderr)
    answer = result["answer"]
    assert answer["websocket_url"] == f"ws://127.0.0.1:{chat.demo.port}/modelriver/socket"
    assert result["token_present"]
    final = result["final"]
    assert final["status"] == "success"
    assert result["text"] == final["content"]
    assert prompt in final["content"]
    assert result["seqs"] == list(range(1, len(result["seqs"]) + 1))
    log = chat.log(answer["channel_id"], prompt)
    assert log["status"] == "success"
    if not chat.upstream.realm:
        assert log["sockets"] == 1  # the relay's one upstream socket (Realm calls have none)
    assert final["content"] == chat.final(answer["channel_id"], prompt)["content"]  # the gateway's own
