"""``modelriver.phoenix.server``: tokens, joins, heartbeats, leaves, replay and coalescing."""

from __future__ import annotations

import base64
import contextlib
import gc
import itertools
import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelriver.exceptions import ProtocolError
from modelriver.phoenix import (
    AUTH_SUBPROTOCOL_PREFIX,
    CLOSE_POLICY,
    ChannelJoined,
    ChannelLog,
    Entry,
    Left,
    Pushed,
    ServerConnection,
    channel_topics,
    coalesce_tokens,
    decode,
    encode_parts,
    payload_of,
    socket_token,
    topic_refusal,
)

PROJECT = "0b0c6f6e-3c8e-4f53-9d35-5d7b3f0a1c11"
CHANNEL = "5e0f9d2a-8b8d-4a3c-a4a1-2f2c6d8e9b10"
TOPIC = f"ai_response:{PROJECT}:{CHANNEL}"


def ok_reply(join_ref: str | None, ref: str | None, topic: str = TOPIC) -> str:
    return json.dumps(
        [join_ref, ref, topic, "phx_reply", {"status": "ok", "response": {}}], separators=(",", ":")
    )


def is_uuid(text: str) -> bool:
    parts = text.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdef" for c in text.replace("-", "")
    )


def gateway_authorizer(project_id: str, channel_id: str) -> Any:
    """The join rules of PROTOCOL §2 for a token issued for one project's channel."""

    def authorize(topic: str, payload: dict[str, Any]) -> str | None:
        parts = topic.split(":")
        if parts[0] != "ai_response" or len(parts) not in (2, 3):
            return "invalid_channel_format"
        if len(parts) == 3 and not is_uuid(parts[1]):
            return "invalid_project_uuid"
        if not is_uuid(parts[-1]):
            return "invalid_channel_uuid"
        if (len(parts) == 3 and parts[1] != project_id) or parts[-1] != channel_id:
            return "unauthorized_project_access"
        return None

    return authorize


def server(**kwargs: Any) -> ServerConnection:
    return ServerConnection(gateway_authorizer(PROJECT, CHANNEL), **kwargs)


def joined(conn: ServerConnection, join_ref: str = "1", payload: str = "{}") -> ServerConnection:
    conn.receive(f'["{join_ref}","{join_ref}","{TOPIC}","phx_join",{payload}]')
    assert conn.data_to_send() == [ok_reply(join_ref, join_ref)]
    [event] = conn.events_received()
    assert isinstance(event, ChannelJoined)
    return conn


# -- socket token --------------------------------------------------------------------------------


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def phoenix_js_b64(text: str) -> str:
    """What phoenix.js 1.8 sends: ``btoa(token).replace(/=/g, "")`` (standard alphabet)."""
    return base64.b64encode(text.encode("latin-1")).decode().rstrip("=")


def test_token_from_param() -> None:
    assert socket_token({"token": "eyJ.abc.def", "vsn": "2.0.0"}) == "eyJ.abc.def"


def test_token_from_subprotocol() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJ0b3BpYyI6ImFpX3Jlc3BvbnNlOngifQ.sig~?>"
    protocols = ["phoenix", f"base64url.bearer.phx.{b64url(token)}"]
    assert AUTH_SUBPROTOCOL_PREFIX == "base64url.bearer.phx."
    assert socket_token({}, protocols) == token


@pytest.mark.parametrize("token", ["??>", "a", "ab", "abc", "tok-en_1.2"])
def test_token_from_phoenix_js_subprotocol(token: str) -> None:
    encoded = phoenix_js_b64(token)
    assert socket_token({}, ["phoenix", AUTH_SUBPROTOCOL_PREFIX + encoded]) == token


def test_token_param_wins_over_subprotocol() -> None:
    assert socket_token({"token": "param"}, [AUTH_SUBPROTOCOL_PREFIX + b64url("proto")]) == "param"


@pytest.mark.parametrize(
    "protocols",
    [
        pytest.param([], id="none"),
        pytest.param(["phoenix"], id="phoenix-only"),
        pytest.param([AUTH_SUBPROTOCOL_PREFIX], id="empty-token"),
        pytest.param([AUTH_SUBPROTOCOL_PREFIX + "a"], id="bad-padding"),
        pytest.param([AUTH_SUBPROTOCOL_PREFIX + "_-8"], id="not-utf8"),
        pytest.param([AUTH_SUBPROTOCOL_PREFIX + "dG9rZW4é"], id="non-ascii"),
    ],
)
def test_no_usable_token(protocols: list[str]) -> None:
    assert socket_token({"token": ""}, protocols) is None


