"""What the start view and the socket guard (issue 14: findings 5, 6; issue 16: nothing spent on
an error): the start limits per session (429 with ``Retry-After``, checked before any upstream
request: the real gateway's request log counts them), the token bound to its session at the
socket, and a clear error with no upstream request when the sessions table is not migrated."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import override_settings
from djmr_support import Browser, Socket, scripted, settle

from django_modelriver.limits import Refusal, StartLimits
from support import Gateway

pytestmark = pytest.mark.usefixtures("mr_settings", "hub_cleanup")

SLOW = {"tokens_per_second": 5, "text": " ".join(f"w{i}" for i in range(50))}


@pytest.fixture
def limits(mr_settings: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """MODELRIVER with the test's limits (``@pytest.mark.parametrize("limits", [{...}], indirect=True)``)."""
    value = {**mr_settings, **request.param}
    with override_settings(MODELRIVER=value):
        yield value


async def started(browser: Browser) -> Any:
    return await browser.post("/modelriver/start", {"message": "limit me"})


async def test_the_default_limits_refuse_a_burst_of_starts_from_one_session(gateway: Gateway) -> None:
    """At the defaults (MAX_IN_FLIGHT 4, START_RATE 20 a minute), one session cannot start on and on."""
    browser = Browser()
    before = len(gateway.requests())
    answers = []
    with scripted(**SLOW):
        for _ in range(6):
            answers.append(await started(browser))
    statuses = [a.status_code for a in answers]
    assert statuses == [200, 200, 200, 200, 429, 429]
    refused = answers[-1]
    assert int(refused["Retry-After"]) >= 1
    assert "still running" in refused.json()["error"]
    assert len(gateway.requests()) == before + 4  # the refused ones reached no upstream
    assert (await Browser().post("/modelriver/start", {"message": "another session"})).status_code == 200
    for answer in answers[:4]:
        await browser.post("/modelriver/cancel", {"channel_id": answer.json()["channel_id"]})


