"""One AI request from start to end, and the store that keeps requests for replay.

A ``RequestRun`` owns the channel's ``ChannelLog`` (every event stamped with the next ``seq``
and encoded once) and the sockets subscribed to it. Its task asks the workflow's providers in
order (failover), streams ``tokens``, validates structured output, sends the webhook, waits
for the callback, and publishes exactly one terminal event. Nothing here touches a socket:
subscribers receive ``Entry`` objects through ``Subscriber.push``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from modelriver.devserver.config import ScriptedOverrides, ServerConfig, WorkflowConfig
from modelriver.devserver.providers import (
    GenerationRequest,
    Provider,
    ProviderError,
    TextDelta,
    ToolCallChunk,
    Usage,
    split_tokens,
)
from modelriver.devserver.webhook_delivery import WebhookSender, utc_now
from modelriver.partial import prose_field
from modelriver.phoenix import ChannelLog, Entry

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "CallbackResult",
    "RequestRun",
    "RequestStore",
    "RunSettings",
    "Subscriber",
]

logger = logging.getLogger("modelriver.devserver")

CallbackResult = Literal["accepted", "repeat", "conflict"]


class Subscriber(Protocol):
    """A socket's subscription to a channel (implemented by the socket layer)."""

    def push(self, entry: Entry) -> None:
        """Queue ``entry`` for the socket; must not block."""

    def drop(self, reason: str) -> None:
        """Close the socket (the client is expected to reconnect)."""


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What a run needs beyond its own request: timeouts, webhook sender, where callbacks go."""

    server: ServerConfig
    webhooks: WebhookSender
    public_base: str
    overrides: ScriptedOverrides = field(default_factory=ScriptedOverrides)
    validator: Draft202012Validator | None = None
    drop_socket_after: int = 0


@dataclass(slots=True)
class _Outcome:
    provider: Provider
    parts: list[str]
    tool_calls: list[dict[str, Any]]
    usage: Usage | None

    @property
    def text(self) -> str:
        return "".join(self.parts)


class _WebhookFailed(Exception):
    pass


_MISSING: Any = object()


class RequestRun:
    """One request: its channel log, subscribers, provider task and request-log record.

    Args:
        channel_id: the request's channel UUID.
        topic: ``ai_response:<project>:<channel>``.
        workflow: the workflow it runs.
        providers: the workflow's providers, overrides applied, in failover order.
        messages: the chat messages.
        events: event names (non-empty: event-driven).
        webhook_url: where webhooks go, if anywhere.
        settings: timeouts, the webhook sender, the public base URL.

    Call ``start()`` from a running event loop.
    """

    def __init__(
        self,
        *,
        channel_id: str,
        topic: str,
        workflow: WorkflowConfig,
        providers: Sequence[Provider],
        messages: Sequence[Mapping[str, Any]],
        events: Sequence[str],
        webhook_url: str | None,
        settings: RunSettings,
    ) -> None:
        self.channel_id = channel_id
        self.topic = topic
        self.workflow = workflow
        self.providers = list(providers)
        self.messages = list(messages)
        self.events = list(events)
        self.webhook_url = webhook_url
        self._settings = settings
        self.callback_token = secrets.token_urlsafe(24)
        self.log = ChannelLog(topic, max_events=settings.server.max_events)
        self._subs: dict[Subscriber, None] = {}
        self._started = time.monotonic()
        self.created_at = utc_now()
        self.ended_at: float | None = None  # wall clock, for token grace and retention
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._callback: asyncio.Future[tuple[Any, str | None]] | None = None
        self._callback_key: Any = _MISSING
        self._dropped = False
        self._last_token_seq: int | None = None
        # Structured workflows say so (and name their prose field) on queued and started.
        self._shape: dict[str, Any] = (
            {"structured": True, "prose": prose_field(workflow.schema)}
            if workflow.schema is not None else {})
        # request-log fields
        self.status = "pending"
        self.provider: str | None = None
        self.model: str | None = None
        self.tokens = 0
        self.content_length = 0
        self.first_token_ms: int | None = None
        self.duration_ms: int | None = None
        self.failovers: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []
        self.callback: dict[str, Any] | None = None
        self.cancelled = False
        self.error: str | None = None
        self.sockets = 0
        self.joins = 0

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def callback_url(self) -> str:
        """Where the backend posts its callback (carries the per-request token)."""
        return f"{self._settings.public_base}/v1/callback/{self.channel_id}?token={self.callback_token}"

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def start(self) -> None:
        """Start the request's task."""
        self._task = asyncio.create_task(self._main(), name=f"modelriver-run-{self.channel_id}")

    async def close(self) -> None:
        """Stop everything this run started (gateway shutdown)."""
        tasks = [t for t in (self._task, *self._background) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def cancel(self) -> bool:
        """Cancel the request: publish the terminal ``cancelled`` response and stop generating.

        Returns:
            True when the request is (now or already) cancelled; False when it had already
            ended otherwise.
        """
        if self.ended:
            return self.cancelled
        self.cancelled = True
        self._finish("response", {
            "status": "cancelled", "channel_id": self.channel_id,
            "error": {"message": "Request cancelled"},
            "meta": {"workflow": self.workflow.name, "status": "cancelled",
                     "duration_ms": self._elapsed_ms()},
        }, "cancelled", "Request cancelled")
        if self._task is not None:
            self._task.cancel()
        return True

    # -- subscribers -------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber, last_seq: int | None) -> list[Entry]:
        """Subscribe to live events; returns the buffered events after ``last_seq`` to replay.

        Subscribing and reading the replay happen at once, so nothing is missed or doubled.
        """
        self._subs[subscriber] = None
        self.joins += 1
        replay = self.log.after(last_seq)
        if self._drop_due:  # nobody was joined when the Nth token went out: drop this one
            self._drop_sockets()  # closes after the replay is written
        return replay

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subs.pop(subscriber, None)

    def publish(self, event: str, payload: dict[str, Any]) -> Entry | None:
        """Append an event to the channel and hand it to every subscriber (None once ended)."""
        if self.ended_at is not None:
            return None
        entry = self.log.append(event, payload)
        for subscriber in self._subs:
            subscriber.push(entry)
        return entry

    # -- callback --------------------------------------------------------------------------------

    def receive_callback(self, data: Any, task_id: str | None) -> CallbackResult:
        """Hand the backend's callback to a request waiting for it.

        Returns:
            ``accepted``; ``repeat`` for an identical repeat (idempotent); ``conflict`` when
            the request is not waiting for a callback (or got a different one).
        """
        key = (data, task_id)
        if self._callback_key is not _MISSING:
            return "repeat" if key == self._callback_key else "conflict"
        if self._callback is None or self._callback.done() or self.ended:
            return "conflict"
        self._callback_key = key
        self.callback = {"received": True, "at": utc_now()}
        self._callback.set_result(key)
        return "accepted"

    # -- the request log ---------------------------------------------------------------------------

    def to_log(self) -> dict[str, Any]:
        """The ``RequestLog`` record (docs/gateway.md); holds no secret."""
        prompt = ""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                prompt = str(message.get("content") or "")
                break
        return {
            "channel_id": self.channel_id, "workflow": self.workflow.name, "status": self.status,
            "provider": self.provider, "model": self.model, "tokens": self.tokens,
            "content_length": self.content_length, "created_at": self.created_at,
            "first_token_ms": self.first_token_ms, "duration_ms": self.duration_ms,
            "failovers": list(self.failovers), "webhooks": list(self.webhooks),
            "callback": self.callback, "cancelled": self.cancelled, "error": self.error,
            "sockets": self.sockets, "joins": self.joins, "last_seq": self.log.last_seq,
            "events": list(self.events), "prompt": prompt[:200],
        }

    # -- the task ----------------------------------------------------------------------------------

    async def _main(self) -> None:
        try:
            await self._execute()
        except asyncio.CancelledError:
            if not self.cancelled:
                raise
        except Exception as exc:
            logger.exception("request %s crashed", self.channel_id)
            self._fail("internal gateway error", {"exception": type(exc).__name__})

    async def _execute(self) -> None:
        self._status("queued", step="queue", **self._shape)
        outcome = await self._generate()
        if outcome is None:
            return
        text = outcome.text
        data: Any = None
        if self._settings.validator is not None:
            data = self._structured(text)
            if data is _MISSING:
                return
        if self.events:
            await self._event_driven(outcome, data)
            return
        payload: dict[str, Any] = {"status": "success", "channel_id": self.channel_id,
                                   "content": text, "model": outcome.provider.model}
        if data is not None:
            payload["data"] = data
        if outcome.tool_calls:
            payload["tool_calls"] = outcome.tool_calls
        meta = self._meta("success", outcome)
        payload["meta"] = meta
        self._finish("response", payload, "success")
        if self.webhook_url:
            body = self._webhook_body("task.completed", "success", data, text, meta, None)
            self._spawn(self._settings.webhooks.deliver(self.webhook_url, body, self.webhooks))

    async def _generate(self) -> _Outcome | None:
        reason = ""
        failed_at = 0
        continuing = self.workflow.failover == "continue"
        parts: list[str] = []  # the answer so far (with ``continue``, across providers)
        for index, provider in enumerate(self.providers):
            if index:
                previous = self.providers[index - 1]
                self.failovers.append({"from": previous.name, "to": provider.name,
                                       "reason": reason, "at_token": failed_at})
                fields: dict[str, Any] = {"from": previous.name, "to": provider.name,
                                          "reset": not continuing, "reason": reason}
                if continuing:  # the seq of the last token the next provider continues from
                    fields["continued_from"] = self._last_token_seq
                self._status("failover", provider=provider.name, model=provider.model, **fields)
            self.provider, self.model = provider.name, provider.model
            self._status("started", step="process", provider=provider.name, model=provider.model,
                         **self._shape)
            if not continuing:
                parts = []
            before = len(parts)
            try:
                return await self._stream(provider, parts)
            except ProviderError as exc:
                reason = str(exc) or type(exc).__name__
            except TimeoutError:
                reason = f"upstream timeout: no data for {self._upstream_timeout:g} s"
            failed_at = len(parts) - before
            logger.info("request %s: provider %s failed after %d tokens: %s",
                        self.channel_id, provider.name, failed_at, reason)
        name = self.providers[-1].name
        message = (f"provider {name!r} failed: {reason}" if len(self.providers) == 1
                   else f"all providers failed; last ({name!r}): {reason}")
        self._fail(message, {"provider": name, "reason": reason, "failovers": list(self.failovers)})
        return None

    @property
    def _upstream_timeout(self) -> float:
        override = self._settings.overrides.upstream_timeout
        return override if override is not None else self._settings.server.upstream_timeout

    async def _stream(self, provider: Provider, parts: list[str]) -> _Outcome:
        """Stream one provider into ``parts`` (continuing what they hold); raises ProviderError
        or TimeoutError."""
        outcome = _Outcome(provider, parts, [], None)
        prior = "".join(parts)
        request = GenerationRequest(self.messages, self.workflow.schema, continue_from=prior)
        name, model = provider.name, provider.model
        loop = asyncio.get_running_loop()
        timeout = self._upstream_timeout
        self.content_length = len(prior)
        first = True
        async with contextlib.aclosing(provider.stream(request)) as chunks, \
                asyncio.timeout_at(loop.time() + timeout) as deadline:
            async for chunk in chunks:
                deadline.reschedule(loop.time() + timeout)
                if type(chunk) is TextDelta:
                    if first:
                        first = False
                        if self.first_token_ms is None:
                            self.first_token_ms = self._elapsed_ms()
                        self.status = "streaming"
                        self._status("streaming", step="receive", provider=name, model=model)
                    parts.append(chunk.text)
                    self.tokens += 1
                    self.content_length += len(chunk.text)
                    entry = self.publish("tokens", {"data": chunk.text, "provider": name, "model": model})
                    if entry is not None:
                        self._last_token_seq = entry.seq
                    if self._drop_due:
                        self._drop_sockets()
                elif type(chunk) is ToolCallChunk:
                    call = {"name": chunk.name, "arguments": chunk.arguments}
                    outcome.tool_calls.append(call)
                    self.publish("tool_call", dict(call))
                elif type(chunk) is Usage:
                    outcome.usage = chunk
        return outcome

    def _structured(self, text: str) -> Any:
        """The parsed, valid structured output; ``_MISSING`` after publishing the error."""
        try:
            value = json.loads(text)
        except ValueError as exc:
            self._fail("structured output is not valid JSON", {"error": str(exc)})
            return _MISSING
        validator = self._settings.validator
        assert validator is not None
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            details = [{"path": "/" + "/".join(str(p) for p in e.absolute_path), "message": e.message}
                       for e in errors[:20]]
            self._fail("structured output does not match the workflow's schema", {"errors": details})
            return _MISSING
        return value

    async def _event_driven(self, outcome: _Outcome, data: Any) -> None:
        text = outcome.text
        ai_data = data if data is not None else {"content": text}
        ai_meta = self._meta("ai_generated", outcome)
        self.status = "ai_generated"
        self._status("ai_generated", step="process")
        generated: dict[str, Any] = {"status": "ai_generated", "channel_id": self.channel_id,
                                     "content": text, "model": outcome.provider.model}
        if data is not None:
            generated["data"] = data
        generated["meta"] = ai_meta
        self.publish("response", generated)

        future: asyncio.Future[tuple[Any, str | None]] = asyncio.get_running_loop().create_future()
        self._callback = future
        self.status = "awaiting_callback"
        self._status("awaiting_callback", step="backend")
        assert self.webhook_url is not None
        body = self._webhook_body("task.ai_generated", "ai_generated", data, text, ai_meta,
                                  self.callback_url)
        webhook = self._spawn(self._settings.webhooks.deliver(
            self.webhook_url, body, self.webhooks, callback_url=self.callback_url))

        def on_webhook_done(task: asyncio.Task[bool]) -> None:
            if not task.cancelled() and task.exception() is None and task.result():
                return
            if not future.done():
                future.set_exception(_WebhookFailed(
                    f"webhook delivery to {self.webhook_url} failed after {len(self.webhooks)} attempt(s)"))

        webhook.add_done_callback(on_webhook_done)
        override = self._settings.overrides.callback_timeout
        timeout = override if override is not None else self._settings.server.callback_timeout
        try:
            async with asyncio.timeout(timeout):
                callback_data, task_id = await future
        except TimeoutError:
            self._fail(f"callback timeout: no callback within {timeout:g} s",
                       {"callback_url": self.callback_url.split("?")[0]})
            return
        except _WebhookFailed as exc:
            self._fail(str(exc), {"webhooks": list(self.webhooks)})
            return
        payload: dict[str, Any] = {
            "status": "completed", "channel_id": self.channel_id, "content": text,
            "model": outcome.provider.model, "data": callback_data,
            "ai_response": {"data": ai_data, "meta": ai_meta},
        }
        if task_id is not None:
            payload["task_id"] = task_id
        payload["meta"] = self._meta("completed", outcome)
        self._finish("response", payload, "completed")

    # -- helpers -----------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _webhook_body(self, kind: str, status: str, data: Any, text: str, meta: dict[str, Any],
                      callback_url: str | None) -> dict[str, Any]:
        ai_data = data if data is not None else {"content": text}
        body: dict[str, Any] = {"channel_id": self.channel_id, "timestamp": utc_now(), "type": kind}
        if self.events:
            body["event"] = self.events[0]
        body.update({"status": status, "data": ai_data, "meta": meta,
                     "ai_response": {"data": ai_data, "meta": meta}})
        if callback_url is not None:
            body["callback_url"] = callback_url
        return body

    def _meta(self, status: str, outcome: _Outcome) -> dict[str, Any]:
        usage = outcome.usage
        if usage is None:
            prompt = sum(len(split_tokens(str(m.get("content") or ""))) for m in self.messages)
            usage = Usage(prompt, len(outcome.parts))
        return {"workflow": self.workflow.name, "status": status, "duration_ms": self._elapsed_ms(),
                "provider": outcome.provider.name, "usage": usage.as_dict()}

    def _status(self, status: str, **fields: Any) -> None:
        self.publish("status", {"status": status, **fields})

    @property
    def _drop_due(self) -> bool:
        """The ``drop_socket_after`` fault is due: N tokens out, not yet dropped, sockets joined."""
        after = self._settings.drop_socket_after
        return bool(after and not self._dropped and self.tokens >= after and self._subs
                    and self.ended_at is None)

    def _drop_sockets(self) -> None:
        self._dropped = True
        logger.info("request %s: dropping %d socket(s) (drop_socket_after)", self.channel_id,
                    len(self._subs))
        for subscriber in list(self._subs):
            subscriber.drop("drop_socket_after (scripted fault)")

    def _fail(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"message": message}
        if details:
            payload["details"] = dict(details)
        self._finish("error", payload, "error", message)

    def _finish(self, event: str, payload: dict[str, Any], status: str, error: str | None = None) -> None:
        if self.ended:
            return
        self.publish(event, payload)
        self.status = status
        self.error = error
        self.duration_ms = self._elapsed_ms()
        self.ended_at = time.time()
        if self._callback is not None and not self._callback.done():
            self._callback.cancel()
        self.done.set()
        logger.info("request %s (%s) ended: %s%s", self.channel_id, self.workflow.name, status,
                    f" ({error})" if error else "")

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)


