"""HTTP views: start, reconnect, cancel, webhook (async; served by an ASGI server).

Django calls each as ``view(request)``; the ``body`` in the signatures of start, reconnect and
cancel is the POST's JSON object, parsed before they run (405 for another method, 400 for a body
that is not a JSON object of at most 1 MiB).

* ``POST <mount>start`` (CSRF-protected), JSON ``{message | messages, workflow?}``: creates the
  request server-side on the hub's upstream (``MODELRIVER['UPSTREAM']``), starts its pump, and
  answers ModelRiver's async shape (``channel_id, project_id, ws_token, websocket_url,
  websocket_channel``) with
  ``websocket_url = ws(s)://host<mount>socket`` and a Django-issued token for this session.
  Everything it needs is checked before the upstream request is created (nothing is spent on an
  error answer): the body (400), the workflow, ``PERMISSION`` (403), the session (stored first
  when new: an unmigrated sessions table is a 500 saying so), the start limits (429 with
  ``Retry-After``: ``START_RATE`` and ``MAX_IN_FLIGHT`` per session and per user), the
  ``request_starting`` receivers.
* ``POST <mount>api/v1/ai/reconnect`` JSON ``{channel_id}``: a fresh token for the same owner
  (what the official SDK's ``reconnectWithBackend()`` calls with ``apiBaseUrl=<mount>``). Without
  ``channel_id`` *(ours)*: the owner's latest request in flight, 204 when none. It changes nothing,
  so it is CSRF-exempt like the SDK expects.
* ``POST <mount>cancel`` (CSRF-protected) JSON ``{channel_id}``: cancels upstream.
* ``POST <mount>webhook``: verifies the gateway's signature (401 and nothing kept on failure,
  401 too for a replay of a delivery already received), answers redeliveries idempotently,
  sends ``webhook_received``, then calls back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from django_modelriver.conf import modelriver_settings
from django_modelriver.consumers import check_permission
from django_modelriver.hub import get_hub
from django_modelriver.limits import Refusal
from django_modelriver.signals import DEFER_CALLBACK, request_starting, webhook_received
from django_modelriver.store import RequestRecord
from django_modelriver.tokens import END_GRACE, SESSION_KEY, issue_token
from modelriver.exceptions import (
    APIError,
    AuthenticationError,
    InvalidInputError,
    ModelRiverError,
    RateLimitError,
    WebhookVerificationError,
)
from modelriver.text import unencodable_path
from modelriver.upstream import UpstreamError
from modelriver.webhooks import verify_webhook

__all__ = ["cancel", "reconnect", "socket_info", "start", "webhook"]

logger = logging.getLogger("django_modelriver")

MAX_MESSAGES = 200
MAX_BODY = 1 << 20


def _error(status: int, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": message, "message": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _identify(request: HttpRequest, *, create: bool) -> tuple[str | None, str | None]:
    """(session owner id, user id) of a request; creates the session owner when asked."""
    session = getattr(request, "session", None)
    owner = session.get(SESSION_KEY) if session is not None else None
    if owner is None and create and session is not None:
        owner = session[SESSION_KEY] = secrets.token_urlsafe(18)
    user = getattr(request, "user", None)
    user_id = str(user.pk) if user is not None and getattr(user, "is_authenticated", False) else None
    return owner, user_id


def _json_body(request: HttpRequest) -> dict[str, Any] | str:
    """The JSON object of a body, or what is wrong with it (a 400's message)."""
    if len(request.body) > MAX_BODY:
        return f"the body is larger than {MAX_BODY} bytes"
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return "the body must be a JSON object"
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    where = unencodable_path(body)
    if where is not None:
        return f"{where} is not valid Unicode text (a lone surrogate such as \\ud800)"
    return body


def _json_post(view: Callable[[HttpRequest, dict[str, Any]], Coroutine[Any, Any, HttpResponse]],
               ) -> Callable[[HttpRequest], Coroutine[Any, Any, HttpResponse]]:
    """Make ``view(request, body)`` a view of POSTs of a JSON object: 405 for another method and
    400 for a bad body, before ``view`` runs."""
    @functools.wraps(view)
    async def post(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return _error(405, "POST only", Allow="POST")
        body = _json_body(request)
        if isinstance(body, str):
            return _error(400, body)
        return await view(request, body)
    return post


async def _owned_record(channel_id: str, owner: str | None, user_id: str | None) -> RequestRecord | JsonResponse:
    """The stored request ``channel_id`` when it is this owner's; else the error answer (404, 403)."""
    record = await get_hub().backend.get(channel_id)
    if record is None:
        return _error(404, "unknown request")
    if not record.owned_by(owner, user_id):
        return _error(403, "this request belongs to someone else")
    return record


def _socket_url(request: HttpRequest) -> str:
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host()}{reverse('django_modelriver:socket')}"


def _answer(request: HttpRequest, record: RequestRecord, owner: str,
            websocket_url: str | None = None) -> dict[str, Any]:
    return {
        "channel_id": record.channel_id,
        "project_id": record.project_id,
        "ws_token": issue_token(record.channel_id, owner),
        "websocket_url": websocket_url or _socket_url(request),
        "websocket_channel": record.topic,
    }


def _session_owner(request: HttpRequest) -> tuple[str | None, str | None]:
    """``_identify(create=True)``, the session stored at once when new (so a missing sessions
    table fails here, before anything is spent, not in the middleware after the start)."""
    owner, user_id = _identify(request, create=True)
    session = getattr(request, "session", None)
    if owner is not None and session is not None and session.session_key is None:
        session.save()
    return owner, user_id


def _limited(refusal: Refusal) -> JsonResponse:
    if refusal.reason == "rate":
        message = "too many requests started from this session: try again later"
    else:
        message = "too many requests of this session are still running: wait for one to end"
    return _error(429, message, Retry_After=str(refusal.retry_after))


async def _reserve(identities: list[str]) -> str | Refusal:
    """Take a start from the limits; slots whose requests have ended are freed on the way."""
    limits = modelriver_settings().start_limits()
    if not limits.enabled:
        return ""
    verdict = await sync_to_async(limits.reserve)(identities, time.time())
    if isinstance(verdict, Refusal) and verdict.in_flight:
        backend = get_hub().backend
        ended = [cid for cid in verdict.in_flight
                 if await backend.get(cid) is None or await backend.ended_at(cid) is not None]
        if ended:
            verdict = await sync_to_async(limits.reserve)(identities, time.time(), ended)
    return verdict


def _messages(body: dict[str, Any]) -> list[dict[str, str]] | str:
    """The chat messages of a start body, or an error message."""
    if "messages" in body:
        messages = body["messages"]
        if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
            return "messages must be a non-empty list"
        result = []
        for item in messages:
            if not (isinstance(item, dict) and isinstance(item.get("content"), str)
                    and item.get("role") in ("user", "assistant", "system")):
                return "each message needs a role (user, assistant or system) and a content string"
            result.append({"role": item["role"], "content": item["content"]})
        return result
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        return "send {message: text} or {messages: [{role, content}]}"
    return [{"role": "user", "content": message}]


@csrf_protect
@_json_post
async def start(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Start a request for this session (see the module docstring)."""
    settings = modelriver_settings()
    messages = _messages(body)
    if isinstance(messages, str):
        return _error(400, messages)
    workflow = body.get("workflow") or settings.default_workflow
    if not isinstance(workflow, str) or not workflow:
        return _error(400, "no workflow: send one or set MODELRIVER['DEFAULT_WORKFLOW']")
    options = settings.workflow_options(workflow)
    if options is None:
        return _error(400, f"workflow {workflow!r} is not allowed here")
    if not await check_permission(request):
        return _error(403, "not allowed to start a request")
    try:
        owner, user_id = await sync_to_async(_session_owner)(request)
    except DatabaseError:
        logger.exception("the session store failed: is the sessions table migrated?")
        return _error(500, "sessions are not stored: run `python manage.py migrate` (nothing was started)")
    if owner is None:
        return _error(500, "sessions are not enabled (see django_modelriver.E006)")
    try:
        websocket_url = _socket_url(request)
        extra: dict[str, Any] = {"events": list(options.events), "metadata": dict(options.metadata),
                                 "webhook_url": None}
        if extra["events"]:
            extra["webhook_url"] = settings.webhook_url or request.build_absolute_uri(
                reverse("django_modelriver:webhook"))
    except NoReverseMatch:
        logger.exception("django_modelriver's URLs are not included under the 'django_modelriver' namespace")
        return _error(500, "the relay's URLs are not set up (nothing was started)")
    identities = [f"session:{owner}", *([f"user:{user_id}"] if user_id else [])]
    reservation = await _reserve(identities)
    if isinstance(reservation, Refusal):
        logger.info("start refused: %s limit of a session", reservation.reason)
        return _limited(reservation)
    outcome: RequestRecord | HttpResponse = _error(500, "could not start the request")
    try:
        results = await sync_to_async(request_starting.send_robust)(
            sender=start, request=request, workflow=workflow, messages=messages, options=extra)
        failed = [(receiver, result) for receiver, result in results if isinstance(result, Exception)]
        for receiver, result in failed:
            logger.error("request_starting receiver %r failed", receiver, exc_info=result)
        if not failed:
            outcome = await _create(workflow, messages, extra, owner, user_id)
    finally:  # the slot in flight is the request's, or free again
        if reservation:
            limits = settings.start_limits()
            if isinstance(outcome, RequestRecord):
                await sync_to_async(limits.bind)(identities, reservation, outcome.channel_id)
            else:
                await sync_to_async(limits.release)(identities, reservation)
    if isinstance(outcome, HttpResponse):
        return outcome
    return JsonResponse({"message": "success", "status": "pending",
                         **_answer(request, outcome, owner, websocket_url)})


async def _create(workflow: str, messages: list[dict[str, str]], extra: dict[str, Any], owner: str,
                  user_id: str | None) -> RequestRecord | HttpResponse:
    """Create the upstream request and start its pump; an error answer when the upstream fails."""
    hub = get_hub()
    try:
        await hub.ensure_started()
        upstream = await hub.upstream().create_request(
            workflow, messages, events=extra["events"] or None, webhook_url=extra["webhook_url"],
            metadata=extra["metadata"] or None)
    except RateLimitError as exc:
        retry = str(int(exc.retry_after or 1))
        return _error(429, "rate limited upstream, try again later", Retry_After=retry)
    except AuthenticationError:
        logger.error("the upstream (%s) refused this server's API key (check MODELRIVER['API_KEY'] "
                     "or the UPSTREAM factory's key)", hub.upstream().api_base)
        return _error(502, "the AI service refused this server's credentials")
    except UpstreamError as exc:
        logger.warning("create_request refused by the upstream: %s", exc.message)
        return _error(400, f"the AI service cannot run this request: {exc.message}")
    except APIError as exc:
        logger.warning("create_request failed upstream: HTTP %s", exc.status)
        if exc.status in (400, 404, 422):
            return _error(400, f"the AI service refused the request (HTTP {exc.status})")
        return _error(502, f"the AI service failed (HTTP {exc.status})")
    except InvalidInputError as exc:  # e.g. text a request_starting receiver added
        return _error(400, f"the request cannot be sent: {exc}")
    except ModelRiverError as exc:  # e.g. the upstream could not be reached
        logger.warning("create_request failed: %s", type(exc).__name__)
        return _error(502, "the AI service could not be reached")
    record = RequestRecord(channel_id=upstream.channel_id, project_id=upstream.project_id,
                           topic=upstream.topic, owner=owner, user_id=user_id, workflow=workflow)
    try:
        await hub.backend.save(record)
        lease = await hub.backend.acquire_pump(record.channel_id)
    except Exception:  # the store is down: nobody could follow the request, so stop it
        logger.exception("could not keep request %s: cancelling it upstream", record.channel_id)
        try:
            await hub.upstream().cancel(record.channel_id)
        except ModelRiverError as exc:
            logger.warning("cancel of %s failed: %s", record.channel_id, type(exc).__name__)
        return _error(500, "could not start the request")
    if lease is not None:
        hub.start_pump(record, upstream, lease)
    logger.info("started %s (workflow %s)", record.channel_id, workflow)
    return record


@csrf_exempt
@_json_post
async def reconnect(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """A fresh socket token for a request of this owner (see the module docstring)."""
    channel_id = body.get("channel_id")
    if channel_id is not None and not isinstance(channel_id, str):
        return _error(400, "channel_id must be a string")
    if not await check_permission(request):
        return _error(403, "not allowed")
    owner, user_id = await sync_to_async(_identify)(request, create=False)
    hub = get_hub()
    record: RequestRecord | HttpResponse | None
    if channel_id:
        record = await _owned_record(channel_id, owner, user_id)
    else:
        record = await hub.backend.latest(owner, user_id)
    if record is None:
        return HttpResponse(status=204)  # nothing to resume (not an error for the page)
    if isinstance(record, HttpResponse):
        return record
    ended = await hub.backend.ended_at(record.channel_id)
    if ended is not None and time.time() - ended > END_GRACE:
        return _error(404, "the request is over")
    if owner is None:  # the same user, from another session
        owner, _ = await sync_to_async(_identify)(request, create=True)
    if owner is None:
        return _error(500, "sessions are not enabled (see django_modelriver.E006)")
    await hub.ensure_started()
    return JsonResponse(_answer(request, record, owner))


@csrf_protect
@_json_post
async def cancel(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Cancel a request of this owner upstream."""
    channel_id = body.get("channel_id")
    if not isinstance(channel_id, str):
        return _error(400, "send {channel_id}")
    if not await check_permission(request):
        return _error(403, "not allowed")
    owner, user_id = await sync_to_async(_identify)(request, create=False)
    record = await _owned_record(channel_id, owner, user_id)
    if isinstance(record, HttpResponse):
        return record
    hub = get_hub()
    if await hub.backend.ended_at(channel_id) is not None:
        return _error(409, "the request is already over")
    try:
        await hub.upstream().cancel(channel_id)
    except APIError as exc:
        if exc.status in (404, 409):
            return _error(409, "the request is already over")
        logger.warning("cancel failed upstream: HTTP %s", exc.status)
        return _error(502, "the AI service failed to cancel")
    except ModelRiverError as exc:
        logger.warning("cancel failed: %s", type(exc).__name__)
        return _error(502, "the AI service could not be reached")
    return JsonResponse({"status": "cancelled", "channel_id": channel_id})


@csrf_exempt
async def webhook(request: HttpRequest) -> HttpResponse:
    """Receive a gateway webhook (see the module docstring and ``signals``)."""
    if request.method != "POST":
        return _error(405, "POST only", Allow="POST")
    settings = modelriver_settings()
    if not settings.webhook_secret:
        logger.error("webhook refused: MODELRIVER['WEBHOOK_SECRET'] is not set")
        return _error(401, "webhook not verified")
    try:
        event = verify_webhook(request.body, request.headers, settings.webhook_secret)
    except WebhookVerificationError as exc:
        logger.info("webhook refused: %s", exc)
        return _error(401, "webhook not verified")
    hub = get_hub()
    # A replay (the very same signed delivery again) is refused like a forgery; the gateway's own
    # redeliveries are signed afresh and reach the idempotency check below. A delivery that
    # failed here is forgotten, so a retry signed within the same second is not taken for a replay.
    signature = (request.headers.get("X-ModelRiver-Signature") or "").lower().removeprefix("sha256=")
    sig_key = f"sig:{signature}"
    if await hub.backend.webhook_begin(sig_key) != "new":
        logger.info("webhook refused: a replay of a delivery already received")
        return _error(401, "webhook not verified")
    response: HttpResponse | None = None
    try:
        response = await _dedupe_and_handle(request, event)
        return response
    finally:
        await hub.backend.webhook_end(sig_key, ok=response is not None and response.status_code < 300)


async def _dedupe_and_handle(request: HttpRequest, event: Any) -> HttpResponse:
    hub = get_hub()
    kind = event.type or event.event or event.status or ""
    key = f"{event.channel_id}:{kind}" if event.channel_id else \
        "body:" + hashlib.sha256(request.body).hexdigest()
    state = await hub.backend.webhook_begin(key)
    if state == "done":
        return JsonResponse({"status": "duplicate"})
    if state == "processing":
        return JsonResponse({"status": "processing"}, status=202)
    try:
        return await _handle_webhook(request, event, key)
    except BaseException:
        await hub.backend.webhook_end(key, ok=False)
        raise


async def _handle_webhook(request: HttpRequest, event: Any, key: str) -> HttpResponse:
    hub = get_hub()
    settings = modelriver_settings()
    data: dict[str, Any] = dict(event.data) if isinstance(event.data, dict) else {"value": event.data}
    data.pop("callback_url", None)  # its token is the gateway's business, not the browser's
    results = await sync_to_async(webhook_received.send_robust)(
        sender=webhook, event=event, data=data, channel_id=event.channel_id, request=request)
    defer = False
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error("webhook_received receiver %r failed", receiver, exc_info=result)
            await hub.backend.webhook_end(key, ok=False)
            return _error(500, "a webhook receiver failed")
        if result is DEFER_CALLBACK:
            defer = True
        elif isinstance(result, dict):
            data.update(result)
    if event.channel_id and event.callback_url:
        await hub.backend.set_callback(event.channel_id, {"callback_url": event.callback_url,
                                                          "task_id": event.task_id})
    if event.is_event_driven and settings.auto_callback and not defer and event.channel_id:
        try:
            await hub.callback_upstream().callback(event.channel_id, data, task_id=event.task_id,
                                                   callback_url=event.callback_url)
        except UpstreamError as exc:
            logger.error("callback for %s impossible: %s", event.channel_id, exc.message)
            await hub.backend.webhook_end(key, ok=False)
            return _error(502, "the callback failed")
        except ModelRiverError as exc:
            logger.warning("callback for %s failed: %s", event.channel_id, type(exc).__name__)
            await hub.backend.webhook_end(key, ok=False)
            return _error(502, "the callback failed")
    await hub.backend.webhook_end(key, ok=True)
    return JsonResponse({"status": "ok"})


async def socket_info(request: HttpRequest) -> HttpResponse:
    """The socket's HTTP face: it speaks WebSocket only (at ``socket/websocket``)."""
    return _error(426, "connect a WebSocket to socket/websocket", Upgrade="websocket")
