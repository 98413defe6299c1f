"""Shared by the time-to-first-token benchmarks: subprocesses, the gateway's clock, the core baseline."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "mr_bench_0123456789abcdef"


class Proc:
    """A subprocess whose output is read on a thread; ``wait_for`` a line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in line for line in self.lines):
                if self.popen.poll() is not None:
                    raise RuntimeError(f"exited before {text!r}:\n{''.join(self.lines)[-2000:]}")
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"no {text!r} within {timeout}s:\n{''.join(self.lines)[-2000:]}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)


def created_at(api_base: str, channel_id: str) -> float:
    """When the gateway created the request (its request log), Unix seconds."""
    request = urllib.request.Request(f"{api_base}/v1/requests/{channel_id}",
                                     headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        stamp = json.loads(resp.read())["created_at"]
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def core_samples(api_base: str, n: int, scripted: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(call → first token, request created → first token) in ms, per sample."""
    from modelriver import ModelRiver, Token

    total, from_created = [], []
    with ModelRiver(API_KEY, api_base=api_base) as client:
        for i in range(n + 1):
            started = time.time()
            with client.stream("demo-chat", f"core sample {i}", metadata={"scripted": scripted}) as stream:
                first = None
                for event in stream:
                    if first is None and isinstance(event, Token):
                        first = time.time()
                assert first is not None, "no token"
                channel_id = stream.request.channel_id
            if i:  # the first one warms up
                total.append((first - started) * 1000)
                from_created.append((first - created_at(api_base, channel_id)) * 1000)
    return total, from_created