subprotocols = st.builds(
    lambda prefixed, text: AUTH_SUBPROTOCOL_PREFIX + text if prefixed else text,
    st.booleans(),
    st.text(max_size=40) | st.text(string.ascii_letters + string.digits + "-_+/=", max_size=40),
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=6), st.text(max_size=10), max_size=3),
    st.lists(subprotocols, max_size=3),
)
def test_socket_token_never_raises(params: dict[str, str], protocols: list[str]) -> None:
    token = socket_token(params, protocols)
    assert token is None or isinstance(token, str)


# -- joins ---------------------------------------------------------------------------------------


def test_join_ok_literal() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def authorize(topic: str, payload: dict[str, Any]) -> str | None:
        seen.append((topic, payload))
        return None

    conn = ServerConnection(authorize)
    conn.receive('["1","1","ai_response:abc","phx_join",{}]')
    assert conn.data_to_send() == ['["1","1","ai_response:abc","phx_reply",{"status":"ok","response":{}}]']
    assert conn.events_received() == [ChannelJoined("ai_response:abc", {}, None, False, "1")]
    assert seen == [("ai_response:abc", {})]
    assert conn.topics == ["ai_response:abc"]


def test_join_with_last_seq_and_coalesce() -> None:
    conn = server()
    conn.receive(f'["3","3","{TOPIC}","phx_join",{{"last_seq":41,"coalesce":true}}]')
    assert conn.events_received() == [ChannelJoined(TOPIC, {"last_seq": 41, "coalesce": True}, 41, True, "3")]


def test_join_with_non_object_payload_is_an_empty_join() -> None:
    conn = server()
    conn.receive(f'["1","1","{TOPIC}","phx_join",null]')
    assert conn.events_received() == [ChannelJoined(TOPIC, {}, None, False, "1")]


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        (f"ai_response:{PROJECT}:{CHANNEL}", None),
        (f"ai_response:{CHANNEL}", None),
        (f"ai_response:{PROJECT}:{PROJECT}", "unauthorized_project_access"),
        (f"ai_response:{CHANNEL}:{CHANNEL}", "unauthorized_project_access"),
        ("room:lobby", "invalid_channel_format"),
        ("ai_response", "invalid_channel_format"),
        (f"ai_response:{PROJECT}:{CHANNEL}:x", "invalid_channel_format"),
        (f"ai_response:p1:{CHANNEL}", "invalid_project_uuid"),
        (f"ai_response:{PROJECT}:c1", "invalid_channel_uuid"),
    ],
)
def test_join_authorization(topic: str, reason: str | None) -> None:
    conn = server()
    conn.receive(json.dumps(["1", "1", topic, "phx_join", {}]))
    [frame] = conn.data_to_send()
    if reason is None:
        assert frame == ok_reply("1", "1", topic)
        assert conn.topics == [topic]
    else:
        error = {"status": "error", "response": {"reason": reason}}
        assert json.loads(frame) == ["1", "1", topic, "phx_reply", error]
        assert conn.topics == []
        assert conn.events_received() == []
        assert conn.deliver(topic, ["frame"]) is False


def test_refused_join_reply_literal() -> None:
    conn = ServerConnection(lambda topic, payload: "unauthorized_project_access")
    conn.receive('["1","1","ai_response:abc","phx_join",{}]')
    assert conn.data_to_send() == [
        '["1","1","ai_response:abc","phx_reply",'
        '{"status":"error","response":{"reason":"unauthorized_project_access"}}]'
    ]


def test_crashing_authorizer_refuses() -> None:
    def authorize(topic: str, payload: dict[str, Any]) -> str | None:
        raise KeyError(topic)

    conn = ServerConnection(authorize)
    conn.receive('["1","1","t","phx_join",{}]')
    [frame] = conn.data_to_send()
    assert json.loads(frame)[4] == {"status": "error", "response": {"reason": "join crashed"}}
    assert conn.topics == []


