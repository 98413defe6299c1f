"""The ``modelriver`` command: ``modelriver dev`` (the embedded gateway), ``modelriver stream``.

    modelriver dev [--host 127.0.0.1] [--port 8787] [--api-key KEY] [--config FILE]
                   [--webhook-secret S] [--public-url URL] [--rate-limit N]
                   [--realm-port PORT] [--realm-api-key KEY | --realm-no-auth]
    modelriver stream "prompt" [--workflow demo-chat] [--api-base URL] [--api-key K] [--json]
                      [--realm ws://HOST:PORT] [--realm-api-key K]

Environment: ``MODELRIVER_API_KEY``, ``MODELRIVER_API_BASE`` (``stream``),
``MODELRIVER_WEBHOOK_SECRET`` (``dev``), ``REALM_API_KEY`` (``--realm``, ``--realm-port``: else
the Realm endpoint takes the gateway's API key),
``MODELRIVER_UPSTREAM=realm`` + ``REALM_URL`` (``stream`` through Realm without ``--realm``).
This module writes to the terminal (it is the CLI); the library modules only log.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from modelriver._version import __version__
from modelriver.settings import ENV_API_BASE, ENV_API_KEY, Settings, mask_secret

__all__ = ["main"]

logger = logging.getLogger("modelriver.cli")


def _write(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelriver", description="ModelRiver from the command line.")
    parser.add_argument("--version", action="version", version=f"modelriver {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    dev = commands.add_parser("dev", help="run the embedded ModelRiver-compatible gateway",
                              description="Run the embedded ModelRiver-compatible gateway.")
    dev.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 = any free)")
    dev.add_argument("--api-key", help="API key clients must send (default MODELRIVER_API_KEY, "
                                       "else a generated mr_dev_... key)")
    dev.add_argument("--config", metavar="FILE", help="TOML file of workflows, providers, [server]")
    dev.add_argument("--webhook-secret", help="webhook signing secret (default "
                                              "MODELRIVER_WEBHOOK_SECRET, else whsec_dev)")
    dev.add_argument("--public-url", metavar="URL",
                     help="public base URL for websocket_url and callback_url")
    dev.add_argument("--rate-limit", type=int, metavar="N",
                     help="async requests per minute per key (0 = off, the default)")
    dev.add_argument("--realm-port", type=int, default=0, metavar="PORT",
                     help="also serve Realm's WebSocket protocol on PORT (0 = off, the default)")
    realm_auth = dev.add_mutually_exclusive_group()
    realm_auth.add_argument("--realm-api-key", metavar="KEY",
                            help="API key Realm clients must send (default REALM_API_KEY, else "
                                 "the gateway's API key)")
    realm_auth.add_argument("--realm-no-auth", action="store_true",
                            help="serve Realm without authentication (anyone reaching the port "
                                 "runs the workflows)")
    dev.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"], help="log level (default info)")

    stream = commands.add_parser("stream", help="send a prompt and stream the answer",
                                 description="Send a prompt and stream the answer live.")
    stream.add_argument("prompt", help="the user message")
    stream.add_argument("--workflow", default="demo-chat", help="workflow name (default demo-chat)")
    stream.add_argument("--api-base", help="API base URL (default MODELRIVER_API_BASE)")
    stream.add_argument("--api-key", help="API key (default MODELRIVER_API_KEY)")
    stream.add_argument("--realm", metavar="URL",
                        help="stream through a Realm server (ws://...) instead of ModelRiver; "
                             "the workflow is Realm's model")
    stream.add_argument("--realm-api-key", metavar="KEY",
                        help="Realm API key (default REALM_API_KEY)")
    stream.add_argument("--json", action="store_true",
                        help="print one JSON object per event per line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "dev":
        return _dev(args)
    if args.command == "stream":
        try:
            return asyncio.run(_stream(args))
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # e.g. piped into `head`: stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
    parser.print_help(sys.stderr)
    return 2


# -- modelriver dev --------------------------------------------------------------------------------


def _dev(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every webhook request URL
    logging.getLogger("websockets.server").setLevel(logging.WARNING)  # every Realm connection
    try:
        from modelriver.devserver import (
            ConfigError,
            GatewayConfig,
            RealmEndpointConfig,
            load_config,
            run,
        )
    except ImportError as exc:
        _write(sys.stderr, f"error: {exc}\n")
        return 2

    env = Settings.from_env()
    api_key = args.api_key or env.api_key
    generated = not api_key
    if not api_key:
        api_key = f"mr_dev_{secrets.token_hex(16)}"
    secret = args.webhook_secret or env.webhook_secret
    try:
        config = (load_config(args.config, api_key=api_key) if args.config
                  else GatewayConfig(api_key=api_key))
        realm = None
        if args.realm_port:
            realm_key = None if args.realm_no_auth else (
                args.realm_api_key or env.realm_api_key)
            realm = RealmEndpointConfig(args.realm_port, host=args.host, api_key=realm_key,
                                        auth=not args.realm_no_auth)
            if args.realm_no_auth:
                _write(sys.stderr, "warning: the Realm endpoint runs without authentication "
                                   "(--realm-no-auth): anyone who can reach its port runs the "
                                   "gateway's workflows\n")
        config = config.with_options(webhook_secret=secret, public_url=args.public_url,
                                     rate_limit=args.rate_limit, realm=realm)
    except ConfigError as exc:
        _write(sys.stderr, f"error: {exc}\n")
        return 2

    def on_ready(url: str) -> None:
        # What start-up made lives as long as the process: out of the collector's sight, a full
        # collection walks only what requests made (it paused the gateway 40-120 ms mid-stream
        # before, and every client then got the tokens of the pause in one burst).
        gc.collect()
        gc.freeze()
        public = (config.public_url or url).rstrip("/")
        ws = public.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        logger.info("HTTP API:    %s/v1/ai/async", public)
        logger.info("WebSocket:   %s/socket", ws.removesuffix("/socket"))
        logger.info("Request log: %s/", public)
        if generated:
            _write(sys.stdout, f"API key (generated for this run): {api_key}\n")
        else:
            logger.info("API key:     %s", mask_secret(api_key))
        for workflow in config.workflows.values():
            logger.info("workflow %-16s %s", workflow.name, workflow.description)
        if config.server.rate_limit:
            logger.info("rate limit:  %d requests/minute per key", config.server.rate_limit)
        _write(sys.stdout, f"modelriver dev ready on {url}\n")

    run(config, host=args.host, port=args.port, on_ready=on_ready)
    logger.info("modelriver dev stopped")
    return 0


# -- modelriver stream -----------------------------------------------------------------------------


async def _stream(args: argparse.Namespace) -> int:
    from modelriver.api import AsyncModelRiver
    from modelriver.exceptions import APIConnectionError, ModelRiverError
    from modelriver.realm.upstream import RealmUpstream
    from modelriver.upstream import AsyncUpstream, upstream_from_env

    printer = _JsonPrinter() if args.json else _TextPrinter()
    upstream: AsyncUpstream
    if args.realm:
        realm_key = args.realm_api_key or Settings.from_env().realm_api_key
        upstream = RealmUpstream(args.realm, api_key=realm_key)
    elif args.api_key is None and args.api_base is None:
        upstream = upstream_from_env()  # MODELRIVER_UPSTREAM=realm selects Realm
    else:
        settings = Settings.from_env().merged(api_key=args.api_key, api_base=args.api_base)
        upstream = AsyncModelRiver(api_key=settings.api_key, api_base=settings.api_base)
    if isinstance(upstream, AsyncModelRiver) and upstream.settings.api_key is None:
        await upstream.aclose()
        _write(sys.stderr, f"error: no API key: pass --api-key or set {ENV_API_KEY} (nothing was sent)\n")
        return 2
    try:
        request = await upstream.create_request(args.workflow, args.prompt)
        stream = await upstream.connect(request)  # ModelRiver: token refresh through reconnect
        try:
            async for event in stream:
                printer.event(event)
        finally:
            await stream.close()
            printer.close()
    except APIConnectionError as exc:
        message = str(exc)
        if upstream.api_base not in message:  # name the URL tried, and where it came from
            where = f" (--api-base or {ENV_API_BASE})" if isinstance(upstream, AsyncModelRiver) else ""
            message = f"cannot reach {upstream.api_base}{where}: {message}"
        printer.failure(message)
        return 1
    except ModelRiverError as exc:
        printer.failure(str(exc))
        return 1
    finally:
        await upstream.aclose()
    return 1 if printer.failed else 0


class _TextPrinter:
    """Tokens live on stdout, progress on stderr, structured output as pretty JSON."""

    def __init__(self) -> None:
        self.failed = False
        self._open_line = False
        self._streamed = False

    def _end_line(self) -> None:
        if self._open_line:
            _write(sys.stdout, "\n")
            self._open_line = False

    def _status(self, text: str) -> None:
        if self._open_line:  # keep the streamed text on its own line when both go to a terminal
            _write(sys.stdout, "\n")
            self._open_line = False
        _write(sys.stderr, f"[{text}]\n")

    def event(self, event: Any) -> None:
        from modelriver.events import Error, Response, Status, Step, Token, ToolCall

        if isinstance(event, Token):
            _write(sys.stdout, event.data)
            self._open_line = self._streamed = True
        elif isinstance(event, Status):
            if event.status == "failover":
                self._end_line()
                payload = event.payload
                self._status(f"failover {payload.get('from')} -> {payload.get('to')}: "
                             f"{payload.get('reason')} "
                             f"({'the answer restarts' if event.reset else 'the answer continues'})")
            else:
                where = "/".join(x for x in (event.provider, event.model) if x)
                self._status(f"{event.status}{' ' + where if where else ''}")
        elif isinstance(event, Step):
            step = event.step
            if step.status not in ("pending", "loading"):  # loading: mid-answer, not worth a line
                self._end_line()
                took = f" in {step.duration} ms" if step.duration is not None else ""
                self._status(f"step {step.id}: {step.status}{took}")
        elif isinstance(event, ToolCall):
            self._end_line()
            self._status(f"tool_call {event.name}({json.dumps(event.arguments, ensure_ascii=False)})")
        elif isinstance(event, Response):
            self._response(event.response)
        elif isinstance(event, Error):
            self.failure(event.message)

    def _response(self, response: Any) -> None:
        if response.kind == "ai_generated":
            self._end_line()
            self._status("ai_generated: waiting for the backend's callback")
            return
        if response.is_error:
            self.failure(response.error_message or "request failed")
            return
        if not self._streamed and response.content and response.data is None:
            _write(sys.stdout, response.content)
            self._open_line = True
        self._end_line()
        if response.data is not None:
            _write(sys.stdout, json.dumps(response.data, indent=2, ensure_ascii=False) + "\n")
        self._status(f"{response.status} in {response.duration_ms} ms"
                     if response.duration_ms is not None else response.status)

    def close(self) -> None:
        self._end_line()

    def failure(self, message: str) -> None:
        self._end_line()
        self.failed = True
        _write(sys.stderr, f"error: {message}\n")


class _JsonPrinter:
    """One JSON object per event per line on stdout; the terminal event is printed last."""

    def __init__(self) -> None:
        self.failed = False
        self._final: str | None = None

    def event(self, event: Any) -> None:
        from modelriver.events import Error, Response, Status

        record: dict[str, Any] = {"type": event.type}
        terminal = False
        if isinstance(event, Response):
            record["response"] = event.response.raw
            terminal = event.response.is_terminal
            self.failed = self.failed or event.response.is_error
        elif isinstance(event, Status):
            record.update(event.payload or {"status": event.status, "seq": event.seq})
        else:
            for f in dataclasses.fields(event):
                value = getattr(event, f.name)
                is_record = dataclasses.is_dataclass(value) and not isinstance(value, type)
                record[f.name] = dataclasses.asdict(value) if is_record else value
            if isinstance(event, Error):
                self.failed = terminal = True
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        if terminal:
            self._final = line  # after the step updates the stream derives from it
        else:
            _write(sys.stdout, line)

    def close(self) -> None:
        if self._final is not None:
            _write(sys.stdout, self._final)
            self._final = None

    def failure(self, message: str) -> None:
        self.close()
        self.failed = True
        _write(sys.stdout, json.dumps({"type": "error", "message": message}, ensure_ascii=False) + "\n")
        _write(sys.stderr, f"error: {message}\n")
