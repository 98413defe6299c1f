"""A Django site tested with ``modelriver.testing``'s gateway, as a user's own tests would:

* in-process: Django's test client posts to the start view; the relay's socket is read with
  ``channels.testing`` and the same request is streamed from the gateway with the core client;
* on Daphne: the example project as a real server, streamed through its relay by the core
  client (``origin=``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings
from djmr_demo import Demo, migrate, start_demo
from djmr_support import Browser, Socket, text_of
from test_daphne_close import start

from modelriver import AsyncModelRiver
from modelriver.stream import connect
from modelriver.testing import EmbeddedGateway

pytestmark = pytest.mark.usefixtures("hub_cleanup")


@pytest.fixture
def site(modelriver_gateway: EmbeddedGateway) -> Iterator[EmbeddedGateway]:
    """The app's settings re-read with the fixture's environment (API key and base come from it)."""
    with override_settings(MODELRIVER={"DEFAULT_WORKFLOW": "support", "PERMISSION": "djmr_support.gate"}):
        yield modelriver_gateway


async def relay_frames(answer: dict[str, str]) -> list[list[object]]:
    socket = Socket(answer["ws_token"])
    assert await socket.connect()
    try:
        joined = await socket.join(answer["websocket_channel"])
        assert joined[4]["status"] == "ok", joined
        return await socket.until_final()
    finally:
        await socket.disconnect()


async def test_the_start_view_streams_the_scripted_answer(site: EmbeddedGateway) -> None:
    site.script("support", reply="Hello from the scripted support bot.")
    answer = await Browser().start("I need help")
    frames = await relay_frames(answer)
    assert text_of(frames) == "Hello from the scripted support bot."
    assert frames[-1][3] == "response" and frames[-1][4]["status"] == "success"
    [log] = site.requests()
    assert (log["channel_id"], log["workflow"], log["prompt"]) == (answer["channel_id"], "support", "I need help")
    async with AsyncModelRiver(site.api_key, api_base=site.url) as api:  # the gateway's own stream
        stream = await api.connect(await api.reconnect(answer["channel_id"]))
        assert (await stream.wait()).content == "Hello from the scripted support bot." == stream.text


async def test_a_provider_failure_reaches_the_browser_as_an_error(site: EmbeddedGateway) -> None:
    site.fail("support", error="the model is down", after=2)
    answer = await Browser().start("hi")
    frames = await relay_frames(answer)
    final = frames[-1][4]
    assert isinstance(final, dict) and "the model is down" in str(final), frames[-1]
    assert (await asyncio.to_thread(site.wait_for, answer["channel_id"]))["status"] == "error"


def test_the_example_project_on_daphne_streams_to_the_core_client(
    modelriver_gateway: EmbeddedGateway, tmp_path: Path,
) -> None:
    modelriver_gateway.script("demo-chat", reply="Served by Daphne, scripted by the test.")
    env = {**modelriver_gateway.env, "DJANGO_CHAT_DB": str(tmp_path / "db.sqlite3")}
    migrate(env)
    demo: Demo = start_demo(env)
    try:
        request, cookie = start(demo)  # the socket token is bound to the session: send its cookie

        async def stream_it() -> str:
            stream = await connect(request, origin=demo.url, headers=cookie, request_timeout=30)
            try:
                await stream.wait()
            finally:
                await stream.close()
            return stream.text

        assert asyncio.run(stream_it()) == "Served by Daphne, scripted by the test."
    finally:
        demo.stop()
    assert modelriver_gateway.requests()[-1]["prompt"] == "malformed"  # test_daphne_close.start's prompt