@pytest.mark.parametrize("last_seq", ['"3"', "-1", "true", "1.5", "[]"])
def test_bad_last_seq_is_a_protocol_error(last_seq: str) -> None:
    with pytest.raises(ProtocolError) as info:
        server().receive(f'["1","1","{TOPIC}","phx_join",{{"last_seq":{last_seq}}}]')
    assert info.value.close_code == 1007


# -- heartbeats, pushes, leaves ----------------------------------------------------------------------


def test_socket_heartbeat_is_answered() -> None:
    conn = server()
    conn.receive('[null,"5","phoenix","heartbeat",{}]')
    assert conn.data_to_send() == ['[null,"5","phoenix","phx_reply",{"status":"ok","response":{}}]']
    assert conn.events_received() == []


def test_v1_socket_heartbeat_is_answered() -> None:
    conn = server()
    conn.receive('{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"6"}')
    assert conn.data_to_send() == ['[null,"6","phoenix","phx_reply",{"status":"ok","response":{}}]']


def test_channel_heartbeat_push_is_answered_ok() -> None:
    conn = joined(server())
    conn.receive(f'["1","2","{TOPIC}","heartbeat",{{}}]')
    assert conn.data_to_send() == [ok_reply("1", "2")]
    assert conn.events_received() == []


def test_custom_push_is_reported_and_answered_by_reply() -> None:
    conn = joined(server())
    conn.receive(f'["1","2","{TOPIC}","cancel",{{"why":"user"}}]')
    assert conn.data_to_send() == []
    assert conn.events_received() == [Pushed(TOPIC, "cancel", {"why": "user"}, "2")]
    conn.reply(TOPIC, "2", "ok", {"cancelled": True})
    assert conn.data_to_send() == [
        f'["1","2","{TOPIC}","phx_reply",{{"status":"ok","response":{{"cancelled":true}}}}]'
    ]


@pytest.mark.parametrize("event", ["cancel", "heartbeat", "phx_leave"])
def test_push_to_unjoined_topic_is_unmatched(event: str) -> None:
    conn = server()
    conn.receive(f'[null,"7","{TOPIC}","{event}",{{}}]')
    assert conn.data_to_send() == [
        f'[null,"7","{TOPIC}","phx_reply",{{"status":"error","response":{{"reason":"unmatched topic"}}}}]'
    ]
    assert conn.events_received() == []


def test_leave_matched_by_join_ref() -> None:
    conn = joined(server(), join_ref="1")
    conn.receive(f'["1","2","{TOPIC}","phx_leave",{{}}]')
    assert conn.data_to_send() == [ok_reply("1", "2"), f'["1","2","{TOPIC}","phx_close",{{}}]']
    assert conn.events_received() == [Left(TOPIC)]
    assert conn.topics == []
    assert conn.deliver(TOPIC, ["frame"]) is False


def test_join_leave_join_then_stale_leave_keeps_the_subscription() -> None:
    """The SDK may join, leave and join again on one socket; a late leave of the first join is stale."""
    conn = joined(server(), join_ref="1")
    conn.receive(f'["1","2","{TOPIC}","phx_leave",{{}}]')
    assert conn.events_received() == [Left(TOPIC)]
    assert len(conn.data_to_send()) == 2  # ok reply and phx_close
    joined(conn, join_ref="3")
    conn.receive(f'["1","4","{TOPIC}","phx_leave",{{}}]')  # stale: from join "1"
    assert conn.data_to_send() == [ok_reply("1", "4")]
    assert conn.events_received() == []
    assert conn.topics == [TOPIC]
    assert conn.deliver(TOPIC, ["frame"]) is True
    conn.receive(f'["3","5","{TOPIC}","phx_leave",{{}}]')  # current
    assert conn.events_received() == [Left(TOPIC)]
    assert conn.topics == []


def test_rejoin_replaces_join_ref_so_the_old_leave_is_stale() -> None:
    conn = joined(server(), join_ref="1")
    conn.receive(f'["2","2","{TOPIC}","phx_join",{{}}]')  # phoenix.js rejoin on the same socket
    assert conn.data_to_send() == [f'["1","1","{TOPIC}","phx_close",{{}}]', ok_reply("2", "2")]
    assert conn.events_received() == [Left(TOPIC), ChannelJoined(TOPIC, {}, None, False, "2")]
    conn.receive(f'["1","3","{TOPIC}","phx_leave",{{}}]')
    assert conn.events_received() == []
    assert conn.topics == [TOPIC]


