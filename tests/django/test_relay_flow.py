"""Acceptance on a real Daphne (demo_projects/django_chat): what a stranger's socket cannot do to
the relay (issue 14, findings 1-3), with the app's default ``MODELRIVER`` limits.

Daphne has no send backpressure: the consumer measures Twisted's write buffer and its own queue.
``support.wireclient.WireClient`` decides when (and whether) a client reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from djmr_demo import Demo, demo_env, migrate, open_socket, scripted_env, start_demo, start_request

from support import Gateway
from support.wireclient import check_stream, read_until_final, rss_kib, wait_for

pytestmark = pytest.mark.timeout(180)

TOKENS = 8000
TEXT = "".join(f"token{i}-padded-for-width " for i in range(TOKENS))  # ~1.5 MB of frames a join


@pytest.fixture(scope="module")
def relay(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo on Daphne, each answer its prompt (``TEXT``) at full speed, default limits."""
    db = tmp_path_factory.mktemp("relay_flow") / "db.sqlite3"
    env = demo_env(gateway, db, **scripted_env(text="{prompt}", tokens_per_second=0, first_token_ms=0))
    migrate(env)
    server = start_demo(env)
    yield server
    server.stop()


def finished_answer(relay: Demo) -> tuple[dict[str, Any], dict[str, str]]:
    """A request whose whole answer the relay holds (read once to its end by a reading client)."""
    created, headers = start_request(relay, TEXT)
    reader = open_socket(relay, created, headers, rcvbuf=1 << 20)
    reader.join(created["websocket_channel"])
    check_stream(read_until_final(reader, created["websocket_channel"]), created["websocket_channel"], TEXT)
    reader.close()
    return created, headers


def test_a_never_reading_client_flooding_joins_is_closed_and_daphne_memory_stays_bounded(relay: Demo) -> None:
    """1,500 joins on a 5,000-token answer once took Daphne from 393 to 1,224 MB: every join
    queued a replay into Twisted's unbounded buffer. Now one join at a time holds output, the
    socket is paused past MAX_BUFFER (1 MiB) and closed (4008) after BUFFER_GRACE (10 s)."""
    created, headers = finished_answer(relay)
    pid = relay.process.popen.pid
    before = rss_kib(pid)
    client = open_socket(relay, created, headers, rcvbuf=4096)
    sent = 0
    try:
        for _ in range(1000):
            client.join(created["websocket_channel"])
            sent += 1
    except (BrokenPipeError, ConnectionResetError):
        pass
    peak = before

    def closed_by_relay() -> bool:
        nonlocal peak
        peak = max(peak, rss_kib(pid))
        return "closing a socket with 1008" in relay.process.output

    wait_for(closed_by_relay, within=60)
    growth_mib = (peak - before) / 1024
    print(f"\nDaphne RSS {before // 1024} MiB -> peak {peak // 1024} MiB (+{growth_mib:.1f} MiB) for "
          f"{sent} joins by a never-reading client on a {TOKENS}-token answer; closed with 4008")
    assert growth_mib <= 64
    wait_for(lambda: not client.read_some(), within=20, every=0)
    assert client.close_code in (4008, None)  # the close frame behind the unread data, or the abort
    client.close()
    # The relay goes on serving others.
    other, other_headers = start_request(relay, TEXT)
    reader = open_socket(relay, other, other_headers, rcvbuf=1 << 20)
    reader.join(other["websocket_channel"])
    check_stream(read_until_final(reader, other["websocket_channel"]), other["websocket_channel"], TEXT)
    reader.close()


def test_a_slowly_reading_client_gets_every_event_in_order(relay: Demo) -> None:
    """Past MAX_BUFFER nothing more is produced for the socket; once it drains, the relay replays
    what it held back: a reader slower than the answer gets it all, once, in order."""
    created, headers = start_request(relay, TEXT)
    topic = created["websocket_channel"]
    client = open_socket(relay, created, headers, rcvbuf=4096)
    client.join(topic)
    frames = read_until_final(client, topic, chunk=8192, pace=lambda: time.sleep(0.004), within=120)
    check_stream(frames, topic, TEXT)
    assert client.close_code is None
    client.close()


def test_alias_spellings_are_refused_with_the_gateways_rule(relay: Demo) -> None:
    created, headers = finished_answer(relay)
    topic, channel, project = created["websocket_channel"], created["channel_id"], created["project_id"]
    client = open_socket(relay, created, headers, rcvbuf=1 << 20)
    aliases = [f"ai_response:{project}:{channel.upper()}", f"ai_response:{channel.upper()}",
               f"ai_response:{project.upper()}:{channel}"]
    for spelling in [topic, f"ai_response:{channel}", *aliases * 300]:
        client.join(spelling)
    read_until_final(client, topic)
    frames = read_until_final(client, f"ai_response:{channel}")
    wait_for(lambda: sum(f[3] == "phx_reply" for f in client.parsed) == 902 or (client.read_some() and None),
             within=20, every=0)
    reasons = {json.dumps(f[4]) for f in client.parsed if f[3] == "phx_reply" and f[1] not in ("1", "2")}
    assert reasons == {json.dumps({"status": "error", "response": {"reason": "noncanonical_topic"}})}
    events = [f for f in client.parsed if not f[3].startswith("phx_")]
    one_join = len([f for f in frames if f[2] == topic and not f[3].startswith("phx_")])
    print(f"\n902 spellings joined on Daphne: {len(events)} event frames for a {one_join}-event answer")
    assert len(events) <= 3 * one_join
    client.close()


@pytest.mark.parametrize("frame", [["1", "\ud800", "phoenix", "heartbeat", {}],
                                   ["1", "1", "TOPIC", "phx_join", {"x": "\udfff"}]], ids=["ref", "payload"])
def test_a_lone_surrogate_closes_with_4007_and_the_token_reconnects(relay: Demo, frame: list[Any]) -> None:
    created, headers = start_request(relay, TEXT)
    topic = created["websocket_channel"]
    client = open_socket(relay, created, headers)
    client.send([topic if part == "TOPIC" else part for part in frame])
    wait_for(lambda: not client.read_some(), within=10, every=0)
    assert client.close_code == 4007
    client.close()
    again = open_socket(relay, created, headers, rcvbuf=1 << 20)
    again.join(topic)
    check_stream(read_until_final(again, topic), topic, TEXT)
    again.close()
