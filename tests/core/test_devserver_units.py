"""Unit tests of the gateway's pure logic (the black-box gateway tests live elsewhere)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from modelriver.devserver.config import (
    BUILTIN_WORKFLOWS,
    ConfigError,
    GatewayConfig,
    OpenAIProviderConfig,
    ScriptedProviderConfig,
    ServerConfig,
    load_config,
    parse_overrides,
)
from modelriver.devserver.http import ApiError, parse_async_body
from modelriver.devserver.providers import (
    GenerationRequest,
    ProviderError,
    ScriptedProvider,
    TextDelta,
    ToolCallChunk,
    Usage,
    split_tokens,
)
from modelriver.devserver.tokens import (
    LiveSockets,
    TokenIssuer,
    join_refusal,
    parse_topic,
    token_usable,
)
from modelriver.devserver.webhook_delivery import retry_delays

PROJECT = "11111111-1111-4111-8111-111111111111"
CHANNEL = "22222222-2222-4222-8222-222222222222"
OTHER = "33333333-3333-4333-8333-333333333333"
KEY = "mr_test_unit_key_0123"
SECRET = b"unit-test-hmac-key-of-32-bytes!!"


# -- config --------------------------------------------------------------------------------------


def test_builtin_workflows_are_the_six_demos() -> None:
    assert set(BUILTIN_WORKFLOWS) == {"demo-chat", "demo-structured", "demo-events", "demo-failover",
                                      "demo-error", "demo-tools"}
    config = GatewayConfig(api_key=KEY)
    assert config.workflows["demo-events"].events == ("webhook_received",)
    assert KEY not in repr(config)


def test_load_config_adds_workflows_and_reads_schema_files(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "answer.json").write_text(json.dumps({"type": "object"}))
    file = tmp_path / "gw.toml"
    file.write_text(
        """
[server]
rate_limit = 5
callback_timeout = 2.5

[workflows.my-chat]
providers = ["local-llama", "script"]
schema = "schemas/answer.json"

[workflows.inline]
providers = ["script"]
schema = { type = "object", required = ["a"] }
events = ["webhook_received"]
webhook_url = "http://localhost:9000/hook"

[providers.script]
type = "scripted"
text = "Hello from {prompt}"
tokens_per_second = 50
usage = { prompt_tokens = 10, completion_tokens = 20 }
fail_after = 0

