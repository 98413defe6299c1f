"""Acceptance (issue 8): the authorization sweep, and the API key scan, over real sockets and HTTP.

Every socket and view of the Django relay (the demo on Daphne) and of ``modelriver dev`` is
tried as another user, with another channel's token, as a second simultaneous socket on one
token, with an expired token, with a forged one and with none. Each attempt must be refused the
documented way (HTTP 403 at the handshake, a join refused with ``unauthorized_project_access``,
403 from a view, 401 from the API) and must leak no frame of the other request. Controls (the
same attempt done rightly) pass, so a refusal is the rule's doing and not a broken setup.

Then everything this test saw (HTTP bodies and headers, every frame, the static files the page
loads, the relay's and the gateway's logs) is scanned: the API key appears nowhere.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from django.core import signing
from djmr_demo import Demo
from relaylib import DjangoSession
from websockets.exceptions import InvalidStatus

from modelriver.api import AsyncModelRiver
from modelriver.types import AsyncRequest, socket_endpoint
from support import Gateway
from support.gatewaytest import scripted

pytestmark = pytest.mark.timeout(90)

SALT = "django_modelriver.socket"  # django_modelriver.tokens.SALT


class Seen:
    """Everything a test received, for the API key scan."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def http(self, response: httpx.Response) -> httpx.Response:
        self.texts.append(f"{response.status_code} {dict(response.headers)}\n{response.text}")
        return response

    def scan(self, needle: str) -> list[str]:
        return [text[:200] for text in self.texts if needle in text]


class Sweep:
    """The attempts made, each with its expected and actual outcome."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def check(self, name: str, expected: Any, got: Any) -> None:
        self.rows.append((name, str(expected), str(got)))

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        return [row for row in self.rows if row[1] != row[2]]


async def handshake(url: str, token: str | None, seen: Seen, *, origin: str | None = None,
                    session: DjangoSession | None = None) -> Any:
    """Open a Phoenix socket (with ``session``'s cookies, as its browser would); returns the
    connection, or the HTTP status it was refused with."""
    try:
        ws = await websockets.connect(socket_endpoint(url, token) if token is not None else
                                      url.rstrip("/") + "/websocket?vsn=2.0.0",
                                      origin=origin, open_timeout=10, ping_interval=None,  # type: ignore[arg-type]
                                      additional_headers=session.socket_headers if session else None)
    except InvalidStatus as exc:
        return exc.response.status_code
    return ws


async def join(ws: Any, topic: str, seen: Seen, *, ref: str = "1") -> dict[str, Any]:
    """Join ``topic``; returns the reply payload, keeping every frame read in ``seen``."""
    await ws.send(json.dumps([ref, ref, topic, "phx_join", {}]))
    async with asyncio.timeout(10):
        while True:
            text = await ws.recv()
            seen.texts.append(text)
            frame = json.loads(text)
            if frame[3] == "phx_reply" and frame[1] == ref:
                return dict(frame[4])


async def drain(ws: Any, seen: Seen, within: float = 0.3) -> list[list[Any]]:
    """Frames that arrive within ``within`` seconds (the socket stays open)."""
    frames = []
    try:
        async with asyncio.timeout(within):
            while True:
                text = await ws.recv()
                seen.texts.append(text)
                frames.append(json.loads(text))
    except TimeoutError:
        pass
    return frames


# -- the Django relay ----------------------------------------------------------------------------


def aged_token(channel_id: str, owner: str, *, key: str, age: float) -> str:
    """A relay socket token signed with the site's key ``age`` seconds ago (as issue_token does)."""

    class Aged(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time() - age))

    claims = {"c": channel_id, "o": owner, "j": secrets.token_urlsafe(12)}
    token: str = Aged(key=key, salt=SALT, fallback_keys=[]).sign_object(claims)
    return token


def claims_of(token: str, key: str) -> dict[str, Any]:
    value: dict[str, Any] = signing.loads(token, key=key, salt=SALT, fallback_keys=[])
    return value


@pytest.fixture
async def two_users(relay: Demo) -> AsyncIterator[tuple[DjangoSession, DjangoSession]]:
    async with DjangoSession(relay.url) as alice, DjangoSession(relay.url) as bob:
        yield alice, bob


