"""``MODELRIVER['UPSTREAM']``: its system check, the default (ModelRiver from the settings, or the
upstream core's ``MODELRIVER_UPSTREAM`` selects), a factory's upstream carrying requests through
the relay (here Realm, on a real gateway's ``--realm-port``), and what only ModelRiver can do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import djmr_support
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from djmr_demo import gateway_final
from djmr_support import Browser, Socket, settle, text_of

from django_modelriver import asend_callback
from django_modelriver.checks import check_settings
from django_modelriver.hub import get_hub
from django_modelriver.pump import UNSTORED_ROOM
from django_modelriver.store import RequestRecord
from modelriver.api import AsyncModelRiver
from modelriver.phoenix import payload_of
from modelriver.upstream import RealmUpstream, UpstreamError
from support import Gateway, free_port, start_gateway
from support.upstreams import REALM_KEY


@pytest.fixture(scope="module")
def realm() -> Iterator[tuple[Gateway, str]]:
    """A gateway with a Realm endpoint: (the gateway, its Realm URL)."""
    port = free_port()
    gateway = start_gateway("--realm-port", str(port), "--realm-api-key", REALM_KEY)
    yield gateway, f"ws://127.0.0.1:{port}"
    gateway.process.stop()


@pytest.fixture
def realm_env(realm: tuple[Gateway, str], monkeypatch: pytest.MonkeyPatch) -> Gateway:
    """Core's switch to Realm, as a deployment sets it (no ModelRiver key at all)."""
    monkeypatch.setenv("MODELRIVER_UPSTREAM", "realm")
    monkeypatch.setenv("REALM_URL", realm[1])
    monkeypatch.setenv("REALM_API_KEY", REALM_KEY)
    monkeypatch.delenv("MODELRIVER_API_KEY", raising=False)
    return realm[0]


def check_ids(**modelriver: Any) -> set[str]:
    with override_settings(MODELRIVER={"WEBHOOK_SECRET": "s", **modelriver}):
        return {m.id for m in check_settings()}


def test_system_check_names_a_bad_upstream_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELRIVER_API_KEY", raising=False)
    monkeypatch.delenv("MODELRIVER_UPSTREAM", raising=False)
    for bad in ("no.such.factory", "django_modelriver.conf.DEFAULTS", "djmr_support.gate"):
        assert "django_modelriver.E009" in check_ids(UPSTREAM=bad), bad  # missing, not callable, wants args
    with override_settings(MODELRIVER={"UPSTREAM": "djmr_support.gate"}):
        (error,) = [m for m in check_settings() if m.id == "django_modelriver.E009"]
    assert "djmr_support.gate" in error.msg and "no arguments" in error.msg
    assert check_ids(API_KEY="k" * 20) == set()
    assert check_ids(API_KEY="k" * 20, UPSTREAM="modelriver.upstream.upstream_from_env") == set()
    # The API key is ModelRiver's: missing, it is worth a warning only when requests go there.
    assert check_ids() == {"django_modelriver.W001"}
    assert check_ids(UPSTREAM="djmr_support.counting_upstream") == set()
    monkeypatch.setenv("MODELRIVER_UPSTREAM", "realm")
    assert check_ids() == set()
    # A misspelt switch is an error (not a silent ModelRiver), unless the project's own factory decides.
    monkeypatch.setenv("MODELRIVER_UPSTREAM", "relam")
    assert check_ids() == {"django_modelriver.E010"}
    assert check_ids(UPSTREAM="djmr_support.counting_upstream") == set()


async def test_the_default_upstream_is_modelriver_unless_core_env_selects_another(
        mr_settings: dict[str, Any], realm: tuple[Gateway, str], monkeypatch: pytest.MonkeyPatch,
        hub_cleanup: None) -> None:
    upstream = get_hub().upstream()
    assert type(upstream) is AsyncModelRiver and upstream.api_base == mr_settings["API_BASE"]
    assert get_hub().upstream() is upstream  # one per hub (per event loop)
    monkeypatch.setenv("MODELRIVER_UPSTREAM", "realm")
    monkeypatch.setenv("REALM_URL", realm[1])
    with override_settings(MODELRIVER={**mr_settings}):  # a settings change drops the hub
        upstream = get_hub().upstream()
        assert type(upstream) is RealmUpstream and upstream.api_base == realm[1]
        await get_hub().close()


