"""Acceptance (issue 14): what a stranger sends cannot exhaust, crash or reach past the owner.

Each finding of the hardening probe, reproduced on real processes: ``modelriver dev`` gateways,
the Django demo on Daphne at its default settings (``relay_echo``: its answers echo the prompt,
unpaced, so a test picks an answer's size by its prompt), the Streamlit probe app and the Gradio
demo in Chromium on a gateway that answers hostile Markdown (``support.leakserver``). Each test
asserts the goal, records its figures (printed under "e2e figures") and fails on the code the
probe ran. (The leftover Daphne processes: ``support.leftovers``, ``test_leftover_check.py``.)

1. Join flood: a client that joins one topic 1,000 times and never reads; the server's RSS
   growth stays under 64 MB, or the server closes the socket (gateway, Daphne).
2. Alias topics: 1,000 other spellings of a channel joined on one socket: the frames sent for one
   answer stay within 3x one join's (the spellings are refused).
3. Lone surrogates: bodies and frames holding ``\\ud800`` are refused (4xx, a clean close); the
   request log keeps answering 200; Gradio answers with a clear error, not the encoder's.
4. Model Markdown: answers, errors, failover reasons, tool names and structured replies holding
   ``![i](http://...)`` make the browser fetch nothing (Streamlit, Gradio).
5. Starts per session: one session starting as fast as it can gets 429 with ``Retry-After``.
6. Smaller: a relay socket token is refused with another session's cookie or none; the gateway's
   HTML log needs the key; a deeply nested body to ``start`` and a 4,000-digit number in a
   gateway request are 4xx.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import httpx
import psutil
import pytest
from djmr_demo import Demo, demo_env, migrate, scripted_env, start_demo
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin
from websockets.uri import parse_uri

from modelriver.types import AsyncRequest, socket_endpoint
from support import CHROMIUM_ARGS, Gateway, Process, chromium_path
from support.gatewaytest import is_terminal, scripted
from support.leakserver import LeakServer, hostile_gateway
from support.upstreams import Upstream

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

MB = 1 << 20
JOINS = 1000
RSS_GOAL = 64 * MB
FLOOD_WORDS = 1500
"""The answer a flood replays: 1,500 tokens (the probe's 20,000 and 5,000 need no more to show it)."""
FLOOD_WINDOW = 15.0
"""Seconds a flooded server has to settle within the goal or close the socket (its grace period)."""
ALIASES = 1000
ALIAS_WORDS = 100
START_WINDOW = 10.0
START_CAP = 60
"""Starts tried from one session within ``START_WINDOW``: a default limit answers 429 before."""
JSON = {"Content-Type": "application/json"}


# -- helpers ---------------------------------------------------------------------------------------


class NeverReader:
    """A WebSocket client that sends frames and, after its handshake, never reads.

    Its receive buffer is small, so the server's writes back up in the server at once.
    """

    def __init__(self, url: str, *, origin: str | None = None, cookie: str | None = None) -> None:
        uri = parse_uri(url)
        self.protocol = ClientProtocol(uri, origin=Origin(origin) if origin else None, max_size=None)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((uri.host, uri.port))
        request = self.protocol.connect()
        if cookie:
            request.headers["Cookie"] = cookie
        self.protocol.send_request(request)
        self._flush()
        while self.protocol.state is State.CONNECTING:  # the handshake's answer only
            data = self.sock.recv(4096)
            if not data:
                break
            self.protocol.receive_data(data)
        if self.protocol.state is not State.OPEN:
            raise ConnectionError(f"handshake refused: {self.protocol.handshake_exc}")
        self.protocol.events_received()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def send(self, text: str) -> bool:
        """Send a text frame; False once the server has closed or reset the connection."""
        try:
            self.protocol.send_text(text.encode())
            self._flush()
        except OSError:
            return False
        return True

    def close_code(self, within: float = 5.0) -> int | None:
        """Read at last, until the server's close frame or the end of the stream: its code."""
        deadline = time.monotonic() + within
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                self.protocol.receive_data(data)
                self.protocol.events_received()  # the frames before the close: dropped
                if self.protocol.close_rcvd is not None:
                    return self.protocol.close_rcvd.code
        except OSError:
            pass
        return None

    def abort(self) -> None:
        """Close with a reset (nothing left for the server to flush)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def holds_connection(server: psutil.Process, client_port: int) -> bool:
    """Whether ``server`` still has the established TCP connection from ``client_port``."""
    return any(c.raddr and c.raddr.port == client_port and c.status == psutil.CONN_ESTABLISHED
               for c in server.net_connections(kind="tcp"))


def cpu_seconds(server: psutil.Process) -> float:
    times = server.cpu_times()
    return float(times.user + times.system)


def join_flood(server_pid: int, url: str, topic: str, *, origin: str | None = None,
               cookie: str | None = None) -> dict[str, Any]:
    """Join ``topic`` ``JOINS`` times on one socket that never reads; watch the server.

    Waits until the server closes the socket, or has been idle for a second with its RSS growth
    within the goal, or ``FLOOD_WINDOW`` passes. Returns the figures.
    """
    server = psutil.Process(server_pid)
    before = server.memory_info().rss
    reader = NeverReader(url, origin=origin, cookie=cookie)
    sent = 0
    for i in range(1, JOINS + 1):
        if not reader.send(json.dumps([str(i), str(i), topic, "phx_join", {}])):
            break
        sent = i
    started = time.monotonic()
    peak, closed, idle, cpu = 0, False, 0, cpu_seconds(server)
    while time.monotonic() - started < FLOOD_WINDOW:
        time.sleep(0.25)  # the sampling period: RSS, the connection and CPU are polled
        peak = max(peak, server.memory_info().rss - before)
        if not holds_connection(server, reader.port):
            closed = True
            break
        now = cpu_seconds(server)
        idle = idle + 1 if now - cpu < 0.01 else 0
        cpu = now
        if idle >= 4 and peak <= RSS_GOAL:
            break
    settled = time.monotonic() - started
    code = reader.close_code() if closed else None
    reader.abort()
    return {"joins_sent": sent, "rss_growth_mb": round(peak / MB, 1), "socket_closed": closed,
            "close_code": code, "seconds": round(settled, 1)}


def finished_request(client: httpx.Client, words: int) -> AsyncRequest:
    """A gateway request whose answer (``words`` tokens, unpaced) has been generated."""
    text = " ".join(f"w{i}" for i in range(words))
    answer = client.post("/v1/ai/async", json={
        "workflow": "demo-chat", "messages": [{"role": "user", "content": "flood"}],
        "metadata": scripted(text=text, tokens_per_second=0)})
    assert answer.status_code == 200, answer.text
    request = AsyncRequest.from_payload(answer.json())
    deadline = time.monotonic() + 30
    while client.get(f"/v1/requests/{request.channel_id}").json()["status"] in ("pending", "streaming",
                                                                               "ai_generated"):
        assert time.monotonic() < deadline, "the scripted answer did not finish"
        time.sleep(0.05)
    return request


def answer_frames(ws: ClientConnection, final_topic: str, replies: int, *, within: float = 60) -> int:
    """Read until ``replies`` join replies and then ``final_topic``'s terminal event arrived;
    returns how many channel events (not ``phx_*`` frames) were received."""
    events, got_replies = 0, 0
    deadline = time.monotonic() + within
    while True:
        frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if frame[3] == "phx_reply":
            got_replies += 1
        elif not frame[3].startswith("phx_"):
            events += 1
            if got_replies >= replies and frame[2] == final_topic and is_terminal(frame[3], frame[4]):
                return events


def spellings(topic: str, count: int) -> list[str]:
    """``count`` other spellings of a channel topic: its UUIDs' letters in other cases, in both the
    3-part topic and the 2-part fallback (the same channel for a case-insensitive comparison)."""
    _, project, channel = topic.split(":")

    def recased(form: str) -> Iterator[str]:
        letters = [i for i, ch in enumerate(form) if ch in "abcdef" and i > len("ai_response")]
        for mask in range(1, 1 << len(letters)):
            chars = list(form)
            for bit, at in enumerate(letters):
                if mask >> bit & 1:
                    chars[at] = chars[at].upper()
            yield "".join(chars)

    both = itertools.zip_longest(recased(f"ai_response:{project}:{channel}"), recased(f"ai_response:{channel}"))
    out = list(itertools.islice((s for pair in both for s in pair if s is not None), count))
    assert len(out) == count, f"{topic} has too few letters for {count} spellings"
    return out


def status_of(call: Callable[..., httpx.Response], *args: Any, **kwargs: Any) -> int | str:
    """The HTTP status of ``call(*args, **kwargs)``, or the name of the error it raised instead."""
    try:
        return call(*args, **kwargs).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def is_4xx(status: int | str) -> bool:
    return isinstance(status, int) and 400 <= status < 500


class Session:
    """One browser session on the relay (its own cookies), synchronous."""

    def __init__(self, relay: Demo) -> None:
        self.relay = relay
        self.http = httpx.Client(base_url=relay.url, timeout=20)
        assert self.http.get("/").status_code == 200

    def post(self, path: str, body: Any = None, *, content: bytes | None = None) -> httpx.Response:
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken") or "", "Referer": self.relay.url + "/"}
        if content is not None:
            return self.http.post(path, content=content, headers={**headers, **JSON})
        return self.http.post(path, json=body, headers=headers)

    def start(self, message: str) -> AsyncRequest:
        answer = self.post("/modelriver/start", {"message": message})
        assert answer.status_code == 200, answer.text
        return AsyncRequest.from_payload(answer.json())

    def reconnect(self, channel_id: str) -> AsyncRequest:
        answer = self.post("/modelriver/api/v1/ai/reconnect", {"channel_id": channel_id})
        assert answer.status_code == 200, answer.text
        return AsyncRequest.from_payload(answer.json())

    @property
    def cookie(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def session(relay_echo: Demo) -> Iterator[Callable[[], Session]]:
    """``session()``: a new browser session on the relay (closed after the test)."""
    made: list[Session] = []

    def new() -> Session:
        made.append(Session(relay_echo))
        return made[-1]

    yield new
    for one in made:
        one.close()


def socket_outcome(request: AsyncRequest, *, origin: str, cookie: str | None) -> str:
    """``refused`` (handshake or join) or ``joined``: a relay socket with ``request``'s token."""
    headers = {"Cookie": cookie} if cookie else None
    try:
        ws = connect(socket_endpoint(request.websocket_url, request.ws_token), origin=Origin(origin),
                     additional_headers=headers, open_timeout=10, compression=None)
    except InvalidStatus:
        return "refused"
    with ws:
        ws.send(json.dumps(["1", "1", request.topic, "phx_join", {}]))
        try:
            while True:
                frame = json.loads(ws.recv(timeout=10))
                if frame[3] == "phx_reply" and frame[1] == "1":
                    return "joined" if frame[4]["status"] == "ok" else "refused"
        except ConnectionClosed:
            return "refused"


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leak() -> Iterator[LeakServer]:
    """The attacker's server: records every URL model text made a browser fetch."""
    with LeakServer() as server:
        yield server


@pytest.fixture(scope="module")
def abuse_gateway(leak: LeakServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """This module's gateway, the relay's and the apps' upstream: its scripted workflows answer
    hostile Markdown (``support.leakserver.hostile_config``) unless a request scripts its text."""
    with hostile_gateway(leak, tmp_path_factory.mktemp("abuse_gateway")) as gw:
        yield gw


def sibling_conftest(area: str) -> ModuleType:
    """``tests/<area>/conftest.py`` loaded as a plain module, for its app launchers."""
    path = Path(__file__).resolve().parents[1] / area / "conftest.py"
    spec = importlib.util.spec_from_file_location(f"abuse_{area}_conftest", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # (its dataclasses look it up)
    spec.loader.exec_module(module)
    return module


STREAMLIT_APP = Path(__file__).resolve().parent / "apps" / "abuse_app.py"


class Apps:
    """The Streamlit app (``apps/abuse_app.py``) and the Gradio demo on the module's gateway, booting in the
    background from the module's first test on (both take seconds to import)."""

    def __init__(self, gateway: Gateway) -> None:
        streamlit, gradio = sibling_conftest("streamlit"), sibling_conftest("gradio")
        self._gradio_url, self._gradio_proc = gradio.launch_demo(Upstream("modelriver", gateway), {})
        self._wait_gradio = gradio.wait_demo
        self._streamlit: list[Any] = []
        self._thread = threading.Thread(target=lambda: self._streamlit.append(
            streamlit.start_streamlit(STREAMLIT_APP, gateway)), daemon=True)
        self._thread.start()

    def streamlit_url(self) -> str:
        self._thread.join(90)
        assert self._streamlit, "streamlit run did not start (see the test's output)"
        return str(self._streamlit[0].url)

    def gradio_url(self) -> str:
        return str(self._wait_gradio(self._gradio_url, self._gradio_proc).url)

    def gradio_output(self) -> str:
        return self._gradio_proc.output

    def stop(self) -> None:
        self._gradio_proc.stop()
        self._thread.join(90)
        for app in self._streamlit:
            process: Process = app.process
            process.stop()


@pytest.fixture(scope="module", autouse=True)
def apps(abuse_gateway: Gateway) -> Iterator[Apps]:
    started = Apps(abuse_gateway)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def relay_echo(abuse_gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The Django demo on Daphne, at its default settings; every answer echoes its prompt, unpaced."""
    db = tmp_path_factory.mktemp("abuse_relay") / "db.sqlite3"
    env = demo_env(abuse_gateway, db, DJANGO_SECRET_KEY="abuse-" + uuid.uuid4().hex,
                   **scripted_env(text="{prompt}", tokens_per_second=0, first_token_ms=0))
    migrate(env)
    server = start_demo(env)
    yield server
    server.stop()


@pytest.fixture
def api(abuse_gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=abuse_gateway.url, timeout=20,
                      headers={"Authorization": f"Bearer {abuse_gateway.api_key}"}) as client:
        yield client


# -- 1. join flood ---------------------------------------------------------------------------------


def test_join_flood_on_the_gateway_stays_bounded(gateway_factory: Callable[..., Gateway],
                                                 figures: Callable[..., None]) -> None:
    gw = gateway_factory()  # its own process: its RSS is this test's alone
    with httpx.Client(base_url=gw.url, timeout=20, headers={"Authorization": f"Bearer {gw.api_key}"}) as client:
        request = finished_request(client, FLOOD_WORDS)
    got = join_flood(gw.process.popen.pid, request.socket_url, request.topic)
    figures(server="gateway", answer_tokens=FLOOD_WORDS, **got)
    assert got["socket_closed"] or got["rss_growth_mb"] * MB <= RSS_GOAL, got


def test_join_flood_on_daphne_stays_bounded(relay_echo: Demo, session: Callable[[], Session],
                                            figures: Callable[..., None]) -> None:
    browser = session()
    prompt = " ".join(f"f{i}" for i in range(FLOOD_WORDS))
    request = browser.start(prompt)
    with connect(request.socket_url, origin=Origin(relay_echo.url), max_size=None, compression=None,
                 additional_headers={"Cookie": browser.cookie}, open_timeout=10) as ws:
        # the whole answer once: it is finished and buffered
        ws.send(json.dumps(["1", "1", request.topic, "phx_join", {}]))
        tokens = 0
        while True:
            frame = json.loads(ws.recv(timeout=30))
            tokens += frame[3] == "tokens"
            if frame[2] == request.topic and is_terminal(frame[3], frame[4]):
                break
    fresh = browser.reconnect(request.channel_id)  # a new token (the last one's socket may linger)
    got = join_flood(relay_echo.process.popen.pid, fresh.socket_url, fresh.topic, origin=relay_echo.url,
                     cookie=browser.cookie)
    figures(server="Daphne relay", answer_tokens=tokens, **got)
    assert tokens >= FLOOD_WORDS
    assert got["socket_closed"] or got["rss_growth_mb"] * MB <= RSS_GOAL, got


# -- 2. alias topics -------------------------------------------------------------------------------


def test_alias_joins_do_not_multiply_an_answer(api: httpx.Client, figures: Callable[..., None]) -> None:
    one = finished_request(api, ALIAS_WORDS)
    with connect(one.socket_url, max_size=None, compression=None, open_timeout=10) as ws:
        ws.send(json.dumps(["1", "1", one.topic, "phx_join", {}]))
        single = answer_frames(ws, one.topic, 1)

    many = finished_request(api, ALIAS_WORDS)
    aliases = spellings(many.topic, ALIASES)
    assert many.topic not in aliases and len(set(aliases)) == ALIASES
    started = time.monotonic()
    with connect(many.socket_url, max_size=None, compression=None, open_timeout=10) as ws:
        for ref, topic in enumerate([*aliases, many.topic], 1):  # its own spelling last
            ws.send(json.dumps([str(ref), str(ref), topic, "phx_join", {}]))
        frames = answer_frames(ws, many.topic, ALIASES + 1)
    figures(aliases=ALIASES, frames_one_join=single, frames_alias_joins=frames,
            ratio=round(frames / single, 1), seconds=round(time.monotonic() - started, 1))
    assert frames <= 3 * single


# -- 3. lone surrogates ----------------------------------------------------------------------------

SURROGATE = "x \ud800 y"
"""A lone surrogate: ``json.dumps`` writes it as the escape ``\\ud800`` (ASCII), valid JSON text."""




def test_lone_surrogates_are_refused_and_the_log_keeps_serving(
        gateway_factory: Callable[..., Gateway], session: Callable[[], Session],
        figures: Callable[..., None]) -> None:
    gw = gateway_factory()  # its own: the probe's surrogate broke the log for everyone until expiry
    codes: dict[str, Any] = {}
    with httpx.Client(base_url=gw.url, timeout=20, headers={"Authorization": f"Bearer {gw.api_key}"}) as client:
        body = {"workflow": "demo-chat", "messages": [{"role": "user", "content": SURROGATE}],
                "metadata": scripted(text="{prompt}", tokens_per_second=0)}  # the answer echoes it
        codes["gateway_create"] = status_of(client.post, "/v1/ai/async", content=json.dumps(body).encode(),
                                            headers=JSON)

        # A surrogate in a socket frame's ref: the socket closes cleanly, or keeps answering.
        normal = finished_request(client, 5)
        with connect(normal.socket_url, compression=None, open_timeout=10) as ws:
            ws.send(json.dumps(["1", SURROGATE, "phoenix", "heartbeat", {}]))
            ws.send('["1", "ok", "phoenix", "heartbeat", {}]')
            try:
                while True:
                    frame = json.loads(ws.recv(timeout=5))
                    if frame[1] == "ok":
                        codes["gateway_socket"] = "answers"
                        break
            except ConnectionClosed:
                codes["gateway_socket"] = f"closed {ws.close_code}"
            except TimeoutError:
                codes["gateway_socket"] = "stalled"

        for path in ("/", "/v1/requests", f"/v1/requests/{normal.channel_id}"):
            codes[f"gateway GET {path.replace(normal.channel_id, '<id>')}"] = status_of(client.get, path)

    relay = session()
    codes["relay_start"] = status_of(relay.post, "/modelriver/start",
                                     content=json.dumps({"message": SURROGATE}).encode())
    figures(**codes)
    assert is_4xx(codes["gateway_create"]) and is_4xx(codes["relay_start"]), codes
    assert codes["gateway_socket"] == "answers" or codes["gateway_socket"].startswith("closed 1007"), codes
    assert all(code == 200 for name, code in codes.items() if " GET " in name), codes


# -- 5. starts per session -------------------------------------------------------------------------


def test_one_session_cannot_start_without_limit(session: Callable[[], Session],
                                                figures: Callable[..., None]) -> None:
    browser = session()
    accepted, refused, retry_after = 0, None, None
    started = time.monotonic()
    while time.monotonic() - started < START_WINDOW and accepted < START_CAP:
        answer = browser.post("/modelriver/start", {"message": f"start {accepted}"})
        if answer.status_code == 429:
            refused, retry_after = answer.status_code, answer.headers.get("Retry-After")
            break
        assert answer.status_code == 200, answer.text
        accepted += 1
    figures(accepted=accepted, seconds=round(time.monotonic() - started, 1), then=refused,
            retry_after=retry_after)
    assert refused == 429 and retry_after is not None and int(retry_after) > 0


# -- 6. smaller ------------------------------------------------------------------------------------


def test_a_relay_token_works_only_with_its_own_session(relay_echo: Demo, session: Callable[[], Session],
                                                       figures: Callable[..., None]) -> None:
    alice, bob = session(), session()
    bob.start("bob's own")  # bob has a session of his own
    outcomes = {}
    for who, cookie in (("another session", bob.cookie), ("no session", None), ("its own session", alice.cookie)):
        request = alice.start(f"alice's, tried with {who}")
        cookie = alice.cookie if who == "its own session" else cookie
        outcomes[who] = socket_outcome(request, origin=relay_echo.url, cookie=cookie)
    figures(**outcomes)
    assert outcomes == {"another session": "refused", "no session": "refused", "its own session": "joined"}


def test_malformed_input_is_a_4xx_and_the_html_log_needs_the_key(
        abuse_gateway: Gateway, api: httpx.Client, session: Callable[[], Session],
        figures: Callable[..., None]) -> None:
    codes: dict[str, int | str] = {}
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    browser = session()
    codes["relay start, nested 100,000 deep"] = status_of(browser.post, "/modelriver/start", content=deep)
    codes["relay reconnect, nested 100,000 deep"] = status_of(browser.post, "/modelriver/api/v1/ai/reconnect",
                                                              content=deep)
    huge = {"workflow": "demo-chat", "messages": [{"role": "user", "content": "n"}],
            "metadata": {"scripted": {"tokens_per_second": 10**3999}}}  # 4,000 digits
    codes["gateway create, 4,000-digit number"] = status_of(
        api.post, "/v1/ai/async", content=json.dumps(huge).encode(), headers=JSON)
    with httpx.Client(base_url=abuse_gateway.url, timeout=20) as anonymous:
        codes["gateway HTML log without the key"] = status_of(anonymous.get, "/")
    codes["gateway HTML log with the key"] = status_of(api.get, "/")
    figures(**codes)
    assert all(is_4xx(codes[name]) for name in codes if "nested" in name or "digit" in name), codes
    assert codes["gateway HTML log without the key"] in (401, 403), codes
    assert codes["gateway HTML log with the key"] == 200, codes


# -- 4. model Markdown in the browser --------------------------------------------------------------

IMAGES_SETTLED = """() => {
  const images = [];
  const walk = (root) => {
    root.querySelectorAll("img").forEach((img) => images.push(img));
    root.querySelectorAll("*").forEach((el) => el.shadowRoot && walk(el.shadowRoot));
  };
  walk(document);
  return images.every((img) => img.complete);
}"""
"""Every image of the page, shadow roots included, loaded or failed: its fetch, if any, is done."""


def structured_text(leak: LeakServer) -> str:
    """A ``demo-structured`` answer (valid for its schema) with images in every text field."""
    return json.dumps({
        "reply": f"A structured reply ![s]({leak.url('structured-reply')})",
        "summary": f"![s]({leak.url('structured-summary')})", "sentiment": "neutral", "confidence": 0.5,
        "topics": [f"![t]({leak.url('structured-topic')})"],
        "action_items": [{"task": f"![a]({leak.url('structured-task')})", "priority": "low"}],
    })


def leak_tags(hits: list[str]) -> list[str]:
    """``/leak/<tag>?d=...`` paths as their tags (where the URL was put), sorted, repeated per fetch."""
    return sorted(hit.split("?", 1)[0].rsplit("/", 1)[-1] for hit in hits)


def test_streamlit_fetches_nothing_model_markdown_points_at(
        apps: Apps, chromium: Any, leak: LeakServer, figures: Callable[..., None]) -> None:
    url = apps.streamlit_url()
    started = time.monotonic()
    structured = ["demo-structured", {"scripted": {"text": structured_text(leak)}}]
    cases = {  # per mode, [workflow, metadata]: the gateway's hostile_config scripts the texts
        "server": [["demo-tools", {}], ["demo-failover", {}], ["demo-error", {}], structured],
        "component": [["demo-tools", {}], ["demo-error", {}]],
    }
    before = len(leak.hits)
    context = chromium.new_context(viewport={"width": 1200, "height": 3000})
    requested: list[str] = []
    context.on("request", lambda r: requested.append(r.url) if r.url.startswith(leak.base) else None)
    pages = {}
    for mode, calls in cases.items():  # both pages at once: a session each
        pages[mode] = page = context.new_page()
        page.goto(f"{url}/?" + urlencode({"mode": mode, "cases": json.dumps(calls)}))
    shown = {}
    for mode, page in pages.items():
        try:
            page.locator('[class*="st-key-returned-all"]').wait_for(timeout=90_000)
        except Exception as exc:
            raise AssertionError(f"{mode} mode: not every call answered:\n{page.locator('body').inner_text()}"
                                 ) from exc
        page.wait_for_function(IMAGES_SETTLED, timeout=30_000)
        shown[mode] = page.locator("body").inner_text()
    context.close()
    hits = leak_tags(leak.hits[before:])
    figures(app="Streamlit", cases=sum(map(len, cases.values())), remote_fetches=len(hits),
            browser_requests=len(requested),
            fetched=",".join(sorted(set(hits))) or "-", seconds=round(time.monotonic() - started, 1))
    assert all("Intro" in text for text in shown.values()), "the hostile answer was not shown"
    assert hits == [] and requested == []


def gradio_send(context: Any, url: str, workflow: str, metadata: dict[str, Any], prompt: str) -> Any:
    """A new page of the Gradio demo that sent ``prompt`` to ``workflow`` with ``metadata``."""
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(url)
    box = page.locator('textarea[data-testid="textbox"]').first
    expect(box).to_be_editable(timeout=60_000)
    page.get_by_text("Additional inputs").click()
    page.get_by_label("Workflow").click()
    page.locator(f'li[role="option"][aria-label="{workflow}"]').click()
    page.get_by_label("Request metadata (JSON)").fill(json.dumps(metadata))
    box.fill(prompt)
    box.press("Enter")
    return page


def test_gradio_fetches_nothing_model_markdown_points_at(
        apps: Apps, chromium: Any, leak: LeakServer, figures: Callable[..., None]) -> None:
    from playwright.sync_api import expect

    url = apps.gradio_url()
    started = time.monotonic()
    cases = [("demo-tools", {}), ("demo-failover", {}), ("demo-error", {}),  # tools: its name, the answer
             ("demo-structured", {"scripted": {"text": structured_text(leak)}})]
    before = len(leak.hits)
    context = chromium.new_context(viewport={"width": 1280, "height": 1400})
    context.set_default_timeout(60_000)
    requested: list[str] = []
    context.on("request", lambda r: requested.append(r.url) if r.url.startswith(leak.base) else None)
    # every case at once: a page (a Gradio session) each
    pages = [gradio_send(context, url, workflow, metadata, f"abuse {index}")
             for index, (workflow, metadata) in enumerate(cases)]
    texts = []
    for page in pages:
        expect(page.locator('.message-wrap [data-testid="bot"]').first).to_be_visible(timeout=60_000)
        expect(page.locator("button.submit-button")).to_be_visible(timeout=60_000)
        expect(page.locator(".message-wrap .loading-spinner")).to_have_count(0, timeout=60_000)
        page.wait_for_function(IMAGES_SETTLED, timeout=30_000)
        texts.append(page.locator(".message-wrap").inner_text())
    context.close()
    hits = leak_tags(leak.hits[before:])
    figures(app="Gradio", cases=len(cases), remote_fetches=len(hits), browser_requests=len(requested),
            fetched=",".join(sorted(set(hits))) or "-", seconds=round(time.monotonic() - started, 1))
    assert "Intro" in texts[0], "the hostile answer was not shown"
    assert hits == [] and requested == []


def test_gradio_refuses_a_lone_surrogate_with_a_clear_error(apps: Apps, figures: Callable[..., None]) -> None:
    """Through Gradio's HTTP API with the surrogate escaped in JSON (a browser sends U+FFFD
    instead, and gradio_client cannot encode it): a clear error, and the app keeps serving."""
    shown = {}
    with httpx.Client(base_url=apps.gradio_url(), timeout=60) as http:
        for name, message in (("surrogate", SURROGATE), ("then", "still there?")):
            try:
                call = http.post("/gradio_api/call/chat", headers=JSON,
                                 content=json.dumps({"data": [message, "demo-chat", "{}"]}).encode())
                events = http.get(f"/gradio_api/call/chat/{call.json()['event_id']}").text  # server-sent
                shown[name] = " ".join(events.split())
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                shown[name] = f"{type(exc).__name__}: {exc}"
    if not all("event: " in text for text in shown.values()):
        print(apps.gradio_output())
    figures(app="Gradio", prompt="a lone surrogate", shown=shown["surrogate"][-120:],
            then="answered" if "event: complete" in shown["then"] else shown["then"][-80:])
    raw = ("codec", "surrogates not allowed", "Traceback", "UnicodeEncodeError")
    assert "event: error" in shown["surrogate"] and not any(word in shown["surrogate"] for word in raw), shown
    assert "event: complete" in shown["then"], shown
