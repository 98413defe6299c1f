"""Acceptance: what `modelriver dev` refuses (docs/gateway.md, PROTOCOL §2 token rules).

API key on the HTTP API (401), the rate limit (429 + Retry-After), socket tokens at the
handshake (403: missing, forged, foreign, already live), joins (refusal reasons), and that the API
key never leaks into a frame, an HTTP body or a log line of the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import InvalidStatus

from modelriver.api import AsyncModelRiver
from modelriver.exceptions import APIError
from modelriver.types import AsyncRequest
from support import Gateway
from support.faultproxy import FaultProxy
from support.gatewaytest import RawSocket, WebhookReceiver, scripted, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[AsyncModelRiver]:
    async with AsyncModelRiver(api_key=gateway.api_key, api_base=gateway.url, max_retries=0) as c:
        yield c


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as h:
        yield h


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


SOME_UUID = "3f8e9a52-5c1b-4d7e-9a0f-2b6c8d1e4f70"
BODY = {"workflow": "demo-chat", "messages": [{"role": "user", "content": "hi"}]}


async def refused_status(websocket_url: str, token: str | None, **kwargs: Any) -> int:
    """The HTTP status of a refused handshake (fails when the socket opens)."""
    try:
        sock = await RawSocket.open(websocket_url, token, **kwargs)
    except InvalidStatus as exc:
        return exc.response.status_code
    await sock.close()
    pytest.fail(f"the gateway accepted the socket (token {token!r:.40})")


async def accepted_eventually(request: AsyncRequest, *, within: float = 5.0) -> RawSocket:
    """Open a socket with ``request``'s token, retrying while the gateway still sees the old one
    live (it learns of a cut connection asynchronously)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await RawSocket.for_request(request)
        except InvalidStatus as exc:
            if exc.response.status_code != 403 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