async def test_a_factory_upstream_carries_requests_through_the_relay(realm_env: Gateway, hub_cleanup: None) -> None:
    djmr_support.UPSTREAMS_MADE.clear()
    with override_settings(MODELRIVER={"DEFAULT_WORKFLOW": "demo-chat",
                                       "UPSTREAM": "djmr_support.counting_upstream"}):
        prompt = "through the relay over realm"
        answer = await Browser().start(prompt)
        sock = Socket(answer["ws_token"])
        assert await sock.connect()
        reply = await sock.join(answer["websocket_channel"])
        assert reply[4]["status"] == "ok"
        frames = await sock.until_final()
        await sock.disconnect()
        await settle(answer["channel_id"])
        (upstream,) = djmr_support.UPSTREAMS_MADE  # the factory, called once for this loop's hub
        assert type(upstream) is RealmUpstream and get_hub().upstream() is upstream
        # The gateway ran it as one request (Realm's endpoint), with the relay's own channel id.
        (log,) = [r for r in realm_env.requests() if r["prompt"] == prompt]
        assert log["channel_id"] != answer["channel_id"] and log["status"] == "success"
        final = gateway_final(realm_env, log["channel_id"])
        assert frames[-1][3] == "response" and frames[-1][4]["status"] == "success"
        assert text_of(frames) == frames[-1][4]["content"] == final["content"]
        seqs = [f[4]["seq"] for f in frames]
        assert seqs == list(range(1, len(seqs) + 1))
        await get_hub().close()


async def test_cancel_goes_through_the_upstream(realm_env: Gateway, hub_cleanup: None) -> None:
    with override_settings(MODELRIVER={"DEFAULT_WORKFLOW": "demo-chat"}):
        prompt = "cancel me over realm"
        browser = Browser()
        answer = await browser.start(prompt)
        sock = Socket(answer["ws_token"])
        assert await sock.connect()
        await sock.join(answer["websocket_channel"])
        await sock.until(lambda f: f[3] == "tokens")
        cancelled = await browser.post("/modelriver/cancel", {"channel_id": answer["channel_id"]})
        assert cancelled.status_code == 200, cancelled.content
        final = (await sock.until_final())[-1]
        assert final[3] == "response" and final[4]["status"] == "cancelled"
        await sock.disconnect()
        await settle(answer["channel_id"])
        (log,) = [r for r in realm_env.requests() if r["prompt"] == prompt]
        assert gateway_final(realm_env, log["channel_id"])["status"] == "cancelled"
        again = await browser.post("/modelriver/cancel", {"channel_id": answer["channel_id"]})
        assert again.status_code == 409
        await get_hub().close()


async def test_what_only_modelriver_can_do_is_refused_clearly(realm_env: Gateway, hub_cleanup: None) -> None:
    with override_settings(MODELRIVER={"DEFAULT_WORKFLOW": "demo-events",
                                       "WORKFLOWS": {"demo-events": {"events": ["webhook_received"]}}}):
        refused = await Browser().post("/modelriver/start", {"message": "needs a webhook"})
        assert refused.status_code == 400
        assert "event-driven" in refused.json()["message"]
        with pytest.raises(UpstreamError, match=r"callback API.*RealmUpstream has none"):
            await asend_callback("any-channel", {"approved": True})
        await get_hub().close()


async def test_a_request_its_upstream_no_longer_knows_ends_with_an_error(realm_env: Gateway,
                                                                          hub_cleanup: None) -> None:
    """What another process finds when it takes over a Realm request whose process died."""
    with override_settings(MODELRIVER={"DEFAULT_WORKFLOW": "demo-chat"}):
        hub = get_hub()
        record = RequestRecord(channel_id="started-elsewhere", project_id=None,
                               topic="ai_response:started-elsewhere", owner="o", user_id=None,
                               workflow="demo-chat")
        await hub.backend.save(record)
        assert await hub.take_over(record.channel_id)
        await settle(record.channel_id)
        assert await hub.backend.ended_at(record.channel_id) is not None
        (entry,) = hub.backend.replay_now(record.channel_id, None)
        assert entry.event == "error" and payload_of(entry)["message"] == "the request is no longer known upstream"
        assert entry.seq > UNSTORED_ROOM  # beyond what the dead process may have shown unstored
        assert not await hub.take_over(record.channel_id)  # ended: nothing to take over again
        await hub.close()


async def test_a_factory_that_returns_no_upstream_is_refused_at_first_use(hub_cleanup: None) -> None:
    with override_settings(MODELRIVER={"UPSTREAM": "djmr_support.not_an_upstream"}), \
            pytest.raises(ImproperlyConfigured, match=r"not_an_upstream.*not an AsyncUpstream"):
        get_hub().upstream()
