"""The HTTP views in-process: CSRF, input checks, reconnect and cancel ownership, and the
webhook view's verification, idempotency, signal and callback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from djmr_support import Browser, Socket, scripted, settle

from django_modelriver import DEFER_CALLBACK, asend_callback
from django_modelriver.hub import get_hub
from django_modelriver.signals import webhook_received
from modelriver.exceptions import APIError
from modelriver.webhooks import encode_body, signature_headers
from support import Gateway

pytestmark = pytest.mark.usefixtures("mr_settings", "hub_cleanup")

CSRF = "A" * 32  # a CSRF secret as the csrftoken cookie holds it


async def test_start_enforces_csrf() -> None:
    browser = Browser(enforce_csrf_checks=True)
    refused = await browser.post("/modelriver/start", {"message": "hi"})
    assert refused.status_code == 403
    browser.client.cookies["csrftoken"] = CSRF
    wrong = await browser.post("/modelriver/start", {"message": "hi"}, X_CSRFToken="B" * 32)
    assert wrong.status_code == 403
    ok = await browser.post("/modelriver/start", {"message": "hi"}, X_CSRFToken=CSRF)
    assert ok.status_code == 200 and ok.json()["status"] == "pending"
    # cancel is CSRF-protected too; reconnect changes nothing and is exempt (the SDK sends no token)
    cancel = await Browser(enforce_csrf_checks=True).post("/modelriver/cancel", {"channel_id": "x"})
    assert cancel.status_code == 403
    reconnect = await browser.post("/modelriver/api/v1/ai/reconnect", {"channel_id": ok.json()["channel_id"]})
    assert reconnect.status_code == 200


@pytest.mark.parametrize(("body", "status"), [
    ("not json", 400),
    ([1, 2], 400),
    ({}, 400),
    ({"message": "  "}, 400),
    ({"messages": []}, 400),
    ({"messages": [{"role": "robot", "content": "x"}]}, 400),
    ({"message": "hi", "workflow": "no-such-workflow"}, 400),
])
async def test_start_checks_its_input(body: Any, status: int) -> None:
    browser = Browser()
    response = await browser.client.post("/modelriver/start", body, content_type="application/json")
    assert response.status_code == status
    assert "error" in response.json()


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(("path", "body", "says"), [
    ("/modelriver/start", '{"message": ' + DEEP + "}", "JSON object"),
    ("/modelriver/start", '{"message": "hi \\ud800"}', "body.message is not valid Unicode"),
    ("/modelriver/start", '{"messages": [{"role": "user", "content": "\\udfff"}]}', "body.messages[0].content"),
    ("/modelriver/start", '{"message": "hi", "workflow": "demo-chat\\ud800"}', "body.workflow"),
    ("/modelriver/start", '{"message": "hi", "\\ud800": 1}', "a key"),
    ("/modelriver/start", '{"message": ["hi"]}', "send {message"),
    ("/modelriver/start", '{"message": "hi", "workflow": ["demo-chat"]}', "no workflow"),
    ("/modelriver/start", '{"messages": {"role": "user"}}', "non-empty list"),
    ("/modelriver/start", '{"message": "' + "x" * (1 << 20) + '"}', "larger than"),
    ("/modelriver/start", '{"message": 1' + "0" * 5000 + "}", "JSON object"),
    ("/modelriver/api/v1/ai/reconnect", '{"channel_id": "\\ud800"}', "body.channel_id"),
    ("/modelriver/api/v1/ai/reconnect", DEEP, "JSON object"),
    ("/modelriver/cancel", '{"channel_id": "x\\ud800"}', "body.channel_id"),
    ("/modelriver/cancel", DEEP, "JSON object"),
])
async def test_every_malformed_body_is_a_400_and_starts_nothing(gateway: Gateway, path: str, body: str,
                                                                 says: str) -> None:
    before = len(gateway.requests())
    response = await Browser().client.post(path, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert says in response.json()["error"]
    assert len(gateway.requests()) == before


async def test_start_answers_get_with_405_and_maps_upstream_errors(mr_settings: dict[str, Any]) -> None:
    browser = Browser()
    assert (await browser.client.get("/modelriver/start")).status_code == 405
    from django.test import override_settings

    with override_settings(MODELRIVER={**mr_settings, "API_KEY": "mr_wrong_key_0123456789"}):
        bad_key = await browser.post("/modelriver/start", {"message": "hi"})
    assert bad_key.status_code == 502
    assert "mr_wrong_key" not in bad_key.content.decode()
    with override_settings(MODELRIVER={**mr_settings, "WORKFLOWS": {"demo-nope": {}},
                                       "DEFAULT_WORKFLOW": "demo-nope"}):
        unknown = await browser.post("/modelriver/start", {"message": "hi"})
    assert unknown.status_code == 400


async def test_a_messages_list_reaches_the_gateway() -> None:
    browser = Browser()
    response = await browser.post("/modelriver/start", {"messages": [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"}]})
    assert response.status_code == 200
    answer = response.json()
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    await sock.join(answer["websocket_channel"])
    final = (await sock.until_final())[-1][4]
    assert "second question" in final["content"]
    await sock.disconnect()


async def test_reconnect_without_channel_resumes_the_latest_request_of_the_session() -> None:
    browser = Browser()
    assert (await browser.post("/modelriver/api/v1/ai/reconnect", {})).status_code == 204
    with scripted(tokens_per_second=20):
        answer = await browser.start()
    latest = await browser.post("/modelriver/api/v1/ai/reconnect", {})
    assert latest.status_code == 200 and latest.json()["channel_id"] == answer["channel_id"]
    assert (await Browser().post("/modelriver/api/v1/ai/reconnect", {})).status_code == 204
    unknown = await browser.post("/modelriver/api/v1/ai/reconnect", {"channel_id": "nope"})
    assert unknown.status_code == 404
    await browser.post("/modelriver/cancel", {"channel_id": answer["channel_id"]})


async def test_cancel_stops_the_request_upstream(gateway: Gateway) -> None:
    owner, stranger = Browser(), Browser()
    with scripted(tokens_per_second=20):
        answer = await owner.start()
    channel_id = answer["channel_id"]
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    await sock.join(answer["websocket_channel"])
    await sock.until(lambda f: f[3] == "tokens")
    assert (await stranger.post("/modelriver/cancel", {"channel_id": channel_id})).status_code == 403
    response = await owner.post("/modelriver/cancel", {"channel_id": channel_id})
    assert response.status_code == 200 and response.json() == {"status": "cancelled", "channel_id": channel_id}
    final = (await sock.until_final())[-1][4]
    assert final["status"] == "cancelled"
    log = gateway.request_log(channel_id)
    assert log["cancelled"] is True and log["status"] == "cancelled"
    await sock.disconnect()
    await settle(channel_id)
    again = await owner.post("/modelriver/cancel", {"channel_id": channel_id})
    assert again.status_code == 409


# -- webhooks ------------------------------------------------------------------------------------

@pytest.fixture
def received() -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        kwargs["data"]["enriched"] = True
        return RESULT.get("value")

    webhook_received.connect(receiver, weak=False)
    yield calls
    webhook_received.disconnect(receiver)
    RESULT.clear()


RESULT: dict[str, Any] = {}


def signed(body: dict[str, Any], secret: str, *, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    return encode_body(body), signature_headers(body, secret, timestamp=timestamp)


def notification(channel_id: str = "11111111-1111-4111-8111-111111111111") -> dict[str, Any]:
    return {"channel_id": channel_id, "timestamp": "2026-01-01T00:00:00Z", "type": "task.completed",
            "status": "success", "data": {"reply": "héllo", "confidence": 1.0, "n": [1, 2.5]}}


async def post_webhook(body: bytes, headers: dict[str, str]) -> Any:
    return await Browser().client.post("/modelriver/webhook", body, content_type="application/json",
                                       headers=headers)


async def test_webhook_verified_once_and_idempotent(gateway: Gateway, received: list[dict[str, Any]]) -> None:
    body = notification()
    raw, headers = signed(body, gateway.webhook_secret)
    first = await post_webhook(raw, headers)
    assert first.status_code == 200 and first.json() == {"status": "ok"}
    assert len(received) == 1
    assert received[0]["channel_id"] == body["channel_id"]
    assert received[0]["data"]["reply"] == "héllo"
    # the gateway redelivers (a later timestamp, a new signature): no second signal
    raw, headers = signed(body, gateway.webhook_secret, timestamp=int(time.time()) + 1)
    again = await post_webhook(raw, headers)
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    assert len(received) == 1


@pytest.mark.parametrize("attack", ["forged", "altered", "stale", "unsigned", "garbage"])
async def test_bad_webhooks_get_401_and_no_signal(gateway: Gateway, received: list[dict[str, Any]],
                                                  attack: str) -> None:
    body = notification()
    if attack == "forged":
        raw, headers = signed(body, "whsec_not_the_secret")
    elif attack == "altered":
        raw, headers = signed(body, gateway.webhook_secret)
        raw = raw.replace("héllo".encode(), b"hello")
    elif attack == "stale":
        raw, headers = signed(body, gateway.webhook_secret, timestamp=int(time.time()) - 3600)
    elif attack == "unsigned":
        raw, headers = encode_body(body), {}
    else:
        raw, headers = signed(body, gateway.webhook_secret)
        raw = b"{not json"
    response = await post_webhook(raw, headers)
    assert response.status_code == 401
    assert received == []
    # nothing was kept: the genuine webhook is still processed afterwards
    raw, headers = signed(body, gateway.webhook_secret)
    assert (await post_webhook(raw, headers)).json() == {"status": "ok"}
    assert len(received) == 1


async def test_webhook_refused_without_a_configured_secret(mr_settings: dict[str, Any],
                                                           received: list[dict[str, Any]]) -> None:
    from django.test import override_settings

    raw, headers = signed(notification(), mr_settings["WEBHOOK_SECRET"])
    with override_settings(MODELRIVER={**mr_settings, "WEBHOOK_SECRET": None}):
        import os

        saved = os.environ.pop("MODELRIVER_WEBHOOK_SECRET", None)
        try:
            assert (await post_webhook(raw, headers)).status_code == 401
        finally:
            if saved is not None:
                os.environ["MODELRIVER_WEBHOOK_SECRET"] = saved
    assert received == []


async def test_event_driven_webhook_calls_back_or_defers(gateway: Gateway,
                                                         received: list[dict[str, Any]]) -> None:
    channel_id = "22222222-2222-4222-8222-222222222222"
    callback_url = f"{gateway.url}/v1/callback/{channel_id}?token=not-a-real-token"
    body = {**notification(channel_id), "type": "task.ai_generated", "status": "ai_generated",
            "callback_url": callback_url}
    # Automatic callback: the gateway refuses this unknown channel, so the view answers 502 and
    # keeps nothing: a redelivery runs the receivers again.
    raw, headers = signed(body, gateway.webhook_secret)
    assert (await post_webhook(raw, headers)).status_code == 502
    assert len(received) == 1
    # A receiver that defers: no callback now, 200; the app calls back later with the helper,
    # which posts to the remembered callback_url (the gateway answers: not waiting for one).
    RESULT["value"] = DEFER_CALLBACK
    raw, headers = signed(body, gateway.webhook_secret, timestamp=int(time.time()) + 1)
    assert (await post_webhook(raw, headers)).json() == {"status": "ok"}
    assert len(received) == 2
    with pytest.raises(APIError) as info:
        await asend_callback(channel_id, {"approved": True})
    assert info.value.status in (401, 404, 409)
    stored = await get_hub().backend.get_callback(channel_id)
    assert stored is not None and stored["callback_url"] == callback_url


async def test_a_replayed_webhook_is_refused_with_401_and_no_signal(
        gateway: Gateway, received: list[dict[str, Any]]) -> None:
    """The very same signed delivery twice inside the tolerance window: the second is a replay."""
    raw, headers = signed(notification(), gateway.webhook_secret)
    assert (await post_webhook(raw, headers)).json() == {"status": "ok"}
    replay = await post_webhook(raw, headers)
    assert replay.status_code == 401
    assert len(received) == 1


async def test_a_failed_delivery_may_be_retried_with_the_same_signature(
        gateway: Gateway, received: list[dict[str, Any]]) -> None:
    """The gateway retries within the same second (identical signature): not a replay if it failed."""
    channel_id = "33333333-3333-4333-8333-333333333333"
    body = {**notification(channel_id), "type": "task.ai_generated", "status": "ai_generated",
            "callback_url": f"{gateway.url}/v1/callback/{channel_id}?token=not-a-real-token"}
    raw, headers = signed(body, gateway.webhook_secret)
    assert (await post_webhook(raw, headers)).status_code == 502  # the callback failed
    assert (await post_webhook(raw, headers)).status_code == 502  # retried, processed again
    assert len(received) == 2