class RequestStore:
    """The gateway's requests by channel id, oldest first; finished ones expire.

    Args:
        retention: seconds a finished request stays (replayable, in the log).
        max_finished: finished requests kept at most; the oldest go first.
    """

    def __init__(self, *, retention: float, max_finished: int) -> None:
        self.retention = retention
        self.max_finished = max_finished
        self._runs: dict[str, RequestRun] = {}

    def add(self, run: RequestRun) -> None:
        self._runs[run.channel_id] = run

    def get(self, channel_id: str) -> RequestRun | None:
        return self._runs.get(channel_id) or self._runs.get(channel_id.lower())

    def newest_first(self) -> list[RequestRun]:
        return list(reversed(self._runs.values()))

    def __len__(self) -> int:
        return len(self._runs)

    def sweep(self, now: float | None = None) -> int:
        """Drop expired finished requests (and the oldest beyond ``max_finished``); returns how many."""
        now = time.time() if now is None else now
        finished = [r for r in self._runs.values() if r.ended_at is not None]
        expired = {r.channel_id for r in finished if r.ended_at is not None
                   and now - r.ended_at >= self.retention}
        extra = len(finished) - len(expired) - self.max_finished
        if extra > 0:
            survivors = [r for r in finished if r.channel_id not in expired]
            expired.update(r.channel_id for r in survivors[:extra])
        for channel_id in expired:
            del self._runs[channel_id]
        return len(expired)

    async def close(self) -> None:
        """Stop every request's tasks."""
        runs = list(self._runs.values())
        await asyncio.gather(*(run.close() for run in runs), return_exceptions=True)
