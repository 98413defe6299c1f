"""``modelriver.api`` and ``modelriver.settings`` against a real HTTP server on loopback.

Every I/O test runs for both twins (``ModelRiver`` and ``AsyncModelRiver``); every test checks
that the API key never shows in a log record, and the error tests that it never shows in an
exception's str, repr or formatted traceback.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar

import httpx
import pytest
from core.api_server import (
    ScriptedServer,
    async_answer,
    json_reply,
    raw_reply,
)
from hypothesis import given
from hypothesis import strategies as st

from modelriver import api as api_module
from modelriver.api import AsyncModelRiver, ModelRiver, backoff, parse_retry_after
from modelriver.exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    InvalidInputError,
    ModelRiverError,
    RateLimitError,
)
from modelriver.settings import DEFAULT_API_BASE, Settings, mask_secret
from modelriver.types import AsyncRequest
from support import free_port

KEY = "mr_test_SECRET_9f8e7d6c5b4a3210"
Client = ModelRiver | AsyncModelRiver


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_key_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Capture everything at DEBUG (httpx and httpcore too); no record may hold the key."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        if record.exc_info and record.exc_info[1] is not None:
            text += "".join(traceback.format_exception(record.exc_info[1]))
        assert KEY not in text, record


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELRIVER_API_KEY", raising=False)
    monkeypatch.delenv("MODELRIVER_API_BASE", raising=False)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer().start()
    yield srv
    srv.stop()


class Twin:
    """Drives either twin with the same awaitable calls: ``await twin.health()``."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        return call


@pytest.fixture(params=["sync", "async"])
async def make(
    request: pytest.FixtureRequest, server: ScriptedServer
) -> AsyncIterator[Callable[..., Twin]]:
    """Build a client of the parametrized kind, aimed at ``server``, with fast backoff."""
    made: list[Client] = []

    def factory(**kwargs: Any) -> Twin:
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("api_base", server.url)
        cls = ModelRiver if request.param == "sync" else AsyncModelRiver
        client = cls(**kwargs)
        client._initial_delay = 0.01
        client._max_delay = 0.02
        made.append(client)
        return Twin(client)

    yield factory
    for client in made:
        if isinstance(client, ModelRiver):
            client.close()
        else:
            await client.aclose()


def assert_secret_safe(exc: BaseException) -> None:
    """The key is in none of the error's renderings."""
    assert KEY not in str(exc)
    assert KEY not in repr(exc)
    assert KEY not in "".join(traceback.format_exception(exc))
    assert KEY not in repr(getattr(exc, "body", None))


E = TypeVar("E", bound=BaseException)


@contextmanager
def raises(cls: type[E], match: str | None = None) -> Iterator[pytest.ExceptionInfo[E]]:
    """``pytest.raises`` that also checks the error never renders the key."""
    with pytest.raises(cls, match=match) as info:
        yield info


# --- success paths ----------------------------------------------------------------------


async def test_create_request_sends_bearer_and_wraps_a_string(
    make: Callable[..., Twin], server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(json_reply(200, async_answer("ch-42")))
    result = await make().create_request("support-bot", "Hello!")

    assert isinstance(result, AsyncRequest)
    assert result.channel_id == "ch-42"
    assert result.ws_token == "ws-token-1"
    assert result.websocket_url == "wss://example.test/socket"
    assert result.topic == "ai_response:proj-1:ch-42"
    assert result.project_id == "proj-1"
    [arrival] = server.arrivals
    assert (arrival.method, arrival.path) == ("POST", "/v1/ai/async")
    assert arrival.headers["authorization"] == f"Bearer {KEY}"
    assert arrival.headers["content-type"] == "application/json"
    assert arrival.headers["user-agent"].startswith("modelriver-python/")
    assert arrival.json() == {
        "workflow": "support-bot",
        "messages": [{"role": "user", "content": "Hello!"}],
        "delivery_method": "websocket",
    }
    logged = [r.getMessage() for r in caplog.records if r.name == "modelriver.api"]
    assert "POST /v1/ai/async -> 200" in logged
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "modelriver.api")


