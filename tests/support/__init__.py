"""Shared test helpers: free ports, real subprocesses that announce readiness, the dev gateway."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[2]
RESTART_LATE_CONFIG = Path(__file__).with_name("failover_restart_late.toml")  # failover = "restart", late
NODE_DIR = ROOT / "tests" / "node"
TEST_API_KEY = "mr_test_0123456789abcdef"
TEST_WEBHOOK_SECRET = "whsec_test_secret"


def _port_slot() -> range:
    """This process's own ports: a slice below the kernel's ephemeral range, one slice per xdist worker.

    A port from ``bind(0)`` comes from the ephemeral range, which every outgoing connection of the suite
    draws from too: released and handed to a server a moment later, it can meanwhile become some client
    socket's local port (CI saw Daphne fail with "Address already in use"). Below that range only explicit
    binds land, and two workers never share a slice.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    top = low - index * _SLOT_WIDTH
    return range(max(1024, top - _SLOT_WIDTH), max(1025, top))


_SLOT_WIDTH = 400
_SLOT = _port_slot()
# From a random point: pytest runs outside xdist (the lowest-direct packages run side by side) share slice 0.
_START = secrets.randbelow(len(_SLOT))  # not `random`: its global state is the tests' (Hypothesis)
_PORTS = itertools.cycle([*_SLOT[_START:], *_SLOT[:_START]])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, from this process's own slice."""
    for _ in range(len(_SLOT)):
        port = next(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {_SLOT.start}-{_SLOT.stop - 1}")


def reopen_socket(url: str, *, origin: str | None = None, within: float = 5.0,
                  headers: dict[str, str] | None = None) -> ClientConnection:
    """A sync WebSocket to ``url`` whose token's previous socket has just closed (``headers``: more
    handshake headers, e.g. the Django relay's session cookie).

    The server allows one live socket per token and may count the closed one live a moment longer
    (403 until it lets go); nothing on the client side signals that, so this retries for ``within`` s.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            ws = connect(url, origin=origin, max_size=None, open_timeout=5,  # type: ignore[arg-type]
                         compression=None, additional_headers=headers)
            # Entered, though the caller closes it outside a `with`: websockets >= 17.1 warns otherwise.
            return ws.__enter__()
        except InvalidStatus as exc:
            if exc.response.status_code != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def chromium_path() -> str:
    """Debian's chromium, which `make test` installs (Playwright's own download cannot work here)."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(path).exists(), "chromium is missing: run `make setup` (apt-get install chromium)"
    return path


CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass
class Process:
    """A subprocess whose combined output is collected line by line on a thread."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @classmethod
    def start(cls, args: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Process:
        popen = subprocess.Popen(
            list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd or ROOT,
            start_new_session=True,
        )
        proc = cls(popen)
        threading.Thread(target=proc._pump, daemon=True).start()
        return proc

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:  # closed at EOF: the process and its group are gone
            for line in self.popen.stdout:
                self.lines.append(line)
                self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """Block until a line containing ``text`` is printed; fail with the output if it exits."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if text in line:
                return line
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line with {text!r} within {timeout}s:\n{self.output}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"process exited ({self.popen.wait()}) before {text!r}:\n{self.output}")
            if text in line:
                return line

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the whole process group (its own session: the process and what it started),
        wait for the process, then for the rest of its group; SIGKILL what outlives ``timeout``."""
        pgid = self.popen.pid
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.popen.wait()
        elif _group_alive(pgid):  # it ended by itself: what it started may still run
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + timeout
        while _group_alive(pgid):  # children that outlive the process (their group is its pid)
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.02)
        return self.popen.returncode


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` (but zombies) is still running."""
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


@dataclass
class Gateway:
    """A real `modelriver dev` subprocess."""

    url: str
    api_key: str
    webhook_secret: str
    process: Process

    @property
    def env(self) -> dict[str, str]:
        """The env every demo and adapter reads (core's convention)."""
        return {"MODELRIVER_API_BASE": self.url, "MODELRIVER_API_KEY": self.api_key}

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def requests(self) -> list[dict[str, Any]]:
        """The gateway's request log, newest first."""
        return list(self.get("/v1/requests")["requests"])

    def request_log(self, channel_id: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/requests/{channel_id}"))


def start_gateway(*args: str, port: int | None = None, api_key: str = TEST_API_KEY,
                  webhook_secret: str = TEST_WEBHOOK_SECRET, env: dict[str, str] | None = None) -> Gateway:
    """Start `modelriver dev` on a free port and wait for its ready line."""
    port = port or free_port()
    proc = Process.start(
        [sys.executable, "-m", "modelriver", "dev", "--port", str(port), "--api-key", api_key,
         "--webhook-secret", webhook_secret, *args],
        env=env,
    )
    proc.wait_for("modelriver dev ready on", timeout=30)
    return Gateway(f"http://127.0.0.1:{port}", api_key, webhook_secret, proc)


@contextlib.contextmanager
def running_gateway(*args: str, **kwargs: Any) -> Iterator[Gateway]:
    gateway = start_gateway(*args, **kwargs)
    try:
        yield gateway
    finally:
        gateway.process.stop()
