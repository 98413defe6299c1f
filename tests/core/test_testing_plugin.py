"""``modelriver.testing``: the pytest plugin users get with ``modelriver[gateway]``.

The fixture's gateway is the real embedded gateway (HTTP, Phoenix socket, webhooks) on a free port
of this process; these tests drive it through the public client as an app would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
from importlib.metadata import distribution
from pathlib import Path

import httpx
import pytest

from modelriver.api import ModelRiver
from modelriver.events import Status
from modelriver.exceptions import APIConnectionError
from modelriver.testing import EmbeddedGateway
from modelriver.upstream import sync_upstream_from_env


def client(gateway: EmbeddedGateway) -> ModelRiver:
    return ModelRiver(gateway.api_key, api_base=gateway.url, max_retries=0)


def test_the_fixture_points_the_environment_at_a_scripted_gateway(modelriver_gateway: EmbeddedGateway) -> None:
    assert os.environ["MODELRIVER_API_BASE"] == modelriver_gateway.url
    modelriver_gateway.script("support-bot", reply="Hello {prompt}!")
    upstream = sync_upstream_from_env()  # what an app reading the environment builds
    try:
        request = upstream.create_request("support-bot", "Ada")
        with upstream.connect(request) as stream:
            response = stream.wait()
    finally:
        upstream.close()
    assert response.status == "success" and stream.text == "Hello Ada!"
    [log] = modelriver_gateway.requests()
    assert (log["workflow"], log["prompt"], log["status"]) == ("support-bot", "Ada", "success")
    assert modelriver_gateway.wait_for(request.channel_id)["content_length"] == len("Hello Ada!")


def test_faults_fail_failover_and_dropped_sockets(modelriver_gateway: EmbeddedGateway) -> None:
    gw = modelriver_gateway
    gw.fail("demo-chat", error="provider down")
    gw.fail("demo-failover", after=2)
    gw.script("demo-failover", reply="backup answer")
    steady = " ".join(f"w{i}" for i in range(40))  # 0.8 s: the socket is joined before it ends
    gw.script("steady", reply=steady, tokens_per_second=50)
    gw.drop_socket("steady", after=2)
    with client(gw) as api:
        with api.stream("demo-chat", "hi") as failed:
            assert failed.wait().is_error
        with api.stream("demo-failover", "hi") as failover:
            statuses = [e.status for e in failover if isinstance(e, Status)]
            assert failover.response is not None and failover.response.status == "success"
        with api.stream("steady", "hi") as dropped:
            assert dropped.wait().status == "success"
    assert "provider down" in str(failed.response.error_message)
    assert "failover" in statuses and failover.text == "backup answer"
    assert dropped.text == steady
    assert gw.request(dropped.request.channel_id)["sockets"] >= 2  # it did reconnect
    assert gw.requests()[0]["status"] == "error"
    with pytest.raises(ValueError, match="tokens_per_second"):
        gw.script("demo-chat", tokens_per_second="fast")
    with pytest.raises(ValueError, match="unknown setting"):
        gw.script("demo-chat", replyy="typo")


def test_webhooks_reach_the_inbox_signed(modelriver_gateway: EmbeddedGateway) -> None:
    inbox = modelriver_gateway.webhook_inbox()
    with client(modelriver_gateway) as api:
        request = api.create_request("demo-events", "hi", webhook_url=inbox.url)
        hook = inbox.get()
        assert hook.verified and hook.json()["channel_id"] == request.channel_id
        api.callback(request.channel_id, {"reply": "from the backend"}, callback_url=hook.json()["callback_url"])
    log = modelriver_gateway.wait_for(request.channel_id)
    assert log["status"] == "completed" and log["callback"]["received"] and log["webhooks"]


def test_the_gateway_stops_and_frees_its_port() -> None:
    with EmbeddedGateway() as gw:
        url = gw.url
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    assert not [t for t in threading.enumerate() if t.name == "modelriver-testing-gateway"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=5)
    with pytest.raises(APIConnectionError), ModelRiver("k", api_base=url, max_retries=0) as api:
        api.health()


def test_the_entry_point_works_in_a_project_of_its_own(tmp_path: Path) -> None:
    """Installed, the plugin needs no conftest: a user's project gets the fixture, and `import
    modelriver` does not import pytest."""
    entry = [e for e in distribution("modelriver").entry_points if e.group == "pytest11"]
    assert [(e.name, e.value) for e in entry] == [("modelriver", "modelriver.testing")]
    (tmp_path / "test_app.py").write_text(textwrap.dedent("""
        from modelriver.upstream import sync_upstream_from_env

        def test_app(modelriver_gateway):
            modelriver_gateway.script("my-flow", reply="scripted")
            upstream = sync_upstream_from_env()
            with upstream.connect(upstream.create_request("my-flow", "hi")) as stream:
                assert stream.wait().status == "success" and stream.text == "scripted"
            upstream.close()
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELRIVER_", "PYTEST_"))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_app.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    bare = subprocess.run([sys.executable, "-c", "import sys, modelriver; print('pytest' in sys.modules)"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert bare.stdout.strip() == "False", bare.stderr


def test_the_gateway_extra_and_its_old_name() -> None:
    requires = [r.replace('"', "'") for r in distribution("modelriver").requires or []]
    for extra in ("gateway", "dev"):  # `dev` is the old name: it installs the same
        needs = {re.split(r"[\[<>=;]", r)[0] for r in requires if r.endswith(f"extra == '{extra}'")}
        assert {"starlette", "uvicorn", "jsonschema"} <= needs or needs == {"modelriver"}, requires