def test_v1_leave_without_join_ref_leaves() -> None:
    conn = joined(server())
    conn.receive(f'{{"topic":"{TOPIC}","event":"phx_leave","payload":{{}},"ref":"9"}}')
    assert conn.events_received() == [Left(TOPIC)]


def test_close_channel_from_the_server() -> None:
    conn = joined(server(), join_ref="4")
    conn.close_channel(TOPIC)
    assert conn.data_to_send() == [f'["4","4","{TOPIC}","phx_close",{{}}]']
    assert conn.topics == []
    assert conn.deliver(TOPIC, ["frame"]) is False


def test_deliver_only_to_joined_topics() -> None:
    conn = joined(server())
    assert conn.deliver("ai_response:other", ["a"]) is False
    assert conn.deliver(TOPIC, ["b", "c"]) is True
    assert conn.data_to_send() == ["b", "c"]
    assert conn.data_to_send() == []


def test_deliver_stamps_broadcast_frames_with_the_join_ref() -> None:
    """Like Phoenix's channel pushes: after leave + join, a client drops the old join's frames."""
    conn = server()
    log = ChannelLog(TOPIC)
    entry = log.append("tokens", {"data": "hi"})
    assert entry.frame.startswith("[null,null,")
    conn.receive(f'["7","7","{TOPIC}","phx_join",{{}}]')
    conn.data_to_send()
    assert conn.deliver(TOPIC, [entry.frame, "[\"x\",null]"])
    stamped, other = conn.data_to_send()
    assert stamped == '["7"' + entry.frame[5:]
    assert decode(stamped).join_ref == "7" and decode(stamped).payload == {"data": "hi", "seq": 1}
    assert other == "[\"x\",null]"  # frames that carry a ref already are left alone
    conn.receive(f'["7","8","{TOPIC}","phx_leave",{{}}]')
    conn.receive(f'["9","9","{TOPIC}","phx_join",{{}}]')
    conn.data_to_send()
    conn.deliver(TOPIC, [entry.frame])
    assert decode(conn.data_to_send()[0]).join_ref == "9"


# -- hardening: repeated joins, the topic limit, canonical topics -----------------------------------


def test_repeat_join_replaces_the_subscription_and_drops_what_was_queued_for_it() -> None:
    """Phoenix's rule: a join of a joined topic closes the old join first. What was queued for
    the old join (a whole replay, say) is dropped, not sent and then ignored by the client."""
    conn = server()
    log = ChannelLog(TOPIC)
    frames = [log.append("tokens", {"data": f"w{i}"}).frame for i in range(3)]
    conn.receive(f'["1","1","{TOPIC}","phx_join",{{}}]')
    assert conn.deliver(TOPIC, frames)
    conn.receive('[null,"2","phoenix","heartbeat",{}]')
    conn.receive(f'["3","3","{TOPIC}","phx_join",{{}}]')
    assert conn.data_to_send() == [
        ok_reply("1", "1"),
        '[null,"2","phoenix","phx_reply",{"status":"ok","response":{}}]',
        f'["1","1","{TOPIC}","phx_close",{{}}]',
        ok_reply("3", "3"),
    ]
    assert conn.buffered == sum(len(f) for f in [ok_reply("1", "1"), ok_reply("3", "3"),
                                                  f'["1","1","{TOPIC}","phx_close",{{}}]',
                                                  '[null,"2","phoenix","phx_reply",{"status":"ok","response":{}}]'])
    assert conn.events_received() == [ChannelJoined(TOPIC, {}, None, False, "1"), Left(TOPIC),
                                      ChannelJoined(TOPIC, {}, None, False, "3")]
    assert conn.topics == [TOPIC]
    assert conn.deliver(TOPIC, frames[:1])
    assert conn.data_to_send() == ['["3"' + frames[0][5:]]


