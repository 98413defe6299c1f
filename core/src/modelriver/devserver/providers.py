"""Where answers come from: a ``Provider`` streams chunks (text deltas, tool calls, usage).

``ScriptedProvider`` is deterministic (pace, length and faults on demand); ``OpenAIProvider``
streams any OpenAI-compatible chat completions endpoint over server-sent events. A provider
signals failure with ``ProviderError``; silence is the caller's to time out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from modelriver._jsjson import strict_loads
from modelriver.devserver.config import (
    OpenAIProviderConfig,
    ProviderConfig,
    ScriptedProviderConfig,
)
from modelriver.settings import env_value

if TYPE_CHECKING:
    import httpx

__all__ = [
    "CONTINUE_INSTRUCTION",
    "Chunk",
    "GenerationRequest",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "ScriptedProvider",
    "TextDelta",
    "ToolCallChunk",
    "Usage",
    "last_user_message",
    "make_provider",
    "split_tokens",
]

logger = logging.getLogger("modelriver.devserver")


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallChunk:
    """A tool call the model made."""

    name: str
    arguments: Any


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of the generation."""

    prompt_tokens: int
    completion_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


Chunk = TextDelta | ToolCallChunk | Usage


class ProviderError(Exception):
    """The provider failed; the message says why (no secrets in it)."""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What a provider is asked: the chat messages and, for structured output, the schema.

    ``continue_from`` is the partial answer a failed provider left (failover ``continue``):
    the provider streams only what follows it.
    """

    messages: Sequence[Mapping[str, Any]]
    schema: Mapping[str, Any] | None = None
    continue_from: str = ""


CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly where it stopped: write only the rest, "
    "without repeating anything already written and without any preamble."
)
"""The user message after the partial answer when an OpenAI-compatible provider continues it."""


class Provider(Protocol):
    """A source of streamed answers."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    def stream(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Stream the answer's chunks.

        Raises:
            ProviderError: the generation failed.
        """
        ...


_TOKEN = re.compile(r"\s*\S+")


def split_tokens(text: str) -> list[str]:
    """Word-ish pieces (``"Hello"``, ``" world"``, ...) that concatenate back to ``text``."""
    pieces = _TOKEN.findall(text)
    consumed = sum(map(len, pieces))
    if consumed < len(text):  # trailing whitespace
        if pieces:
            pieces[-1] += text[consumed:]
        else:
            pieces = [text]
    return pieces


def last_user_message(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last ``user`` message (of the last message when none is a user's)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return str(messages[-1].get("content") or "") if messages else ""


def _short(text: str, words: int = 8) -> str:
    parts = text.split()
    short = " ".join(parts[:words])
    return short + "…" if len(parts) > words else short


_DEFAULT_ANSWER = (
    'You said: "{short}". This is the ModelRiver dev gateway streaming a scripted answer one '
    "word at a time, so you can watch tokens arrive, steps advance and the final response land "
    "without a real model or any network. Ask something else and this echo changes with it."
)

_POSITIVE = ("thank", "great", "love", "good", "happy", "awesome", "nice", "excellent")
_NEGATIVE = ("bad", "broken", "angry", "hate", "issue", "problem", "refund", "wrong", "error")


def chatbot_response(prompt: str, *, invalid: bool = False) -> dict[str, Any]:
    """A deterministic ``chatbot_response`` object for ``prompt`` (schema-breaking if ``invalid``)."""
    short = _short(prompt) or "(empty message)"
    lowered = prompt.lower()
    pos = any(w in lowered for w in _POSITIVE)
    neg = any(w in lowered for w in _NEGATIVE)
    sentiment = "mixed" if pos and neg else "positive" if pos else "negative" if neg else "neutral"
    words = [w.strip(".,!?;:\"'()").lower() for w in prompt.split()]
    topics = sorted({w for w in words if len(w) > 4})[:3] or ["general"]
    answer: dict[str, Any] = {
        "reply": f'You said: "{short}". Here is a structured answer from the dev gateway.',
        "summary": f"The user wrote: {short}",
        "sentiment": sentiment,
        "confidence": 0.87,
        "topics": topics,
        "action_items": [{"task": f"Follow up on: {short}", "priority": "medium"}],
    }
    if invalid:
        answer["sentiment"] = "ecstatic"
        answer["confidence"] = 1.5
    return answer


_Config = TypeVar("_Config", bound=ProviderConfig)


class _ConfiguredProvider(Generic[_Config]):
    """A provider built from its ``config``, which names it and its model."""

    def __init__(self, config: _Config) -> None:
        self.config: _Config = config
        self.name: str = config.name  # the config is frozen: these never change
        self.model: str = config.model


class ScriptedProvider(_ConfiguredProvider[ScriptedProviderConfig]):
    """A deterministic provider (see ``ScriptedProviderConfig`` for its knobs).

    Args:
        config: the provider's settings (per-request overrides already applied).
    """

    def answer(self, request: GenerationRequest) -> str:
        """The full text of this provider's answer to ``request`` (from its start)."""
        cfg = self.config
        prompt = last_user_message(request.messages)
        if cfg.text is not None:
            return cfg.text.replace("{prompt}", prompt)
        if cfg.format == "chatbot_response":
            return json.dumps(chatbot_response(prompt, invalid=cfg.invalid_output), ensure_ascii=False)
        if cfg.invalid_output and request.schema is not None:
            return '{"truncated": '
        return _DEFAULT_ANSWER.format(short=_short(prompt) or "(empty message)")

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Stream the scripted answer at the configured pace, with the configured fault.

        Raises:
            ProviderError: the scripted failure (``error`` / ``fail_after``).
        """
        cfg = self.config
        # Continuing a partial answer: its own answer from the partial's length on (the
        # built-in demos give every provider the same answer, so the whole reads as one).
        pieces = split_tokens(self.answer(request)[len(request.continue_from):])
        loop = asyncio.get_running_loop()
        if cfg.first_token_ms > 0:
            await asyncio.sleep(cfg.first_token_ms / 1000)
        if cfg.tool_call is not None:
            yield ToolCallChunk(str(cfg.tool_call["name"]), cfg.tool_call.get("arguments", {}))
        fault_at = cfg.fail_after if cfg.fail_after > 0 else (0 if cfg.fails else -1)
        interval = 1.0 / cfg.tokens_per_second if cfg.tokens_per_second > 0 else 0.0
        start = loop.time()
        for index, piece in enumerate(pieces):
            if index == fault_at:
                await self._fault(index)
            if interval:
                delay = start + index * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif index % 64 == 63:
                await asyncio.sleep(0)  # unpaced: still let the sockets write
            yield TextDelta(piece)
        if fault_at == len(pieces):
            await self._fault(len(pieces))
        usage = cfg.usage or {}
        prompt_tokens = sum(len(split_tokens(str(m.get("content") or ""))) for m in request.messages)
        yield Usage(int(usage.get("prompt_tokens", prompt_tokens)),
                    int(usage.get("completion_tokens", len(pieces))))

    async def _fault(self, index: int) -> None:
        if self.config.hang:
            logger.info("scripted provider %s hangs after %d tokens", self.name, index)
            await asyncio.Future()  # never resolves: cancelled or timed out by the caller
        raise ProviderError(self.config.error or f"scripted failure after {index} tokens")


class OpenAIProvider(_ConfiguredProvider[OpenAIProviderConfig]):
    """An OpenAI-compatible ``/chat/completions`` endpoint, streamed (SSE).

    Args:
        config: base URL, model, key variable and extra options.
        client: the shared ``httpx.AsyncClient``.
    """

    def __init__(self, config: OpenAIProviderConfig, client: httpx.AsyncClient) -> None:
        super().__init__(config)
        self._client = client

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Stream the endpoint's answer.

        Raises:
            ProviderError: connection failure, an error status, or a malformed stream.
        """
        import httpx

        cfg = self.config
        body: dict[str, Any] = {
            **cfg.options,
            "model": cfg.model,
            "messages": [dict(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.continue_from:
            # The partial answer as the assistant's turn, then the instruction to go on. No
            # response_format: the continuation is the rest of the JSON text, not a whole object
            # (the gateway validates the joined answer).
            body["messages"] += [{"role": "assistant", "content": request.continue_from},
                                 {"role": "user", "content": CONTINUE_INSTRUCTION}]
        elif request.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": dict(request.schema)},
            }
        headers = {"Accept": "text/event-stream"}
        key = env_value(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(None, connect=cfg.connect_timeout)
        tools: dict[int, dict[str, str]] = {}
        try:
            async with self._client.stream("POST", f"{cfg.base_url}/chat/completions", json=body,
                                           headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    text = (await response.aread())[:300].decode("utf-8", "replace")
                    raise ProviderError(f"HTTP {response.status_code} from {cfg.base_url}: {text}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    for chunk in _parse_sse_chunk(data, tools):
                        yield chunk
        except httpx.HTTPError as exc:
            raise ProviderError(f"{type(exc).__name__} talking to {cfg.base_url}: {exc}") from exc
        for call in tools.values():
            try:
                arguments: Any = strict_loads(call["arguments"]) if call["arguments"] else {}
            except ValueError:
                arguments = call["arguments"]
            yield ToolCallChunk(call["name"], arguments)


def _parse_sse_chunk(data: str, tools: dict[int, dict[str, str]]) -> list[Chunk]:
    try:
        payload = strict_loads(data)
    except ValueError as exc:
        raise ProviderError(f"malformed stream chunk: {data[:100]!r}") from exc
    if not isinstance(payload, dict):
        raise ProviderError("malformed stream chunk: not an object")
    if isinstance(payload.get("error"), dict | str):
        error = payload["error"]
        raise ProviderError(str(error.get("message") if isinstance(error, dict) else error))
    chunks: list[Chunk] = []
    choices = payload.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        delta = choices[0].get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str) and content:
                chunks.append(TextDelta(content))
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, dict):
                    continue
                slot = tools.setdefault(int(call.get("index", 0)), {"name": "", "arguments": ""})
                function = call.get("function") or {}
                if isinstance(function, dict):
                    slot["name"] += str(function.get("name") or "")
                    slot["arguments"] += str(function.get("arguments") or "")
    usage = payload.get("usage")
    if isinstance(usage, dict):
        chunks.append(Usage(int(usage.get("prompt_tokens") or 0),
                            int(usage.get("completion_tokens") or 0)))
    return chunks


def make_provider(config: ProviderConfig, client: httpx.AsyncClient) -> Provider:
    """The provider for ``config``."""
    if isinstance(config, ScriptedProviderConfig):
        return ScriptedProvider(config)
    return OpenAIProvider(config, client)
