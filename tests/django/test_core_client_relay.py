"""The core client streaming through the real relay (the demo on Daphne): the relay's socket sits
behind Channels' ``AllowedHostsOriginValidator``, so a Python client must send an ``Origin`` the
site allows (``connect(..., origin=)``); without it the refusal names the handshake and its status."""

from __future__ import annotations

import asyncio

import pytest
from djmr_demo import Demo, gateway_final
from test_daphne_close import start

from modelriver.events import Token
from modelriver.exceptions import StreamError
from modelriver.stream import connect, connect_sync
from support import Gateway


async def test_origin_lets_the_core_client_stream_through_the_relay(demo: Demo, gateway: Gateway) -> None:
    request, cookie = await asyncio.to_thread(start, demo)
    # headers=: the session's cookie (the relay binds the socket token to the session)
    stream = await connect(request, origin=demo.url, headers=cookie, request_timeout=30)
    try:
        tokens = [event.data async for event in stream if isinstance(event, Token)]
    finally:
        await stream.close()
    assert stream.response is not None and stream.response.status == "success"
    final = await asyncio.to_thread(gateway_final, gateway, request.channel_id)
    assert tokens and "".join(tokens) == stream.text == final["content"]


def test_without_origin_the_refusal_names_the_handshake_and_status(demo: Demo) -> None:
    request, cookie = start(demo)
    with pytest.raises(StreamError) as refused, connect_sync(request, headers=cookie, request_timeout=30) as stream:
        stream.wait()
    message = str(refused.value)
    assert "handshake" in message and "HTTP 403" in message and "origin=" in message
    assert request.ws_token not in message  # the socket URL is named without its token
    # the refusal consumed nothing: the same token streams once the origin is right
    with connect_sync(request, origin=demo.url, headers=cookie, request_timeout=30) as stream:
        assert stream.wait().status == "success" and stream.text
