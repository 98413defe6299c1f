"""The relay served by uvicorn (``uvicorn[standard]``: uvloop, httptools, the websockets-sansio
implementation), as the README's "Serving it" says: a real ``uvicorn`` process running the demo's
ASGI app (demo_projects/django_chat) against the session's real gateway.

* the npm ``phoenix`` client (real Node) starts a request through the start view and receives the
  whole answer, identical to the gateway's own;
* flow control holds where uvicorn's writes wait (its transport pauses past 64 KiB): a socket
  whose client never reads is paused and closed with 1008 after ``BUFFER_GRACE``, and the relay
  goes on serving; a lone surrogate closes with 1007 (uvicorn sends the codes as given, Daphne
  needs 4xxx), and phoenix.js's auth subprotocol opens a socket with the session's cookie only.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from djmr_demo import DEMO, Demo, demo_env, gateway_final, open_socket, scripted_env, start_request
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from support import NODE_DIR, Gateway, Process, free_port
from support.wireclient import check_stream, read_until_final, rss_kib, wait_for

TOKENS = 3000
TEXT = "".join(f"token{i}-padded-for-width " for i in range(TOKENS))  # ~0.4 MB of frames a join
GRACE = 1.0
JOINS = 20  # ~14 MB of replays asked for: more than the kernel's socket buffers (4 MiB) take

SETTINGS = f"""
from chatsite.settings import *  # noqa: F403  (the demo's settings, flow control tightened)

MODELRIVER = {{**MODELRIVER, "MAX_BUFFER": 65536, "BUFFER_GRACE": {GRACE}}}  # noqa: F405
"""


@pytest.fixture(scope="module")
def relay(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``uvicorn chatsite.asgi:application --ws websockets-sansio`` on a free port; every answer
    is its prompt at full speed (signed-cookie sessions: no migration needed)."""
    tmp = tmp_path_factory.mktemp("uvicorn_relay")
    (tmp / "uvicorn_settings.py").write_text(SETTINGS)
    env = {**demo_env(gateway, tmp / "db.sqlite3", **scripted_env(text="{prompt}", tokens_per_second=0,
                                                                   first_token_ms=0)),
           "DJANGO_SETTINGS_MODULE": "uvicorn_settings", "PYTHONPATH": f"{DEMO}:{tmp}"}
    port = free_port()
    proc = Process.start([sys.executable, "-m", "uvicorn", "chatsite.asgi:application", "--host", "127.0.0.1",
                          "--port", str(port), "--ws", "websockets-sansio", "--lifespan", "off"], env=env)
    try:
        proc.wait_for("Uvicorn running on", timeout=30)
        yield Demo(f"http://127.0.0.1:{port}", port, proc, env)
    finally:
        proc.stop()


@pytest.mark.node
def test_npm_phoenix_client_streams_through_uvicorn(relay: Demo, gateway: Gateway) -> None:
    node = shutil.which("node")
    assert node, "node is missing: run `make setup`"
    prompt = "hello from phoenix.js through uvicorn"
    proc = subprocess.run([node, "django_client.mjs", relay.url, prompt], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=30)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, (result, proc.stderr, relay.process.output[-3000:])
    answer = result["answer"]
    assert answer["websocket_url"] == f"ws://127.0.0.1:{relay.port}/modelriver/socket"
    final = result["final"]
    assert final["status"] == "success"
    assert result["text"] == final["content"] == prompt
    assert result["seqs"] == list(range(1, len(result["seqs"]) + 1))
    assert gateway.request_log(answer["channel_id"])["sockets"] == 1  # the relay's one upstream socket
    assert final["content"] == gateway_final(gateway, answer["channel_id"])["content"]  # the gateway's own
    assert '"WebSocket /modelriver/socket/websocket?' in relay.process.output  # served by uvicorn


def test_a_never_reading_client_flooding_joins_is_closed_with_1008_and_uvicorn_goes_on_serving(
        relay: Demo) -> None:
    """Every join replays the whole answer to a client that reads nothing: the kernel's buffers
    fill, then uvicorn's transport, whose ``send`` waits past 64 KiB. The relay must not wait
    with it (a stuck write held the socket's flush, and every other socket's flush behind it):
    it stops producing past ``MAX_BUFFER``, closes the socket with 1008 after ``BUFFER_GRACE``,
    memory stays bounded and the next request is served."""
    created, headers = start_request(relay, TEXT)
    topic = created["websocket_channel"]
    reader = open_socket(relay, created, headers, rcvbuf=1 << 20)  # the answer, read once to its end
    reader.join(topic)
    check_stream(read_until_final(reader, topic, within=20), topic, TEXT)
    reader.close()
    pid = relay.process.popen.pid
    before = peak = rss_kib(pid)
    stuck = open_socket(relay, created, headers, rcvbuf=4096)
    for _ in range(JOINS):
        stuck.join(topic)

    def closed_by_relay() -> bool:
        nonlocal peak
        peak = max(peak, rss_kib(pid))
        return "closing a socket with 1008" in relay.process.output

    wait_for(closed_by_relay, within=GRACE + 6)
    print(f"\nuvicorn RSS {before // 1024} MiB -> peak {peak // 1024} MiB for {JOINS} joins by a never-reading "
          f"client on a {TOKENS}-token answer; closed with 1008")
    assert (peak - before) / 1024 <= 64, f"uvicorn RSS {before} KiB -> {peak} KiB"
    wait_for(lambda: not stuck.read_some(), within=10, every=0)  # the close frame behind the unread data
    assert stuck.close_code == 1008
    stuck.close()
    other, other_headers = start_request(relay, TEXT)
    reader = open_socket(relay, other, other_headers, rcvbuf=1 << 20)
    reader.join(other["websocket_channel"])
    check_stream(read_until_final(reader, other["websocket_channel"], within=20), other["websocket_channel"], TEXT)
    reader.close()


def test_a_lone_surrogate_closes_with_1007(relay: Demo) -> None:
    created, headers = start_request(relay, "surrogates")
    client = open_socket(relay, created, headers)
    client.send(["1", "1", created["websocket_channel"], "phx_join", {"x": "\udfff"}])
    wait_for(lambda: not client.read_some(), within=10, every=0)
    assert client.close_code == 1007
    client.close()


def test_phoenix_auth_subprotocol_opens_a_socket_with_the_session_only(relay: Demo) -> None:
    """phoenix.js's ``authToken``: the token in a second subprotocol, both in one comma-separated
    header as a browser sends them (uvicorn's websockets-sansio splits them from 0.50.1)."""
    created, headers = start_request(relay, "subprotocol")
    url = created["websocket_url"] + "/websocket?vsn=2.0.0"
    token = base64.urlsafe_b64encode(created["ws_token"].encode()).decode().rstrip("=")
    subprotocols: Any = ["phoenix", "base64url.bearer.phx." + token]
    with pytest.raises(InvalidStatus) as refused:  # without the session's cookie
        connect(url, origin=relay.url, subprotocols=subprotocols, open_timeout=10)  # type: ignore[call-overload]
    assert refused.value.response.status_code == 403
    with connect(url, origin=relay.url, subprotocols=subprotocols, additional_headers=headers,  # type: ignore[call-overload]
                 open_timeout=10) as ws:
        assert ws.subprotocol == "phoenix"
        ws.send(json.dumps(["1", "1", created["websocket_channel"], "phx_join", {}]))
        frames: list[list[Any]] = []
        while not frames or frames[-1][3] != "response":
            frames.append(json.loads(ws.recv(timeout=10)))
        assert "".join(f[4]["data"] for f in frames if f[3] == "tokens") == "subprotocol"