[providers.local-llama]
type = "openai"
base_url = "http://localhost:11434/v1/"
model = "llama3.2"
api_key_env = "OLLAMA_API_KEY"
"""
    )
    config = load_config(file, api_key=KEY)
    assert config.server == ServerConfig(rate_limit=5, callback_timeout=2.5)
    assert config.workflows["my-chat"].providers == ("local-llama", "script")
    assert config.workflows["my-chat"].schema == {"type": "object"}
    assert config.workflows["inline"].events == ("webhook_received",)
    assert "demo-chat" in config.workflows
    script = config.providers["script"]
    assert isinstance(script, ScriptedProviderConfig) and script.text == "Hello from {prompt}"
    assert script.usage == {"prompt_tokens": 10, "completion_tokens": 20}
    llama = config.providers["local-llama"]
    assert isinstance(llama, OpenAIProviderConfig) and llama.base_url == "http://localhost:11434/v1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nrate_limt = 1", "rate_limt"),
        ("[server]\nrate_limit = -1", "rate_limit"),
        ("[workflows.w]\nproviders = ['missing']", "unknown provider 'missing'"),
        ("[workflows.w]\nproviders = []", "non-empty list"),
        ("[providers.p]\ntype = 'magic'", "type must be"),
        ("[providers.p]\ntokens_per_second = 'fast'", "must be a number"),
        ("[providers.p]\ntype = 'openai'\nmodel = 'm'", "base_url is required"),
        ("[workflows.w]\nproviders = ['demo-chat']\nschema = { type = 12 }", "not a valid JSON Schema"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "gw.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(file, api_key=KEY)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml", api_key=KEY)


def test_overrides_apply_faults_to_first_scripted_provider_only() -> None:
    overrides = parse_overrides({"tokens_per_second": 1000, "fail_after": 2, "drop_socket_after": 3,
                                 "callback_timeout": 1})
    config = GatewayConfig(api_key=KEY)
    flaky, backup = overrides.apply([config.providers[n] for n in ("demo-flaky", "demo-backup")])
    assert isinstance(flaky, ScriptedProviderConfig) and isinstance(backup, ScriptedProviderConfig)
    assert flaky.tokens_per_second == backup.tokens_per_second == 1000
    assert flaky.fail_after == 2 and backup.fail_after == 0
    assert overrides.drop_socket_after == 3 and overrides.callback_timeout == 1


@pytest.mark.parametrize(
    "value", ["x", {"tokens_per_second": "fast"}, {"hang": 1}, {"typo": 1}, {"upstream_timeout": 0}]
)
def test_bad_overrides(value: Any) -> None:
    with pytest.raises(ConfigError):
        parse_overrides(value)


# -- request bodies ------------------------------------------------------------------------------


def test_parse_async_body_accepts_the_sdk_shape() -> None:
    body = parse_async_body({"workflow": "demo-chat", "delivery_method": "websocket",
                             "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                             "metadata": {"scripted": {"tokens_per_second": 0}}})
    assert body.messages == [{"role": "user", "content": "hi"}]
    assert body.overrides.provider == {"tokens_per_second": 0.0}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"messages": []}, "'workflow'"),
        ({"workflow": "w", "messages": "hi"}, "'messages'"),
        ({"workflow": "w", "messages": [{"role": "user", "content": 3}]}, "content"),
        ({"workflow": "w", "messages": [{"content": "x"}]}, "role"),
        ({"workflow": "w", "messages": [{"role": "user", "content": "x"}], "webhook_url": "ftp://x"},
         "webhook_url"),
        ({"workflow": "w", "messages": [{"role": "user", "content": "x"}], "events": "x"}, "events"),
        ({"workflow": "w", "messages": [{"role": "user", "content": "x"}], "metadata": []}, "metadata"),
        ({"workflow": "w", "messages": [{"role": "user", "content": "x"}],
          "metadata": {"scripted": {"hang": "yes"}}}, "hang"),
    ],
)
def test_parse_async_body_rejects_wrong_shapes(body: Any, message: str) -> None:
    with pytest.raises(ApiError, match=message) as info:
        parse_async_body(body)
    assert info.value.status == 400


# -- tokens and topics ---------------------------------------------------------------------------


def test_token_round_trip_and_refusals() -> None:
    issuer = TokenIssuer(PROJECT, ttl=300)
    topic = f"ai_response:{PROJECT}:{CHANNEL}"
    token = issuer.issue(CHANNEL, topic, now=1000)
    claims = issuer.verify(token, now=1001)
    assert claims is not None and claims.channel_id == CHANNEL and claims.topic == topic
    assert claims.exp == 1300
    assert issuer.verify(token, now=1300) is None  # expired
    assert issuer.verify(token + "x", now=1001) is None  # forged
    assert TokenIssuer(PROJECT).verify(token, now=1001) is None  # another gateway's key
    assert issuer.verify(None) is None and issuer.verify("") is None


def test_token_usable_until_exp_or_grace_after_the_end() -> None:
    claims = TokenIssuer(PROJECT, ttl=300).verify(
        TokenIssuer(PROJECT, ttl=300, key=SECRET).issue(CHANNEL, "t", now=1000), now=1000
    ) or None
    assert claims is None  # different key
    issuer = TokenIssuer(PROJECT, ttl=300, key=SECRET)
    claims = issuer.verify(issuer.issue(CHANNEL, "t", now=1000), now=1000)
    assert claims is not None
    assert token_usable(claims, None, 1299, 60)
    assert not token_usable(claims, None, 1300, 60)
    assert token_usable(claims, 1100, 1159, 60)
    assert not token_usable(claims, 1100, 1160, 60)
    late = issuer.verify(issuer.issue(CHANNEL, "t", now=1200), now=1200)  # issued after the end
    assert late is not None and token_usable(late, 1100, 1250, 60)


def test_one_live_socket_per_token() -> None:
    live = LiveSockets()
    first, second = object(), object()
    assert live.acquire("j", first)
    assert not live.acquire("j", second)
    live.release("j", second)  # not the holder: no effect
    assert not live.acquire("j", second)
    live.release("j", first)
    assert live.acquire("j", second)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (f"ai_response:{PROJECT}:{CHANNEL}", (PROJECT, CHANNEL)),
        (f"ai_response:{CHANNEL}", (None, CHANNEL)),
        (f"room:{CHANNEL}", "invalid_channel_format"),
        (f"ai_response:{PROJECT}:{CHANNEL}:x", "invalid_channel_format"),
        ("ai_response", "invalid_channel_format"),
        (f"ai_response:nope:{CHANNEL}", "invalid_project_uuid"),
        (f"ai_response:{PROJECT}:nope", "invalid_channel_uuid"),
        ("ai_response:nope", "invalid_channel_uuid"),
    ],
)
def test_parse_topic(topic: str, expected: Any) -> None:
    assert parse_topic(topic) == expected


def test_join_refusal_checks_the_token_channel() -> None:
    issuer = TokenIssuer(PROJECT, key=SECRET)
    claims = issuer.verify(issuer.issue(CHANNEL, f"ai_response:{PROJECT}:{CHANNEL}"))
    assert claims is not None
    assert join_refusal(claims, f"ai_response:{PROJECT}:{CHANNEL}") is None
    assert join_refusal(claims, f"ai_response:{CHANNEL}") is None
    assert join_refusal(claims, f"ai_response:{PROJECT}:{OTHER}") == "unauthorized_project_access"
    assert join_refusal(claims, f"ai_response:{OTHER}:{CHANNEL}") == "unauthorized_project_access"
    assert join_refusal(claims, "x") == "invalid_channel_format"


# -- providers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Hello world", "  lead and trail  ", "", "one", "a\n\nb \t c"])
def test_split_tokens_is_lossless(text: str) -> None:
    assert "".join(split_tokens(text)) == text


def test_split_tokens_word_pieces() -> None:
    assert split_tokens("Hello world, again") == ["Hello", " world,", " again"]


async def _drain(provider: ScriptedProvider, prompt: str) -> list[Any]:
    request = GenerationRequest([{"role": "user", "content": prompt}])
    return [chunk async for chunk in provider.stream(request)]


async def test_scripted_answer_depends_on_the_prompt() -> None:
    provider = ScriptedProvider(ScriptedProviderConfig("p", tokens_per_second=0, first_token_ms=0))
    one = await _drain(provider, "Tell me about rivers")
    two = await _drain(provider, "Something else entirely")
    text_one = "".join(c.text for c in one if isinstance(c, TextDelta))
    assert "Tell me about rivers" in text_one
    assert text_one != "".join(c.text for c in two if isinstance(c, TextDelta))
    assert 20 <= sum(isinstance(c, TextDelta) for c in one) <= 80
    assert isinstance(one[-1], Usage) and one[-1].completion_tokens == len(one) - 1


async def test_scripted_faults_and_tool_call() -> None:
    failing = ScriptedProvider(ScriptedProviderConfig("p", tokens_per_second=0, first_token_ms=0,
                                                      fail_after=3, error="boom"))
    chunks: list[Any] = []

    async def consume() -> None:
        async for chunk in failing.stream(GenerationRequest([{"role": "user", "content": "x"}])):
            chunks.append(chunk)

    with pytest.raises(ProviderError, match="boom"):
        await consume()
    assert len(chunks) == 3
    tools = ScriptedProvider(ScriptedProviderConfig("p", tokens_per_second=0, first_token_ms=0,
                                                    text="ok {prompt}",
                                                    tool_call={"name": "f", "arguments": {"a": 1}}))
    out = await _drain(tools, "go")
    assert out[0] == ToolCallChunk("f", {"a": 1})
    assert [c.text for c in out if isinstance(c, TextDelta)] == ["ok", " go"]
    hanging = ScriptedProvider(ScriptedProviderConfig("p", first_token_ms=0, hang=True))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await _drain(hanging, "x")


async def test_structured_scripted_output_matches_the_schema() -> None:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

    from modelriver.devserver.config import CHATBOT_RESPONSE_SCHEMA

    validator = Draft202012Validator(CHATBOT_RESPONSE_SCHEMA)
    for invalid in (False, True):
        provider = ScriptedProvider(ScriptedProviderConfig(
            "p", format="chatbot_response", tokens_per_second=0, first_token_ms=0,
            invalid_output=invalid))
        chunks = await _drain(provider, "Thanks, the update is great")
        data = json.loads("".join(c.text for c in chunks if isinstance(c, TextDelta)))
        assert validator.is_valid(data) is not invalid
        if not invalid:
            assert data["sentiment"] == "positive"


# -- rate limit, retries -------------------------------------------------------------------------


def test_retry_delays() -> None:
    assert list(retry_delays(5)) == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert list(retry_delays(0)) == []


def test_generated_ids_are_uuids() -> None:
    from modelriver.devserver.gateway import Gateway

    gateway = Gateway(GatewayConfig(api_key=KEY))
    assert uuid.UUID(gateway.project_id)
    assert gateway.topic(CHANNEL) == f"ai_response:{gateway.project_id}:{CHANNEL}"


# -- the OpenAI-compatible provider (over httpx.MockTransport) -----------------------------------


def _sse(*chunks: Any) -> bytes:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


async def test_openai_provider_streams_text_tool_calls_and_usage() -> None:
    import httpx

    from modelriver.devserver.providers import OpenAIProvider

    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.url.path == "/v1/chat/completions"
        body = _sse(
            {"choices": [{"delta": {"content": "Hel"}}]},
            {"choices": [{"delta": {"content": "lo"}}]},
            {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f",
                                                                              "arguments": '{"a":'}}]}}]},
            {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}}]},
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    config = OpenAIProviderConfig("llm", base_url="http://llm.test/v1", model="m",
                                  options={"temperature": 0})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = OpenAIProvider(config, client)
        chunks = [c async for c in provider.stream(GenerationRequest([{"role": "user", "content": "hi"}]))]
    assert chunks == [TextDelta("Hel"), TextDelta("lo"), Usage(3, 2), ToolCallChunk("f", {"a": 1})]
    assert seen[0]["stream"] is True and seen[0]["model"] == "m" and seen[0]["temperature"] == 0


async def test_openai_provider_errors_become_provider_errors() -> None:
    import httpx

    from modelriver.devserver.providers import OpenAIProvider

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="overloaded")

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    config = OpenAIProviderConfig("llm", base_url="http://llm.test/v1", model="m")
    for handler, message in ((refuse, "HTTP 503"), (unreachable, "ConnectError")):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            provider = OpenAIProvider(config, client)
            with pytest.raises(ProviderError, match=message):
                await _drain_any(provider)


async def test_openai_provider_too_deep_json_is_a_provider_error() -> None:
    """A chunk nested past Python's parser is a malformed stream (failover), not a crash; tool
    arguments nested so deep stay their raw text."""
    import httpx

    from modelriver.devserver.providers import OpenAIProvider

    deep = "[" * 100_000 + "]" * 100_000
    tool = {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f",
                                                                          "arguments": deep}}]}}]}
    bodies = [b"data: " + deep.encode() + b"\n\n", _sse(tool)]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=bodies.pop(0), headers={"content-type": "text/event-stream"})

    config = OpenAIProviderConfig("llm", base_url="http://llm.test/v1", model="m")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = OpenAIProvider(config, client)
        with pytest.raises(ProviderError, match="malformed stream chunk"):
            await _drain_any(provider)
        assert await _drain_any(provider) == [ToolCallChunk("f", deep)]


async def _drain_any(provider: Any) -> list[Any]:
    return [c async for c in provider.stream(GenerationRequest([{"role": "user", "content": "x"}]))]


# -- one request, in process ---------------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.dropped: list[str] = []

    def push(self, entry: Any) -> None:
        self.entries.append(entry)

    def drop(self, reason: str) -> None:
        self.dropped.append(reason)


async def _run_workflow(workflow: str, scripted: dict[str, Any] | None = None,
                        config: GatewayConfig | None = None) -> tuple[Any, _Recorder]:
    from modelriver.devserver.gateway import Gateway

    gateway = Gateway(config or GatewayConfig(api_key=KEY))
    overrides = parse_overrides({"tokens_per_second": 0, "first_token_ms": 0, **(scripted or {})})
    run = gateway.start_request(gateway.config.workflows[workflow], [{"role": "user", "content": "hi"}],
                                events=[], webhook_url=None, overrides=overrides,
                                public_base="http://gw.test")
    recorder = _Recorder()
    assert run.subscribe(recorder, None) == []
    async with asyncio.timeout(5):
        await run.done.wait()
    await gateway.shutdown()
    return run, recorder


async def test_run_failover_resets_and_content_matches_tokens() -> None:
    # failover = "restart": the behaviour before issue 18 (the default continues the answer).
    restart = replace(BUILTIN_WORKFLOWS["demo-failover"], failover="restart")
    config = GatewayConfig(api_key=KEY, workflows={**BUILTIN_WORKFLOWS, "demo-failover": restart})
    run, recorder = await _run_workflow("demo-failover", {"drop_socket_after": 3}, config)
    events = [(e.event, e.payload) for e in recorder.entries]
    assert [p["seq"] for _, p in events] == list(range(1, len(events) + 1))
    statuses = [p["status"] for e, p in events if e == "status"]
    assert statuses == ["queued", "started", "streaming", "failover", "started", "streaming"]
    after = [p["data"] for e, p in events[events.index(next(x for x in events if x[1].get("reset"))):]
             if e == "tokens"]
    final = events[-1][1]
    assert final["status"] == "success" and final["content"] == "".join(after)
    assert run.failovers == [{"from": "demo-flaky", "to": "demo-backup",
                              "reason": "scripted provider failure after 5 tokens", "at_token": 5}]
    assert recorder.dropped == ["drop_socket_after (scripted fault)"]
    assert run.to_log()["status"] == "success" and KEY not in json.dumps(run.to_log())


async def test_run_schema_failure_and_cancel() -> None:
    run, recorder = await _run_workflow("demo-structured", {"invalid_output": True})
    last = recorder.entries[-1]
    assert last.event == "error" and last.payload["details"]["errors"]
    assert run.status == "error"
    assert run.cancel() is False  # already ended otherwise

