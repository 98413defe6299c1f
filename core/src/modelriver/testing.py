"""Test your app against a real ModelRiver-compatible gateway: a pytest plugin and its helpers.

Installing ``modelriver[gateway]`` registers this module as a pytest plugin (entry point
``pytest11``, name ``modelriver``). It does nothing until a test asks for its fixture::

    def test_my_chat_view(modelriver_gateway):
        modelriver_gateway.script("support-bot", reply="Hello from the test")
        ...  # your app reads MODELRIVER_API_BASE / MODELRIVER_API_KEY and talks to the gateway
        [log] = modelriver_gateway.requests()
        assert log["workflow"] == "support-bot" and log["status"] == "success"

``modelriver_gateway`` runs the embedded gateway (``modelriver dev``: the real HTTP API,
Phoenix socket, webhooks and callbacks) in the test's process, on a free loopback port, on a
thread of its own, and stops it after the test. It sets ``MODELRIVER_API_BASE``,
``MODELRIVER_API_KEY`` and ``MODELRIVER_WEBHOOK_SECRET`` (and unsets ``MODELRIVER_UPSTREAM``)
for the test (``monkeypatch``), so code
that reads the environment (``modelriver.upstream_from_env``, the integrations' defaults) finds
it. Settings read elsewhere (a Django ``MODELRIVER`` dict) take ``url``/``api_key`` from it.

Scripting (each call applies to the requests started after it):

* ``script(workflow, reply="...", **settings)``: the workflow's answer and any setting of a
  scripted provider (``tokens_per_second``, ``first_token_ms``, ``tool_call``, ``usage``,
  ``model``, ``format``, ``invalid_output``...; see docs/gateway.md). An unknown workflow is
  created, so your app's own workflow names work. The built-in ``demo-*`` workflows are there
  too; tokens come fast (``tokens_per_second=2000``, no first-token delay) unless scripted.
* faults: ``fail(workflow, error=..., after=N)`` (the provider fails after N tokens; with a
  failover workflow the next provider answers), ``hang(workflow, after=N)``,
  ``drop_socket(workflow, after=N)`` (every socket of the channel is closed once, mid-stream).
* the request log: ``requests()`` (oldest first), ``request(channel_id)``,
  ``wait_for(channel_id)`` (until the request ended).
* webhooks: ``webhook_inbox()`` gives a loopback endpoint that verifies each signed webhook
  (``inbox.url`` as the request's ``webhook_url``, ``inbox.get()`` for the next one).

Outside pytest, ``EmbeddedGateway`` is a context manager (``with EmbeddedGateway() as gw:``),
for a gateway built from your own ``GatewayConfig`` (``load_config("gateway.toml", ...)``).
"""

from __future__ import annotations

import asyncio
import json
import queue
import secrets
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from modelriver._closing import Closing
from modelriver.exceptions import WebhookVerificationError
from modelriver.settings import ENV_API_BASE, ENV_API_KEY, ENV_WEBHOOK_SECRET
from modelriver.webhooks import verify_signature

if TYPE_CHECKING:
    from modelriver.devserver.config import GatewayConfig
    from modelriver.devserver.gateway import Gateway

__all__ = ["EmbeddedGateway", "Received", "WebhookInbox", "modelriver_gateway"]

FAST_TOKENS_PER_SECOND = 2000.0
"""The pace of the default gateway's scripted providers (and no first-token delay)."""

_T = TypeVar("_T")


