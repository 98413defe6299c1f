"""Interop: the real npm ``phoenix`` client (Node) against our sans-I/O server on ``websockets``.

The server (``phoenix_testserver.py``) runs in the test's event loop; ``tests/node/phoenix_client.mjs``
runs phoenix.js's ``Socket`` and ``Channel`` in a Node subprocess and prints one JSON line per
observation. The test waits on those lines and on the server's own records, never on a clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from core.phoenix_testserver import PhoenixTestServer

NODE = shutil.which("node")
NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "phoenix_client.mjs"
HAVE_PACKAGES = all(
    (NODE_DIR / "node_modules" / name / "package.json").exists() for name in ("phoenix", "ws")
)

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(
        NODE is None or not HAVE_PACKAGES, reason="needs Node.js and `npm ci --prefix tests/node`"
    ),
]

# phoenix.js closes the socket when a heartbeat reply takes longer than one interval, so the
# interval is a real-time deadline for a loaded machine: 250 ms (phoenix.js: 30 s), scaled by
# MODELRIVER_TEST_SLOWDOWN on slow runners. 50 ms failed under CPU contention (replies 170 ms late).
HEARTBEAT_MS = round(250 * float(os.environ.get("MODELRIVER_TEST_SLOWDOWN", "1")))

TOKEN = "ws-token-for-c1"
TOPIC = "ai_response:p1:c1"
FOREIGN = "ai_response:p2:c2"


@dataclass
class NodePeer:
    """One ``phoenix_client.mjs`` run, the JSON lines it printed so far and its stderr (phoenix.js's log)."""

    proc: asyncio.subprocess.Process
    lines: list[dict[str, Any]] = field(default_factory=list)
    _stderr: bytearray = field(default_factory=bytearray)
    _stderr_task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self._stderr += chunk

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace")

    def report(self) -> str:
        """Everything it printed, for assertion messages."""
        return "\n".join(map(json.dumps, self.lines)) + "\n--- stderr ---\n" + self.stderr

    async def _next(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            return None
        line: dict[str, Any] = json.loads(raw)
        self.lines.append(line)
        return line

    async def expect(self, kind: str, within: float = 10.0) -> dict[str, Any]:
        """Read lines until one of type ``kind``; returns it."""
        async with asyncio.timeout(within):
            while (line := await self._next()) is not None:
                if line["type"] == kind:
                    return line
        await self.finish()
        raise AssertionError(f"node ended before a {kind!r} line:\n{self.report()}")

    async def finish(self, within: float = 10.0) -> dict[str, Any]:
        """Read to the end and wait for the exit; returns the final line."""
        async with asyncio.timeout(within):
            while await self._next() is not None:
                pass
            await self.proc.wait()
            if self._stderr_task is not None:
                await self._stderr_task
        assert self.lines, f"node printed nothing:\n{self.report()}"
        return self.lines[-1]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["type"] == kind]

    @property
    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(line["event"], line["payload"]) for line in self.of_type("event")]


Spawn = Callable[..., Awaitable[NodePeer]]