def test_a_thousand_repeated_joins_queue_one_subscription_only() -> None:
    conn = server()
    log = ChannelLog(TOPIC)
    frames = [log.append("tokens", {"data": "x" * 50}).frame for _ in range(200)]
    for n in range(1, 1001):
        conn.receive(f'["{n}","{n}","{TOPIC}","phx_join",{{}}]')
        conn.deliver(TOPIC, frames)  # what an I/O layer does on Joined: the replay
    out = conn.data_to_send()
    assert sum(1 for f in out if '"tokens"' in f) == 200  # the last join's replay only
    assert all(f.startswith('["1000",null,') for f in out if '"tokens"' in f)
    assert conn.topics == [TOPIC]


def test_joined_topics_are_limited_per_socket() -> None:
    conn = ServerConnection(lambda topic, payload: None, max_topics=2)
    for n, topic in enumerate(("a", "b"), 1):
        conn.receive(f'["{n}","{n}","{topic}","phx_join",{{}}]')
    conn.receive('["3","3","c","phx_join",{}]')
    assert conn.data_to_send()[-1] == (
        '["3","3","c","phx_reply",{"status":"error","response":{"reason":"too_many_topics"}}]')
    assert conn.topics == ["a", "b"]
    conn.receive('["4","4","a","phx_join",{}]')  # a rejoin replaces: still two topics
    assert conn.data_to_send()[-1] == '["4","4","a","phx_reply",{"status":"ok","response":{}}]'
    conn.receive('["2","5","b","phx_leave",{}]')
    conn.receive('["6","6","c","phx_join",{}]')
    assert conn.data_to_send()[-1] == '["6","6","c","phx_reply",{"status":"ok","response":{}}]'
    assert sorted(conn.topics) == ["a", "c"]


def test_the_default_topic_limit_is_sixteen() -> None:
    conn = ServerConnection(lambda topic, payload: None)
    for n in range(17):
        conn.receive(f'["{n}","{n}","room:{n}","phx_join",{{}}]')
    assert len(conn.topics) == 16
    assert json.loads(conn.data_to_send()[-1])[4]["response"] == {"reason": "too_many_topics"}


OWN = channel_topics(CHANNEL, TOPIC)


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        (TOPIC, None),
        (f"ai_response:{CHANNEL}", None),
        (TOPIC.upper().replace("AI_RESPONSE", "ai_response"), "noncanonical_topic"),
        (f"ai_response:{CHANNEL.upper()}", "noncanonical_topic"),
        (f"ai_response:{PROJECT}:{CHANNEL[:9]}{CHANNEL[9:].upper()}", "noncanonical_topic"),
        (f"ai_response:{PROJECT}:{{{CHANNEL[:-2]}}}", "invalid_channel_uuid"),
        (f"ai_response:{PROJECT}:{CHANNEL.replace('-', '')}", "invalid_channel_uuid"),
        (f"ai_response:{CHANNEL}:{CHANNEL}", "unauthorized_project_access"),
        (f"ai_response:{PROJECT}:{PROJECT}", "unauthorized_project_access"),
        ("room:lobby", "invalid_channel_format"),
        (f"ai_response:p:{CHANNEL}", "invalid_project_uuid"),
    ],
)
def test_one_spelling_per_channel(topic: str, reason: str | None) -> None:
    """Both servers use this rule: the issued topic or ``ai_response:<channel>``, as issued."""
    assert (TOPIC, f"ai_response:{CHANNEL}") == OWN
    assert topic_refusal(topic, OWN) == reason


def test_alias_spellings_do_not_multiply_subscriptions() -> None:
    conn = ServerConnection(lambda topic, payload: topic_refusal(topic, OWN))
    spellings = {TOPIC, f"ai_response:{CHANNEL}"}
    for n in range(1000):
        variant = "".join(c.upper() if (n >> (i % 12)) & 1 else c for i, c in enumerate(CHANNEL))
        spellings.add(f"ai_response:{PROJECT}:{variant}")
        spellings.add(f"ai_response:{variant}")
    for n, topic in enumerate(sorted(spellings)):
        conn.receive(json.dumps([str(n), str(n), topic, "phx_join", {}]))
    assert sorted(conn.topics) == sorted(OWN)


# -- hardening: the bounded outbox -----------------------------------------------------------------