class EmbeddedGateway:
    """The embedded gateway on a thread of this process, on a free loopback port.

    Args:
        config: the gateway's configuration; None: the built-in workflows at a fast pace, with
            a generated API key and webhook secret.
        host: the interface to bind.

    Attributes:
        url: the API base URL (``http://127.0.0.1:PORT``), once started.
        api_key: the key clients must send.
        webhook_secret: the secret webhooks are signed with.
    """

    def __init__(self, config: GatewayConfig | None = None, *, host: str = "127.0.0.1") -> None:
        if config is None:
            config = _fast(_default_config())
        self.config = config
        self.api_key = config.api_key
        self.webhook_secret = config.webhook_secret
        self.url = ""
        self._host = host
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._failure: BaseException | None = None
        self._inboxes: list[WebhookInbox] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, *, within: float = 30.0) -> EmbeddedGateway:
        """Start serving; returns once connections are accepted.

        Raises:
            RuntimeError: the gateway did not start (the cause is chained).
        """
        from modelriver.devserver.server import _Server, uvicorn_config

        def on_ready(url: str) -> None:
            self.url = url
            self._loop = asyncio.get_running_loop()
            self._ready.set()

        self._server = _Server(uvicorn_config(self.config, host=self._host, port=0), on_ready)
        self._thread = threading.Thread(target=self._serve, name="modelriver-testing-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(within) or self._failure is not None:
            self.close()
            raise RuntimeError("the embedded gateway did not start") from self._failure
        return self

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve())
        except BaseException as exc:  # SystemExit when uvicorn cannot start: reported by start()
            self._failure = exc
        finally:
            self._ready.set()

    def close(self) -> None:
        """Stop the gateway (open sockets are closed) and every webhook inbox. Idempotent."""
        for inbox in self._inboxes:
            inbox.close()
        self._inboxes.clear()
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(30)
            self._thread = None

    def __enter__(self) -> EmbeddedGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def env(self) -> dict[str, str]:
        """``MODELRIVER_API_BASE``, ``MODELRIVER_API_KEY`` and ``MODELRIVER_WEBHOOK_SECRET``."""
        return {ENV_API_BASE: self.url, ENV_API_KEY: self.api_key, ENV_WEBHOOK_SECRET: self.webhook_secret}

    # -- scripting -------------------------------------------------------------------------------

    def script(self, workflow: str, reply: str | None = None, **settings: Any) -> None:
        """Script ``workflow``'s answers from now on (it is created when the gateway lacks it).

        Args:
            workflow: the workflow name your app sends.
            reply: the answer's text (``{prompt}`` stands for the last user message); every
                scripted provider of the workflow gives it.
            settings: scripted-provider settings for the workflow's first scripted provider,
                e.g. ``tokens_per_second``, ``tool_call``, ``fail_after``, ``error``.

        Raises:
            ValueError: an unknown or invalid setting (``ConfigError``), or a workflow without
                a scripted provider.
        """
        from modelriver.devserver.config import ScriptedProviderConfig, WorkflowConfig, parse_config

        if reply is not None:
            settings["text"] = reply
        # The TOML parser checks each setting as a config file's [providers.x] table would.
        checked = parse_config({"providers": {"check": settings}}, base_dir=Path.cwd(), api_key="x")
        values = {f.name: getattr(checked.providers["check"], f.name) for f in fields(ScriptedProviderConfig)
                  if f.name in settings}

        def change(gateway: Gateway) -> None:
            config = gateway.config
            flow = config.workflows.get(workflow) or WorkflowConfig(workflow, ("demo-chat",))
            names = list(flow.providers)
            scripted = [i for i, name in enumerate(names)
                        if isinstance(config.providers[name], ScriptedProviderConfig)]
            if not scripted:
                raise ValueError(f"workflow {workflow!r} has no scripted provider to script")
            providers = dict(config.providers)
            for i in scripted:
                changes = values if i == scripted[0] else {k: v for k, v in values.items() if k == "text"}
                if changes:
                    key = names[i] if names[i].startswith(f"{workflow}/") else f"{workflow}/{names[i]}"
                    providers[key] = replace(config.providers[names[i]], **changes)
                    names[i] = key  # the workflow's own copy; the events keep the provider's name
            workflows = {**config.workflows, workflow: replace(flow, providers=tuple(names))}
            gateway.config = replace(config, providers=providers, workflows=workflows)

        self._call(change)

    def fail(self, workflow: str, error: str = "scripted provider failure", *, after: int = 0) -> None:
        """Make the workflow's first scripted provider fail after ``after`` tokens."""
        if after:
            self.script(workflow, error=error, fail_after=after)
        else:
            self.script(workflow, error=error)

    def hang(self, workflow: str, *, after: int = 0) -> None:
        """Make the workflow's first scripted provider go silent after ``after`` tokens."""
        self.script(workflow, hang=True, fail_after=after)

    def drop_socket(self, workflow: str, *, after: int = 1) -> None:
        """Close every socket of the workflow's requests once, after ``after`` tokens."""
        self.script(workflow, drop_socket_after=after)

    # -- the request log -------------------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        """The request log (docs/gateway.md's ``RequestLog`` records), oldest first."""
        return self._call(lambda gateway: [run.to_log() for run in reversed(gateway.store.newest_first())])

    def request(self, channel_id: str) -> dict[str, Any]:
        """One request's log record.

        Raises:
            KeyError: the gateway has no such request.
        """
        def log(gateway: Gateway) -> dict[str, Any]:
            run = gateway.store.get(channel_id)
            if run is None:
                raise KeyError(channel_id)
            return run.to_log()

        return self._call(log)

    def wait_for(self, channel_id: str, *, within: float = 10.0) -> dict[str, Any]:
        """The request's log record once it ended (completed, failed or cancelled).

        Raises:
            TimeoutError: it did not end within ``within`` seconds.
        """
        async def ended(gateway: Gateway) -> dict[str, Any]:
            run = gateway.store.get(channel_id)
            if run is None:
                raise KeyError(channel_id)
            async with asyncio.timeout(within):
                while not run.ended:  # noqa: ASYNC110  (a run has no "ended" event to await: poll it)
                    await asyncio.sleep(0.01)
            return run.to_log()

        return self._call_async(ended, within + 5)

    # -- webhooks ----------------------------------------------------------------------------------

    def webhook_inbox(self, **options: Any) -> WebhookInbox:
        """A loopback webhook endpoint checking this gateway's signatures (closed with it).

        Args:
            options: ``WebhookInbox`` options (``statuses``, ``default_status``, ``before_answer``).
        """
        inbox = WebhookInbox(self.webhook_secret, **options)
        self._inboxes.append(inbox)
        return inbox

    # -- the gateway's own thread ------------------------------------------------------------------

    def _gateway(self) -> Gateway:
        gateway: Gateway = self._server.config.app.state.gateway
        return gateway

    def _call(self, fn: Callable[[Gateway], _T]) -> _T:
        """Run ``fn(gateway)`` on the gateway's loop (its state is that loop's alone)."""
        async def run(gateway: Gateway) -> _T:
            return fn(gateway)

        return self._call_async(run, 10.0)

    def _call_async(self, fn: Callable[[Gateway], Coroutine[Any, Any, _T]], within: float) -> _T:
        if self._loop is None or self._thread is None:
            raise RuntimeError("the embedded gateway is not running")
        return asyncio.run_coroutine_threadsafe(fn(self._gateway()), self._loop).result(within)


