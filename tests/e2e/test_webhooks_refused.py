"""Acceptance (issue 8): bad webhook deliveries are refused end to end, over real HTTP.

A genuine delivery is captured from ``modelriver dev`` (a ``demo-events`` request whose webhook
goes to a loopback receiver), then played against the Django relay's webhook view (the demo on
Daphne) in its bad forms: forged (another secret), altered (a byte of the signed ``data``
changed), stale (signed 301 s ago), future (signed 400 s ahead), unsigned, and replayed (the
very same signed delivery a second time, inside the tolerance window). Each gets 401; nothing is
stored (the genuine delivery afterwards is processed, not taken for a duplicate), no signal runs
(the demo's ``webhook_received`` receiver logs each enrichment) and nothing reaches the gateway
(its request log shows no callback until the genuine one).

At the gateway, the callback URL the webhook carries is the other way in: a forged token, another
request's token, no token or a wrong API key get 401 and leave the request waiting.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest
from djmr_demo import Demo

from modelriver.api import AsyncModelRiver
from modelriver.webhooks import encode_body, signature_headers
from support import Gateway
from support.gatewaytest import WebhookReceiver, wait_until

pytestmark = pytest.mark.timeout(90)

SIGNATURE, TIMESTAMP, CALLBACK = "X-ModelRiver-Signature", "X-ModelRiver-Timestamp", "X-ModelRiver-Callback-Url"


@dataclass
class Delivery:
    """A genuine webhook as the gateway sent it."""

    channel_id: str
    raw: bytes
    headers: dict[str, str]

    @property
    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.raw)
        return parsed

    @property
    def callback_url(self) -> str:
        data = self.body.get("data") or {}
        return str(data.get("callback_url") or self.body.get("callback_url"))


async def capture(gateway: Gateway, prompt: str) -> Delivery:
    """Start a ``demo-events`` request at the gateway and catch its signed webhook."""
    with WebhookReceiver(gateway.webhook_secret) as hooks:
        async with AsyncModelRiver(api_key=gateway.api_key, api_base=gateway.url) as client:
            request = await client.create_request(
                "demo-events", prompt, events=["webhook_received"], webhook_url=hooks.url,
                metadata={"scripted": {"tokens_per_second": 0, "first_token_ms": 0}})
        got = await hooks.aget(within=20)
    assert got.verified, got.error
    headers = {name: value for name, value in got.headers.items()
               if name.lower() in (SIGNATURE.lower(), TIMESTAMP.lower(), CALLBACK.lower())}
    return Delivery(request.channel_id, got.body, headers)


def resigned(delivery: Delivery, secret: str, *, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = delivery.body
    return encode_body(body), signature_headers(body, secret, timestamp=timestamp)


def altered(delivery: Delivery) -> tuple[bytes, dict[str, str]]:
    body = delivery.body
    data = dict(body["data"])
    data["reply"] = str(data.get("reply", "")) + "!"
    return encode_body({**body, "data": data}), dict(delivery.headers)


async def test_bad_deliveries_get_401_at_the_django_webhook_view(
    gateway: Gateway, relay: Demo, figures: Callable[..., None],
) -> None:
    delivery = await capture(gateway, "webhook attacks")
    cid = delivery.channel_id
    secret = gateway.webhook_secret
    now = int(time.time())
    attacks: dict[str, tuple[bytes, dict[str, str]]] = {
        "forged": resigned(delivery, "whsec_not_the_secret"),
        "altered": altered(delivery),
        "stale": resigned(delivery, secret, timestamp=now - 301),
        "future": resigned(delivery, secret, timestamp=now + 400),  # margin: the check runs later
        "unsigned": (delivery.raw, {}),
        "garbage": (b"{not json", dict(delivery.headers)),
    }

    posted = {"n": relay.process.output.count("HTTP POST /modelriver/webhook ")}

    async def enrichments() -> int:
        """The demo's enrichment log lines for this channel, once the relay's output has caught up
        with every webhook posted so far (Daphne logs each answered request after the answer)."""
        for _ in range(500):
            if relay.process.output.count("HTTP POST /modelriver/webhook ") >= posted["n"]:
                return relay.process.output.count(f"enriched {cid} as ")
            await asyncio.sleep(0.02)
        raise TimeoutError("the relay's log did not catch up within 10 s")

    refused = 0
    async with httpx.AsyncClient(base_url=relay.url, timeout=20) as http:

        async def post(raw: bytes, headers: dict[str, str]) -> httpx.Response:
            posted["n"] += 1
            return await http.post("/modelriver/webhook", content=raw,
                                   headers={**headers, "Content-Type": "application/json"})

        for name, (raw, headers) in attacks.items():
            answer = await post(raw, headers)
            assert answer.status_code == 401, (name, answer.status_code, answer.text)
            refused += 1
            assert await enrichments() == 0, f"{name}: the webhook_received signal ran"
            log = await asyncio.to_thread(gateway.request_log, cid)
            assert log["callback"] is None, f"{name}: a callback reached the gateway"
            assert log["status"] == "awaiting_callback", name

        # Nothing was kept: the genuine delivery is processed now (not answered "duplicate").
        genuine = await post(delivery.raw, delivery.headers)
        assert genuine.status_code == 200 and genuine.json() == {"status": "ok"}, genuine.text
        assert await enrichments() == 1
        log = await asyncio.to_thread(gateway.request_log, cid)
        assert log["status"] == "completed" and log["callback"]["received"]

        # The same signed delivery again, well inside the 300 s window: a replay.
        replay = await post(delivery.raw, delivery.headers)
        assert replay.status_code == 401, replay.text
        refused += 1
        assert await enrichments() == 1, "the replay ran the signal"

    figures(receiver="Django webhook view", attacks=len(attacks) + 1, refused_401=refused,
            signals_from_attacks=await enrichments() - 1, genuine_accepted=1)


def with_token(url: str, token: str | None) -> str:
    parts = urlsplit(url)
    query = "" if token is None else f"token={token}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


async def test_forged_callbacks_get_401_at_the_gateway(gateway: Gateway, figures: Callable[..., None]) -> None:
    mine, other = await asyncio.gather(capture(gateway, "callback attacks"), capture(gateway, "another"))
    url = mine.callback_url
    assert "token=" in url
    other_token = parse_qs(urlsplit(other.callback_url).query)["token"][0]
    data = {"data": {**mine.body["data"], "approved": True}}
    attacks = {
        "forged token": (with_token(url, "x" * 43), {}),
        "another request's token": (with_token(url, other_token), {}),
        "no token": (with_token(url, None), {}),
        "wrong API key": (with_token(url, None), {"Authorization": "Bearer mr_test_not_the_key"}),
    }
    async with httpx.AsyncClient(timeout=10) as http:
        for name, (target, headers) in attacks.items():
            answer = await http.post(target, json=data, headers=headers)
            assert answer.status_code == 401, (name, answer.status_code, answer.text)
            assert gateway.api_key not in answer.text
            log = await asyncio.to_thread(gateway.request_log, mine.channel_id)
            assert (log["status"], log["callback"]) == ("awaiting_callback", None), name
        genuine = await http.post(url, json=data)
        assert genuine.status_code == 200 and genuine.json()["duplicate"] is False
        again = await http.post(url, json=data)
        assert again.status_code == 200 and again.json()["duplicate"] is True

    await wait_until(lambda: gateway.request_log(mine.channel_id)["status"] == "completed", within=10)
    other_log = await asyncio.to_thread(gateway.request_log, other.channel_id)
    assert other_log["callback"] is None, "another request's token touched it"
    figures(receiver="gateway callback URL", attacks=len(attacks), refused_401=len(attacks), genuine_accepted=1)