def test_the_outbox_pauses_past_its_limit_and_counts_what_is_unsent() -> None:
    frame = encode_parts(None, None, TOPIC, "tokens", {"data": "x" * 200})
    stamped = len('["1"' + frame[5:])  # as queued for join "1"
    conn = server(max_buffer=4 * stamped, buffer_grace=5.0)
    joined(conn)
    assert conn.buffered > 0  # the join's reply, handed out by data_to_send
    assert conn.update_flow(0, 100, now=0.0) is False
    assert conn.deliver(TOPIC, [frame] * 4)
    assert not conn.paused  # at the limit, not over it
    assert conn.deliver(TOPIC, [frame])
    assert conn.paused and conn.buffered == 5 * stamped
    out = conn.data_to_send()
    assert len(out) == 5
    assert conn.paused  # handed to the I/O layer, not yet written
    assert conn.update_flow(0, 2000, now=100.0) is False  # all written
    assert not conn.paused and conn.buffered == 0


def test_update_flow_says_close_once_nothing_is_written_for_the_grace() -> None:
    conn = server(max_buffer=1000, buffer_grace=5.0)
    joined(conn)
    conn.data_to_send()
    assert conn.update_flow(1500, 100, now=9.0) is False  # over the limit: paused
    assert conn.paused
    assert conn.update_flow(1500, 100, now=10.0) is False  # nothing written since the last look
    assert conn.update_flow(1500, 100, now=14.9) is False
    assert conn.update_flow(1500, 100, now=15.0) is True
    assert CLOSE_POLICY == 1008
    assert "not reading" in conn.overflow_reason and "1500 bytes" in conn.overflow_reason


def test_a_slow_reader_over_the_limit_is_never_closed() -> None:
    """Paused while over the limit, but each look finds a few bytes taken: not closed."""
    conn = server(max_buffer=1000, buffer_grace=1.0)
    joined(conn)
    conn.data_to_send()
    for n in range(100):
        assert conn.update_flow(5000, n, now=n * 0.5) is False
        assert conn.paused
    assert conn.update_flow(900, 100, now=60.0) is False
    assert not conn.paused  # drained under the limit: produce again


def test_a_blocked_write_without_progress_counts_as_stalled() -> None:
    """A server whose writes wait (uvicorn): a stuck write pauses the socket even under the limit."""
    conn = server(max_buffer=1000, buffer_grace=2.0)
    joined(conn)
    conn.data_to_send()
    assert conn.update_flow(300, 50, now=0.0, waiting=True) is False  # progress since: not stalled
    assert not conn.paused
    assert conn.update_flow(300, 50, now=0.1, waiting=True) is False
    assert conn.paused  # no byte taken since the last look
    assert conn.update_flow(300, 50, now=2.0, waiting=True) is False
    assert conn.update_flow(300, 50, now=2.1, waiting=True) is True
    assert conn.update_flow(300, 80, now=2.2, waiting=True) is False  # it read a little
    assert not conn.paused


def test_replies_count_against_the_outbox_too() -> None:
    conn = server(max_buffer=2000)
    for n in range(40):
        conn.receive(f'[null,"{n}","phoenix","heartbeat",{{}}]')
    assert conn.paused


# -- hardening: lone surrogates -------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        '["1","\\ud800","phoenix","heartbeat",{}]',
        '["\\udfff","1","' + TOPIC + '","phx_join",{}]',
        '["1","1","ai_response:\\ud800","phx_join",{}]',
        '["1","1","' + TOPIC + '","phx_join",{"x":["\\ud800"]}]',
        '["1","1","' + TOPIC + '","phx_join",{"\\ud83d":1}]',
        '{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"\\ud800"}',
        b'["1","\xed\xa0\x80","phoenix","heartbeat",{}]',
    ],
)
def test_a_lone_surrogate_in_a_client_frame_is_refused(frame: str | bytes) -> None:
    """UTF-8 cannot encode it: echoing it in a reply would kill the socket's writer."""
    conn = server()
    with pytest.raises(ProtocolError) as info:
        conn.receive(frame)
    assert info.value.close_code == 1007
    assert conn.data_to_send() == []
    assert conn.events_received() == []


def test_surrogate_pairs_and_non_ascii_text_are_fine() -> None:
    conn = server()
    conn.receive('[null,"\\ud83d\\ude00","phoenix","heartbeat",{}]')
    conn.receive('[null,"é😀","phoenix","heartbeat",{}]')
    assert [decode(f).ref for f in conn.data_to_send()] == ["😀", "é😀"]


