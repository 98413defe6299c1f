"""The command line: `modelriver dev` (start, key, flags, clean stop) and `modelriver stream`,
through ModelRiver and through Realm (``--realm ws://...``, or ``MODELRIVER_UPSTREAM=realm``).

Everything runs as real subprocesses (``python -m modelriver``). ``modelriver stream`` is run
through a pseudo-terminal to see that tokens reach the screen as they come, not at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from modelriver.api import ModelRiver
from modelriver.realm import SyncRealmClient
from modelriver.stream import connect_sync
from support import Gateway, Process, free_port, start_gateway
from tests.core.realm_support import REALM_KEY, scripted

pytestmark = pytest.mark.timeout(60)

MODELRIVER = [sys.executable, "-m", "modelriver"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
FAST = {"scripted": {"tokens_per_second": 5000, "first_token_ms": 0}}
WORKFLOWS = ("demo-chat", "demo-structured", "demo-events", "demo-failover", "demo-error", "demo-tools")


@pytest.fixture
def client(gateway: Gateway) -> Iterator[ModelRiver]:
    with ModelRiver(api_key=gateway.api_key, api_base=gateway.url, max_retries=0) as c:
        yield c


def cli_env(gateway: Gateway) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRIVER_")}
    return {**env, **gateway.env, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}


def run_in_pty(
    args: list[str], env: dict[str, str], *, within: float = 30
) -> tuple[int, list[tuple[float, bytes]], str]:
    """Run ``args`` with stdout on a pseudo-terminal; returns the exit code, the stdout chunks
    with the time each was read, and stderr."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env, close_fds=True)
    os.close(follower)
    chunks: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append((time.monotonic(), data))
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    assert proc.stderr is not None
    return code, chunks, proc.stderr.read().decode(errors="replace")


def screen_text(chunks: list[tuple[float, bytes]]) -> str:
    return ANSI.sub("", b"".join(c for _, c in chunks).decode(errors="replace")).replace("\r\n", "\n")


def expected_content(client: ModelRiver, workflow: str, prompt: str) -> str:
    """The gateway's final content for this prompt (scripted answers are deterministic)."""
    with connect_sync(client.create_request(workflow, prompt, metadata=FAST)) as stream:
        response = stream.wait()
    assert response.content
    return response.content


# -- modelriver stream ---------------------------------------------------------------------------


def test_stream_prints_tokens_progressively(gateway: Gateway, client: ModelRiver) -> None:
    content = expected_content(client, "demo-chat", "hello")
    code, chunks, stderr = run_in_pty([*MODELRIVER, "stream", "hello", "--workflow", "demo-chat"],
                                      cli_env(gateway))
    assert code == 0, stderr
    text = screen_text(chunks)
    assert content in text.replace("\n", " ") or content in text, (content, text)
    # demo-chat streams ~50 tokens/s: the answer must reach the terminal in many pieces, over time.
    first = next(t for t, c in chunks if c.strip())
    spread = [t for t, c in chunks if c.strip()]
    assert len(spread) >= 5, f"only {len(spread)} chunks: the output was not streamed"
    assert spread[-1] - first >= 0.3, "every chunk arrived at once"


def test_stream_json_gives_one_object_per_line(gateway: Gateway, client: ModelRiver) -> None:
    content = expected_content(client, "demo-chat", "json please")
    done = subprocess.run([*MODELRIVER, "stream", "json please", "--workflow", "demo-chat", "--json"],
                          env=cli_env(gateway), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) >= 5
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) and isinstance(o.get("type"), str) for o in objects), objects
    tokens = [o["data"] for o in objects if o["type"] == "token"]
    responses = [o["response"] for o in objects if o["type"] == "response"]
    assert len(tokens) >= 3
    assert len(responses) == 1
    assert responses[0]["status"] == "success"
    assert "".join(tokens) == responses[0]["content"] == content


