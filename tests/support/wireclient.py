"""``WireClient``: a Phoenix v2 socket on a blocking TCP socket that reads only when told.

Driven by ``websockets``' sans-I/O client protocol over a plain socket with a small receive
buffer, so a test decides exactly when (and whether) it reads: a client that never reads fills
the server's buffers as a stalled or hostile browser would.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from modelriver.types import socket_endpoint
from support.gatewaytest import is_terminal

__all__ = ["WireClient", "check_stream", "read_until_final", "rss_kib", "wait_for"]


class WireClient:
    """A Phoenix socket on a blocking TCP socket with a small receive buffer; reads only when told."""

    def __init__(self, websocket_url: str, token: str, *, rcvbuf: int = 8192, origin: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        url = socket_endpoint(websocket_url, token)
        parts = urlsplit(url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect((parts.hostname, parts.port))
        self.proto = ClientProtocol(parse_uri(url), origin=origin, max_size=None)  # type: ignore[arg-type]
        request = self.proto.connect()
        for name, value in (headers or {}).items():
            request.headers[name] = value
        self.proto.send_request(request)
        self._flush()
        self.parsed: list[list[Any]] = []
        self.final: set[str] = set()  # topics whose terminal event arrived
        self.close_code: int | None = None
        self.sock.settimeout(10)
        while self.proto.state is State.CONNECTING:
            self._feed(self.sock.recv(4096))
        assert self.proto.handshake_exc is None, self.proto.handshake_exc
        self._refs = 0

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.proto.data_to_send()))

    def _feed(self, data: bytes) -> None:
        if not data:
            self.proto.receive_eof()
        else:
            self.proto.receive_data(data)
        for event in self.proto.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                frame = json.loads(event.data)
                self.parsed.append(frame)
                if is_terminal(frame[3], frame[4]):
                    self.final.add(frame[2])
        if self.proto.close_rcvd is not None:
            self.close_code = self.proto.close_rcvd.code

    def send(self, frame: list[Any]) -> None:
        self.proto.send_text(json.dumps(frame).encode())
        self._flush()

    def join(self, topic: str, payload: dict[str, Any] | None = None) -> str:
        self._refs += 1
        ref = str(self._refs)
        self.send([ref, ref, topic, "phx_join", payload or {}])
        return ref

    def read_some(self, size: int = 65536) -> bool:
        """One ``recv`` of up to ``size`` bytes; False once the connection is over."""
        try:
            data = self.sock.recv(size)
        except (ConnectionResetError, TimeoutError):
            self.proto.receive_eof()
            return False
        self._feed(data)
        return bool(data) and self.close_code is None

    def frames(self) -> list[list[Any]]:
        return list(self.parsed)

    def close(self) -> None:
        self.sock.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_for(predicate: Callable[[], Any], *, within: float = 30.0, every: float = 0.02) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within}s")
        time.sleep(every)


def read_until_final(client: WireClient, topic: str, *, pace: Callable[[], None] | None = None,
                     chunk: int = 65536, within: float = 60.0) -> list[list[Any]]:
    """Read (``pace`` between reads) until ``topic``'s terminal event; returns every frame."""
    deadline = time.monotonic() + within
    while True:
        if topic in client.final:
            return client.frames()
        assert time.monotonic() < deadline, "no terminal event in time"
        assert client.read_some(chunk), f"the connection ended (close code {client.close_code})"
        if pace is not None:
            pace()


def check_stream(frames: list[list[Any]], topic: str, text: str) -> None:
    """Every event of one join on ``topic``, once, in order: seq 1, 2, 3... and the whole text."""
    events = [f for f in frames if f[2] == topic and not f[3].startswith("phx_")]
    seqs = [f[4]["seq"] for f in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert "".join(f[4]["data"] for f in events if f[3] == "tokens") == text
    assert events[-1][3] == "response" and events[-1][4]["status"] == "success"