# -- HTTP API --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/ai/async", BODY),
        ("POST", "/api/v1/ai/async", BODY),
        ("POST", "/v1/ai/reconnect", {"channel_id": SOME_UUID}),
        ("POST", "/api/v1/ai/reconnect", {"channel_id": SOME_UUID}),
        ("POST", "/v1/ai/cancel", {"channel_id": SOME_UUID}),
        ("GET", "/v1/requests", None),
        ("GET", f"/v1/requests/{SOME_UUID}", None),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, bearer("mr_wrong_key"), {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}],
    ids=["none", "wrong", "empty", "basic"],
)
async def test_missing_or_wrong_api_key_is_401(
    http: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    answer = await http.request(method, path, json=body, headers=headers)
    assert answer.status_code == 401, answer.text
    payload = answer.json()
    assert payload["error"] == "unauthorized"
    assert isinstance(payload.get("message"), str)
    assert payload["message"]


async def test_health_needs_no_key_and_the_html_log_does(http: httpx.AsyncClient, gateway: Gateway) -> None:
    health = await http.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["version"]
    assert (await http.get("/")).status_code == 401  # the key form (tests/core/test_gateway_input.py)
    index = await http.get("/", headers=bearer(gateway.api_key))
    assert index.status_code == 200
    assert "text/html" in index.headers["content-type"]


async def test_the_rate_limit_answers_429_with_retry_after(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory("--rate-limit", "2")
    async with httpx.AsyncClient(base_url=gw.url, timeout=10, headers=bearer(gw.api_key)) as http:
        created = []
        for _ in range(2):
            ok = await http.post("/v1/ai/async", json=BODY)
            assert ok.status_code == 200, ok.text
            created.append(ok.json()["channel_id"])
        for path in ("/v1/ai/async", "/api/v1/ai/async"):
            limited = await http.post(path, json=BODY)
            assert limited.status_code == 429, limited.text
            assert limited.headers["Retry-After"].isdigit()  # whole seconds
            assert 0 < int(limited.headers["Retry-After"]) <= 60
            assert limited.json()["error"] == "rate_limited"
            assert limited.json()["message"]
        # Only creating requests counts: the rest of the API still answers.
        assert (await http.get("/v1/requests")).status_code == 200
        assert (await http.post("/v1/ai/reconnect", json={"channel_id": created[0]})).status_code == 200
        # A wrong key is still a 401, not a 429: the limit is per key.
        other = await http.post("/v1/ai/async", json=BODY, headers=bearer("mr_someone_else"))
        assert other.status_code == 401


# -- socket tokens at the handshake ----------------------------------------------------------


async def test_missing_and_forged_tokens_are_refused_with_403(client: AsyncModelRiver) -> None:
    request = await client.create_request("demo-chat", "hi", metadata=scripted(tokens_per_second=50))
    url, token = request.websocket_url, request.ws_token
    header, payload, signature = token.split(".")
    good = claims(token)
    assert {"project_id", "channel_id", "topic", "exp"} <= good.keys()
    assert good["channel_id"] == request.channel_id
    assert good["topic"] == request.topic

    # A middle character of the signature (the last one may only carry padding bits).
    mid = len(signature) // 2
    flipped = signature[:mid] + ("A" if signature[mid] != "A" else "B") + signature[mid + 1:]
    other = await client.create_request("demo-chat", "hi", metadata=scripted())
    other_payload = other.ws_token.split(".")[1]
    forged = {
        "no token": None,
        "empty": "",
        "garbage": "not-a-jwt",
        "bad signature": f"{header}.{payload}.{flipped}",
        "no signature": f"{header}.{payload}.",
        "payload swapped": f"{header}.{other_payload}.{signature}",
        "wrong secret": jwt.encode(good, "not-the-gateway-secret-but-32-bytes-long", algorithm="HS256"),
        "alg none": jwt.encode(good, None, algorithm="none"),  # type: ignore[arg-type]
    }
    for name, bad in forged.items():
        assert await refused_status(url, bad) == 403, name
    # The real token still works after all that.
    async with await RawSocket.for_request(request) as sock:
        _, reply = await sock.join(request.topic)
        assert reply["status"] == "ok"


async def test_the_token_works_as_the_auth_subprotocol(client: AsyncModelRiver) -> None:
    request = await client.create_request("demo-chat", "hi", metadata=scripted())
    encoded = base64.urlsafe_b64encode(request.ws_token.encode()).decode().rstrip("=")
    sock = await RawSocket.open(request.websocket_url, None,
                                subprotocols=["phoenix", f"base64url.bearer.phx.{encoded}"])
    async with sock:
        assert sock.ws.subprotocol == "phoenix"
        _, reply = await sock.join(request.topic)
        assert reply["status"] == "ok"
        final = await sock.until_final(request.topic)
        assert final[4]["status"] == "success"
    # "phoenix" alone carries no token.
    assert await refused_status(request.websocket_url, None, subprotocols=["phoenix"]) == 403


async def test_one_live_socket_per_token_and_reconnect_after_close(client: AsyncModelRiver) -> None:
    request = await client.create_request("demo-chat", "hi", metadata=scripted(tokens_per_second=20))
    first = await RawSocket.for_request(request)
    _, reply = await first.join(request.topic)
    assert reply["status"] == "ok"
    assert await refused_status(request.websocket_url, request.ws_token) == 403
    await first.close()
    again = await accepted_eventually(request)
    async with again:
        _, reply = await again.join(request.topic, {})
        assert reply["status"] == "ok"
        assert await refused_status(request.websocket_url, request.ws_token) == 403


async def test_a_reconnect_after_a_network_cut_is_accepted(gateway: Gateway, client: AsyncModelRiver) -> None:
    request = await client.create_request("demo-chat", "hi", metadata=scripted(tokens_per_second=100))
    port = int(gateway.url.rsplit(":", 1)[1])
    async with FaultProxy("127.0.0.1", port) as proxy:
        sock = await RawSocket.open(proxy.rewrite(request.websocket_url), request.ws_token)
        _, reply = await sock.join(request.topic)
        assert reply["status"] == "ok"
        await sock.until(lambda f: f[3] == "tokens")
        assert await proxy.cut_all() == 1
        await sock.closed()
        again = await accepted_eventually(request)
        async with again:
            _, reply = await again.join(request.topic, {"last_seq": sock.events(request.topic)[-1][1]["seq"]})
            assert reply["status"] == "ok"
            final = await again.until_final(request.topic)
            assert final[4]["status"] == "success"


async def test_reconnect_api_gives_a_fresh_token_for_the_same_channel(client: AsyncModelRiver) -> None:
    request = await client.create_request("demo-chat", "hi", metadata=scripted(tokens_per_second=20))
    fresh = await client.reconnect(request.channel_id)
    assert fresh.channel_id == request.channel_id
    assert fresh.websocket_channel == request.websocket_channel
    assert fresh.ws_token != request.ws_token
    assert claims(fresh.ws_token)["channel_id"] == request.channel_id
    async with await RawSocket.for_request(request) as first, await RawSocket.for_request(fresh) as second:
        for sock in (first, second):
            _, reply = await sock.join(request.topic)
            assert reply["status"] == "ok"
    with pytest.raises(APIError) as info:
        await client.reconnect(str(uuid.uuid4()))
    assert info.value.status == 404


# -- joins -----------------------------------------------------------------------------------


async def test_a_token_cannot_join_another_requests_channel(client: AsyncModelRiver) -> None:
    mine = await client.create_request("demo-chat", "mine", metadata=scripted(tokens_per_second=20))
    theirs = await client.create_request("demo-chat", "theirs", metadata=scripted(tokens_per_second=20))
    async with await RawSocket.for_request(mine) as sock:
        for topic in (theirs.topic, f"ai_response:{theirs.channel_id}",
                      f"ai_response:{uuid.uuid4()}:{mine.channel_id}"):
            _, reply = await sock.join(topic)
            assert reply == {"status": "error", "response": {"reason": "unauthorized_project_access"}}, topic
        assert sock.events(theirs.topic) == []
        # The socket is still usable for its own channel.
        _, reply = await sock.join(mine.topic)
        assert reply["status"] == "ok"
        await sock.until(lambda f: f[2] == mine.topic and f[3] == "tokens")
        assert sock.events(theirs.topic) == []


async def test_malformed_topics_get_their_reasons(client: AsyncModelRiver) -> None:
    request = await client.create_request("demo-chat", "hi", metadata=scripted())
    project, channel = request.project_id, request.channel_id
    cases = {
        "rooms:lobby": "invalid_channel_format",
        "ai_response": "invalid_channel_format",
        f"ai_response:{project}:{channel}:extra": "invalid_channel_format",
        f"other:{project}:{channel}": "invalid_channel_format",
        f"ai_response:not-a-uuid:{channel}": "invalid_project_uuid",
        f"ai_response:{project}:not-a-uuid": "invalid_channel_uuid",
        "ai_response:not-a-uuid": "invalid_channel_uuid",
        f"ai_response:{uuid.uuid4()}": "unauthorized_project_access",
        f"ai_response:{project}:{uuid.uuid4()}": "unauthorized_project_access",
    }
    async with await RawSocket.for_request(request) as sock:
        for topic, reason in cases.items():
            _, reply = await sock.join(topic)
            assert reply == {"status": "error", "response": {"reason": reason}}, topic
        assert (await sock.heartbeat())["status"] == "ok"


# -- the API key never leaks --------------------------------------------------------------------


async def test_the_api_key_never_appears_in_frames_bodies_or_logs(
    gateway: Gateway, client: AsyncModelRiver, http: httpx.AsyncClient
) -> None:
    key = gateway.api_key
    seen: list[str] = []
    auth = bearer(key)
    with WebhookReceiver(gateway.webhook_secret) as receiver:
        created = await http.post("/v1/ai/async", headers=auth, json={
            "workflow": "demo-events", "messages": [{"role": "user", "content": "hi"}],
            "events": ["webhook_received"], "webhook_url": receiver.url, "metadata": scripted(),
        })
        seen.append(created.text)
        request = AsyncRequest.from_payload(created.json())
        for token in (request.ws_token,):
            seen.append(json.dumps(claims(token)))
        async with await RawSocket.for_request(request) as sock:
            await sock.join(request.topic)
            await sock.until(lambda f: f[3] == "response" and f[4]["status"] == "ai_generated")
            hook = await receiver.aget()
            seen += [hook.body.decode(), json.dumps(hook.headers)]
            reconnected = await http.post("/v1/ai/reconnect", headers=auth,
                                          json={"channel_id": request.channel_id})
            seen.append(reconnected.text)
            seen.append(json.dumps(claims(reconnected.json()["ws_token"])))
            answer = await http.post(hook.json()["callback_url"], json={"data": {"ok": 1}})
            seen.append(answer.text)
            await sock.until_final(request.topic)
            seen += sock.texts
        cancelled_req = await client.create_request("demo-chat", "x", metadata=scripted(hang=True))
        cancelled = await http.post("/v1/ai/cancel", headers=auth,
                                    json={"channel_id": cancelled_req.channel_id})
        seen.append(cancelled.text)
        for path in ("/v1/requests", f"/v1/requests/{request.channel_id}", "/", "/health"):
            seen.append((await http.get(path, headers=auth)).text)
        seen.append((await http.post("/v1/ai/async", headers=auth, json={"workflow": "nope"})).text)
        seen.append((await http.post("/v1/ai/async", headers=auth, content=b"{not json")).text)
    for text in seen:
        assert key not in text
    # The gateway's own output (start banner, access log, errors) never shows it either.
    assert gateway.process.lines
    assert key not in gateway.process.output


# -- expiry ----------------------------------------------------------------------------------------
# The gateway's signing key is random per run and never exposed, so a black-box test cannot forge
# an expired token; it shortens the lifetime by config instead, and the unit tests below check
# TokenIssuer (modelriver.devserver.tokens) directly.


async def test_expired_tokens_are_refused_and_tokens_outlive_their_request_by_the_grace(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    config = tmp_path / "short.toml"
    # exp = int(now) + 3: every token is valid for 2 s at least, 3 s at most; the grace is shorter.
    config.write_text("[server]\ntoken_ttl = 3\ntoken_grace = 1\n")
    gw = gateway_factory("--config", str(config))
    async with AsyncModelRiver(api_key=gw.api_key, api_base=gw.url, max_retries=0) as client:
        request = await client.create_request("demo-chat", "hi", metadata=scripted(hang=True))
        exp = claims(request.ws_token)["exp"]
        await wait_until(lambda: time.time() >= exp + 0.05, within=5)
        assert await refused_status(request.websocket_url, request.ws_token) == 403
        fresh = await client.reconnect(request.channel_id)
        async with await RawSocket.for_request(fresh) as sock:
            _, reply = await sock.join(request.topic)
            assert reply["status"] == "ok"
        await client.cancel(request.channel_id)

        # After its request ended, a token still works for the grace only (well before its exp).
        done = await client.create_request("demo-chat", "hi", metadata=scripted(tokens_per_second=0))
        done_exp = claims(done.ws_token)["exp"]
        await wait_until(lambda: gw.request_log(done.channel_id)["status"] == "success")
        async with await RawSocket.for_request(done) as sock:  # a reconnect right after the end
            _, reply = await sock.join(done.topic)
            assert reply["status"] == "ok"
            await sock.until_final(done.topic)

        async def refused_now() -> bool:
            try:
                sock = await RawSocket.for_request(done)
            except InvalidStatus as exc:
                if exc.response.status_code != 403:
                    raise
                return True
            await sock.close()
            return False

        while not await refused_now():
            assert time.time() < done_exp, "the token outlived its request by more than the grace"
            await asyncio.sleep(0.02)


def test_token_issuer_refuses_expired_foreign_and_malformed_tokens() -> None:
    from modelriver.devserver.tokens import TokenIssuer, token_usable

    project, channel = str(uuid.uuid4()), str(uuid.uuid4())
    topic = f"ai_response:{project}:{channel}"
    issuer = TokenIssuer(project, ttl=300)
    now = time.time()
    token = issuer.issue(channel, topic, now=now)
    verified = issuer.verify(token, now=now + 1)
    assert verified is not None
    assert (verified.channel_id, verified.topic, verified.project_id) == (channel, topic, project)
    assert verified.exp == int(now) + 300
    assert issuer.verify(token, now=now + 301) is None  # expired
    assert issuer.verify(issuer.issue(channel, topic, now=now - 400)) is None
    assert TokenIssuer(project).verify(token, now=now) is None  # another gateway's key
    assert TokenIssuer(str(uuid.uuid4()), key=b"k" * 32).verify(
        TokenIssuer(project, key=b"k" * 32).issue(channel, topic), now=now) is None  # other project
    for bad in (None, "", "x", token + "x", token.rsplit(".", 1)[0] + ".", token.replace(".", "", 1)):
        assert issuer.verify(bad, now=now) is None
    # Usable until exp; after the request ended, only for the grace period.
    assert token_usable(verified, None, now + 10, grace=60)
    assert not token_usable(verified, None, now + 301, grace=60)
    assert token_usable(verified, now + 5, now + 30, grace=60)
    assert not token_usable(verified, now + 5, now + 70, grace=60)
