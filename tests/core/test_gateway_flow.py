"""Acceptance: what a stranger's socket cannot do to `modelriver dev` (issue 14, findings 1-3).

Real gateway processes, real TCP sockets (``support.wireclient.WireClient``: a test decides
exactly when, and whether, it reads).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import Gateway
from support.gatewaytest import scripted
from support.wireclient import WireClient, check_stream, read_until_final, rss_kib, wait_for

pytestmark = pytest.mark.timeout(120)

ANSWER_TOKENS = 20_000


@pytest.fixture
def flow_gateway(gateway_factory: Callable[..., Gateway], tmp_path: Path) -> Callable[..., Gateway]:
    """A gateway whose ``[server]`` table has the given settings."""

    def start(**server: float) -> Gateway:
        config = tmp_path / f"gateway-{len(list(tmp_path.iterdir()))}.toml"
        config.write_text("[server]\n" + "".join(f"{k} = {v}\n" for k, v in server.items()))
        return gateway_factory("--config", str(config))

    return start


@pytest.fixture
def api() -> Iterator[Callable[[Gateway], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(gw: Gateway) -> httpx.Client:
        client = httpx.Client(base_url=gw.url, timeout=10, headers={"Authorization": f"Bearer {gw.api_key}"})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def answer_text(tokens: int) -> str:
    return "".join(f"w{i} " for i in range(tokens))


def start_request(http: httpx.Client, *, text: str, **script: Any) -> dict[str, Any]:
    body = {"workflow": "demo-chat", "messages": [{"role": "user", "content": "flow"}],
            "metadata": scripted(text=text, tokens_per_second=0, **script)}
    answer = http.post("/v1/ai/async", json=body)
    assert answer.status_code == 200, answer.text
    created: dict[str, Any] = answer.json()
    return created


def finished(http: httpx.Client, channel_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        log: dict[str, Any] = http.get(f"/v1/requests/{channel_id}").json()
        return log if log["status"] == "success" else None

    result: dict[str, Any] = wait_for(done)
    return result


# -- finding 1: the join flood --------------------------------------------------------------------


def test_a_never_reading_client_flooding_joins_is_closed_and_memory_stays_bounded(
        flow_gateway: Callable[..., Gateway], api: Callable[[Gateway], httpx.Client]) -> None:
    """1,000 ``phx_join {}`` on a finished 20,000-token answer, never reading: the gateway once
    grew by ~800 MB; now it keeps one subscription, stops producing past its outbox limit
    (default 1 MiB) and closes the socket after the grace."""
    gw = flow_gateway(buffer_grace=2)
    http = api(gw)
    text = answer_text(ANSWER_TOKENS)
    created = start_request(http, text=text)
    assert finished(http, created["channel_id"])["last_seq"] > ANSWER_TOKENS
    pid = gw.process.popen.pid
    before = rss_kib(pid)
    client = WireClient(created["websocket_url"], created["ws_token"], rcvbuf=4096)
    peak = before
    sent = 0
    try:
        for _ in range(1000):
            client.join(created["websocket_channel"])
            sent += 1
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed by the gateway already: fine

    def closed_by_gateway() -> bool:
        nonlocal peak
        peak = max(peak, rss_kib(pid))
        return "closing with 1008" in gw.process.output

    wait_for(closed_by_gateway, within=30)
    growth_mib = (peak - before) / 1024
    print(f"\ngateway RSS {before // 1024} MiB -> peak {peak // 1024} MiB (+{growth_mib:.1f} MiB) "
          f"for {sent} joins by a never-reading client; closed with 1008")
    assert growth_mib <= 64
    # The connection is over for the client: the close frame after what it had not read, or a reset.
    wait_for(lambda: not client.read_some(), within=15, every=0)
    assert client.close_code in (1008, None)
    client.close()
    # The gateway serves everyone else.
    assert httpx.get(f"{gw.url}/health", timeout=10).status_code == 200
    other = start_request(http, text=answer_text(50))
    reader = WireClient(other["websocket_url"], other["ws_token"])
    reader.join(other["websocket_channel"])
    check_stream(read_until_final(reader, other["websocket_channel"]), other["websocket_channel"],
                 answer_text(50))
    reader.close()


# -- flow control loses nothing for a client that reads --------------------------------------------


def test_a_slowly_reading_client_gets_every_event_in_order(
        flow_gateway: Callable[..., Gateway], api: Callable[[Gateway], httpx.Client]) -> None:
    """Past the outbox limit the gateway stops producing for the socket and catches up from the
    log once it drains: a reader slower than the answer still gets it all, in order, once."""
    gw = flow_gateway(max_buffer=131072, buffer_grace=3)
    http = api(gw)
    text = answer_text(ANSWER_TOKENS)
    done = start_request(http, text=text)
    finished(http, done["channel_id"])
    live = start_request(http, text=text, first_token_ms=300)
    clients = []
    for created in (done, live):  # a replay of a finished answer, and one streamed live
        client = WireClient(created["websocket_url"], created["ws_token"], rcvbuf=4096)
        client.join(created["websocket_channel"])
        clients.append((client, created["websocket_channel"]))
    deadline = time.monotonic() + 60
    while not all(topic in client.final for client, topic in clients):
        assert time.monotonic() < deadline, "no terminal event in time"
        for client, topic in clients:
            if topic not in client.final:
                assert client.read_some(8192), f"the connection ended (close code {client.close_code})"
        time.sleep(0.004)  # ~8 KiB every 4 ms each: slower than the gateway produces
    for client, topic in clients:
        check_stream(client.frames(), topic, text)
        assert client.close_code is None
        client.close()
    assert "closing with 1008" not in gw.process.output


# -- finding 2: alias topics ----------------------------------------------------------------------


def test_alias_spellings_of_a_channel_are_refused_and_do_not_multiply_frames(
        gateway: Gateway, api: Callable[[Gateway], httpx.Client]) -> None:
    """Case variants of one's own channel once each got every event again (1,000 spellings:
    1,005,000 frames for a 1,005-event answer). Only the issued topic and ``ai_response:<channel>``
    are accepted (``noncanonical_topic`` otherwise): at most twice one join's frames."""
    http = api(gateway)
    text = answer_text(1000)
    created = start_request(http, text=text, first_token_ms=1500)
    topic, channel = created["websocket_channel"], created["channel_id"]
    project = created["project_id"]
    client = WireClient(created["websocket_url"], created["ws_token"], rcvbuf=1 << 20)
    own = [topic, f"ai_response:{channel}"]
    rng = random.Random(14)
    aliases: dict[str, None] = {}
    while len(aliases) < 1000:  # the same channel, its letters' case flipped at random
        flip = "".join(c.upper() if rng.random() < 0.5 else c for c in f"{project}:{channel}")
        # Both forms; a channel id with few letters has few channel-only spellings, the full form many.
        for alias in ("ai_response:" + flip, "ai_response:" + flip.split(":")[1]):
            if alias not in own and len(aliases) < 1000:
                aliases[alias] = None
    spellings = [*own, *aliases]
    for spelling in spellings:
        client.join(spelling)
    frames = read_until_final(client, topic)
    frames = read_until_final(client, f"ai_response:{channel}")
    replies = {f[1]: f[4] for f in frames if f[3] == "phx_reply"}
    assert replies["1"]["status"] == "ok" and replies["2"]["status"] == "ok"
    refused = {json.dumps(replies[str(n)]["response"]) for n in range(3, len(spellings) + 1)}
    assert refused == {'{"reason": "noncanonical_topic"}'}
    events = [f for f in frames if not f[3].startswith("phx_")]
    one_join = http.get(f"/v1/requests/{channel}").json()["last_seq"]
    print(f"\n{len(spellings)} spellings joined: {len(events)} event frames for a {one_join}-event "
          f"answer ({len(events) / one_join:.2f}x one join's)")
    assert len(events) <= 3 * one_join
    check_stream(frames, topic, text)
    check_stream(frames, f"ai_response:{channel}", text)
    client.close()