def test_server_frames_escape_a_lone_surrogate_so_they_can_always_be_written() -> None:
    log = ChannelLog(TOPIC)
    entry = log.append("tokens", {"data": "a\ud800b é"})
    entry.frame.encode()
    assert decode(entry.frame).payload["data"] == "a\ud800b é"
    merged = coalesce_tokens([entry, log.append("tokens", {"data": "\udc00"})], TOPIC)
    merged[0].encode()
    assert log.append("tokens", {"data": "é"}).frame.endswith('"é","seq":3}]')  # as is otherwise


# -- malformed input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{", 1007),
        (b"\xc3\x28", 1007),
        ('["1","1","t"]', 1007),
        ('[null,null,null,"e",{}]', 1007),
        ("7", 1007),
        ('[null,"1","phoenix","heartbeat",{"pad":"' + "x" * 200 + '"}]', 1009),
    ],
)
def test_malformed_and_oversized_frames(frame: str | bytes, code: int) -> None:
    conn = server(max_frame_size=200)
    with pytest.raises(ProtocolError) as info:
        conn.receive(frame)
    assert info.value.close_code == code
    assert conn.data_to_send() == []


# -- ChannelLog ----------------------------------------------------------------------------------------


def test_log_stamps_seq_and_encodes_once() -> None:
    log = ChannelLog("ai_response:p:c")
    assert log.last_seq == 0
    entry = log.append("tokens", {"data": "hello "})
    assert entry == Entry(1, "tokens", {"data": "hello ", "seq": 1},
                          '[null,null,"ai_response:p:c","tokens",{"data":"hello ","seq":1}]')
    log.append("response", {"status": "success"})
    assert log.last_seq == 2


def test_log_replay_from_start_and_from_last_seq() -> None:
    log = ChannelLog(TOPIC)
    for i in range(1, 6):
        log.append("tokens", {"data": str(i)})
    assert [e.seq for e in log.after(None)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in log.after(0)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in log.after(2)] == [3, 4, 5]
    assert [e.seq for e in log.after(4)] == [5]
    assert log.after(5) == []
    assert log.after(99) == []
    assert ChannelLog(TOPIC).after(None) == []


def test_replayed_entries_equal_the_live_ones() -> None:
    log = ChannelLog(TOPIC)
    live = [log.append("tokens", {"data": f"w{i} "}) for i in range(5)]
    live.append(log.append("response", {"status": "success", "meta": {"usage": {"total_tokens": 5}}}))
    replayed = log.after(None)
    assert [(e.seq, e.event, e.frame, payload_of(e)) for e in replayed] == [
        (e.seq, e.event, e.frame, e.payload) for e in live]
    assert [e.frame for e in log.after(3)] == [e.frame for e in live[3:]]
    assert coalesce_tokens(replayed, TOPIC) == coalesce_tokens(live, TOPIC)


def test_a_kept_answer_costs_the_garbage_collector_nothing_per_token() -> None:
    """The buffer holds no object the collector keeps tracking: a process keeping many answers
    for replay is not slowed by full collections walking every token (the gateway paused
    40-120 ms before, and its clients got the paused tokens in one burst)."""
    log = ChannelLog(TOPIC, max_events=20_000)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(10_000):
        log.append("tokens", {"data": f"w{i} "})
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert len(log.after(None)) == 10_000


def test_log_buffer_is_bounded() -> None:
    log = ChannelLog(TOPIC, max_events=3)
    for i in range(1, 8):
        log.append("tokens", {"data": str(i)})
    assert [e.seq for e in log.after(None)] == [5, 6, 7]
    assert [e.seq for e in log.after(1)] == [5, 6, 7]  # the gap cannot be replayed
    assert [e.seq for e in log.after(5)] == [6, 7]
    assert log.last_seq == 7


def test_join_replays_through_the_connection() -> None:
    """The wiring an I/O layer does: on Joined, deliver ``log.after(last_seq)``."""
    log = ChannelLog(TOPIC)
    for data in ("a", "b", "c"):
        log.append("tokens", {"data": data})
    for payload, expected in (("{}", [1, 2, 3]), ('{"last_seq":2}', [3])):
        conn = server()
        conn.receive(f'["1","1","{TOPIC}","phx_join",{payload}]')
        [event] = conn.events_received()
        assert isinstance(event, ChannelJoined)
        assert conn.deliver(event.topic, [e.frame for e in log.after(event.last_seq)])
        reply, *frames = conn.data_to_send()
        assert reply == ok_reply("1", "1")
        assert [decode(f).payload["seq"] for f in frames] == expected


