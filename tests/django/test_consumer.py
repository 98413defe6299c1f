"""The Phoenix consumer in-process (WebsocketCommunicator) against the real dev gateway:
token auth, join authorization, heartbeats, rejoin replay, malformed frames."""

from __future__ import annotations

import base64
import time
import uuid

import pytest
from django.core import signing
from djmr_support import COOKIES_OF_TOKEN, GATE, Browser, Socket, scripted, seqs_of, settle, text_of

from django_modelriver import tokens
from django_modelriver.hub import get_hub

pytestmark = pytest.mark.usefixtures("mr_settings", "hub_cleanup")

SLOW = {"tokens_per_second": 80, "text": " ".join(f"w{i}" for i in range(40))}


async def test_streams_every_event_in_order_and_the_answer_shape() -> None:
    answer = await Browser().start("hello relay")
    assert set(answer) >= {"channel_id", "project_id", "ws_token", "websocket_url", "websocket_channel"}
    assert answer["websocket_url"] == "ws://testserver/modelriver/socket"
    assert answer["websocket_channel"] == f"ai_response:{answer['project_id']}:{answer['channel_id']}"
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    reply = await sock.join(answer["websocket_channel"])
    assert reply[4] == {"status": "ok", "response": {}}
    frames = await sock.until_final()
    assert seqs_of(frames) == list(range(1, len(frames) + 1))
    final = frames[-1][4]
    assert final["status"] == "success"
    assert text_of(frames) == final["content"]
    await sock.disconnect()