# -- finding 3: a lone surrogate in a client frame ---------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        ["1", "\ud800", "phoenix", "heartbeat", {}],
        ["\ud800", "1", "TOPIC", "phx_join", {}],
        ["1", "1", "TOPIC", "phx_join", {"last": "\udfff"}],
        ["1", "1", "ai_response:\ud800", "phx_join", {}],
    ],
    ids=["ref", "join_ref", "payload", "topic"],
)
def test_a_lone_surrogate_in_a_client_frame_closes_cleanly_and_the_gateway_keeps_serving(
        gateway: Gateway, api: Callable[[Gateway], httpx.Client], frame: list[Any]) -> None:
    """Such a ref once killed the socket's writer (UnicodeEncodeError echoing it): the socket
    stalled with no close frame. Now it is closed with 1007 and everything else goes on."""
    http = api(gateway)
    created = start_request(http, text=answer_text(30), first_token_ms=200)
    topic = created["websocket_channel"]
    client = WireClient(created["websocket_url"], created["ws_token"])
    client.send([topic if part == "TOPIC" else part for part in frame])  # json.dumps escapes it: "\ud800"
    wait_for(lambda: not client.read_some(), within=10, every=0)
    assert client.close_code == 1007
    client.close()
    # The same token opens a socket again (its old one is gone) and gets the whole answer.
    again = wait_for(lambda: _reopen(created), within=10)
    again.join(topic)
    check_stream(read_until_final(again, topic), topic, answer_text(30))
    again.close()
    assert http.get("/v1/requests").status_code == 200
    assert http.get(f"/v1/requests/{created['channel_id']}").status_code == 200


def _reopen(created: dict[str, Any]) -> WireClient | None:
    try:
        return WireClient(created["websocket_url"], created["ws_token"])
    except AssertionError:  # 403 while the gateway still counts the old socket live
        return None


def test_every_spelling_refusal_names_its_reason(gateway: Gateway, api: Callable[[Gateway], httpx.Client]) -> None:
    http = api(gateway)
    created = start_request(http, text=answer_text(5), first_token_ms=100)
    channel, project = created["channel_id"], created["project_id"]
    client = WireClient(created["websocket_url"], created["ws_token"])
    cases = {
        f"ai_response:{project}:{channel.upper()}": "noncanonical_topic",
        f"ai_response:{channel.upper()}": "noncanonical_topic",
        f"ai_response:{uuid.uuid4()}:{channel}": "unauthorized_project_access",
        f"ai_response:{channel.replace('-', '')}": "invalid_channel_uuid",
    }
    for topic in cases:
        client.join(topic)

    def replies() -> dict[str, Any] | None:
        got = {f[1]: f[4]["response"].get("reason") for f in client.frames() if f[3] == "phx_reply"}
        return got if len(got) == len(cases) else (client.read_some() and None)

    got = wait_for(replies, within=10, every=0)
    assert [got[str(n)] for n in range(1, len(cases) + 1)] == list(cases.values())
    client.close()
