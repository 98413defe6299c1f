"""The suite's ports never come from the range outgoing connections draw from (CI saw that collide)."""

from __future__ import annotations

import socket
from pathlib import Path

from support import free_port


def test_free_ports_sit_below_the_ephemeral_range_and_are_bindable() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(20)]
    assert all(1024 <= port < low for port in ports), ports
    assert len(set(ports)) == 20, "consecutive picks repeat a port"
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))
