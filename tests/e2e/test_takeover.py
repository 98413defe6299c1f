"""Acceptance (issue 8): the pump's process killed mid-stream 10 times in a row loses nothing.

Eleven Daphne processes of the demo share one redis-server (channels_redis, the Redis pump lock,
the replay stream). Several requests are started on process 0, which runs their pumps (their one
upstream connection each). Core stream clients (as browsers, two per request) follow them
through a ``FaultProxy`` used as a load balancer, always on the *next* process. Ten times in a
row: the clients are moved to the next process (the balancer retargets and cuts them; they
reconnect with ``last_seq``), then the process running the pumps is killed with SIGKILL; the
process the clients are on must take every pump over (reconnect API, ``last_seq`` from the
replay stream) and the streams go on. At the end every client must have every token exactly
once, its text byte-identical to the final response's content and to the scripted text, and
the gateway must have seen one upstream socket per pump incarnation.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cutlib import Ledger, StreamResult, unique_text
from djmr_demo import DEMO, Demo, demo_env, migrate, scripted_env
from relaylib import DjangoSession, origin_for, via

from modelriver.devserver.providers import split_tokens
from modelriver.events import Token
from modelriver.stream import Stream, connect
from modelriver.types import AsyncRequest
from support import Gateway, Process, free_port
from support.faultproxy import FaultProxy

pytestmark = [pytest.mark.redis, pytest.mark.timeout(150)]

KILLS = 10
REQUESTS = 3
CLIENTS_PER_REQUEST = 2
WORDS = 1200
TOKENS_PER_SECOND = 40  # 30 s a stream: room for ten takeovers of ~1.5-2.5 s each
LOCK_TTL = "1"          # seconds before a dead pump's lease lapses (renewed every 1/3 s)


@pytest.fixture(scope="module")
def cluster(gateway: Gateway, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Demo]]:
    """KILLS + 1 demo processes on one Redis, started at once (no restart inside the timed part)."""
    db: Path = tmp_path_factory.mktemp("takeover") / "db.sqlite3"
    env = demo_env(gateway, db, REDIS_URL=redis_url, MODELRIVER_PUMP_LOCK_TTL=LOCK_TTL,
                   DJANGO_SECRET_KEY="e2e-takeover-shared-secret",
                   **scripted_env(tokens_per_second=TOKENS_PER_SECOND, first_token_ms=0,
                                  text=unique_text(1, WORDS)))
    migrate(env)
    servers = []
    for _ in range(KILLS + 1):
        port = free_port()
        proc = Process.start([sys.executable, str(DEMO / "manage.py"), "runserver", f"127.0.0.1:{port}",
                              "--noreload"], env=env)
        servers.append(Demo(f"http://127.0.0.1:{port}", port, proc, env))
    try:
        for server in servers:
            server.process.wait_for("Listening on TCP address", timeout=60)
        yield servers
    finally:
        for server in servers:
            server.stop()


async def test_ten_pump_kills_in_a_row_lose_nothing(
    gateway: Gateway, cluster: list[Demo], monkeypatch: pytest.MonkeyPatch, figures: Callable[..., None],
) -> None:
    text = unique_text(1, WORDS)
    expected = split_tokens(text)
    balancer = FaultProxy("127.0.0.1", cluster[0].port)
    await balancer.start()
    origin_for(monkeypatch, balancer.rewrite(cluster[0].url))
    sessions: list[DjangoSession] = []
    streams: list[tuple[AsyncRequest, Stream]] = []
    joined: asyncio.Queue[None] = asyncio.Queue()
    try:
        # Process 0 starts every request, so it runs every pump.
        requests = []
        for n in range(REQUESTS):
            session = await DjangoSession(balancer.rewrite(cluster[0].url)).__aenter__()
            sessions.append(session)
            requests.append((session, await session.start(f"takeover {n}")))
        balancer.target_port = cluster[1].port  # the browsers follow on process 1
        for session, request in requests:
            for index in range(CLIENTS_PER_REQUEST):  # one token per client (one live socket each)
                fresh = request if index == 0 else await session.reconnect(request.channel_id)

                async def refresh(session: DjangoSession = session, cid: str = request.channel_id) -> AsyncRequest:
                    return via(balancer, await session.reconnect(cid))

                stream = await connect(via(balancer, fresh), refresh=refresh, request_timeout=120,
                                       origin=balancer.rewrite(cluster[0].url), headers=session.socket_headers)
                stream.on("channel_joined", lambda _: joined.put_nowait(None))
                streams.append((request, stream))
        clients = len(streams)

        async def all_joined() -> None:
            """Every client has joined (again)."""
            async with asyncio.timeout(20):
                for _ in range(clients):
                    await joined.get()

        async def upstream_sockets() -> list[int]:
            logs = [await asyncio.to_thread(gateway.request_log, r.channel_id) for _, r in requests]
            return [log["sockets"] for log in logs]

        await all_joined()
        takeover_seconds = []
        for kill in range(KILLS):
            pump, follower = cluster[kill], cluster[kill + 1]
            # Move the browsers to the follower (its sockets make it the one to take over).
            if kill > 0:
                balancer.target_port = follower.port
                await balancer.cut_all()
                await all_joined()
            statuses = [(await asyncio.to_thread(gateway.request_log, r.channel_id))["status"] for _, r in requests]
            assert statuses == ["streaming"] * REQUESTS, f"kill {kill + 1} would not be mid-stream: {statuses}"
            sockets_before = await upstream_sockets()
            pump.stop(signal.SIGKILL)
            started = asyncio.get_running_loop().time()
            for _ in range(400):  # 20 s: every request's pump reconnects upstream from the follower
                if all(a > b for a, b in zip(await upstream_sockets(), sockets_before, strict=True)):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail(f"kill {kill + 1}: the pumps were not taken over within 20 s")
            takeover_seconds.append(asyncio.get_running_loop().time() - started)

        ledger = Ledger(cuts=KILLS)
        async with asyncio.timeout(90):
            for request, stream in streams:
                seqs = [event.seq async for event in stream if isinstance(event, Token)]
                assert stream.response is not None and stream.response.status == "success", stream.response
                ledger.add(StreamResult(request.channel_id, [s for s in seqs if s is not None], stream.text,
                                        stream.response.content, text, len(expected), stream.reconnects))
        logs = [await asyncio.to_thread(gateway.request_log, r.channel_id) for _, r in requests]
    finally:
        for _, stream in streams:
            await stream.close()
        for session in sessions:
            await session.__aexit__(None, None, None)
        await balancer.close()

    figures(kills=KILLS, requests=REQUESTS, clients=clients, tokens_checked=ledger.tokens_checked,
            lost=ledger.lost, duplicated=ledger.duplicated, texts_differing=len(ledger.text_mismatches),
            upstream_sockets=[log["sockets"] for log in logs],
            takeover_s_max=round(max(takeover_seconds), 2), takeover_s_mean=round(
                sum(takeover_seconds) / len(takeover_seconds), 2))
    assert all(log["tokens"] == len(expected) for log in logs)
    assert ledger.lost == 0
    assert ledger.duplicated == 0
    assert ledger.text_mismatches == []
    assert all(log["sockets"] >= KILLS + 1 for log in logs), "a pump was not taken over"
