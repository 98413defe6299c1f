"""What the benchmark scripts share: free ports, server subprocesses, RSS/CPU sampling, percentiles."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tree_env(root: Path) -> dict[str, str]:
    """``PYTHONPATH`` making a subprocess import core and the Django integration from the checkout at
    ``root`` (another commit's tree, for an A/B) rather than the installed packages."""
    return {"PYTHONPATH": os.pathsep.join(str(root / p) for p in ("core/src", "integrations/django/src"))}


def free_port() -> int:
    """A loopback port nothing listens on, picked at random below the kernel's ephemeral range.

    Not ``bind(0)``: that port comes from the range every outgoing connection draws from, so between
    its release and a server's listen it can become a client socket's local port ("Address already in
    use"). The test suite's ports sit in the 4,000 just below that range; these in the 8,000 under them.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = max(low - 4000, 2024)
    for _ in range(200):
        bottom = max(1024, top - 8000)
        port = bottom + secrets.randbelow(top - bottom)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found")


@dataclass
class Server:
    """A subprocess that printed its ready line (its output kept in ``lines``)."""

    popen: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, args: Sequence[str], ready: str, *, url: str = "", env: dict[str, str] | None = None,
              cwd: Path = ROOT, timeout: float = 90.0) -> Server:
        popen = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd,
                                 start_new_session=True)
        server = cls(popen, url)
        seen = threading.Event()

        def pump() -> None:
            assert popen.stdout is not None
            for line in popen.stdout:
                server.lines.append(line)
                if ready in line:
                    seen.set()
            seen.set()

        threading.Thread(target=pump, daemon=True).start()
        if not seen.wait(timeout) or popen.poll() is not None:
            server.stop()
            raise RuntimeError(f"{args[0]} did not start:\n{''.join(server.lines)[-3000:]}")
        return server

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class RssSampler:
    """Idle and peak RSS of a process, sampled on a thread, and its CPU time over the ``with`` block."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self.idle = self.peak = self._proc.memory_info().rss
        self._every = every
        self.cpu_start = self.cpu_now()
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def cpu_now(self) -> float:
        """The CPU seconds (user + system) the process has used so far."""
        return float(sum(self._proc.cpu_times()[:2]))

    def mark_cpu(self) -> None:
        """Count CPU time from now on (the measured window, not the setup)."""
        self.cpu_start = self.cpu_now()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self.cpu = self.cpu_now() - self.cpu_start


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