@pytest.mark.parametrize("limits", [{"START_RATE": 3, "MAX_IN_FLIGHT": None}], indirect=True)
async def test_past_the_rate_a_start_is_a_429_with_retry_after_and_no_upstream_request(
        limits: dict[str, Any], gateway: Gateway) -> None:
    browser = Browser()
    before = len(gateway.requests())
    answers = [await started(browser) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    retry = int(answers[-1]["Retry-After"])
    assert 1 <= retry <= 20  # a token back every 20 s at 3 a minute
    assert "too many requests started" in answers[-1].json()["error"]
    assert len(gateway.requests()) == before + 3


@pytest.mark.parametrize("limits", [{"START_RATE": 0, "MAX_IN_FLIGHT": 1}], indirect=True)
async def test_a_slot_in_flight_frees_when_its_request_ends(limits: dict[str, Any], gateway: Gateway) -> None:
    browser = Browser()
    with scripted(**SLOW):
        first = await started(browser)
        assert first.status_code == 200
        busy = await started(browser)
        assert busy.status_code == 429 and int(busy["Retry-After"]) >= 1
        await browser.post("/modelriver/cancel", {"channel_id": first.json()["channel_id"]})
        await settle(first.json()["channel_id"])  # the pump saw the end
        again = await started(browser)
    assert again.status_code == 200, again.content
    await browser.post("/modelriver/cancel", {"channel_id": again.json()["channel_id"]})


@pytest.mark.parametrize("limits", [{"START_RATE": None, "MAX_IN_FLIGHT": 1}], indirect=True)
async def test_a_failed_start_gives_its_slot_back(limits: dict[str, Any], gateway: Gateway) -> None:
    browser = Browser()
    with override_settings(MODELRIVER={**limits, "WORKFLOWS": {"demo-nope": {}}, "DEFAULT_WORKFLOW": "demo-nope"}):
        for _ in range(3):  # the gateway refuses an unknown workflow: 400, and the slot is free again
            assert (await started(browser)).status_code == 400
    answer = await started(browser)
    assert answer.status_code == 200, answer.content
    await browser.post("/modelriver/cancel", {"channel_id": answer.json()["channel_id"]})


def test_limits_count_per_identity_and_a_user_across_sessions() -> None:
    """The limiter alone (Django's real LocMem cache): all identities or none, one user's sessions share."""
    limits = StartLimits(per_minute=2, in_flight=0, cache_alias="default")
    now = time.time()
    tag = str(now)
    assert isinstance(limits.reserve([f"session:a{tag}", f"user:u{tag}"], now), str)
    assert isinstance(limits.reserve([f"session:b{tag}", f"user:u{tag}"], now), str)
    refused = limits.reserve([f"session:c{tag}", f"user:u{tag}"], now)  # a third session of the same user
    assert isinstance(refused, Refusal) and refused.reason == "rate" and refused.retry_after == 30
    assert isinstance(limits.reserve([f"session:c{tag}"], now), str)  # c itself took nothing when refused
    assert isinstance(limits.reserve([f"user:u{tag}"], now + 30), str)  # a token back after 30 s

    flight = StartLimits(per_minute=0, in_flight=1, cache_alias="default")
    first = flight.reserve([f"session:f{tag}"], now)
    assert isinstance(first, str)
    flight.bind([f"session:f{tag}"], first, "chan-1")
    busy = flight.reserve([f"session:f{tag}"], now)
    assert isinstance(busy, Refusal) and busy.reason == "in_flight" and busy.in_flight == ("chan-1",)
    assert isinstance(flight.reserve([f"session:f{tag}"], now, ended=["chan-1"]), str)


async def test_a_token_opens_the_socket_only_with_its_own_session() -> None:
    alice, mallory = Browser(), Browser()
    answer = await alice.start("alice's secret")
    await mallory.start("mallory's own")  # mallory has a session of her own
    assert not await Socket(answer["ws_token"], cookie=b"").connect()  # no session cookie
    assert not await Socket(answer["ws_token"], cookie=mallory.cookie_header).connect()
    sock = Socket(answer["ws_token"])  # alice's cookies
    assert await sock.connect()
    await sock.disconnect()


async def test_the_binding_can_be_turned_off_for_cross_site_clients(mr_settings: dict[str, Any]) -> None:
    with override_settings(MODELRIVER={**mr_settings, "BIND_TOKEN_TO_SESSION": False}):
        answer = await Browser().start("from another site")
        sock = Socket(answer["ws_token"], cookie=b"")
        assert await sock.connect()
        await sock.disconnect()


def _drop_connection() -> None:
    connection = connections["default"]
    if connection.connection is not None:
        connection.connection.close()
        connection.connection = None


async def test_unmigrated_sessions_are_a_clear_error_before_any_upstream_request(
        gateway: Gateway, django_db_blocker: Any) -> None:
    before = len(gateway.requests())
    # The database as configured (in memory, never migrated): no django_session table.
    with django_db_blocker.unblock(), override_settings(SESSION_ENGINE="django.contrib.sessions.backends.db"):
        browser = Browser()  # its handler loads the session middleware with these settings
        answer = await started(browser)
        # The connection it opened lives in asgiref's shared thread: drop it there while allowed
        # (sqlite's close() keeps an in-memory database's connection open).
        await sync_to_async(_drop_connection)()
    assert answer.status_code == 500
    assert "manage.py migrate" in answer.json()["error"]
    assert len(gateway.requests()) == before


def test_the_limit_settings_and_their_checks() -> None:
    from django_modelriver.checks import check_settings
    from django_modelriver.conf import modelriver_settings

    with override_settings(MODELRIVER={}):
        conf = modelriver_settings()
        assert (conf.start_rate, conf.max_in_flight, conf.limit_cache, conf.bind_token_to_session) == (
            20, 4, "default", True)
        assert not {m.id for m in check_settings()} & {"django_modelriver.E011"}
    with override_settings(MODELRIVER={"START_RATE": None, "MAX_IN_FLIGHT": 0}):
        conf = modelriver_settings()
        assert (conf.start_rate, conf.max_in_flight) == (0, 0)
        assert not conf.start_limits().enabled
    for bad in ({"START_RATE": -1}, {"MAX_IN_FLIGHT": 2.5}, {"START_RATE": "20"}, {"LIMIT_CACHE": "nowhere"}):
        with override_settings(MODELRIVER=bad):
            assert "django_modelriver.E011" in {m.id for m in check_settings()}, bad
    dummy = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
             "off": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    with override_settings(CACHES=dummy, MODELRIVER={"LIMIT_CACHE": "off"}):
        assert "django_modelriver.W007" in {m.id for m in check_settings()}
    with override_settings(CACHES=dummy, MODELRIVER={"LIMIT_CACHE": "off", "START_RATE": 0, "MAX_IN_FLIGHT": 0}):
        assert "django_modelriver.W007" not in {m.id for m in check_settings()}