async def test_django_relay_authorization_sweep(
    relay: Demo, gateway: Gateway, two_users: tuple[DjangoSession, DjangoSession], figures: Callable[..., None],
) -> None:
    alice, bob = two_users
    seen, sweep = Seen(), Sweep()
    key = relay.env["DJANGO_SECRET_KEY"]
    origin = relay.url
    a1 = await alice.start("alice's first")
    a2 = await alice.start("alice's second")
    b1 = await bob.start("bob's")
    url = a1.websocket_url

    # No token, a forged one, a wrong Origin: refused at the handshake.
    sweep.check("socket: no token", 403, await handshake(url, None, seen, origin=origin, session=alice))
    sweep.check("socket: forged token", 403, await handshake(url, "x" + a1.ws_token[1:], seen, origin=origin,
                                                             session=alice))
    sweep.check("socket: foreign Origin", 403, await handshake(url, a1.ws_token, seen, origin="http://evil.example",
                                                               session=alice))
    # The token is bound to alice's session: without her cookie, or with bob's, it opens nothing.
    sweep.check("socket: alice's token without a session cookie", 403,
                await handshake(url, a1.ws_token, seen, origin=origin))
    sweep.check("socket: alice's token with bob's session cookie", 403,
                await handshake(url, a1.ws_token, seen, origin=origin, session=bob))

    # Expired: alice's own claims signed 301 s ago are refused; the same signed now are accepted.
    owner = claims_of(a1.ws_token, key)["o"]
    sweep.check("socket: expired token", 403,
                await handshake(url, aged_token(a1.channel_id, owner, key=key, age=301), seen, origin=origin,
                                session=alice))
    control = await handshake(url, aged_token(a1.channel_id, owner, key=key, age=0), seen, origin=origin,
                              session=alice)
    sweep.check("control: the same claims, fresh", "open", "open" if not isinstance(control, int) else control)
    if not isinstance(control, int):
        await control.close()

    # One live socket per token: a second simultaneous one is refused; after a close it is accepted.
    first = await handshake(url, a1.ws_token, seen, origin=origin, session=alice)
    assert not isinstance(first, int), first
    sweep.check("socket: second simultaneous socket on one token", 403,
                await handshake(url, a1.ws_token, seen, origin=origin, session=alice))
    reply = await join(first, a1.topic, seen)
    sweep.check("control: the token's own channel", "ok", reply["status"])
    await first.close()

    # Another user's token, another channel's token (same user): joining alice's first is refused,
    # and no frame of it arrives.
    for name, request, session in (("another user's token", b1, bob), ("another channel's token", a2, alice)):
        ws = await handshake(url, request.ws_token, seen, origin=origin, session=session)
        assert not isinstance(ws, int), (name, ws)
        for topic in (a1.topic, f"ai_response:{a1.channel_id}"):
            reply = await join(ws, topic, seen)
            sweep.check(f"socket: {name} joins {topic.count(':') + 1}-part topic", "unauthorized_project_access",
                        reply.get("response", {}).get("reason"))
        leaked = [f for f in await drain(ws, seen) if f[2].endswith(a1.channel_id) and not f[3].startswith("phx_")]
        sweep.check(f"socket: {name}: frames of the other channel", 0, len(leaked))
        await ws.close()

    # The views, as another user: reconnect and cancel alice's request; start without CSRF.
    answer = seen.http(await bob.post("/modelriver/api/v1/ai/reconnect", {"channel_id": a1.channel_id}, csrf=False))
    sweep.check("view: reconnect another user's request", 403, answer.status_code)
    answer = seen.http(await bob.post("/modelriver/cancel", {"channel_id": a1.channel_id}))
    sweep.check("view: cancel another user's request", 403, answer.status_code)
    answer = seen.http(await bob.post("/modelriver/api/v1/ai/reconnect", {}, csrf=False))
    latest = answer.json().get("channel_id") if answer.status_code == 200 else None
    sweep.check("view: 'my latest request' as another user is not alice's", True, latest != a1.channel_id)
    answer = seen.http(await bob.http.post("/modelriver/start", json={"message": "no csrf"}))
    sweep.check("view: start without the CSRF token", 403, answer.status_code)
    answer = seen.http(await alice.post("/modelriver/api/v1/ai/reconnect", {"channel_id": a1.channel_id}, csrf=False))
    sweep.check("control: reconnect one's own request", 200, answer.status_code)

    # Let every request finish, through the relay, so the scan sees whole streams.
    async def finish(session: DjangoSession, request: AsyncRequest) -> None:
        answer = await session.post("/modelriver/api/v1/ai/reconnect", {"channel_id": request.channel_id},
                                    csrf=False)
        fresh = AsyncRequest.from_payload(seen.http(answer).json())
        ws = await handshake(fresh.websocket_url, fresh.ws_token, seen, origin=origin, session=session)
        assert not isinstance(ws, int), ws
        await join(ws, fresh.topic, seen)
        async with asyncio.timeout(30):
            while True:
                text = await ws.recv()
                seen.texts.append(text)
                frame = json.loads(text)
                if frame[3] == "response" and frame[4].get("status") != "ai_generated":
                    break
        await ws.close()

    await asyncio.gather(finish(alice, a1), finish(alice, a2), finish(bob, b1))

    # The page and every static file it loads.
    async with httpx.AsyncClient(base_url=relay.url, timeout=10) as http:
        page = seen.http(await http.get("/"))
        statics = sorted(set(re.findall(r"""(?:src|href)=["'](/static/[^"']+)""", page.text)))
        assert statics, "the page loads no static file?"
        for path in statics:
            assert seen.http(await http.get(path)).status_code == 200, path
    seen.texts.append(relay.process.output)
    seen.texts.append(gateway.process.output)

    leaks = seen.scan(gateway.api_key) + seen.scan(gateway.api_key.split("_")[-1])
    figures(surface="Django relay", attempts=len(sweep.rows), refused_as_documented=len(sweep.rows) - len(
        sweep.failures), texts_scanned=len(seen.texts), static_files=len(statics), key_found=len(leaks))
    assert sweep.failures == [], sweep.failures
    assert leaks == []


