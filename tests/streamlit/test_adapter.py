"""`st_modelriver` itself under AppTest (server mode) against a real gateway: keys, errors, settings."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from support import Gateway

RUN_TIMEOUT = 30


def keyed_app(api_base: str, api_key: str) -> None:
    import streamlit as st

    from modelriver import ModelRiver
    from streamlit_modelriver import st_modelriver

    prompt = st.text_input("prompt", value="first question", key="prompt")
    st.button("unrelated", key="unrelated")
    client = ModelRiver(api_key, api_base=api_base)
    response = st_modelriver(prompt, workflow="demo-chat", key="fixed", mode="server", client=client,
                             metadata={"scripted": {"tokens_per_second": 0}})
    st.write(f"channel={response.channel_id if response else None}")


def test_reruns_reuse_the_request_and_a_new_prompt_starts_one(gateway: Gateway) -> None:
    at = AppTest.from_function(keyed_app, args=(gateway.url, gateway.api_key), default_timeout=RUN_TIMEOUT)
    before = {r["channel_id"] for r in gateway.requests()}
    at.run()
    first = next(m.value for m in at.markdown if m.value.startswith("channel="))
    at.button(key="unrelated").click().run()  # a rerun: same key, same prompt
    assert next(m.value for m in at.markdown if m.value.startswith("channel=")) == first
    assert at.status[-1].label == "Answer ready"  # the finished answer is drawn again
    at.text_input(key="prompt").set_value("second question").run()
    second = next(m.value for m in at.markdown if m.value.startswith("channel="))
    assert second != first
    new = [r["channel_id"] for r in gateway.requests() if r["channel_id"] not in before]
    assert sorted(new) == sorted([first.removeprefix("channel="), second.removeprefix("channel=")])


def refused_app(api_base: str) -> None:
    import streamlit as st

    from modelriver import ModelRiver
    from streamlit_modelriver import st_modelriver

    st.button("again", key="again")
    response = st_modelriver("hello", workflow="demo-chat", key="k", mode="server",
                             client=ModelRiver("mr_wrong_key_0000000000", api_base=api_base, max_retries=0))
    assert response is not None
    st.write(f"is_error={response.is_error} message={response.error_message}")


def test_an_api_error_is_shown_and_returned_and_not_retried_on_rerun(gateway: Gateway) -> None:
    at = AppTest.from_function(refused_app, args=(gateway.url,), default_timeout=RUN_TIMEOUT)
    at.run()
    assert not at.exception
    assert at.error and "401" in at.error[0].value
    assert any(m.value.startswith("is_error=True") for m in at.markdown)
    at.button(key="again").click().run()
    assert at.error and "401" in at.error[0].value


def settings_app() -> None:
    import streamlit as st

    from streamlit_modelriver import modelriver_client, resolve_settings

    key, base = resolve_settings()
    client = modelriver_client()
    st.write(f"key={key} base={base} same={client is modelriver_client()} client_base={client.api_base}")


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [
        ({"MODELRIVER_API_KEY": "mr_from_secrets", "MODELRIVER_API_BASE": "http://secrets.invalid"},
         "key=mr_from_secrets base=http://secrets.invalid"),
        ({"modelriver": {"api_key": "mr_from_table", "api_base": "http://table.invalid"}},
         "key=mr_from_table base=http://table.invalid"),
        ({}, "key=mr_from_env base=http://env.invalid"),
    ],
)
def test_settings_come_from_st_secrets_then_the_environment(
        secrets: dict[str, object], expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELRIVER_API_KEY", "mr_from_env")
    monkeypatch.setenv("MODELRIVER_API_BASE", "http://env.invalid")
    at = AppTest.from_function(settings_app)
    for name, value in secrets.items():
        at.secrets[name] = value
    at.run()
    assert not at.exception
    line = at.markdown[0].value
    assert line.startswith(expected)
    assert "same=True" in line
    assert line.endswith(f"client_base={expected.split('base=')[1]}")


def realm_client_app(realm_url: str, realm_key: str) -> None:
    import streamlit as st

    from modelriver.upstream import SyncRealmUpstream
    from streamlit_modelriver import st_modelriver

    @st.cache_resource
    def realm() -> SyncRealmUpstream:
        return SyncRealmUpstream(realm_url, api_key=realm_key)

    response = st_modelriver("Realm by argument", workflow="demo-chat", key="realm", client=realm())
    assert response is not None  # component mode fell back to server mode: the answer is in
    st.write(f"status={response.status} content={response.content}")


def test_a_realm_upstream_passed_as_client_streams_in_either_mode(
        realm_gateway: tuple[Gateway, str]) -> None:
    from support.upstreams import REALM_KEY
    from tests.core.realm_support import scripted

    gateway, url = realm_gateway
    at = AppTest.from_function(realm_client_app, args=(url, REALM_KEY), default_timeout=RUN_TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    line = next(m.value for m in at.markdown if m.value.startswith("status="))
    assert line == f"status=success content={scripted('Realm by argument')}"
    assert at.status[-1].label == "Answer ready"
    found = [r for r in gateway.requests() if r["prompt"] == "Realm by argument"]
    assert len(found) == 1 and found[0]["status"] == "success"


def upstream_settings_app() -> None:
    import streamlit as st

    from streamlit_modelriver import resolve_upstream_settings, upstream_client

    upstream = upstream_client()
    st.write(f"settings={sorted(resolve_upstream_settings().items())} "
             f"type={type(upstream).__name__} base={upstream.api_base} same={upstream is upstream_client()}")


@pytest.mark.parametrize(
    ("secrets", "env", "expected"),
    [
        ({"modelriver": {"upstream": "realm", "realm_url": "ws://127.0.0.1:9", "realm_api_key": "rk"}}, {},
         "type=SyncRealmUpstream base=ws://127.0.0.1:9 same=True"),
        ({"MODELRIVER_UPSTREAM": "realm"}, {"REALM_URL": "ws://127.0.0.1:8"},
         "type=SyncRealmUpstream base=ws://127.0.0.1:8 same=True"),
        ({}, {"MODELRIVER_API_BASE": "http://env.invalid"}, "type=ModelRiver base=http://env.invalid same=True"),
    ],
)
def test_the_default_upstream_comes_from_st_secrets_then_the_environment(
        secrets: dict[str, object], env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODELRIVER_UPSTREAM", "REALM_URL", "REALM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_function(upstream_settings_app)
    for name, value in secrets.items():
        at.secrets[name] = value
    at.run()
    assert not at.exception, at.exception
    assert at.markdown[0].value.endswith(expected)


FREEZE_SCRIPT = """
import gc, time
import pandas, streamlit
from streamlit_modelriver import freeze_startup_objects

def full_pass_ms():
    started = time.perf_counter()
    gc.collect(2)
    return (time.perf_counter() - started) * 1000

before = min(full_pass_ms() for _ in range(3))
tracked = len(gc.get_objects())
first, second = freeze_startup_objects(), freeze_startup_objects()
after = min(full_pass_ms() for _ in range(3))
print(first, second, gc.get_freeze_count() >= tracked, len(gc.get_objects()) < tracked // 10, before, after)
"""


def test_freeze_startup_objects_freezes_once_and_full_collections_skip_the_imports() -> None:
    """In its own process (freezing is process-wide): the imports leave the collector's full passes."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FREEZE_SCRIPT], capture_output=True, text=True, timeout=120,
                         check=True).stdout.split()
    assert out[:4] == ["True", "False", "True", "True"], out
    before, after = float(out[4]), float(out[5])
    assert after < before, (before, after)  # the objects walked: all the imports, then a tenth at most


def test_public_names_are_exported() -> None:
    import streamlit_modelriver

    public = {name for name in vars(streamlit_modelriver) if not name.startswith("_")}
    assert public == set(streamlit_modelriver.__all__) - {"__version__"}
    assert streamlit_modelriver.__version__
