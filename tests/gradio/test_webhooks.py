"""``WebhookReceiver`` over HTTP (Starlette's test client): genuine deliveries are received once;
forged, altered, stale and replayed ones get 401 and are not received."""

from __future__ import annotations

import time

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gradio_modelriver import WebhookReceiver
from modelriver.webhooks import encode_body, signature_headers

SECRET = "whsec_gradio_test"
BODY = {"channel_id": "11111111-1111-4111-8111-111111111111", "timestamp": "2026-01-01T00:00:00Z",
        "type": "task.completed", "status": "success", "data": {"reply": "héllo", "confidence": 1.0}}


@pytest.fixture
def receiver() -> WebhookReceiver:
    return WebhookReceiver(secret=SECRET)


def post(receiver: WebhookReceiver, raw: bytes, headers: dict[str, str]) -> int:
    with TestClient(Starlette(routes=[receiver.route()])) as http:
        return http.post(receiver.path, content=raw, headers={**headers, "content-type": "application/json"}
                         ).status_code


def test_a_genuine_delivery_is_received(receiver: WebhookReceiver) -> None:
    assert post(receiver, encode_body(BODY), signature_headers(BODY, SECRET)) == 200
    assert (receiver.received, receiver.refused) == (1, 0)


def test_a_replayed_delivery_is_refused_with_401(receiver: WebhookReceiver) -> None:
    raw, headers = encode_body(BODY), signature_headers(BODY, SECRET)
    assert post(receiver, raw, headers) == 200
    assert post(receiver, raw, headers) == 401
    # a redelivery signed afresh (another timestamp) is a new delivery
    assert post(receiver, raw, signature_headers(BODY, SECRET, timestamp=int(time.time()) + 1)) == 200
    assert (receiver.received, receiver.refused) == (2, 1)


@pytest.mark.parametrize("attack", ["forged", "altered", "stale", "future"])
def test_bad_deliveries_are_refused_with_401(receiver: WebhookReceiver, attack: str) -> None:
    raw, headers = encode_body(BODY), signature_headers(BODY, SECRET)
    if attack == "forged":
        headers = signature_headers(BODY, "whsec_not_the_secret")
    elif attack == "altered":
        raw = raw.replace("héllo".encode(), b"hello")
    elif attack == "stale":
        headers = signature_headers(BODY, SECRET, timestamp=int(time.time()) - 301)
    else:
        headers = signature_headers(BODY, SECRET, timestamp=int(time.time()) + 400)
    assert post(receiver, raw, headers) == 401
    assert (receiver.received, receiver.refused) == (0, 1)
