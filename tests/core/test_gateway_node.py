"""Acceptance: the real npm `phoenix` client (Node, tests/node/gateway_client.mjs) against
`modelriver dev`, the way ModelRiver's JS SDK uses it (PROTOCOL §3).

Every built-in workflow, with the token as the ``token`` param and as phoenix.js's auth
subprotocol (``authToken``); a join ``{}`` after everything was produced replays it all; the SDK's
channel ``heartbeat`` is answered; join, leave and join again on one socket works and never
cancels; the gateway neither closes the socket after the final nor sends the final twice.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jsonschema
import pytest

from modelriver.api import AsyncModelRiver
from modelriver.types import AsyncRequest
from support import NODE_DIR, Gateway, start_gateway
from support.gatewaytest import CHATBOT_RESPONSE_SCHEMA, WebhookReceiver, scripted, wait_until
from tests.core.realm_support import RESTART_CONFIG

pytestmark = [pytest.mark.node, pytest.mark.timeout(60)]

SCRIPT = NODE_DIR / "gateway_client.mjs"
WORKFLOWS = ["demo-chat", "demo-structured", "demo-events", "demo-failover", "demo-tools", "demo-error"]
LONG_TEXT = " ".join(f"word{i}" for i in range(100))


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    """This module's gateway: demo-failover restarts its answer (``failover = "restart"``, the
    behaviour before issue 18, which the failover checks here show; the default continues it)."""
    gw = start_gateway("--config", str(RESTART_CONFIG))
    yield gw
    gw.process.stop()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[AsyncModelRiver]:
    async with AsyncModelRiver(api_key=gateway.api_key, api_base=gateway.url, max_retries=0) as c:
        yield c


class NodeClients:
    """One run of gateway_client.mjs with several phoenix.js clients, started now, awaited later."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *clients: dict[str, Any]) -> NodeClients:
        node = shutil.which("node")
        if node is None:
            pytest.fail("these tests need Node.js (`node` on PATH) and `npm ci` in tests/node")
        proc = await asyncio.create_subprocess_exec(
            node, str(SCRIPT), json.dumps({"clients": list(clients)}), cwd=NODE_DIR,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def results(self) -> list[dict[str, Any]]:
        async with asyncio.timeout(40):
            out, err = await self.proc.communicate()
        lines = out.decode().strip().splitlines()
        assert lines, f"node printed nothing (exit {self.proc.returncode}): {err.decode()}"
        results = json.loads(lines[-1])["results"]
        assert self.proc.returncode == 0, (results, err.decode())
        for result in results:
            assert result["ok"], (result, err.decode())
        return list(results)


def client_options(request: AsyncRequest, auth: str, **options: Any) -> dict[str, Any]:
    return {"url": request.websocket_url, "token": request.ws_token, "topic": request.topic,
            "auth": auth, **options}


def check_stream(events: list[list[Any]]) -> dict[str, Any]:
    """The wire rules every join's events must follow; returns the final payload."""
    seqs = [payload["seq"] for _, payload in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    names = [name for name, _ in events]
    assert set(names) <= {"status", "tokens", "tool_call", "response", "error"}, names
    final_name, final = events[-1]
    assert final_name in ("response", "error")
    text = ""
    for name, payload in events:
        if name == "status" and payload.get("reset"):
            text = ""
        elif name == "tokens":
            text += payload["data"]
    if final_name == "response":
        assert final["content"] == text
    return dict(final)


def check_after_final(result: dict[str, Any]) -> None:
    assert result["channelHeartbeat"] == "ok"
    assert result["afterFinal"] == [], "the final (or anything) was sent again"
    assert result["connectedAfterFinal"] is True, "the gateway closed the socket after the final"
    assert result["serverClosed"] == []


@pytest.mark.parametrize("auth", ["param", "subprotocol"])
async def test_phoenix_js_streams_every_workflow(gateway: Gateway, client: AsyncModelRiver, auth: str) -> None:
    """One phoenix.js client per built-in workflow, all at once, in one Node process."""
    with WebhookReceiver(gateway.webhook_secret) as receiver:
        requests = {}
        for workflow in WORKFLOWS:
            driven = workflow == "demo-events"
            requests[workflow] = await client.create_request(
                workflow, "Hello from Node", events=["webhook_received"] if driven else None,
                webhook_url=receiver.url if driven else None, metadata=scripted(tokens_per_second=1000),
            )
        node = await NodeClients.start(*(client_options(r, auth) for r in requests.values()))
        hook = await receiver.aget(within=30)
        assert hook.verified
        await client.callback(requests["demo-events"].channel_id, {"approved": True}, task_id="n-1",
                              callback_url=hook.json()["callback_url"])
        results = dict(zip(WORKFLOWS, await node.results(), strict=True))

    for workflow, result in results.items():
        check_workflow(workflow, auth, result)


def check_workflow(workflow: str, auth: str, result: dict[str, Any]) -> None:
    driven = workflow == "demo-events"
    assert result["protocol"] == ("phoenix" if auth == "subprotocol" else ""), workflow
    [joined] = result["joins"]
    assert joined["status"] == "ok", workflow
    assert joined["early"] == [], workflow
    events = joined["events"]
    final = check_stream(events)
    check_after_final(result)
    names = [name for name, _ in events]
    if workflow == "demo-error":
        assert final.get("message")
        assert "tokens" not in names
        return
    assert final["status"] == ("completed" if driven else "success"), (workflow, final)
    if workflow in ("demo-structured", "demo-events"):
        ai_data = final["ai_response"]["data"] if driven else final["data"]
        jsonschema.validate(ai_data, CHATBOT_RESPONSE_SCHEMA)
    if driven:
        assert final["data"] == {"approved": True}
        assert final["task_id"] == "n-1"
        assert [p["status"] for n, p in events if n == "response"] == ["ai_generated", "completed"]
    if workflow == "demo-tools":
        assert names.index("tool_call") < names.index("tokens")
    if workflow == "demo-failover":
        assert [p["status"] for n, p in events if n == "status" and p.get("reset")] == ["failover"]


async def test_a_join_after_the_end_replays_everything(gateway: Gateway, client: AsyncModelRiver) -> None:
    request = await client.create_request("demo-chat", "late", metadata=scripted())
    await wait_until(lambda: gateway.request_log(request.channel_id)["status"] == "success")
    [result] = await (await NodeClients.start(client_options(request, "param"))).results()
    [joined] = result["joins"]
    final = check_stream(joined["events"])
    assert final["status"] == "success"
    assert joined["events"][0][0] == "status"
    assert len(joined["events"]) == gateway.request_log(request.channel_id)["last_seq"]
    check_after_final(result)


async def test_join_leave_join_on_one_socket_replays_and_never_cancels(
    gateway: Gateway, client: AsyncModelRiver
) -> None:
    requests = [await client.create_request(
        "demo-chat", "rejoin", metadata=scripted(text=LONG_TEXT, tokens_per_second=60)
    ) for _ in range(2)]
    node = await NodeClients.start(*(
        client_options(request, auth, scenario="rejoin", leaveAfterTokens=3)
        for request, auth in zip(requests, ["param", "subprotocol"], strict=True)
    ))
    for request, result in zip(requests, await node.results(), strict=True):
        check_rejoin(gateway, request, result)


def check_rejoin(gateway: Gateway, request: AsyncRequest, result: dict[str, Any]) -> None:
    first, second = result["joins"]
    assert first["status"] == second["status"] == "ok"
    assert first["early"] == []
    assert sum(1 for name, _ in first["events"] if name == "tokens") >= 3
    # Answered, the second join gets everything from seq 1 again (the SDK resets on rejoin).
    final = check_stream(second["events"])
    # Before that answer phoenix.js may hand it the first join's last live events (null
    # join_ref): only ones the first join had not received yet, never anything new.
    last_of_first = first["events"][-1][1]["seq"]
    early = [payload["seq"] for _, payload in second["early"]]
    assert early == list(range(last_of_first + 1, last_of_first + 1 + len(early)))
    assert final["status"] == "success"
    assert final["content"] == LONG_TEXT
    check_after_final(result)
    log = gateway.request_log(request.channel_id)
    assert log["cancelled"] is False
    assert log["status"] == "success"
    assert log["joins"] >= 2
    assert log["sockets"] == 1
