"""``st_modelriver()``: one call, a streamed answer; the bookkeeping that makes it rerun-safe.

Each call is identified by ``key``. Per session, ``st.session_state`` remembers the request of
each key (its channel, token, and once over, its final response), so a rerun re-attaches to the
request in flight instead of starting another. Per page, the query parameter ``mr_<key>`` holds
the channel id while the request is in flight, so a browser reload (a new session) finds it
again: server mode re-follows the process's pump for that channel, component mode asks the
reconnect API for a fresh socket token and the browser resumes from its saved ``last_seq``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import streamlit as st

from modelriver import AIResponse, AsyncRequest, ModelRiverError, WorkflowStep
from modelriver.markdown import SafeMarkdown, escape_markdown
from modelriver.upstream import Upstream
from streamlit_modelriver import _component
from streamlit_modelriver._pump import PumpRegistry
from streamlit_modelriver._render import (
    card_container,
    card_markdown,
    display_text,
    final_label,
    render_final,
    render_outcome,
    steps_markdown,
    text_container,
)
from streamlit_modelriver._settings import upstream_client

__all__ = ["QUERY_PREFIX", "Mode", "pump_registry", "resumable_requests", "st_modelriver"]

logger = logging.getLogger("streamlit_modelriver")

Mode = Literal["component", "server"]
QUERY_PREFIX = "mr_"
_STATE_KEY = "_streamlit_modelriver"
_IDLE_CHECK = 0.2  # seconds between rerun checks while a server-mode stream is quiet
_STATUS_GRACE = 0.1  # seconds a server-mode answer's first text may come before its status box
_CONNECTING = "Connecting…"


@dataclass
class _Entry:
    """What a session remembers about one key's request."""

    key: str
    fingerprint: str | None
    request: AsyncRequest | None
    response: AIResponse | None = None
    text: str = ""
    steps: list[WorkflowStep] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    handled: set[str] = field(default_factory=set)
    in_url: bool = False

    @property
    def channel_id(self) -> str | None:
        return self.request.channel_id if self.request is not None else None


@st.cache_resource(show_spinner=False)
def pump_registry() -> PumpRegistry:
    """This process's server-mode pumps (``st.cache_resource``: shared by sessions, clearable)."""
    return PumpRegistry()


def _entries() -> dict[str, _Entry]:
    entries = st.session_state.get(_STATE_KEY)
    if not isinstance(entries, dict):
        entries = {}
        st.session_state[_STATE_KEY] = entries
    return entries


def resumable_requests() -> dict[str, str]:
    """Keys with a request in flight that this page can resume: ``{key: channel_id}``.

    After a browser reload the session is new; call ``st_modelriver(None, key=key)`` for each
    to show the answer still streaming (no new upstream request is made).
    """
    entries = _entries()
    found = {}
    for name in st.query_params:
        if name.startswith(QUERY_PREFIX):
            key = name[len(QUERY_PREFIX):]
            entry = entries.get(key)
            if entry is None or entry.response is None:
                found[key] = st.query_params[name]
    return found


