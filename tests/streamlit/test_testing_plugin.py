"""A Streamlit app tested with ``modelriver.testing``'s gateway under ``AppTest``: the README's app
(server mode: this process streams), its answer scripted per test, a provider fault shown."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from modelriver.testing import EmbeddedGateway

APP = """
import streamlit as st
from streamlit_modelriver import st_modelriver

if prompt := st.chat_input("Ask something"):
    st.session_state.turn = {"prompt": prompt, "key": f"turn-{len(st.session_state)}"}

if turn := st.session_state.get("turn"):
    with st.chat_message("assistant"):
        response = st_modelriver(turn["prompt"], workflow="support", key=turn["key"], mode="server")
    if response is not None:
        st.session_state.pop("turn")
        st.session_state.answer = response.content
"""


def ask(prompt: str) -> AppTest:
    at = AppTest.from_string(APP, default_timeout=30)
    at.run()
    at.chat_input[0].set_value(prompt).run()
    assert not at.exception, at.exception
    return at


def test_the_app_shows_the_scripted_answer(modelriver_gateway: EmbeddedGateway) -> None:
    modelriver_gateway.script("support", reply="Our opening hours are 9 to 5.")
    at = ask("When are you open?")
    assert at.session_state.answer == "Our opening hours are 9 to 5."
    assert "Our opening hours are 9 to 5." in [m.value for m in at.chat_message[-1].markdown]
    [log] = modelriver_gateway.requests()
    assert (log["workflow"], log["prompt"], log["status"]) == ("support", "When are you open?", "success")


def test_a_provider_failure_is_shown_as_an_error(modelriver_gateway: EmbeddedGateway) -> None:
    modelriver_gateway.fail("support", error="the model is down")
    at = ask("hello?")
    assert any("the model is down" in e.value for e in at.error), [e.value for e in at.error]
    assert modelriver_gateway.requests()[0]["status"] == "error"
