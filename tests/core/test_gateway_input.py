"""Hostile input at the gateway's HTTP entries (issue 14: findings 3 and 6), on a real `modelriver dev`.

A lone surrogate (``"\\ud800"`` in JSON) anywhere in a body is a 400 naming where, and the request log
(``/``, ``/v1/requests``, ``/v1/requests/{id}``) keeps answering 200; a 4,000-digit number is a 400;
the HTML log at ``/`` needs the API key like the JSON log (Bearer header, or the key form's cookie).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from modelriver.devserver.http import SafeJSONResponse
from support import Gateway

pytestmark = pytest.mark.timeout(60)

SURROGATE = "\\ud800"  # as JSON text: decodes to the lone surrogate U+D800


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10,
                                 headers={"Authorization": f"Bearer {gateway.api_key}"}) as h:
        yield h


def raw(text: str) -> dict[str, object]:
    """Request kwargs for a JSON body given as text (httpx's json= cannot encode a lone surrogate)."""
    return {"content": text.encode(), "headers": {"Content-Type": "application/json"}}


async def create(http: httpx.AsyncClient, prompt: str = "hello") -> str:
    answer = await http.post("/v1/ai/async", json={"workflow": "demo-chat",
                                                   "messages": [{"role": "user", "content": prompt}]})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["channel_id"])


@pytest.mark.parametrize("body", [
    '{"workflow":"demo-chat","messages":[{"role":"user","content":"hi \\ud800 there"}]}',
    '{"workflow":"demo-chat\\udfff","messages":[{"role":"user","content":"hi"}]}',
    '{"workflow":"demo-chat","messages":[{"role":"user","content":[{"type":"text","text":"\\ud800"}]}]}',
    '{"workflow":"demo-chat","messages":[{"role":"user","content":"hi"}],"metadata":{"\\ud800":1}}',
    '{"workflow":"demo-chat","messages":[{"role":"user","content":"hi"}],'
    '"metadata":{"scripted":{"text":"echo \\ud800"}}}',
    '{"workflow":"demo-chat","messages":[{"role":"user","content":"hi"}],"metadata":{"a":[[{"b":"\\udc00"}]]}}',
])
async def test_a_lone_surrogate_anywhere_in_a_create_body_is_a_400_and_nothing_starts(
        http: httpx.AsyncClient, body: str) -> None:
    before = len((await http.get("/v1/requests")).json()["requests"])
    answer = await http.post("/v1/ai/async", **raw(body))  # type: ignore[arg-type]
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_request"
    assert "lone surrogate" in answer.json()["message"]
    after = (await http.get("/v1/requests"))
    assert after.status_code == 200
    assert len(after.json()["requests"]) == before


async def test_surrogates_in_reconnect_cancel_and_callback_bodies_are_400s(http: httpx.AsyncClient) -> None:
    channel_id = await create(http)
    for path in ("/v1/ai/reconnect", "/v1/ai/cancel"):
        answer = await http.post(path, **raw(f'{{"channel_id":"{channel_id}{SURROGATE}"}}'))  # type: ignore[arg-type]
        assert answer.status_code == 400, (path, answer.text)
        assert "lone surrogate" in answer.json()["message"]
    answer = await http.post(f"/v1/callback/{channel_id}",
                             **raw(f'{{"data":{{"note":"{SURROGATE}"}}}}'))  # type: ignore[arg-type]
    assert answer.status_code == 400, answer.text
    assert "body.data.note" in answer.json()["message"]


async def test_the_request_log_stays_200_after_surrogate_bodies(http: httpx.AsyncClient) -> None:
    channel_id = await create(http, "a fine prompt")
    await http.post("/v1/ai/async", **raw(  # type: ignore[arg-type]
        f'{{"workflow":"demo-chat","messages":[{{"role":"user","content":"{SURROGATE}"}}],'
        f'"metadata":{{"scripted":{{"text":"{SURROGATE}"}}}}}}'))
    for path in ("/", "/v1/requests", f"/v1/requests/{channel_id}"):
        answer = await http.get(path)
        assert answer.status_code == 200, (path, answer.text[:200])
    assert "a fine prompt" in (await http.get("/")).text


def test_a_stored_lone_surrogate_is_written_as_a_replacement_character() -> None:
    """Text kept from elsewhere (an upstream's error, say) cannot break a log answer."""
    body = SafeJSONResponse({"prompt": "a\ud800b", "plain": "é"}).body
    assert json.loads(body) == {"prompt": "a\ufffdb", "plain": "é"}


@pytest.mark.parametrize("field", ["tokens_per_second", "first_token_ms", "fail_after", "drop_socket_after",
                                   "upstream_timeout"])
async def test_a_4000_digit_number_is_a_400(http: httpx.AsyncClient, field: str) -> None:
    body = ('{"workflow":"demo-chat","messages":[{"role":"user","content":"hi"}],'
            f'"metadata":{{"scripted":{{"{field}":{"9" * 4000}}}}}}}')
    answer = await http.post("/v1/ai/async", **raw(body))  # type: ignore[arg-type]
    assert answer.status_code == 400, answer.text[:300]
    assert field in answer.json()["message"]


async def test_a_number_past_pythons_digit_limit_is_a_400(http: httpx.AsyncClient) -> None:
    body = f'{{"workflow":"demo-chat","messages":[{{"role":"user","content":"hi"}}],"metadata":{{"n":{"9" * 5000}}}}}'
    answer = await http.post("/v1/ai/async", **raw(body))  # type: ignore[arg-type]
    assert answer.status_code == 400, answer.text[:300]


async def test_the_html_log_needs_the_key(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as anonymous:
        marker = "a prompt only the key holder may read"
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10,
                                     headers={"Authorization": f"Bearer {gateway.api_key}"}) as owner:
            await create(owner, marker)
            with_header = await owner.get("/")
        assert with_header.status_code == 200
        assert marker in with_header.text

        page = await anonymous.get("/")
        assert page.status_code == 401
        assert marker not in page.text
        assert "<form" in page.text and 'name=key' in page.text

        wrong = await anonymous.post("/", data={"key": "mr_not_the_key"})
        assert wrong.status_code == 401
        assert marker not in wrong.text
        assert not anonymous.cookies

        right = await anonymous.post("/", data={"key": gateway.api_key})
        assert right.status_code == 303
        assert right.headers["location"] == "/"
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert gateway.api_key not in cookie  # an HMAC of the key, never the key
        page = await anonymous.get("/")  # the cookie jar sends it back
        assert page.status_code == 200
        assert marker in page.text
        assert gateway.api_key not in page.text
