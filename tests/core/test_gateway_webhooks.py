"""Acceptance: the event-driven loop of `modelriver dev` with a real webhook receiver.

The receiver (``support.gatewaytest.WebhookReceiver``) is an HTTP server on loopback that checks
every webhook with ``modelriver.webhooks.verify_signature``, as a backend would. The loop:
``ai_generated`` on the channel, the signed webhook, the callback with enriched data (wrapped
``{data, task_id}`` or a bare object; Bearer key or the callback_url's own token), ``completed``
carrying that data. Plus retries, idempotent repeats, 409 when not waiting, forged signatures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from modelriver.api import AsyncModelRiver
from modelriver.exceptions import WebhookVerificationError
from modelriver.stream import Stream, connect
from modelriver.types import AIResponse, AsyncRequest
from modelriver.webhooks import sign, verify_signature
from support import Gateway
from support.gatewaytest import RawSocket, Received, WebhookReceiver, scripted, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[AsyncModelRiver]:
    async with AsyncModelRiver(api_key=gateway.api_key, api_base=gateway.url, max_retries=0) as c:
        yield c


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as h:
        yield h


@pytest.fixture
def receiver(gateway: Gateway) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(gateway.webhook_secret) as r:
        yield r


class Flow:
    """One event-driven request, streamed by the core client in the background."""

    def __init__(self, request: AsyncRequest, stream: Stream) -> None:
        self.request = request
        self.stream = stream
        self.responses: list[AIResponse] = []
        stream.on("response", lambda e: self.responses.append(e.response))
        self.done = asyncio.create_task(stream.wait())

    @classmethod
    async def start(cls, client: AsyncModelRiver, receiver: WebhookReceiver, prompt: str = "hi",
                    **metadata: Any) -> Flow:
        request = await client.create_request(
            "demo-events", prompt, events=["webhook_received"], webhook_url=receiver.url,
            metadata=scripted(**metadata),
        )
        return cls(request, await connect(request))

    async def final(self) -> AIResponse:
        async with asyncio.timeout(20):
            return await self.done


async def settled_webhooks(gateway: Gateway, channel_id: str, count: int) -> list[dict[str, Any]]:
    """The request log's webhook attempts once ``count`` of them have an outcome (an attempt is
    logged when it starts, its status when the answer comes)."""
    def check() -> list[dict[str, Any]] | None:
        hooks = gateway.request_log(channel_id)["webhooks"]
        done = [h for h in hooks if h["status_code"] is not None or h["error"] is not None]
        return hooks if len(done) >= count else None
    return list(await wait_until(check))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def hook_for(receiver: WebhookReceiver, channel_id: str) -> Received:
    hook = await receiver.aget()
    assert hook.json()["channel_id"] == channel_id
    return hook


# -- the loop ------------------------------------------------------------------------------------


async def test_the_signed_webhook_then_a_wrapped_bearer_callback_completes(
    gateway: Gateway, client: AsyncModelRiver, http: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    flow = await Flow.start(client, receiver, "Crème brûlée für 2 — ok?")
    cid = flow.request.channel_id
    hook = await hook_for(receiver, cid)
    assert hook.verified, hook.error
    assert hook.answered == 200

    # Headers and body as docs/gateway.md lists them.
    body = hook.json()
    assert hook.headers["x-modelriver-timestamp"].isdigit()
    assert len(hook.headers["x-modelriver-signature"]) == 64
    assert body["type"] == "task.ai_generated"
    assert body["event"] == "webhook_received"
    assert body["status"] == "ai_generated"
    assert isinstance(body["data"], dict)
    assert isinstance(body["ai_response"], dict)
    assert "data" in body["ai_response"]
    assert "meta" in body
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))  # ISO 8601
    callback_url = body["callback_url"]
    assert hook.headers["x-modelriver-callback-url"] == callback_url
    parts = urlsplit(callback_url)
    assert f"{parts.scheme}://{parts.netloc}" == gateway.url
    assert parts.path == f"/v1/callback/{cid}"
    token = parse_qs(parts.query)["token"][0]
    assert token
    assert token != gateway.api_key
    assert gateway.api_key not in hook.body.decode()

    # The signature is HMAC(secret, "<ts>." + JSON.stringify(data)), as JavaScript writes it.
    ts = hook.headers["x-modelriver-timestamp"]
    assert sign(body["data"], gateway.webhook_secret, ts)[0] == hook.headers["x-modelriver-signature"]

    # The channel already said ai_generated (the webhook only goes out after it).
    await wait_until(lambda: [r.status for r in flow.responses] == ["ai_generated"])
    assert flow.responses[0].content

    enriched = {**body["data"], "order_id": "ORD-1", "approved": True, "note": "café ✓"}
    answer = await http.post(f"/v1/callback/{cid}", headers=bearer(gateway.api_key),
                             json={"data": enriched, "task_id": "task-1"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ok"

    final = await flow.final()
    assert final.status == "completed"
    assert final.data == enriched
    assert final.raw["task_id"] == "task-1"
    assert final.raw["ai_response"]["data"] == body["ai_response"]["data"]
    assert final.content == flow.responses[0].content

    log = gateway.request_log(cid)
    assert log["status"] == "completed"
    assert log["callback"]["received"] is True
    hooks = await settled_webhooks(gateway, cid, 1)
    assert [(w["attempt"], w["status_code"]) for w in hooks] == [(1, 200)]
    assert hooks[0]["url"] == receiver.url

    # An identical repeat is idempotent; a different one finds nothing waiting.
    again = await http.post(f"/v1/callback/{cid}", headers=bearer(gateway.api_key),
                            json={"data": enriched, "task_id": "task-1"})
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    other = await http.post(f"/v1/callback/{cid}", headers=bearer(gateway.api_key),
                            json={"data": {"something": "else"}})
    assert other.status_code == 409, other.text
    assert other.json()["error"] == "not_waiting"
    assert [r.status for r in flow.responses] == ["ai_generated", "completed"]


async def test_a_bare_object_to_the_callback_url_needs_no_api_key(
    gateway: Gateway, client: AsyncModelRiver, receiver: WebhookReceiver
) -> None:
    flow = await Flow.start(client, receiver)
    hook = await hook_for(receiver, flow.request.channel_id)
    callback_url = hook.json()["callback_url"]
    bare_url = callback_url.split("?", 1)[0]
    enriched = {"customer_id": 7, "priority": "high", "tags": ["a", "b"]}
    async with httpx.AsyncClient(timeout=10) as anon:
        assert (await anon.post(bare_url, json=enriched)).status_code == 401
        assert (await anon.post(bare_url + "?token=wrong", json=enriched)).status_code == 401
        assert (await anon.post(bare_url, json=enriched, headers=bearer("mr_wrong"))).status_code == 401
        answer = await anon.post(callback_url, json=enriched)
        assert answer.status_code == 200, answer.text
    final = await flow.final()
    assert final.status == "completed"
    assert final.data == enriched
    log = gateway.request_log(flow.request.channel_id)
    assert log["status"] == "completed"


async def test_the_core_client_callback_with_the_callback_url(
    client: AsyncModelRiver, receiver: WebhookReceiver
) -> None:
    flow = await Flow.start(client, receiver)
    hook = await hook_for(receiver, flow.request.channel_id)
    await client.callback(flow.request.channel_id, {"ok": True}, task_id="t-9",
                          callback_url=hook.json()["callback_url"])
    final = await flow.final()
    assert final.status == "completed"
    assert final.data == {"ok": True}
    assert final.raw["task_id"] == "t-9"


async def test_a_callback_for_a_request_not_waiting_is_409(
    gateway: Gateway, client: AsyncModelRiver, http: httpx.AsyncClient
) -> None:
    request = await client.create_request("demo-chat", "hi", metadata=scripted())
    stream = await connect(request)
    response = await stream.wait()
    assert response.status == "success"
    answer = await http.post(f"/v1/callback/{request.channel_id}", headers=bearer(gateway.api_key),
                             json={"data": {"x": 1}})
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "not_waiting"
    assert answer.json()["message"]


async def test_a_receiver_failing_twice_gets_retries_then_succeeds(
    gateway: Gateway, client: AsyncModelRiver, receiver: WebhookReceiver
) -> None:
    receiver.statuses[:] = [500, 500]
    flow = await Flow.start(client, receiver)
    cid = flow.request.channel_id
    hooks = [await hook_for(receiver, cid) for _ in range(3)]
    assert [h.answered for h in hooks] == [500, 500, 200]
    assert all(h.verified for h in hooks)
    await client.callback(cid, {"ok": True}, callback_url=hooks[-1].json()["callback_url"])
    final = await flow.final()
    assert final.status == "completed"
    hooks = await settled_webhooks(gateway, cid, 3)
    assert [(w["attempt"], w["status_code"]) for w in hooks] == [(1, 500), (2, 500), (3, 200)]
    assert all(w["at"] for w in hooks)


async def test_a_notification_webhook_without_events_and_success_on_the_channel(
    gateway: Gateway, client: AsyncModelRiver, receiver: WebhookReceiver
) -> None:
    request = await client.create_request("demo-chat", "hi", webhook_url=receiver.url, metadata=scripted())
    stream = await connect(request)
    seen: list[str] = []
    stream.on("response", lambda e: seen.append(e.response.status))
    response = await stream.wait()
    assert response.status == "success"
    assert seen == ["success"]
    hook = await hook_for(receiver, request.channel_id)
    assert hook.verified, hook.error
    body = hook.json()
    assert body["type"] == "task.completed"
    assert body["status"] == "success"
    assert "callback_url" not in body
    assert "event" not in body
    assert "x-modelriver-callback-url" not in hook.headers
    assert body["data"] == {"content": response.content}
    hooks = await settled_webhooks(gateway, request.channel_id, 1)
    assert [(w["attempt"], w["status_code"]) for w in hooks] == [(1, 200)]


# -- forged webhooks ---------------------------------------------------------------------------


async def test_a_tampered_webhook_fails_verification_in_the_receiver(
    gateway: Gateway, client: AsyncModelRiver, receiver: WebhookReceiver
) -> None:
    flow = await Flow.start(client, receiver)
    hook = await hook_for(receiver, flow.request.channel_id)
    assert hook.verified
    secret = gateway.webhook_secret
    sig, ts = hook.headers["x-modelriver-signature"], hook.headers["x-modelriver-timestamp"]
    verify_signature(hook.body, sig, ts, secret)  # the genuine one passes

    body = json.loads(hook.body)
    body["data"]["injected"] = True
    tampered = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    forgeries = {
        "tampered body": (tampered, sig, ts, secret),
        "wrong secret": (hook.body, sig, ts, "whsec_wrong"),
        "other timestamp": (hook.body, sig, str(int(ts) + 1), secret),
        "signature of the whole body": (
            hook.body, hmac.new(secret.encode(), ts.encode() + b"." + hook.body, hashlib.sha256).hexdigest(),
            ts, secret,
        ),
    }
    for name, (raw, signature, timestamp, key) in forgeries.items():
        try:
            verify_signature(raw, signature, timestamp, key)
        except WebhookVerificationError:
            continue
        pytest.fail(f"a webhook with {name} passed verification")
    # Posted to the receiver, the tampered body is answered 401 and not taken.
    async with httpx.AsyncClient(timeout=10) as anon:
        answer = await anon.post(receiver.url, content=tampered, headers={
            "X-ModelRiver-Signature": sig, "X-ModelRiver-Timestamp": ts, "Content-Type": "application/json",
        })
    assert answer.status_code == 401
    posted = await receiver.aget()
    assert not posted.verified
    assert posted.answered == 401

    await client.callback(flow.request.channel_id, {"ok": True},
                          callback_url=hook.json()["callback_url"])
    assert (await flow.final()).status == "completed"


async def test_a_backend_may_call_back_before_it_answers_the_webhook(
    gateway: Gateway, client: AsyncModelRiver
) -> None:
    """The channel already waits when the webhook goes out (docs/gateway.md)."""
    answers: list[int] = []
    called = threading.Event()

    def call_back_first(body: Any) -> None:
        answers.append(httpx.post(body["callback_url"], json={"data": {"fast": True}}, timeout=10).status_code)
        called.set()

    receiver = WebhookReceiver(gateway.webhook_secret, before_answer=call_back_first)
    with receiver:
        flow = await Flow.start(client, receiver)
        final = await flow.final()
    assert called.is_set()
    assert answers == [200]
    assert final.status == "completed"
    assert final.data == {"fast": True}


async def test_an_undeliverable_webhook_ends_the_request_with_an_error(
    gateway: Gateway, client: AsyncModelRiver
) -> None:
    with WebhookReceiver(gateway.webhook_secret, default_status=503) as receiver:
        flow = await Flow.start(client, receiver)
        final = await flow.final()
        hooks = [await receiver.aget() for _ in range(4)]
    assert final.is_error
    assert [h.answered for h in hooks] == [503] * 4  # the first attempt and 3 retries
    attempts = await settled_webhooks(gateway, flow.request.channel_id, 4)
    assert [(w["attempt"], w["status_code"]) for w in attempts] == [(n, 503) for n in range(1, 5)]
    log = gateway.request_log(flow.request.channel_id)
    assert log["status"] == "error"
    assert log["error"]


async def test_an_event_driven_request_without_a_webhook_url_is_400(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    answer = await http.post("/v1/ai/async", headers=bearer(gateway.api_key), json={
        "workflow": "demo-events", "messages": [{"role": "user", "content": "hi"}],
        "events": ["webhook_received"],
    })
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_request"
    assert "webhook_url" in answer.json()["message"]


async def test_the_callback_token_never_reaches_the_browser_side(
    gateway: Gateway, client: AsyncModelRiver, http: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    """Only the backend gets the callback_url: not the channel, not the async answer (handed to
    browsers), not the unauthenticated HTML view; the socket token does not open it either."""
    request = await client.create_request("demo-events", "hi", events=["webhook_received"],
                                          webhook_url=receiver.url, metadata=scripted())
    async with await RawSocket.for_request(request) as sock:
        await sock.join(request.topic)
        await sock.until(lambda f: f[3] == "response" and f[4]["status"] == "ai_generated")
        callback_url = (await hook_for(receiver, request.channel_id)).json()["callback_url"]
        token = parse_qs(urlsplit(callback_url).query)["token"][0]
        assert len(token) >= 16
        assert not any(token in text for text in sock.texts)
        assert token not in json.dumps(request.raw)
        assert token not in (await http.get("/")).text
        assert token not in json.dumps(gateway.request_log(request.channel_id))
        bare = callback_url.split("?", 1)[0]
        forged = await http.post(bare, params={"token": request.ws_token}, json={"data": {"x": 1}})
        assert forged.status_code == 401
        answer = await http.post(callback_url, json={"data": {"x": 1}})
        assert answer.status_code == 200
        final = await sock.until_final(request.topic)
        assert final[4]["status"] == "completed"