@pytest.mark.parametrize("json_mode", [False, True])
def test_stream_of_an_error_workflow_exits_non_zero(gateway: Gateway, json_mode: bool) -> None:
    args = [*MODELRIVER, "stream", "hello", "--workflow", "demo-error"] + (["--json"] if json_mode else [])
    done = subprocess.run(args, env=cli_env(gateway), capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    if json_mode:
        objects = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        assert all(isinstance(o, dict) for o in objects)
        assert any(o.get("type") == "error" and o.get("message") for o in objects), objects
    else:
        assert "error" in done.stderr.lower()
    assert "Traceback" not in done.stderr


def test_stream_without_a_gateway_fails_cleanly() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRIVER_")}
    env.update({"MODELRIVER_API_BASE": f"http://127.0.0.1:{free_port()}", "MODELRIVER_API_KEY": "mr_x"})
    done = subprocess.run([*MODELRIVER, "stream", "hello"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr


# -- modelriver stream --realm ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def realm_url() -> Iterator[str]:
    """A gateway serving Realm's protocol too (auth on with ``REALM_KEY``): its Realm URL."""
    port = free_port()
    gw = start_gateway("--realm-port", str(port), "--realm-api-key", REALM_KEY)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        gw.process.stop()


def realm_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODELRIVER_", "REALM_"))}
    return {**env, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", **extra}


def test_stream_realm_prints_tokens_progressively(realm_url: str) -> None:
    prompt = "stream me through realm"
    code, chunks, stderr = run_in_pty(
        [*MODELRIVER, "stream", prompt, "--realm", realm_url, "--realm-api-key", REALM_KEY],
        realm_env())
    assert code == 0, stderr
    assert scripted(prompt) in screen_text(chunks).replace("\n", "")
    # The gateway's Realm endpoint streams demo-chat at ~50 tokens/s: many pieces, over time.
    spread = [t for t, c in chunks if c.strip()]
    assert len(spread) >= 5, f"only {len(spread)} chunks: the output was not streamed"
    assert spread[-1] - spread[0] >= 0.3, "every chunk arrived at once"
    assert "[success in" in stderr and "Traceback" not in stderr


def test_stream_realm_is_chosen_by_the_environment(realm_url: str) -> None:
    prompt = "realm from the environment"
    done = subprocess.run(
        [*MODELRIVER, "stream", prompt, "--json"], capture_output=True, text=True, timeout=30,
        env=realm_env(MODELRIVER_UPSTREAM="realm", REALM_URL=realm_url, REALM_API_KEY=REALM_KEY))
    assert done.returncode == 0, done.stderr
    objects = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    response = objects[-1]["response"]
    assert objects[-1]["type"] == "response" and response["status"] == "success"
    assert "".join(o["data"] for o in objects if o["type"] == "token") == scripted(prompt)
    assert response["content"] == scripted(prompt)


@pytest.mark.parametrize("json_mode", [False, True])
def test_stream_realm_with_a_wrong_key_fails_cleanly(realm_url: str, json_mode: bool) -> None:
    done = subprocess.run(
        [*MODELRIVER, "stream", "hello", "--realm", realm_url, *(["--json"] if json_mode else [])],
        capture_output=True, text=True, timeout=30, env=realm_env(REALM_API_KEY="sk_wrong_key"))
    assert done.returncode == 1
    if json_mode:
        objects = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        assert [o["type"] for o in objects] == ["error"], objects
        message = objects[0]["message"]
    else:
        message = done.stderr
    assert re.search(r"auth|api key|unauthori", message, re.IGNORECASE), message
    assert "sk_wrong_key" not in done.stdout + done.stderr  # the key is never printed
    assert "Traceback" not in done.stderr


def test_stream_realm_unknown_model_runs_the_default_and_no_server_fails_cleanly(realm_url: str) -> None:
    # Realm never refuses a model name: the endpoint runs its default workflow (PROTOCOL §7).
    unknown = subprocess.run(
        [*MODELRIVER, "stream", "hello", "--realm", realm_url, "--realm-api-key", REALM_KEY,
         "--workflow", "no-such-workflow"], capture_output=True, text=True, timeout=30,
        env=realm_env())
    assert unknown.returncode == 0 and scripted("hello") in unknown.stdout, unknown.stderr
    nowhere = f"ws://127.0.0.1:{free_port()}"
    down = subprocess.run([*MODELRIVER, "stream", "hello", "--realm", nowhere],
                          capture_output=True, text=True, timeout=60, env=realm_env())
    assert down.returncode == 1 and nowhere in down.stderr, down.stderr
    for done in (unknown, down):
        assert "Traceback" not in done.stderr


# -- modelriver dev --------------------------------------------------------------------------------


def start_dev(*args: str, env: dict[str, str] | None = None) -> tuple[Process, str]:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELRIVER_")}
    proc = Process.start([*MODELRIVER, "dev", "--port", str(port), *args], env={**base, **(env or {})})
    return proc, f"http://127.0.0.1:{port}"


def stop_with(proc: Process, sig: int) -> int:
    """Send ``sig`` to the gateway alone and wait for its exit code."""
    proc.popen.send_signal(sig)
    return proc.popen.wait(timeout=15)


def create(url: str, key: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/ai/async", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                      json={"workflow": "demo-chat", "messages": [{"role": "user", "content": "hi"}]})


def test_dev_generates_a_key_prints_one_ready_line_and_stops_on_sigint() -> None:
    proc, url = start_dev()
    try:
        ready = proc.wait_for("modelriver dev ready on")
        assert ready.strip() == f"modelriver dev ready on {url}"
        keys = set(re.findall(r"mr_dev_[A-Za-z0-9_-]{8,}", proc.output))
        assert len(keys) == 1, proc.output
        key = keys.pop()
        assert create(url, key).status_code == 200
        assert create(url, "mr_dev_wrong").status_code == 401
        for workflow in WORKFLOWS:
            assert workflow in proc.output
    finally:
        code = stop_with(proc, signal.SIGINT)
    assert code == 0, proc.output
    assert sum("modelriver dev ready on" in line for line in proc.lines) == 1
    assert "Traceback" not in proc.output


def test_dev_masks_a_given_key_and_stops_on_sigterm() -> None:
    key = "mr_test_VERYSECRET_0123456789"
    proc, url = start_dev("--api-key", key)
    try:
        proc.wait_for("modelriver dev ready on")
        assert create(url, key).status_code == 200
    finally:
        code = stop_with(proc, signal.SIGTERM)
    assert code == 0, proc.output
    assert key not in proc.output
    assert "VERYSECRET" not in proc.output


def test_dev_reads_the_key_and_webhook_secret_from_the_environment() -> None:
    key = "mr_env_key_abcdef012345"
    proc, url = start_dev(env={"MODELRIVER_API_KEY": key})
    try:
        proc.wait_for("modelriver dev ready on")
        assert create(url, key).status_code == 200
    finally:
        assert stop_with(proc, signal.SIGTERM) == 0
    assert key not in proc.output


def start_realm_dev(*args: str) -> tuple[Process, str]:
    """`modelriver dev --realm-port R` (no MODELRIVER_/REALM_ environment) and its Realm URL."""
    realm_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELRIVER_", "REALM_"))}
    proc = Process.start([*MODELRIVER, "dev", "--port", str(free_port()), "--realm-port",
                          str(realm_port), *args], env=env)
    proc.wait_for("modelriver dev ready on")
    return proc, f"ws://127.0.0.1:{realm_port}"


def realm_auth_answer(url: str, first: str) -> list[dict[str, Any]]:
    """The frames a raw client gets for ``first`` sent at once on open, up to the close."""
    frames = []
    with ws_connect(url) as ws:
        ws.send(first)
        with contextlib.suppress(ConnectionClosed):
            while len(frames) < 4:
                frames.append(json.loads(ws.recv(timeout=10)))
    return frames


def test_dev_realm_endpoint_requires_the_gateways_key_by_default() -> None:
    key = "mr_test_realm_DEFAULTKEY_0123456789"
    proc, url = start_realm_dev("--api-key", key)
    try:
        for first in ('{"type":"auth","api_key":"sk_wrong"}', '{"id":"1","function":"health","params":{}}'):
            frames = realm_auth_answer(url, first)
            assert [f.get("type") for f in frames] == ["auth_required", "auth_failed"], frames
        with SyncRealmClient(url, api_key=key, reconnect=False) as realm:
            assert realm.generate("the gateway's key opens it", max_tokens=3).tokens_generated == 3
        assert re.search(r"Realm: +ws://\S+ \(auth on", proc.output), proc.output
    finally:
        assert stop_with(proc, signal.SIGTERM) == 0
    assert "DEFAULTKEY" not in proc.output


def test_dev_realm_no_auth_is_explicit_and_warned() -> None:
    proc, url = start_realm_dev("--realm-no-auth")
    try:
        assert "warning: the Realm endpoint runs without authentication" in proc.output
        assert "authentication OFF" in proc.output  # and logged
        with SyncRealmClient(url, reconnect=False) as realm:
            assert realm.health()["status"] == "healthy"
    finally:
        assert stop_with(proc, signal.SIGTERM) == 0
    both = subprocess.run([*MODELRIVER, "dev", "--realm-port", "1", "--realm-no-auth",
                           "--realm-api-key", "k"], capture_output=True, text=True, timeout=30)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_dev_help_lists_every_flag() -> None:
    done = subprocess.run([*MODELRIVER, "dev", "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    for flag in ("--host", "--port", "--api-key", "--config", "--webhook-secret", "--public-url",
                 "--rate-limit"):
        assert flag in done.stdout


def test_dev_public_url_and_forwarded_headers_shape_the_websocket_url(
    gateway_factory: Callable[..., Gateway], gateway: Gateway
) -> None:
    public = gateway_factory("--public-url", "https://gw.example.test")
    answer = create(public.url, public.api_key).json()
    assert answer["websocket_url"] == "wss://gw.example.test/socket"
    assert answer["websocket_channel"] == f"ai_response:{answer['project_id']}:{answer['channel_id']}"

    plain = create(gateway.url, gateway.api_key).json()
    assert plain["websocket_url"] == f"ws://{gateway.url.removeprefix('http://')}/socket"
    forwarded = httpx.post(
        f"{gateway.url}/v1/ai/async", timeout=10,
        headers={"Authorization": f"Bearer {gateway.api_key}", "X-Forwarded-Proto": "https",
                 "X-Forwarded-Host": "app.example.org"},
        json={"workflow": "demo-chat", "messages": [{"role": "user", "content": "hi"}]},
    ).json()
    assert forwarded["websocket_url"] == "wss://app.example.org/socket"
    assert forwarded["test_mode"] is True
    assert forwarded["status"] == "pending"
    assert forwarded["message"] == "success"


def test_dev_refuses_a_bad_config_with_a_clear_message(tmp_path: Any) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nrate_limit = 'lots'\n")
    done = subprocess.run([*MODELRIVER, "dev", "--port", str(free_port()), "--config", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "rate_limit" in done.stderr
    assert "Traceback" not in done.stderr


def drain(ws: Any) -> None:
    """Read until the socket closes (raises ``ConnectionClosed``)."""
    while True:
        ws.recv(timeout=10)


def test_dev_on_port_0_shows_the_port_and_closes_sockets_with_1012_on_sigterm() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELRIVER_")}
    proc = Process.start([*MODELRIVER, "dev", "--port", "0", "--api-key", "mr_port0_key_0123456789"],
                         env=base)
    try:
        ready = proc.wait_for("modelriver dev ready on")
        match = re.fullmatch(r"modelriver dev ready on (http://127\.0\.0\.1:(\d+))", ready.strip())
        assert match, ready
        url = match.group(1)
        assert int(match.group(2)) > 0
        answer = create(url, "mr_port0_key_0123456789")
        assert answer.status_code == 200
        request = answer.json()
        socket_url = f"{request['websocket_url']}/websocket?token={request['ws_token']}&vsn=2.0.0"
        with ws_connect(socket_url, open_timeout=5) as ws:
            ws.send(json.dumps(["1", "1", request["websocket_channel"], "phx_join", {}]))
            assert json.loads(ws.recv(timeout=5))[3] == "phx_reply"
            proc.popen.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                drain(ws)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1012
        assert proc.popen.wait(timeout=15) == 0
    finally:
        proc.stop()


# -- the newcomer's errors -------------------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    from modelriver import __version__

    done = subprocess.run([*MODELRIVER, "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == f"modelriver {__version__}"


@pytest.mark.parametrize("json_mode", [False, True])
def test_stream_without_a_key_names_the_flag_and_the_variable(gateway: Gateway, json_mode: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRIVER_")}
    before = len(gateway.requests())
    done = subprocess.run([*MODELRIVER, "stream", "hello", "--api-base", gateway.url,
                           *(["--json"] if json_mode else [])],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--api-key" in done.stderr and "MODELRIVER_API_KEY" in done.stderr, done.stderr
    assert "401" not in done.stderr and "api_key=" not in done.stderr  # no HTTP call, no Python argument
    assert "Traceback" not in done.stderr
    assert len(gateway.requests()) == before


def test_stream_to_a_refused_port_names_the_url_tried() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRIVER_")}
    for args, extra in (([], {"MODELRIVER_API_BASE": url}), (["--api-base", url], {})):
        done = subprocess.run([*MODELRIVER, "stream", "hello", "--api-key", "mr_x", *args],
                              env={**env, **extra}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert f"cannot reach {url}" in done.stderr and "MODELRIVER_API_BASE" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