# -- the gateway ---------------------------------------------------------------------------------


async def test_gateway_authorization_sweep(
    gateway_factory: Callable[..., Gateway], tmp_path: Path, figures: Callable[..., None],
) -> None:
    config = tmp_path / "short.toml"
    config.write_text("[server]\ntoken_ttl = 3\n")  # tokens expire within 3 s: the expired case
    gw = gateway_factory("--config", str(config))
    seen, sweep = Seen(), Sweep()
    async with AsyncModelRiver(api_key=gw.api_key, api_base=gw.url, max_retries=0) as client:
        hang = scripted(hang=True)
        mine = await client.create_request("demo-chat", "mine", metadata=hang)
        other = await client.create_request("demo-chat", "another's", metadata=hang)
        url = mine.websocket_url

        sweep.check("socket: no token", 403, await handshake(url, None, seen))
        forged = jwt.encode({**jwt.decode(mine.ws_token, options={"verify_signature": False})},
                            "not-the-gateway-key-" + "x" * 32, algorithm="HS256")
        sweep.check("socket: forged token", 403, await handshake(url, forged, seen))
        first = await handshake(url, mine.ws_token, seen)
        assert not isinstance(first, int), first
        sweep.check("socket: second simultaneous socket on one token", 403, await handshake(url, mine.ws_token, seen))
        sweep.check("control: the token's own channel", "ok", (await join(first, mine.topic, seen))["status"])
        await first.close()

        ws = await handshake(url, other.ws_token, seen)
        assert not isinstance(ws, int), ws
        for topic in (mine.topic, f"ai_response:{mine.channel_id}"):
            reply = await join(ws, topic, seen)
            sweep.check(f"socket: another channel's token joins {topic.count(':') + 1}-part topic",
                        "unauthorized_project_access", reply.get("response", {}).get("reason"))
        await ws.close()

        exp = jwt.decode(mine.ws_token, options={"verify_signature": False})["exp"]
        await asyncio.sleep(max(0.0, exp + 0.05 - time.time()))  # the clock has to pass the token's exp
        sweep.check("socket: expired token", 403, await handshake(url, mine.ws_token, seen))

        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            for method, path, body in (("GET", "/v1/requests", None), ("GET", f"/v1/requests/{mine.channel_id}", None),
                                       ("POST", "/v1/ai/async", {"workflow": "demo-chat",
                                                                 "messages": [{"role": "user", "content": "x"}]}),
                                       ("POST", "/v1/ai/reconnect", {"channel_id": mine.channel_id}),
                                       ("POST", "/v1/ai/cancel", {"channel_id": mine.channel_id})):
                for who, headers in (("no key", {}), ("wrong key", {"Authorization": "Bearer mr_test_wrong_key"})):
                    answer = seen.http(await http.request(method, path, json=body, headers=headers))
                    sweep.check(f"API: {method} {path.replace(mine.channel_id, '<id>')} with {who}", 401,
                                answer.status_code)
            answer = seen.http(await http.get("/"))
            sweep.check("API: GET / (the HTML log) with no key", 401, answer.status_code)
            answer = seen.http(await http.get("/", headers={"Authorization": f"Bearer {gw.api_key}"}))
            sweep.check("control: the HTML log with the key", 200, answer.status_code)
        for request in (mine, other):
            seen.texts.append(json.dumps(await client.cancel(request.channel_id)))
        seen.texts.append(json.dumps(await asyncio.to_thread(gw.requests)))
    seen.texts.append(gw.process.output)

    leaks = seen.scan(gw.api_key) + seen.scan(gw.api_key.split("_")[-1])
    figures(surface="gateway", attempts=len(sweep.rows), refused_as_documented=len(sweep.rows) - len(sweep.failures),
            texts_scanned=len(seen.texts), key_found=len(leaks))
    assert sweep.failures == [], sweep.failures
    assert leaks == []
