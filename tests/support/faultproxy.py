"""A small asyncio TCP proxy for fault injection: put it between a client and a server, then
cut every live connection on demand, or refuse new ones for a while.

    async with FaultProxy("127.0.0.1", gateway_port) as proxy:
        request = replace(request, websocket_url=proxy.rewrite(request.websocket_url))
        ...
        await proxy.wait_for_connections(1)
        await proxy.cut_all()          # both sides see the TCP connection die at once

Bytes are copied as they come, in both directions, without looking at them (HTTP, WebSocket,
anything). ``cut_all()`` resets both TCP connections of every live pair (SO_LINGER 0: no FIN
handshake, no flush; the peers see ECONNRESET, as when a network path dies). While ``refusing``
is set, a new client connection is accepted and reset at once, so the client's connect fails
and it retries.

Threads: everything runs on the loop that called ``start()``; ``FaultProxy`` is not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

__all__ = ["FaultProxy"]

_CHUNK = 65536


@dataclass(eq=False)
class _Pair:
    """One proxied connection: the client's side and the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as when a network path dies: no FIN, no flush."""
    with contextlib.suppress(Exception):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port`` and cuts on demand.

    Args:
        target_host: the server's host.
        target_port: the server's port.
        host: the address to listen on (loopback by default).

    Attributes:
        port: the listening port, once started.
        accepted: connections forwarded so far (refused ones excluded).
        refused: connections refused while ``refusing`` was set.
        cuts: connections aborted by ``cut_all()``.
        refusing: when True, new client connections are closed at once.
    """

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.accepted = 0
        self.refused = 0
        self.cuts = 0
        self.refusing = False
        self._pairs: set[_Pair] = set()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and abort every live connection."""
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            pair.abort()
        tasks = [t for pair in self._pairs for t in pair.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what tests use ------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def live(self) -> int:
        """Connections open right now."""
        return len(self._pairs)

    def rewrite(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's (scheme and path kept)."""
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, self.address, parts.path, parts.query, parts.fragment))

    async def cut_all(self) -> int:
        """Abort every live connection, both sides; returns how many were cut."""
        pairs = list(self._pairs)
        for pair in pairs:
            pair.abort()
        self.cuts += len(pairs)
        return len(pairs)

    async def wait_for_connections(self, live: int = 1, *, within: float = 10.0) -> None:
        """Wait until at least ``live`` connections are open."""
        await self._wait(lambda: self.live >= live, within)

    async def wait_for_accepted(self, total: int, *, within: float = 10.0) -> None:
        """Wait until ``total`` connections have been forwarded since the start."""
        await self._wait(lambda: self.accepted >= total, within)

    async def wait_for_refused(self, total: int, *, within: float = 10.0) -> None:
        """Wait until ``total`` connections have been refused since the start."""
        await self._wait(lambda: self.refused >= total, within)

    # -- internals -----------------------------------------------------------------------------

    async def _wait(self, predicate: Callable[[], bool], within: float) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), within)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            _reset(writer)
            await self._notify()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _reset(writer)
            return
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        self.accepted += 1
        pair.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, pair)),
            asyncio.create_task(self._pipe(up_reader, writer, pair)),
        ]
        await self._notify()
        await asyncio.wait(pair.tasks)
        pair.abort()
        self._pairs.discard(pair)
        await self._notify()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pair.abort()  # one side broke: the other sees it break too
            return
        # A clean EOF: pass the half-close on; the pair ends when both directions have.
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, ConnectionError):
            pair.abort()