async def test_create_request_options_and_base_prefix(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(json_reply(200, async_answer()))
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    await make(api_base=server.url + "/prefix/").create_request(
        "wf",
        messages,
        events=("webhook_received",),
        webhook_url="https://backend.test/hook",
        metadata={"user": 7},
        delivery_method="websocket",
    )
    [arrival] = server.arrivals
    assert arrival.path == "/prefix/v1/ai/async"
    assert arrival.json() == {
        "workflow": "wf",
        "messages": messages,
        "delivery_method": "websocket",
        "events": ["webhook_received"],
        "webhook_url": "https://backend.test/hook",
        "metadata": {"user": 7},
    }


async def test_reconnect_cancel_health(make: Callable[..., Twin], server: ScriptedServer) -> None:
    fresh = async_answer("ch-1") | {"ws_token": "ws-token-2"}
    server.script(
        json_reply(200, fresh),
        json_reply(200, {"status": "cancelled"}),
        json_reply(200, {"status": "ok"}),
    )
    client = make()
    again = await client.reconnect("ch-1")
    assert (again.channel_id, again.ws_token) == ("ch-1", "ws-token-2")
    assert await client.cancel("ch-1") == {"status": "cancelled"}
    assert await client.health() == {"status": "ok"}

    reconnect, cancel, health = server.arrivals
    assert (reconnect.method, reconnect.path, reconnect.json()) == (
        "POST",
        "/v1/ai/reconnect",
        {"channel_id": "ch-1"},
    )
    assert (cancel.method, cancel.path, cancel.json()) == (
        "POST",
        "/v1/ai/cancel",
        {"channel_id": "ch-1"},
    )
    assert reconnect.headers["authorization"] == cancel.headers["authorization"] == f"Bearer {KEY}"
    assert (health.method, health.path) == ("GET", "/health")
    assert "authorization" not in health.headers


async def test_callback_default_url(make: Callable[..., Twin], server: ScriptedServer) -> None:
    server.script(raw_reply(202, b""))
    answer = await make().callback("ch/1", {"order": 12}, task_id="t-9")
    assert answer == {}
    [arrival] = server.arrivals
    assert arrival.path == "/v1/callback/ch%2F1"
    assert arrival.json() == {"data": {"order": 12}, "task_id": "t-9"}
    assert arrival.headers["authorization"] == f"Bearer {KEY}"


async def test_callback_url_gets_the_key_only_on_the_api_origin(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    foreign = ScriptedServer().start()
    try:
        server.script(json_reply(200, {"ok": True}))
        foreign.script(raw_reply(200, b"accepted", "text/plain"))
        client = make()
        same = await client.callback("ch-1", {"a": 1}, callback_url=f"{server.url}/cb/tok?x=1")
        other = await client.callback("ch-1", {"a": 1}, callback_url=f"{foreign.url}/cb/tok")
    finally:
        foreign.stop()
    assert same == {"ok": True}
    assert other == {}  # any 2xx is success for a callback
    assert server.arrivals[0].path == "/cb/tok?x=1"
    assert server.arrivals[0].headers["authorization"] == f"Bearer {KEY}"
    assert foreign.arrivals[0].json() == {"data": {"a": 1}}
    assert "authorization" not in foreign.arrivals[0].headers


async def test_injected_http_client_is_used_and_left_open(server: ScriptedServer) -> None:
    server.script(json_reply(200, {}), json_reply(200, {}))
    with httpx.Client(headers={"X-Trace": "sync"}) as http:
        with ModelRiver(KEY, api_base=server.url, http_client=http) as client:
            client.health()
        assert not http.is_closed
    async with httpx.AsyncClient(headers={"X-Trace": "async"}) as ahttp:
        async with AsyncModelRiver(KEY, api_base=server.url, http_client=ahttp) as aclient:
            await aclient.health()
        assert not ahttp.is_closed
    assert [a.headers["x-trace"] for a in server.arrivals] == ["sync", "async"]


async def test_owned_http_client_is_closed() -> None:
    with ModelRiver(KEY) as client:
        pass
    assert client._client.is_closed
    async with AsyncModelRiver(KEY) as aclient:
        pass
    assert aclient._client.is_closed


def test_constructor_checks() -> None:
    with pytest.raises(TypeError):
        ModelRiver(KEY, http_client=httpx.AsyncClient())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AsyncModelRiver(KEY, http_client=httpx.Client())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_retries"):
        ModelRiver(KEY, max_retries=-1)


async def test_stream_refuses_an_unknown_option_before_sending(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    """``stream`` passes ``create_request``'s options on: a misspelt one is a TypeError, unsent."""
    twin = make()
    with pytest.raises(TypeError, match="event"):
        await twin.stream("wf", "hi", event=["webhook_received"])
    assert server.arrivals == []


def test_the_sync_twin_has_the_async_twins_signatures() -> None:
    """``ModelRiver``'s methods are ``AsyncModelRiver``'s, run to their end: same arguments, same docs."""
    for name in ("create_request", "reconnect", "callback", "cancel", "health", "stream", "connect"):
        sync, async_ = getattr(ModelRiver, name), getattr(AsyncModelRiver, name)
        assert inspect.signature(sync) == inspect.signature(async_), name
        assert sync.__doc__ == async_.__doc__ and sync.__doc__, name
        assert not inspect.iscoroutinefunction(sync) and inspect.iscoroutinefunction(async_), name


# --- configuration ----------------------------------------------------------------------


async def test_key_and_base_from_env(
    make: Callable[..., Twin], server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELRIVER_API_KEY", KEY)
    monkeypatch.setenv("MODELRIVER_API_BASE", server.url + "/")
    server.script(json_reply(200, async_answer()))
    twin = make(api_key=None, api_base=None)
    assert twin.client.api_base == server.url
    await twin.create_request("wf", "hi")
    assert server.arrivals[0].headers["authorization"] == f"Bearer {KEY}"


async def test_missing_key_fails_before_sending(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(json_reply(200, {"status": "ok"}))
    client = make(api_key=None)
    with raises(AuthenticationError, match="MODELRIVER_API_KEY") as info:
        await client.create_request("wf", "hi")
    assert info.value.status == 401
    assert "HTTP" not in str(info.value)  # no 401 was received: the message must not claim one
    with raises(AuthenticationError):
        await client.callback("ch-1", {})
    assert server.arrivals == []
    assert await client.health() == {"status": "ok"}  # needs no key


async def test_a_lone_surrogate_is_a_typed_error_before_sending(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(json_reply(200, {"status": "ok"}))
    client = make()
    with raises(InvalidInputError, match=r"request\.messages\[0\]\.content .*lone surrogate") as info:
        await client.create_request("wf", "hi \ud800")
    assert isinstance(info.value, ModelRiverError) and isinstance(info.value, ValueError)
    with raises(InvalidInputError, match=r"request\.messages\[1\]\.content"):
        await client.create_request("wf", [{"role": "user", "content": "ok"},
                                           {"role": "user", "content": "\udfff"}])
    with raises(InvalidInputError, match=r"request\.metadata\.note"):
        await client.create_request("wf", "hi", metadata={"note": "\ud800"})
    with raises(InvalidInputError, match=r"request\.data"):
        await client.callback("ch-1", {"answer": "\ud800"})
    assert server.arrivals == []


async def test_client_repr_hides_the_key(make: Callable[..., Twin]) -> None:
    client = make().client
    assert KEY not in repr(client)
    assert "…3210" in repr(client)
    assert KEY not in repr(client.settings)
    assert KEY not in str(vars(client).get("settings"))


def test_settings_from_env() -> None:
    assert Settings.from_env({}) == Settings(None, DEFAULT_API_BASE)
    env = {"MODELRIVER_API_KEY": KEY, "MODELRIVER_API_BASE": "http://gw.test:4000/"}
    assert Settings.from_env(env) == Settings(KEY, "http://gw.test:4000")
    assert Settings.from_env({"MODELRIVER_API_KEY": "", "MODELRIVER_API_BASE": ""}) == Settings()


def test_settings_reads_os_environ_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELRIVER_API_KEY", KEY)
    assert Settings.from_env().api_key == KEY


def test_settings_repr_masks_the_key() -> None:
    settings = Settings(KEY, "https://api.test")
    assert KEY not in repr(settings)
    assert KEY not in str(settings)
    assert repr(settings) == "Settings(api_key='…3210', api_base='https://api.test')"
    assert "short" not in repr(Settings("short-key"))
    assert mask_secret("short-key") == "***"
    assert mask_secret(None) is None
    assert repr(Settings()) == f"Settings(api_key=None, api_base='{DEFAULT_API_BASE}')"


def test_settings_frozen_and_merged() -> None:
    settings = Settings(KEY)
    with pytest.raises(AttributeError):
        settings.api_key = "other"  # type: ignore[misc]
    assert settings.merged(api_base="http://x/").api_base == "http://x"
    assert settings.merged(api_key="other").api_key == "other"
    assert settings.merged().api_key == KEY


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_key_is_authentication_error(
    make: Callable[..., Twin], server: ScriptedServer, status: int
) -> None:
    server.script(json_reply(status, {"error": "invalid API key", "details": {"hint": "rotate"}}))
    with raises(AuthenticationError) as info:
        await make().create_request("wf", "hi")
    assert info.value.status == status
    assert "invalid API key" in str(info.value)
    assert info.value.body == {"error": "invalid API key", "details": {"hint": "rotate"}}
    assert len(server.arrivals) == 1  # never retried


async def test_429_retry_after_is_honoured(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(
        json_reply(429, {"message": "slow down"}, Retry_After="0.2"),
        json_reply(200, async_answer()),
    )
    result = await make().create_request("wf", "hi")
    assert result.channel_id == "ch-1"
    first, retry = server.arrivals
    assert retry.at - first.at >= 0.2 - 0.005
    assert retry.json() == first.json()


async def test_429_exhausted_raises_rate_limit_error(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(*[json_reply(429, {"message": "slow down"}, Retry_After="0")] * 2)
    with raises(RateLimitError) as info:
        await make(max_retries=1).reconnect("ch-1")
    assert info.value.retry_after == 0.0
    assert info.value.status == 429
    assert "slow down" in str(info.value)
    assert len(server.arrivals) == 2


async def test_429_with_too_long_retry_after_is_raised_at_once(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(json_reply(429, {"message": "quota"}, Retry_After="120"))
    with raises(RateLimitError) as info:
        await make().create_request("wf", "hi")
    assert info.value.retry_after == 120.0
    assert len(server.arrivals) == 1


async def test_5xx_retried_then_success(
    make: Callable[..., Twin], server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(
        json_reply(502, {"message": "bad gateway"}),
        raw_reply(503, b"unavailable", "text/plain"),
        json_reply(200, {"status": "ok"}),
    )
    assert await make().health() == {"status": "ok"}
    assert len(server.arrivals) == 3
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2


async def test_503_on_create_request_is_retried(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(json_reply(503, {"message": "busy"}), json_reply(200, async_answer()))
    assert (await make().create_request("wf", "hi")).channel_id == "ch-1"
    assert len(server.arrivals) == 2


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_5xx_after_sending_create_request_is_not_retried(
    make: Callable[..., Twin], server: ScriptedServer, status: int
) -> None:
    server.script(json_reply(status, {"message": "boom", "details": {"id": 1}}))
    with raises(APIError) as info:
        await make().create_request("wf", "hi")
    assert type(info.value) is APIError
    assert info.value.status == status
    assert info.value.body == {"message": "boom", "details": {"id": 1}}
    assert "boom" in str(info.value)
    assert len(server.arrivals) == 1


async def test_retries_give_up_after_max_retries(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(*[json_reply(500, {"message": "down"})] * 3)
    with raises(APIError) as info:
        await make(max_retries=2).cancel("ch-1")
    assert info.value.status == 500
    assert len(server.arrivals) == 3


async def test_error_body_that_is_not_json(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(raw_reply(400, b"<html>bad request</html>", "text/html"))
    with raises(APIError) as info:
        await make().create_request("wf", "hi")
    assert info.value.status == 400
    assert info.value.body == "<html>bad request</html>"


async def test_key_echoed_by_the_server_is_redacted(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(raw_reply(400, f"bad header: Bearer {KEY}".encode(), "text/plain"))
    with raises(APIError) as info:
        await make().create_request("wf", "hi")
    assert "bad header: Bearer ***" in str(info.value)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"this is not json", "invalid JSON"),
        (b"[1, 2]", "expected an object"),
        (b'{"channel_id": "ch-1"}', "unexpected answer"),
        (b'{"channel_id": 1, "ws_token": "t", "websocket_url": "wss://x"}', "unexpected"),
    ],
)
async def test_bad_success_answer_is_api_error(
    make: Callable[..., Twin], server: ScriptedServer, body: bytes, match: str
) -> None:
    server.script(raw_reply(200, body))
    with raises(APIError, match=match) as info:
        await make().create_request("wf", "hi")
    assert info.value.status == 200
    assert len(server.arrivals) == 1


async def test_timeout_on_create_request_is_not_retried(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(server.hang())
    with raises(APITimeoutError) as info:
        await make(timeout=0.2).create_request("wf", "hi")
    assert isinstance(info.value.__cause__, httpx.TimeoutException)
    assert len(server.arrivals) == 1


async def test_timeout_on_health_is_retried(
    make: Callable[..., Twin], server: ScriptedServer
) -> None:
    server.script(server.hang(), server.hang())
    with raises(APITimeoutError) as info:
        await make(timeout=0.2, max_retries=1).health()
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert len(server.arrivals) == 2


async def test_connection_refused(
    make: Callable[..., Twin], caplog: pytest.LogCaptureFixture
) -> None:
    client = make(api_base=f"http://127.0.0.1:{free_port()}")
    with raises(APIConnectionError) as info:
        await client.create_request("wf", "hi")
    assert not isinstance(info.value, APITimeoutError)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    # a connection never made is safe to retry, even for create_request
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2


async def test_unsupported_callback_url_is_connection_error(make: Callable[..., Twin]) -> None:
    with raises(APIConnectionError) as info:
        await make().callback("ch-1", {}, callback_url="ftp://example.test/cb")
    assert isinstance(info.value.__cause__, httpx.UnsupportedProtocol)


def test_every_error_is_a_modelriver_error() -> None:
    for cls in (APIError, AuthenticationError, RateLimitError, APIConnectionError):
        assert issubclass(cls, ModelRiverError)


# --- the flow, without I/O --------------------------------------------------------------


def test_flow_drives_without_io() -> None:
    """The shared generator flow can be driven by hand: the twins only sleep and send."""
    client = ModelRiver(KEY, api_base="http://api.test", max_retries=1)
    client._random = lambda: 0.0
    flow = client._health_flow()
    attempt = next(flow)
    assert attempt.delay == 0
    assert str(attempt.request.url) == "http://api.test/health"
    retry = flow.send(httpx.Response(503, request=attempt.request, headers={"Retry-After": "3"}))
    assert retry.delay == 3.0
    assert retry.request is attempt.request
    with pytest.raises(StopIteration) as stop:
        flow.send(httpx.Response(200, json={"ok": 1}, request=attempt.request))
    assert stop.value.value == {"ok": 1}
    client.close()


def test_flow_maps_transport_errors_from_exc() -> None:
    client = ModelRiver(KEY, api_base="http://api.test", max_retries=0)
    flow = client._create_request_flow(
        "wf", "hi", events=None, webhook_url=None, metadata=None, delivery_method="websocket"
    )
    attempt = next(flow)
    exc = httpx.RemoteProtocolError("server disconnected", request=attempt.request)
    with raises(APIConnectionError) as info:
        flow.send(exc)
    assert info.value.__cause__ is exc
    client.close()


def test_error_shapes_and_long_bodies() -> None:
    """``{error: {message}}`` is read too; long texts are cut in the message, kept in ``body``."""
    client = ModelRiver(KEY, api_base="http://api.test", max_retries=0)
    for answer, expected in [
        (httpx.Response(422, json={"error": {"message": "bad workflow"}}), "bad workflow"),
        (httpx.Response(418, json={"details": {}}), "I'm a teapot"),
        (httpx.Response(400, text="x" * 1000), "x" * 200 + "…"),
    ]:
        flow = client._cancel_flow("ch-1")
        attempt = next(flow)
        answer.request = attempt.request
        with raises(APIError) as info:
            flow.send(answer)
        assert str(info.value).endswith(f"failed: {expected} (HTTP {answer.status_code})")
    assert info.value.body == "x" * 1000
    client.close()


def test_invalid_callback_url_is_value_error() -> None:
    client = ModelRiver(KEY, api_base="http://api.test")
    with pytest.raises(ValueError, match="invalid URL"):
        client.callback("ch-1", {}, callback_url="http://[::1")
    client.close()


def test_whitespace_key_counts_as_missing() -> None:
    assert Settings("  ").api_key is None


# --- pure helpers -----------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = 1_704_825_600.0
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("1", now=now) == 1.0
    assert parse_retry_after(" 0.25 ", now=now) == 0.25
    later = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0
    earlier = format_datetime(datetime.fromtimestamp(now - 30, UTC), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0
    naive = datetime.fromtimestamp(now + 5, UTC).strftime("%a, %d %b %Y %H:%M:%S")
    assert parse_retry_after(naive, now=now) == 5.0  # no zone: read as UTC
    for bad in ("", "soon", "-1", "nan", "inf"):
        assert parse_retry_after(bad, now=now) is None


@given(st.text())
def test_parse_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, now=0.0)
    assert result is None or result >= 0


def test_backoff_is_exponential_and_capped() -> None:
    delays = backoff(initial=0.5, maximum=4.0, rand=lambda: 0.0)
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittered = backoff(initial=1.0, jitter=0.25, rand=lambda: 0.999)
    assert 0.75 <= next(jittered) < 0.76


@given(
    st.floats(0.001, 10),
    st.floats(0.001, 60),
    st.floats(0, 1),
    st.lists(st.floats(0, 0.999), min_size=1, max_size=30),
)
def test_backoff_stays_within_bounds(
    initial: float, maximum: float, jitter: float, rolls: list[float]
) -> None:
    values = iter(rolls)
    delays = backoff(initial=initial, maximum=maximum, jitter=jitter, rand=lambda: next(values))
    for _ in rolls:
        delay = next(delays)
        assert (1 - jitter) * min(initial, maximum) - 1e-9 <= delay <= maximum + 1e-9


def test_exports() -> None:
    for name in api_module.__all__:
        assert hasattr(api_module, name), name
    assert {"ModelRiver", "AsyncModelRiver"} <= set(api_module.__all__)