async def test_token_is_required_genuine_and_unexpired(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = await Browser().start()
    assert not await Socket(None, query="vsn=2.0.0").connect()
    assert not await Socket(answer["ws_token"] + "x").connect()
    forged = signing.dumps({"c": answer["channel_id"], "o": "me", "j": "x"}, key="not-the-secret-key",
                           salt=tokens.SALT)
    assert not await Socket(forged).connect()
    monkeypatch.setattr(signing.TimestampSigner, "timestamp",
                        lambda self: signing.b62_encode(int(time.time()) - 301))
    stale = tokens.issue_token(answer["channel_id"], "owner")
    monkeypatch.undo()
    assert not await Socket(stale).connect()
    unknown = tokens.issue_token(str(uuid.uuid4()), "owner")
    assert not await Socket(unknown).connect()
    # phoenix.js's subprotocol form works, and the answer selects "phoenix"
    b64 = base64.urlsafe_b64encode(answer["ws_token"].encode()).decode().rstrip("=")
    sock = Socket(None, query="vsn=2.0.0", subprotocols=["phoenix", f"base64url.bearer.phx.{b64}"],
                  cookie=COOKIES_OF_TOKEN[answer["ws_token"]])
    connected, subprotocol = await sock.comm.connect(timeout=5)
    assert connected and subprotocol == "phoenix"
    await sock.disconnect()


async def test_origin_must_be_an_allowed_host() -> None:
    answer = await Browser().start()
    assert not await Socket(answer["ws_token"], origin=b"http://evil.example").connect()
    assert not await Socket(answer["ws_token"], origin=None).connect()


async def test_one_live_socket_per_token_then_accepted_again() -> None:
    answer = await Browser().start()
    first = Socket(answer["ws_token"])
    assert await first.connect()
    assert not await Socket(answer["ws_token"]).connect()
    await first.disconnect()
    again = Socket(answer["ws_token"])
    assert await again.connect()  # a reconnect with the same token, as phoenix.js does
    await again.disconnect()


async def test_token_refused_after_its_request_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = await Browser().start()
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    await sock.join(answer["websocket_channel"])
    await sock.until_final()
    await sock.disconnect()
    await settle(answer["channel_id"])
    assert await get_hub().backend.ended_at(answer["channel_id"]) is not None
    within = Socket(answer["ws_token"])
    assert await within.connect()  # within the grace after the end: accepted
    await within.disconnect()
    monkeypatch.setattr("django_modelriver.consumers.END_GRACE", -1.0)
    assert not await Socket(answer["ws_token"]).connect()


async def test_join_authorization_and_refusal_reasons() -> None:
    alice, bob = Browser(), Browser()
    a = await alice.start("alice's question")
    b = await bob.start("bob's question")
    sock = Socket(b["ws_token"])
    assert await sock.connect()
    project = b["project_id"]
    cases = {
        a["websocket_channel"]: "unauthorized_project_access",
        f"ai_response:{a['channel_id']}": "unauthorized_project_access",
        f"ai_response:{uuid.uuid4()}:{b['channel_id']}": "unauthorized_project_access",
        "room:lobby": "invalid_channel_format",
        "ai_response:a:b:c": "invalid_channel_format",
        f"ai_response:not-a-uuid:{b['channel_id']}": "invalid_project_uuid",
        f"ai_response:{project}:not-a-uuid": "invalid_channel_uuid",
    }
    for topic, reason in cases.items():
        reply = await sock.join(topic)
        assert reply[4] == {"status": "error", "response": {"reason": reason}}, topic
    # Bob's reconnect view refuses Alice's channel; Alice's works.
    refused = await bob.post("/modelriver/api/v1/ai/reconnect", {"channel_id": a["channel_id"]})
    assert refused.status_code == 403
    assert "ws_token" not in refused.json()
    ok = await alice.post("/modelriver/api/v1/ai/reconnect", {"channel_id": a["channel_id"]})
    assert ok.status_code == 200 and ok.json()["channel_id"] == a["channel_id"]
    # The SDK's fallback topic for its own channel is accepted; frames carry that topic.
    fallback = f"ai_response:{b['channel_id']}"
    assert (await sock.join(fallback, join_ref="9"))[4]["status"] == "ok"
    frames = await sock.until_final()
    assert {f[2] for f in frames} == {fallback}
    await sock.disconnect()


async def test_heartbeats_and_unknown_pushes_are_answered() -> None:
    answer = await Browser().start()
    topic = answer["websocket_channel"]
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    ref = await sock.send(None, "phoenix", "heartbeat", {})
    assert await sock.reply_to(ref) == [None, ref, "phoenix", "phx_reply", {"status": "ok", "response": {}}]
    await sock.join(topic)
    ref = await sock.send("1", topic, "heartbeat", {})  # the ModelRiver SDK's channel heartbeat
    assert (await sock.reply_to(ref))[4] == {"status": "ok", "response": {}}
    ref = await sock.send("1", topic, "shout", {"x": 1})
    assert (await sock.reply_to(ref))[4]["status"] == "error"
    await sock.disconnect()


async def test_rejoin_with_last_seq_replays_exactly_what_was_missed() -> None:
    browser = Browser()
    with scripted(**SLOW):
        answer = await browser.start()
    topic = answer["websocket_channel"]
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    await sock.join(topic)
    before = await sock.until(lambda f: f[3] == "tokens" and f[4]["seq"] >= 10)
    last = before[-1][4]["seq"]
    ref = await sock.send("1", topic, "phx_leave", {})
    await sock.reply_to(ref)  # the leave never cancels the request
    await sock.join(topic, {"last_seq": last}, join_ref="2")
    after = await sock.until_final()
    frames = before + after
    assert seqs_of(frames) == list(range(1, frames[-1][4]["seq"] + 1))
    assert text_of(frames) == frames[-1][4]["content"] == SLOW["text"]
    await sock.disconnect()
    # A reload: a new socket with a fresh token from the reconnect view, replaying after last_seq.
    fresh = (await browser.post("/modelriver/api/v1/ai/reconnect", {"channel_id": answer["channel_id"]})).json()
    assert fresh["ws_token"] != answer["ws_token"]
    sock = Socket(fresh["ws_token"])
    assert await sock.connect()
    await sock.join(topic, {"last_seq": last})
    replay = await sock.until_final()
    assert seqs_of(replay)[0] == last + 1
    assert text_of(before) + text_of(replay) == SLOW["text"]
    await sock.disconnect()


async def test_a_repeated_join_replaces_the_old_one_with_its_phx_close() -> None:
    """Phoenix's rule (core's machine): the old join is closed, not kept beside the new one, so a
    socket joining its topic again and again holds one subscription (issue 14's join flood)."""
    with scripted(tokens_per_second=0):
        answer = await Browser().start()
    await settle(answer["channel_id"])
    topic = answer["websocket_channel"]
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    await sock.join(topic, join_ref="1")
    first = await sock.until_final()
    ref = await sock.send("2", topic, "phx_join", {})
    closed = await sock.recv()
    assert closed == ["1", "1", topic, "phx_close", {}]
    assert (await sock.reply_to(ref))[4] == {"status": "ok", "response": {}}
    second = await sock.until_final()
    assert seqs_of(second) == seqs_of(first)  # one full replay for the new join, stamped with it
    assert {f[0] for f in second} == {"2"}
    await sock.disconnect()


async def test_joined_topics_are_limited_per_socket(mr_settings: dict[str, object]) -> None:
    from django.test import override_settings

    with override_settings(MODELRIVER={**mr_settings, "MAX_TOPICS": 1}):
        answer = await Browser().start()
        sock = Socket(answer["ws_token"])
        assert await sock.connect()
        assert (await sock.join(answer["websocket_channel"]))[4]["status"] == "ok"
        refused = await sock.join(f"ai_response:{answer['channel_id']}", join_ref="2")
        assert refused[4] == {"status": "error", "response": {"reason": "too_many_topics"}}
        await sock.disconnect()


async def test_pump_carries_on_without_browsers_and_join_all_replays_everything() -> None:
    browser = Browser()
    with scripted(tokens_per_second=0):
        answer = await browser.start()
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    await sock.disconnect()  # the only browser leaves before joining
    hub = get_hub()
    await settle(answer["channel_id"])  # the pump runs to the end on its own
    assert await hub.backend.ended_at(answer["channel_id"]) is not None
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    await sock.join(answer["websocket_channel"], {})
    frames = await sock.until_final()
    assert seqs_of(frames) == list(range(1, len(frames) + 1))
    assert text_of(frames) == frames[-1][4]["content"]
    await sock.disconnect()
    # {coalesce: true} merges the replayed tokens into one event carrying from_seq.
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    await sock.join(answer["websocket_channel"], {"coalesce": True}, join_ref="5")
    merged = await sock.until_final()
    tokens_events = [f for f in merged if f[3] == "tokens"]
    assert len(tokens_events) == 1 and tokens_events[0][4]["from_seq"] < tokens_events[0][4]["seq"]
    assert text_of(merged) == merged[-1][4]["content"]
    await sock.disconnect()


@pytest.mark.parametrize(("frame", "code"), [
    ("this is not json", 1007),
    ('{"topic": 5}', 1007),
    ('["1", "1", "t", "phx_join"]', 1007),
    ('["1", "1", "ai_response:x", "phx_join", {"last_seq": -1}]', 1007),
    ("[" + " " * (1 << 20) + "]", 1009),
])
async def test_malformed_frames_close_the_socket_cleanly(frame: str, code: int) -> None:
    answer = await Browser().start()
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    await sock.comm.send_to(text_data=frame)
    closed = await sock.close_output()
    assert closed["code"] == code
    # Its token is free again: the closed socket is no longer live.
    again = Socket(answer["ws_token"])
    assert await again.connect()
    await again.disconnect()


async def test_permission_callable_guards_start_and_socket(caplog: pytest.LogCaptureFixture) -> None:
    browser = Browser()
    answer = await browser.start()
    GATE["open"] = False
    try:
        response = await browser.post("/modelriver/start", {"message": "hi"})
        assert response.status_code == 403
        with caplog.at_level("INFO", logger="django_modelriver"):
            assert not await Socket(answer["ws_token"]).connect()
        assert "socket refused by PERMISSION" in caplog.text
    finally:
        GATE["open"] = True
    sock = Socket(answer["ws_token"])
    assert await sock.connect()
    await sock.disconnect()