def _normalize(prompt_or_messages: str | Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    if prompt_or_messages is None:
        return None
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    return [dict(message) for message in prompt_or_messages]


def _fingerprint(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _error(channel_id: str | None, message: str) -> AIResponse:
    raw = {"status": "error", "channel_id": channel_id, "error": {"message": message}}
    return AIResponse(status="error", channel_id=channel_id, error={"message": message}, raw=raw)


def st_modelriver(
    prompt_or_messages: str | Sequence[Mapping[str, Any]] | None,
    *,
    workflow: str | None = None,
    client: Upstream | None = None,
    key: str | None = None,
    mode: Mode = "component",
    show_steps: bool = True,
    events: Sequence[str] | None = None,
    on_token: Callable[[str], None] | None = None,
    webhook_url: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    allow_remote_media: bool = False,
) -> AIResponse | None:
    """Stream a ModelRiver answer into the app; return the final response once it is in.

    Args:
        prompt_or_messages: a prompt, chat messages ``[{role, content}]``, or None to only
            resume the request of ``key`` after a reload (see ``resumable_requests()``).
        workflow: the workflow to run (needed to start a request).
        client: where requests go, any ``modelriver.upstream.Upstream`` (a ``ModelRiver``
            client, a ``SyncRealmUpstream``...); default ``upstream_client()`` (st.secrets or
            env: ``MODELRIVER_UPSTREAM=realm`` selects Realm; cached).
        key: identifies this request across reruns and reloads; default: derived from the
            workflow and messages. A new prompt under the same key starts a new request.
        mode: ``"component"``: the browser streams from the gateway's socket; ``"server"``:
            this process streams and writes native elements (``st.status``, ``st.markdown``).
            Component mode needs a browser-facing socket token; an upstream that gives none
            (Realm) is followed in server mode instead.
        show_steps: show the workflow steps.
        events: events of an event-driven workflow, e.g. ``["webhook_received"]``.
        on_token: called with each text delta as it is drawn (server mode; after a rerun, first
            with the text so far, and a failover reset starts the text over; a structured
            answer's deltas are those of its prose field); in component mode the
            tokens never reach Python, so it is called once with the whole answer.
        webhook_url: where the gateway posts the webhook (event-driven workflows).
        metadata: request metadata passed through to the gateway.
        allow_remote_media: show images of the answer's Markdown as images. Default False: the
            answer is untrusted (a prompt injection could make the browser fetch an image URL
            that carries the chat), so each image is shown as a link (alt text and URL); raw
            HTML is never rendered, and error messages, tool names and failover reasons are
            shown as typed (no Markdown directives).

    Returns:
        None while the answer streams (component mode), then the ``AIResponse``; errors come
        back as an ``AIResponse`` with ``is_error`` (and are shown with ``st.error``).

    Raises:
        ValueError: a bad ``mode``, or nothing to start nor resume.
    """
    if mode not in ("component", "server"):
        raise ValueError(f"mode must be 'component' or 'server', not {mode!r}")
    messages = _normalize(prompt_or_messages)
    fingerprint = None
    if messages is not None:
        fingerprint = _fingerprint(workflow=workflow, messages=messages, events=events,
                                   webhook_url=webhook_url, metadata=metadata)
    if key is None:
        if fingerprint is None:
            raise ValueError("pass a prompt, or the key of a request to resume")
        key = f"auto-{fingerprint[:16]}"
    api = client if client is not None else upstream_client()
    entries = _entries()
    entry = entries.get(key)
    if entry is not None and fingerprint is not None and entry.fingerprint not in (None, fingerprint):
        logger.debug("new prompt under key %r: a new request", key)
        _forget_query(key)
        entry = None
    if entry is None:
        entry = _resume(api, key, mode, fingerprint)
        if entry is None:
            if messages is None:
                return None
            entry = _start(api, key, fingerprint, workflow, messages, events=events,
                           webhook_url=webhook_url, metadata=metadata)
        entries[key] = entry
    elif entry.fingerprint is None:
        entry.fingerprint = fingerprint

    if entry.response is not None:
        render_final(entry.response, key=entry.key, text=entry.text, steps=entry.steps, notes=entry.notes,
                     show_steps=show_steps, allow_remote_media=allow_remote_media)
        return entry.response
    assert entry.request is not None
    response: AIResponse | None
    if mode == "server" or not _browser_can_stream(api, entry.request):
        response = _follow(api, entry, show_steps=show_steps, on_token=on_token,
                           allow_remote_media=allow_remote_media)
    else:
        response = _run_component(api, entry, show_steps=show_steps, allow_remote_media=allow_remote_media)
        if response is not None and on_token is not None and entry.text:
            on_token(entry.text)
    if response is not None:
        _forget_query(key)
    return response


# -- starting and resuming ---------------------------------------------------------------------

def _start(api: Upstream, key: str, fingerprint: str | None, workflow: str | None,
           messages: list[dict[str, Any]], *, events: Sequence[str] | None, webhook_url: str | None,
           metadata: Mapping[str, Any] | None) -> _Entry:
    if not workflow:
        raise ValueError("workflow is required to start a request")
    try:
        request = api.create_request(workflow, messages, events=events, webhook_url=webhook_url,
                                     metadata=metadata)
    except ModelRiverError as exc:
        logger.warning("could not start a %r request: %s", workflow, exc)
        return _Entry(key, fingerprint, None, response=_error(None, str(exc)))
    logger.info("started request %s (workflow %r, key %r)", request.channel_id, workflow, key)
    return _Entry(key, fingerprint, request)


def _remember_in_url(entry: _Entry) -> None:
    """Put the request in the URL (``mr_<key>``) so a reload finds it; once per request.

    Called right *after* the first thing is drawn: the browser handles a URL change slowly
    (tens of ms), so doing it first would delay the first token on screen.
    """
    if entry.in_url or entry.request is None or entry.response is not None:
        return
    entry.in_url = True
    st.query_params[QUERY_PREFIX + entry.key] = entry.request.channel_id


def _resume(api: Upstream, key: str, mode: Mode, fingerprint: str | None) -> _Entry | None:
    channel_id = st.query_params.get(QUERY_PREFIX + key)
    if not channel_id:
        return None
    if mode == "server":
        pump = pump_registry().get(channel_id)
        if pump is not None:
            logger.info("re-following request %s (key %r)", channel_id, key)
            return _Entry(key, fingerprint, pump.request, in_url=True)
    try:
        request = api.reconnect(channel_id)
    except ModelRiverError as exc:
        logger.warning("could not resume request %s: %s", channel_id, exc)
        _forget_query(key)
        return _Entry(key, fingerprint, None,
                      response=_error(channel_id, f"could not resume the request: {exc}"))
    logger.info("resumed request %s with a fresh socket token (key %r)", channel_id, key)
    return _Entry(key, fingerprint, request, in_url=True)


def _forget_query(key: str) -> None:
    name = QUERY_PREFIX + key
    if name in st.query_params:
        del st.query_params[name]


# -- server mode ---------------------------------------------------------------------------------

def _checkpoint() -> None:
    """Let Streamlit stop or rerun this script now if asked (any session_state read does)."""
    st.session_state.get(_STATE_KEY)


def _follow(api: Upstream, entry: _Entry, *, show_steps: bool,
            on_token: Callable[[str], None] | None, allow_remote_media: bool = False) -> AIResponse:
    assert entry.request is not None
    pump = pump_registry().start(api, entry.request)
    # The final rendering's layout from the start (``render_final``: a collapsed status, then the
    # text's container), the live steps below the text (as in component mode): the text never moves
    # when the status appears or collapses. ``st.status`` comes after the first text, or
    # _STATUS_GRACE without one: Streamlit sleeps 50 ms in every ``st.status()`` (for its
    # frontend), which must not hold a fast model's first token back. Until then a collapsed
    # expander (no sleep, the same height) holds its place, so no frame shows the text without it.
    head = st.empty() if show_steps else None
    if head is not None:
        head.expander(_CONNECTING)
    boxes: list[Any] = []  # [the status], once made
    status_due = time.monotonic() + _STATUS_GRACE

    def status_box(now: bool = False) -> list[Any]:
        if head is not None and not boxes and (now or time.monotonic() >= status_due):
            boxes.append(head.status(_CONNECTING, state="running", expanded=False))
        return boxes

    text_slot = text_container(entry.key).empty()
    card_slot = card_container(entry.key).empty()
    steps_slot = st.empty()
    stop_slot = st.empty()
    if stop_slot.button("Stop", key=f"modelriver-stop-{entry.key}", icon=":material/stop_circle:"):
        try:
            pump.cancel()
        except ModelRiverError as exc:
            st.toast(f"Could not stop the request: {escape_markdown(str(exc))}", icon=":material/error:")

    cursor: dict[str, Any] = {"version": -1, "attempt": 0, "index": 0, "carry": "",
                              "drawn": None, "label": None, "snap": None, "card": "", "texted": False}

    def draw(snap: Any) -> None:
        if snap.prose is not None:  # a structured answer: its card fills in as fields complete
            card = card_markdown(snap.partial)
            if card != cursor["card"]:
                cursor["card"] = card
                card_slot.markdown(card)
        if head is None or snap.done:  # at the end the steps go into the collapsed status
            return
        drawn = (snap.steps, snap.notes)
        if drawn != cursor["drawn"]:
            cursor["drawn"] = drawn
            steps_slot.markdown(steps_markdown(snap.steps, snap.notes))
        if not status_box(now=cursor["texted"]):
            return
        if snap.label != cursor["label"]:
            cursor["label"] = snap.label
            boxes[0].update(label=escape_markdown(snap.label))

    def segment() -> Any:
        """Yield the text so far of one attempt (a structured answer's prose, never its JSON);
        end on a failover reset (``reset: true``) or at the end."""
        shown, cursor["carry"] = cursor["carry"], ""
        if shown:
            yield shown
        while True:
            settled = boxes or head is None or cursor["texted"]  # the status box is no question
            snap = pump.wait(version=cursor["version"], attempt=cursor["attempt"], index=cursor["index"],
                             timeout=_IDLE_CHECK if settled else max(0.0, status_due - time.monotonic()))
            if snap.version == cursor["version"]:
                if not settled and status_box() and cursor["snap"] is not None:
                    draw(cursor["snap"])  # no text yet: the status box with the news so far
                _remember_in_url(entry)  # nothing to draw for a while: a good moment
                _checkpoint()
                continue
            cursor["snap"] = snap
            cursor["version"] = snap.version
            cursor["index"] = snap.index
            text = snap.prose if snap.prose is not None else shown + snap.delta
            if snap.attempt != cursor["attempt"]:
                draw(snap)
                cursor["attempt"] = snap.attempt
                cursor["carry"] = snap.prose if snap.prose is not None else snap.delta
                return
            if text != shown:
                if on_token is not None:
                    on_token(text[len(shown):] if text.startswith(shown) else text)
                shown = text
                cursor["texted"] = True
                yield shown  # the text's delta first: the steps and the card follow it
                draw(snap)
                _remember_in_url(entry)
            else:
                draw(snap)
            if snap.done:
                return

    safe = SafeMarkdown(allow_remote_media=allow_remote_media)  # the answer is untrusted Markdown
    while True:
        for shown in segment():
            text_slot.markdown(safe(shown) + "▌")
        snap = cursor["snap"]
        if snap is not None and snap.done:
            break
        text_slot.empty()  # a failover reset: the next attempt's text replaces this one

    response: AIResponse = snap.response
    entry.response = response
    entry.text = pump.text
    entry.steps = list(snap.steps)
    entry.notes = list(snap.notes)
    stop_slot.empty()
    if status_box(now=True):
        status = boxes[0]
        status.markdown(steps_markdown(entry.steps, entry.notes))
        status.update(label=final_label(response), state="error" if response.is_error else "complete",
                      expanded=False)
        steps_slot.empty()
    shown = display_text(response, entry.text)
    if shown:
        text_slot.markdown(safe(shown, final=True))
    else:
        text_slot.empty()
    render_outcome(response, card=card_slot)
    return response


# -- component mode ------------------------------------------------------------------------------

_fallbacks_logged: set[str] = set()
_LIVE_LABEL = "Running the workflow…"


def _browser_can_stream(api: Upstream, request: AsyncRequest) -> bool:
    """Component mode needs a socket the browser may join: the request's ``ws_token``.

    An upstream whose requests carry none (Realm: its socket takes the server's API key, so it
    must not reach the browser) is followed in server mode instead; said once per upstream.
    """
    if request.ws_token and request.websocket_url:
        return True
    if api.api_base not in _fallbacks_logged:
        _fallbacks_logged.add(api.api_base)
        logger.info("the upstream at %s gives no browser socket token: component mode falls back "
                    "to server mode", api.api_base)
    return False


def _run_component(api: Upstream, entry: _Entry, *, show_steps: bool,
                   allow_remote_media: bool = False) -> AIResponse | None:
    assert entry.request is not None
    channel_id = entry.request.channel_id
    state = _component.peek(entry.key, channel_id)
    finished = _component.result_of(state, channel_id)
    if finished is None:
        _handle_triggers(api, entry, state)
        # The component puts ``mr_<key>`` in the URL itself (history.replaceState): a URL change
        # made from Python costs the browser a re-render before the component can connect.
        # The final rendering's layout from the start (``render_final``: a collapsed status, then
        # the text's container): each of its parts replaces one of these whole, so the answer
        # never moves nor blanks at the hand-over. The component draws the live steps below its
        # text; the status comes after the mount (``st.status()`` sleeps 50 ms).
        head = st.container() if show_steps else None
        with text_container(entry.key):
            state = _component.mount(entry.key, entry.request, show_steps=show_steps,
                                     url_param=QUERY_PREFIX + entry.key)
        if head is not None:
            head.status(_LIVE_LABEL, state="running", expanded=False)
        finished = _component.result_of(state, channel_id)
        if finished is None:
            return None
    response, text, steps, notes = finished
    entry.response, entry.text, entry.steps, entry.notes = response, text, steps, notes
    logger.info("request %s ended in the browser: %s", channel_id, response.status)
    render_final(response, key=entry.key, text=text, steps=steps, notes=notes, show_steps=show_steps,
                 allow_remote_media=allow_remote_media)
    return response


def _handle_triggers(api: Upstream, entry: _Entry, state: Mapping[str, Any]) -> None:
    """The component's stop and refresh requests: both need the API key, so Python does them."""
    assert entry.request is not None
    channel_id = entry.request.channel_id
    stop = state.get("stop")
    if isinstance(stop, str) and f"stop:{stop}" not in entry.handled:
        entry.handled.add(f"stop:{stop}")
        try:
            api.cancel(channel_id)
            logger.info("cancelled request %s", channel_id)
        except ModelRiverError as exc:
            st.toast(f"Could not stop the request: {escape_markdown(str(exc))}", icon=":material/error:")
    refresh = state.get("refresh")
    if isinstance(refresh, str) and f"refresh:{refresh}" not in entry.handled:
        entry.handled.add(f"refresh:{refresh}")
        try:
            entry.request = entry.request.with_token(api.reconnect(channel_id))
            logger.info("fresh socket token for request %s", channel_id)
        except ModelRiverError as exc:
            logger.warning("could not refresh the token of %s: %s", channel_id, exc)