def _default_config() -> GatewayConfig:
    from modelriver.devserver.config import GatewayConfig

    return GatewayConfig(api_key=f"mr_test_{secrets.token_hex(12)}", webhook_secret=f"whsec_{secrets.token_hex(8)}")


def _fast(config: GatewayConfig) -> GatewayConfig:
    from modelriver.devserver.config import ScriptedProviderConfig

    providers = {
        name: replace(p, tokens_per_second=FAST_TOKENS_PER_SECOND, first_token_ms=0.0)
        if isinstance(p, ScriptedProviderConfig) else p
        for name, p in config.providers.items()
    }
    return replace(config, providers=providers)


@pytest.fixture
def modelriver_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedGateway]:
    """A real embedded gateway for this test, with the ``MODELRIVER_*`` environment pointing at it."""
    with EmbeddedGateway() as gateway:
        for name, value in gateway.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("MODELRIVER_UPSTREAM", raising=False)  # ModelRiver's API, not Realm
        yield gateway


# -- webhooks ----------------------------------------------------------------------------------------


@dataclass
class Received:
    """One HTTP request the inbox got, and what it made of it."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    verified: bool
    error: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookInbox(Closing):
    """A webhook endpoint on loopback, in a thread: ``url`` to send webhooks to.

    Each POST is verified with ``verify_signature`` (401 when it fails, as a real backend
    should); verified ones are answered with the next status of ``statuses`` (then
    ``default_status``).

    Args:
        secret: the webhook secret.
        statuses: statuses to answer verified webhooks with, in order; ``default_status`` after them.
        default_status: the answer once ``statuses`` is used up.
        before_answer: called with the parsed body of a verified webhook before it is answered
            (on the server's thread), e.g. to call back first, as a fast backend may.
    """

    secret: str
    statuses: list[int] = field(default_factory=list)
    default_status: int = 200
    before_answer: Callable[[Any], None] | None = None
    received: queue.Queue[Received] = field(default_factory=queue.Queue)
    log: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        inbox = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                error = None
                try:
                    verify_signature(body, headers.get("x-modelriver-signature"),
                                     headers.get("x-modelriver-timestamp"), inbox.secret)
                except WebhookVerificationError as exc:
                    error = str(exc)
                with lock:
                    if error is not None:
                        status = 401
                    elif inbox.statuses:
                        status = inbox.statuses.pop(0)
                    else:
                        status = inbox.default_status
                if error is None and inbox.before_answer is not None:
                    inbox.before_answer(json.loads(body))
                answer = json.dumps({"ok": status < 300}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                item = Received(self.path, headers, body, status, error is None, error)
                inbox.log.append(item)
                inbox.received.put(item)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/modelriver"

    def close(self) -> None:
        """Stop the endpoint. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()

    def get(self, *, within: float = 10.0) -> Received:
        """The next webhook received (blocking).

        Raises:
            TimeoutError: none arrived within ``within`` seconds.
        """
        try:
            return self.received.get(timeout=within)
        except queue.Empty:
            raise TimeoutError(f"no webhook within {within}s") from None

    async def aget(self, *, within: float = 10.0) -> Received:
        """``get`` for async tests."""
        return await asyncio.to_thread(self.get, within=within)
