"""Failover continues the answer by default (issue 18), on real gateway processes: the channel says
``reset: false`` with ``continued_from``, the visible text never shrinks, and the final content is
the text the user saw; ``failover = "restart"`` resets as before; the next provider is handed the
partial answer (a scripted one continues its own answer, an OpenAI-compatible one gets the partial
answer as the assistant's turn and the instruction to continue)."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelriver.api import ModelRiver
from modelriver.devserver.providers import CONTINUE_INSTRUCTION
from modelriver.events import Status, Token
from modelriver.realm import RealmClient
from modelriver.state import RequestState
from support import Gateway, free_port
from tests.core.realm_support import RESTART_CONFIG

pytestmark = pytest.mark.timeout(60)

FAST = {"scripted": {"tokens_per_second": 0, "first_token_ms": 0}}


def follow(gateway: Gateway, workflow: str, prompt: str) -> tuple[RequestState, list[Any], list[str]]:
    """Stream a request, folding it as a view does; returns the state, the events and the visible
    text after each event."""
    events: list[Any] = []
    visible: list[str] = []
    with ModelRiver(api_key=gateway.api_key, api_base=gateway.url, max_retries=0) as client, \
            client.stream(workflow, prompt, metadata=FAST) as stream:
        state = RequestState(stream.request.channel_id)
        for event in stream:
            state.feed(event)
            events.append(event)
            visible.append(state.text)
    return state, events, visible


def test_demo_failover_continues_and_the_final_is_what_was_shown(gateway: Gateway) -> None:
    state, events, visible = follow(gateway, "demo-failover", "Keep going after the failure please")
    response = state.response
    assert response is not None and response.status == "success", response
    [failover] = [e for e in events if isinstance(e, Status) and e.status == "failover"]
    assert failover.payload["reset"] is False and state.attempt == 0
    at = events.index(failover)
    before = [e for e in events[:at] if isinstance(e, Token)]
    assert len(before) == 5 and failover.payload["continued_from"] == before[-1].seq
    assert all(len(b) >= len(a) and b.startswith(a) for a, b in itertools.pairwise(visible))
    assert response.content == state.text == "".join(e.data for e in events if isinstance(e, Token))
    after = "".join(e.data for e in events[at:] if isinstance(e, Token))
    assert after and response.content == "".join(e.data for e in before) + after  # continued, not restarted


def test_failover_restart_resets_as_before(gateway_factory: Callable[..., Gateway]) -> None:
    state, events, visible = follow(gateway_factory("--config", str(RESTART_CONFIG)), "demo-failover", "restart")
    [failover] = [e for e in events if isinstance(e, Status) and e.status == "failover"]
    assert failover.payload["reset"] is True and "continued_from" not in failover.payload
    at = events.index(failover)
    assert visible[at] == "" and state.attempt == 1
    assert state.response is not None
    assert state.response.content == state.text == "".join(e.data for e in events[at:] if isinstance(e, Token))


async def test_a_realm_stream_goes_on_through_a_continuing_failover(
    gateway_factory: Callable[..., Gateway]
) -> None:
    port = free_port()
    gateway_factory("--realm-port", str(port), "--realm-no-auth")
    async with RealmClient(f"ws://127.0.0.1:{port}") as client:
        tokens = [t async for t in client.generate_stream("continue over realm", model="demo-failover",
                                                          max_tokens=None)]
        whole = await client.generate("continue over realm", model="demo-failover", max_tokens=None)
    assert len(tokens) > 10 and "".join(tokens) == whole.text
    assert whole.text.startswith('You said: "continue over realm"')


class _Completions:
    """An OpenAI-compatible ``/v1/chat/completions`` on loopback that streams ``reply`` (SSE) and
    keeps every request body it got."""

    def __init__(self, reply: str) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                chunks = [{"choices": [{"delta": {"content": piece}}]} for piece in reply.split("|")]
                body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(body.encode())))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def completions() -> Iterator[_Completions]:
    server = _Completions(" of the answer,| continued| by the model.")
    yield server
    server.close()


def test_an_openai_compatible_provider_is_handed_the_partial_answer(
    gateway_factory: Callable[..., Gateway], completions: _Completions, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[providers.flaky]
text = "The first part of a long answer that fails"
fail_after = 3
error = "scripted failure"
first_token_ms = 0
tokens_per_second = 0

[providers.llm]
type = "openai"
base_url = "{completions.url}"
model = "m"

[workflows.continue-on-llm]
providers = ["flaky", "llm"]
""")
    state, _, _ = follow(gateway_factory("--config", str(config)), "continue-on-llm", "hi")
    assert state.response is not None and state.response.status == "success", state.response
    assert state.response.content == state.text == "The first part of the answer, continued by the model."
    [body] = completions.bodies
    assert body["messages"][-2:] == [{"role": "assistant", "content": "The first part"},
                                     {"role": "user", "content": CONTINUE_INSTRUCTION}]
    assert body["messages"][0] == {"role": "user", "content": "hi"}
