"""``modelriver.settings``: the one reader of the environment, and the factories that take its object."""

from __future__ import annotations

import dataclasses

import pytest

from modelriver import AsyncModelRiver, ModelRiver, Settings
from modelriver.realm.upstream import RealmUpstream, SyncRealmUpstream
from modelriver.upstream import sync_upstream_from_settings, upstream_from_settings

SECRET = "whsec_0123456789abcdefWXYZ"
REALM_KEY = "rk_0123456789abcdef_9876"
ENV = {
    "MODELRIVER_API_KEY": "mr_0123456789abcdef_5555", "MODELRIVER_API_BASE": "http://gw.test:1/",
    "MODELRIVER_WEBHOOK_SECRET": SECRET, "MODELRIVER_UPSTREAM": " Realm ",
    "REALM_URL": "ws://realm.test:2", "REALM_API_KEY": REALM_KEY,
}


def test_from_env_reads_every_variable_and_empty_ones_are_unset() -> None:
    settings = Settings.from_env(ENV)
    assert (settings.api_base, settings.webhook_secret, settings.realm_url, settings.realm_api_key) == (
        "http://gw.test:1", SECRET, "ws://realm.test:2", REALM_KEY)
    assert settings.upstream_name() == "realm"
    assert Settings.from_env(dict.fromkeys(ENV, "")) == Settings()
    assert Settings.from_env({}).upstream_name() == "modelriver"


def test_from_env_reads_os_environ_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELRIVER_WEBHOOK_SECRET", SECRET)
    assert Settings.from_env().webhook_secret == SECRET


def test_merged_keeps_unset_fields_and_replace_sets_them() -> None:
    base = Settings.from_env(ENV)
    merged = base.merged(api_key="mr_explicit", webhook_secret=None)
    assert merged.api_key == "mr_explicit" and merged.webhook_secret == SECRET
    assert base.replace(webhook_secret=None).webhook_secret is None
    with pytest.raises(TypeError):
        base.merged(api_kee="typo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.api_key = "x"  # type: ignore[misc]


def test_repr_shows_no_secret() -> None:
    text = repr(Settings.from_env(ENV))
    for secret in (ENV["MODELRIVER_API_KEY"], SECRET, REALM_KEY):
        assert secret not in text
    assert "webhook_secret='…WXYZ'" in text and "realm_api_key='…9876'" in text


def test_a_typo_in_upstream_is_an_error_not_a_fallback() -> None:
    with pytest.raises(ValueError, match=r"MODELRIVER_UPSTREAM='relam': expected 'modelriver' or 'realm'"):
        upstream_from_settings(Settings(upstream="relam"))


async def test_the_factories_take_the_settings_object() -> None:
    realm = upstream_from_settings(Settings.from_env(ENV))
    assert isinstance(realm, RealmUpstream) and realm.client.url == "ws://realm.test:2"
    assert realm.client.api_key == REALM_KEY
    await realm.aclose()
    client = upstream_from_settings(Settings("mr_k", "http://x:3/"))
    assert isinstance(client, AsyncModelRiver) and client.api_base == "http://x:3"
    await client.aclose()
    sync_realm = sync_upstream_from_settings(Settings(upstream="realm"))
    assert isinstance(sync_realm, SyncRealmUpstream) and sync_realm.api_base == "ws://localhost:8080"
    sync_realm.close()
    sync_client = sync_upstream_from_settings(Settings())
    assert isinstance(sync_client, ModelRiver)
    sync_client.close()
