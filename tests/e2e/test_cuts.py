"""Acceptance (issue 8): 100 network cuts over long streams lose and duplicate nothing.

A ``FaultProxy`` sits between the clients and the server and resets every live TCP connection
(both sides, no FIN) at random moments. Several long streams run at once, back to back, until
100 cuts have each hit at least one live connection. Every stream must then have delivered each
of the gateway's tokens exactly once (by ``seq``), and its text must be byte-identical to the
final response's ``content`` and to the text the gateway was scripted to produce.

* core's stream client ↔ ``modelriver dev``: the client reconnects with phoenix.js's backoff and
  rejoins with ``{last_seq}``; a token still held by the dead socket is refreshed through the
  reconnect API (routed back through the proxy).
* core's stream client ↔ the Django relay (demo_projects/django_chat on Daphne): the same client
  speaks to Django's Phoenix socket as a browser would, starting each request with the start
  view and refreshing its socket token with the relay's reconnect view.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from cutlib import StreamResult, run_cuts, unique_text
from djmr_demo import Demo
from relaylib import RELAY_TPS, RELAY_WORDS, DjangoSession, origin_for, port_of, relay_text, via

from modelriver.api import AsyncModelRiver
from modelriver.devserver.providers import split_tokens
from modelriver.events import Token
from modelriver.stream import connect
from modelriver.types import AsyncRequest
from support import Gateway
from support.faultproxy import FaultProxy

pytestmark = pytest.mark.timeout(110)

CUTS = 100
WORDS = RELAY_WORDS              # tokens per stream
TOKENS_PER_SECOND = RELAY_TPS    # ~4 s a stream: each meets many cuts
SLOTS = 6
GAP = (0.02, 0.15)     # seconds between two cuts: ~9 s of cutting for 100


async def test_100_cuts_core_client_to_gateway(gateway: Gateway, figures: Callable[..., None]) -> None:
    async with FaultProxy("127.0.0.1", port_of(gateway.url)) as proxy, \
            AsyncModelRiver(api_key=gateway.api_key, api_base=gateway.url) as client:

        async def open_stream(n: int) -> StreamResult:
            text = unique_text(n, WORDS)
            request = await client.create_request(
                "demo-chat", f"cut test {n}",
                metadata={"scripted": {"text": text, "tokens_per_second": TOKENS_PER_SECOND,
                                       "first_token_ms": 0}})

            async def refresh() -> AsyncRequest:
                return via(proxy, await client.reconnect(request.channel_id))

            stream = await connect(via(proxy, request), refresh=refresh, request_timeout=60)
            seqs = [event.seq async for event in stream if isinstance(event, Token)]
            assert stream.response is not None and stream.response.status == "success", stream.response
            log = await asyncio.to_thread(gateway.request_log, request.channel_id)
            expected = split_tokens(text)
            assert log["tokens"] == len(expected), log
            return StreamResult(request.channel_id, [s for s in seqs if s is not None], stream.text,
                                stream.response.content, text, len(expected), stream.reconnects)

        ledger = await run_cuts(open_stream, proxy, cuts=CUTS, slots=SLOTS, gap=GAP, within=80)

    figures(path="core client -> gateway", **ledger.figures())
    assert ledger.cuts == CUTS
    assert ledger.reconnects >= CUTS // 2, "the cuts did not reach the streams"
    assert ledger.streams >= SLOTS
    assert ledger.lost == 0
    assert ledger.duplicated == 0
    assert ledger.text_mismatches == []


# -- the Django relay ------------------------------------------------------------------------


@pytest.fixture
def browser_origin(monkeypatch: pytest.MonkeyPatch, relay: Demo) -> None:
    origin_for(monkeypatch, relay.url)


async def test_100_cuts_core_client_to_django_relay(
    gateway: Gateway, relay: Demo, browser_origin: None, figures: Callable[..., None],
) -> None:
    text = relay_text()  # the demo scripts one text for every request
    expected = split_tokens(text)
    async with FaultProxy("127.0.0.1", relay.port) as proxy:

        async def open_stream(n: int) -> StreamResult:
            async with DjangoSession(relay.url) as session:  # a browser of its own per stream
                request = await session.start(f"relay cut test {n}")

                async def refresh() -> AsyncRequest:
                    return via(proxy, await session.reconnect(request.channel_id))

                stream = await connect(via(proxy, request), refresh=refresh, request_timeout=60,
                                       origin=relay.url, headers=session.socket_headers)
                seqs = [event.seq async for event in stream if isinstance(event, Token)]
            assert stream.response is not None and stream.response.status == "success", stream.response
            log = await asyncio.to_thread(gateway.request_log, request.channel_id)
            assert log["tokens"] == len(expected), log
            return StreamResult(request.channel_id, [s for s in seqs if s is not None], stream.text,
                                stream.response.content, text, len(expected), stream.reconnects)

        ledger = await run_cuts(open_stream, proxy, cuts=CUTS, slots=SLOTS, gap=GAP, within=80)

    figures(path="core client -> Django relay -> gateway", **ledger.figures())
    assert ledger.cuts == CUTS
    assert ledger.reconnects >= CUTS // 2, "the cuts did not reach the streams"
    assert ledger.lost == 0
    assert ledger.duplicated == 0
    assert ledger.text_mismatches == []