# -- coalescing ----------------------------------------------------------------------------------------


def test_coalesce_merges_runs_of_tokens() -> None:
    log = ChannelLog(TOPIC)
    entries = [
        log.append("tokens", {"data": "Hel"}),
        log.append("tokens", {"data": "lo"}),
        log.append("tokens", {"data": ", "}),
        log.append("status", {"status": "tool"}),
        log.append("tokens", {"data": "wor"}),
        log.append("tokens", {"data": "ld"}),
        log.append("response", {"status": "success"}),
        log.append("tokens", {"data": "!"}),
    ]
    frames = coalesce_tokens(entries, TOPIC)
    assert [(m.event, m.payload) for m in map(decode, frames)] == [
        ("tokens", {"data": "Hello, ", "seq": 3, "from_seq": 1}),
        ("status", {"status": "tool", "seq": 4}),
        ("tokens", {"data": "world", "seq": 6, "from_seq": 5}),
        ("response", {"status": "success", "seq": 7}),
        ("tokens", {"data": "!", "seq": 8}),
    ]
    assert frames[1] is entries[3].frame
    assert frames[4] is entries[7].frame  # a run of one is sent as is


def test_coalesce_empty() -> None:
    assert coalesce_tokens([], TOPIC) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["tokens", "tokens", "status"]), st.text(max_size=4)), max_size=20))
def test_coalesce_keeps_text_and_seq_coverage(items: list[tuple[str, str]]) -> None:
    log = ChannelLog(TOPIC)
    entries = [log.append(event, {"data": data}) for event, data in items]
    messages = [decode(f) for f in coalesce_tokens(entries, TOPIC)]
    text = "".join(m.payload["data"] for m in messages if m.event == "tokens")
    assert text == "".join(data for event, data in items if event == "tokens")
    covered: list[int] = []
    for m in messages:
        covered.extend(range(m.payload.get("from_seq", m.payload["seq"]), m.payload["seq"] + 1))
    assert covered == list(range(1, len(items) + 1))
    events = [m.event for m in messages]
    assert all(a != "tokens" or b != "tokens" for a, b in itertools.pairwise(events))


# -- property tests --------------------------------------------------------------------------------

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 50) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)
refs = st.none() | st.sampled_from(["1", "2", "3"]) | st.integers(0, 3)
frames = st.builds(
    lambda join_ref, ref, topic, event, payload: json.dumps([join_ref, ref, topic, event, payload]),
    refs,
    refs,
    st.sampled_from([TOPIC, f"ai_response:{CHANNEL}", "room:lobby", "phoenix"]) | st.text(max_size=5),
    st.sampled_from(["phx_join", "phx_leave", "heartbeat", "cancel"]) | st.text(max_size=5),
    json_values | st.fixed_dictionaries({"last_seq": json_values, "coalesce": json_values}),
)


@SETTINGS
@given(st.lists(st.binary(max_size=60) | st.text(max_size=60), max_size=5))
def test_arbitrary_bytes_and_text_raise_only_protocol_error(data: list[str | bytes]) -> None:
    conn = joined(server())
    for item in data:
        with contextlib.suppress(ProtocolError):
            conn.receive(item)


@SETTINGS
@given(st.lists(frames, max_size=6))
def test_arbitrary_frames_raise_only_protocol_error(items: list[str]) -> None:
    conn = joined(server())
    subscribed = {TOPIC}
    for frame in items:
        code = None
        try:
            conn.receive(frame)
        except ProtocolError as exc:
            code = exc.close_code
        assert code in (None, 1007)
        for event in conn.events_received():
            if isinstance(event, ChannelJoined):
                subscribed.add(event.topic)
            elif isinstance(event, Left):
                subscribed.discard(event.topic)
            else:
                assert event.topic in subscribed
        for out in conn.data_to_send():
            decode(out)
        assert set(conn.topics) == subscribed