@pytest.fixture
async def server() -> AsyncIterator[PhoenixTestServer]:
    async with PhoenixTestServer({TOKEN: {TOPIC}}) as srv:
        yield srv


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start ``node phoenix_client.mjs <url> <token> <topic> [options]``; killed at teardown if alive."""
    peers: list[NodePeer] = []

    async def start(url: str, token: str, topic: str, *options: str) -> NodePeer:
        assert NODE is not None
        proc = await asyncio.create_subprocess_exec(
            NODE, str(SCRIPT), url, token, topic, "--timeout-ms=8000", "--debug", *options,
            cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        peers.append(NodePeer(proc))
        return peers[-1]

    yield start
    for peer in peers:
        if peer.proc.returncode is None:
            peer.proc.kill()
            await peer.proc.wait()
        if peer._stderr_task is not None:
            await peer._stderr_task


async def test_phoenix_js_joins_streams_and_heartbeats(server: PhoenixTestServer, spawn: Spawn) -> None:
    # Produced before anyone joins: a join with {} must still get them.
    await server.publish(TOPIC, "tokens", {"data": "Hel"})
    await server.publish(TOPIC, "tokens", {"data": "lo"})

    node = await spawn(
        server.url, TOKEN, TOPIC, f"--heartbeat-ms={HEARTBEAT_MS}", "--min-heartbeats=2", "--push-heartbeat"
    )
    assert (await node.expect("joined"))["response"] == {}
    join = await server.wait_joined(TOPIC)
    assert (join.payload, join.last_seq, join.coalesce) == ({}, None, False)

    for data in (", ", "wor", "ld!"):
        await server.publish(TOPIC, "tokens", {"data": data})
    await server.publish(TOPIC, "response", {"status": "success", "content": "Hello, world!"})

    final = await node.finish()
    assert final["type"] == "done", node.report()
    assert node.proc.returncode == 0, node.report()

    tokens = [p for e, p in node.events if e == "tokens"]
    assert [p["seq"] for p in tokens] == [1, 2, 3, 4, 5]
    assert "".join(p["data"] for p in tokens) == "Hello, world!"
    assert node.events[-1] == ("response", {"status": "success", "content": "Hello, world!", "seq": 6})

    replies = node.of_type("heartbeat_reply")
    assert len(replies) >= 2
    assert {r["status"] for r in replies} == {"ok"}
    assert node.of_type("channel_heartbeat_reply") == [{"type": "channel_heartbeat_reply", "status": "ok"}]
    assert node.of_type("close") == []
    assert node.of_type("socket_error") == []

    [sock] = server.accepted
    assert (sock.token, sock.subprotocol) == (TOKEN, None)  # the SDK's way: token param, no subprotocol
    assert server.refused == []
    assert server.protocol_errors == []


async def test_phoenix_js_token_subprotocol_and_resume_after_last_seq(
    server: PhoenixTestServer, spawn: Spawn
) -> None:
    for data in ("a", "b", "c"):
        await server.publish(TOPIC, "tokens", {"data": data})
    await server.publish(TOPIC, "response", {"status": "success"})

    node = await spawn(server.url, TOKEN, TOPIC, "--auth=subprotocol", '--join-payload={"last_seq":2}')
    assert (await node.finish())["type"] == "done", node.report()
    assert node.events == [("tokens", {"data": "c", "seq": 3}), ("response", {"status": "success", "seq": 4})]

    [sock] = server.accepted
    assert (sock.token, sock.subprotocol) == (TOKEN, "phoenix")
    [(_, join)] = server.joins(TOPIC)
    assert join.last_seq == 2


async def test_phoenix_js_coalesced_replay(server: PhoenixTestServer, spawn: Spawn) -> None:
    for data in ("Hel", "lo", " there"):
        await server.publish(TOPIC, "tokens", {"data": data})
    await server.publish(TOPIC, "response", {"status": "success"})

    node = await spawn(server.url, TOKEN, TOPIC, '--join-payload={"coalesce":true}')
    assert (await node.finish())["type"] == "done", node.report()
    assert node.events == [
        ("tokens", {"data": "Hello there", "seq": 3, "from_seq": 1}),
        ("response", {"status": "success", "seq": 4}),
    ]


@pytest.mark.parametrize(
    ("topic", "reason"),
    [("room:lobby", "invalid_channel_format"), (FOREIGN, "unauthorized_project_access")],
)
async def test_phoenix_js_join_refused_with_reason(
    server: PhoenixTestServer, spawn: Spawn, topic: str, reason: str
) -> None:
    await server.publish(FOREIGN, "tokens", {"data": "secret"})
    node = await spawn(server.url, TOKEN, topic)
    final = await node.finish()
    assert final == {"type": "join_error", "reason": reason, "response": {"reason": reason}}
    assert node.proc.returncode == 0
    assert node.of_type("open") == [{"type": "open"}]  # refused the join, not the socket
    assert node.events == []
    assert server.joins() == []


async def test_unknown_token_is_refused_at_the_handshake(server: PhoenixTestServer, spawn: Spawn) -> None:
    node = await spawn(server.url, "forged-token", TOPIC)
    final = await node.finish()
    assert final["type"] == "connect_failed", node.report()
    assert "403" in final["message"]
    assert node.of_type("open") == []
    assert [status for _, status in server.refused] == [403]
    assert server.refused[0][0].startswith("/socket/websocket?token=forged-token")
    assert server.accepted == []
