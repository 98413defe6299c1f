"""``modelriver.phoenix.client``: literal frames in, frames and events out, time as plain floats."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelriver.exceptions import ProtocolError
from modelriver.phoenix import (
    ChannelClosed,
    ChannelErrored,
    ChannelMessage,
    HeartbeatTimeout,
    Joined,
    JoinRefused,
    PhoenixClient,
    PushTimeout,
    Reply,
)

TOPIC = "ai_response:abc"
OTHER = "ai_response:other"
JOIN_1 = '["1","1","ai_response:abc","phx_join",{}]'
JOIN_OK_1 = '["1","1","ai_response:abc","phx_reply",{"status":"ok","response":{}}]'
NEVER = 1e9  # a heartbeat interval that never fires within a test


def client(
    *, heartbeat: float = NEVER, timeout: float = 10.0, opened_at: float | None = 0.0
) -> PhoenixClient:
    phx = PhoenixClient(heartbeat_interval=heartbeat, timeout=timeout)
    if opened_at is not None:
        phx.connection_opened(opened_at)
    return phx


def joined(phx: PhoenixClient, now: float = 0.0, params: dict[str, Any] | None = None) -> PhoenixClient:
    """Join TOPIC as the first push of a fresh client (join ref "1") and accept it."""
    phx.join(TOPIC, params if params is not None else {}, now)
    sent = phx.data_to_send()
    assert len(sent) == 1
    assert json.loads(sent[0])[:4] == ["1", "1", TOPIC, "phx_join"]
    phx.receive(JOIN_OK_1, now)
    assert phx.events_received() == [Joined(TOPIC, {})]
    return phx


def tokens(seq: int, data: str = "x", join_ref: str | None = None) -> str:
    ref = "null" if join_ref is None else f'"{join_ref}"'
    return f'[{ref},null,"{TOPIC}","tokens",{{"data":"{data}","seq":{seq}}}]'


def received(phx: PhoenixClient) -> list[tuple[str, Any]]:
    return [(e.event, e.payload) for e in phx.events_received() if isinstance(e, ChannelMessage)]


# -- join ---------------------------------------------------------------------------------------------


def test_join_sends_literal_frame_and_ok_reply_joins() -> None:
    phx = client()
    phx.join(TOPIC, {}, 0.0)
    assert phx.data_to_send() == [JOIN_1]
    assert phx.channel_state(TOPIC) == "joining"
    phx.receive(JOIN_OK_1, 0.5)
    assert phx.events_received() == [Joined(TOPIC, {})]
    assert phx.channel_state(TOPIC) == "joined"
    assert phx.data_to_send() == []


def test_join_response_is_passed_on() -> None:
    phx = client()
    phx.join(TOPIC, {"coalesce": True}, 0.0)
    assert phx.data_to_send() == ['["1","1","ai_response:abc","phx_join",{"coalesce":true}]']
    phx.receive('["1","1","ai_response:abc","phx_reply",{"status":"ok","response":{"n":1}}]', 0.0)
    assert phx.events_received() == [Joined(TOPIC, {"n": 1})]


def test_join_before_open_is_sent_on_open() -> None:
    phx = client(opened_at=None)
    phx.join(TOPIC, {}, 0.0)
    assert phx.data_to_send() == []
    phx.connection_opened(1.0)
    assert phx.data_to_send() == [JOIN_1]


@pytest.mark.parametrize(
    "reason",
    ["unauthorized_project_access", "invalid_channel_format", "invalid_project_uuid", "invalid_channel_uuid"],
)
def test_join_refused_propagates_reason(reason: str) -> None:
    phx = client()
    phx.join(TOPIC, {}, 0.0)
    phx.data_to_send()
    reply = {"status": "error", "response": {"reason": reason}}
    phx.receive(f'["1","1","ai_response:abc","phx_reply",{json.dumps(reply)}]', 0.0)
    assert phx.events_received() == [JoinRefused(TOPIC, reason, {"reason": reason})]
    assert phx.channel_state(TOPIC) == "closed"
    # A refusal is final: no rejoin is scheduled, later frames for the topic are dropped.
    assert phx.next_deadline() == NEVER
    phx.tick(100.0)
    assert phx.data_to_send() == []
    phx.receive(tokens(1), 100.0)
    assert phx.events_received() == []


def test_join_refused_without_reason() -> None:
    phx = client()
    phx.join(TOPIC, {}, 0.0)
    phx.receive('["1","1","ai_response:abc","phx_reply",{"status":"error","response":{}}]', 0.0)
    assert phx.events_received() == [JoinRefused(TOPIC, "join failed", {})]


def test_join_timeout_rejoins_on_rejoin_backoff() -> None:
    phx = client(timeout=10.0)
    phx.join(TOPIC, {}, 0.0)
    assert phx.data_to_send() == [JOIN_1]
    assert phx.next_deadline() == 10.0
    phx.tick(9.999)
    assert phx.events_received() == []
    now, ref, delays = 10.0, 1, []
    for _ in range(6):
        phx.tick(now)  # the join times out...
        assert phx.events_received() == [PushTimeout(TOPIC, str(ref), "phx_join")]
        assert phx.channel_state(TOPIC) == "errored"
        rejoin_at = phx.next_deadline()
        assert rejoin_at is not None
        delays.append(round(rejoin_at - now, 6))
        phx.tick(rejoin_at - 0.001)
        assert phx.data_to_send() == []
        phx.tick(rejoin_at)  # ...and is sent again after the rejoin delay
        ref += 1
        assert phx.data_to_send() == [f'["{ref}","{ref}","ai_response:abc","phx_join",{{}}]']
        now = rejoin_at + 10.0
    assert delays == [1.0, 2.0, 5.0, 10.0, 10.0, 10.0]


def test_join_ok_resets_rejoin_backoff() -> None:
    phx = client()
    phx.join(TOPIC, {}, 0.0)
    phx.tick(10.0)  # timeout, rejoin at 11
    phx.tick(11.0)  # join "2"
    phx.tick(21.0)  # timeout, rejoin at 23
    assert phx.next_deadline() == 23.0
    phx.tick(23.0)  # join "3"
    phx.receive('["3","3","ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 23.5)
    phx.events_received()
    phx.receive('["3",null,"ai_response:abc","phx_error",{}]', 30.0)
    assert phx.next_deadline() == 31.0  # back to the first delay


def test_stale_join_reply_is_ignored() -> None:
    phx = client()
    phx.join(TOPIC, {}, 0.0)
    phx.tick(10.0)
    phx.tick(11.0)  # rejoin with ref "2"
    phx.events_received()
    phx.receive(JOIN_OK_1, 11.5)  # the reply to the timed-out join "1"
    assert phx.events_received() == []
    assert phx.channel_state(TOPIC) == "joining"
    phx.receive('["2","2","ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 11.6)
    assert phx.events_received() == [Joined(TOPIC, {})]


def test_phx_error_while_joining_replaces_the_pending_join() -> None:
    """After phx_error and a successful rejoin, the first join's deadline must not fire."""
    phx = client(timeout=10.0)
    phx.join(TOPIC, {}, 0.0)  # join "1", deadline 10
    phx.data_to_send()
    phx.receive('["1",null,"ai_response:abc","phx_error",{}]', 0.5)
    assert phx.events_received() == [ChannelErrored(TOPIC)]
    assert phx.next_deadline() == 1.5
    phx.tick(1.5)
    assert phx.data_to_send() == ['["2","2","ai_response:abc","phx_join",{}]']
    phx.receive('["2","2","ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 1.6)
    assert phx.events_received() == [Joined(TOPIC, {})]
    phx.tick(10.0)
    phx.tick(12.0)
    assert phx.events_received() == []
    assert phx.data_to_send() == []
    assert phx.channel_state(TOPIC) == "joined"


# -- replies -----------------------------------------------------------------------------------------


def test_replies_are_matched_by_ref() -> None:
    phx = joined(client())
    first = phx.push(TOPIC, "heartbeat", {}, 1.0)
    second = phx.push(TOPIC, "cancel", {"why": "user"}, 1.0)
    assert (first, second) == ("2", "3")
    assert phx.data_to_send() == [
        '["1","2","ai_response:abc","heartbeat",{}]',
        '["1","3","ai_response:abc","cancel",{"why":"user"}]',
    ]
    phx.receive(
        '["1","3","ai_response:abc","phx_reply",{"status":"error","response":{"reason":"nope"}}]', 1.1
    )
    phx.receive('["1","2","ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 1.2)
    phx.receive('["1","2","ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 1.3)  # again
    phx.receive('["1","99","ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 1.3)  # unknown
    assert phx.events_received() == [
        Reply(TOPIC, "3", "error", {"reason": "nope"}),
        Reply(TOPIC, "2", "ok", {}),
    ]
    phx.tick(20.0)
    assert phx.events_received() == []  # both answered: no timeouts


def test_reply_on_another_topic_does_not_answer_a_push() -> None:
    phx = joined(client())
    ref = phx.push(TOPIC, "ping", {}, 1.0)
    phx.receive(f'["1","{ref}","{OTHER}","phx_reply",{{"status":"ok","response":{{}}}}]', 1.1)
    assert phx.events_received() == []
    phx.tick(11.0)
    assert phx.events_received() == [PushTimeout(TOPIC, ref, "ping")]


def test_push_timeout() -> None:
    phx = joined(client(timeout=5.0))
    ref = phx.push(TOPIC, "ping", {}, 1.0)
    assert phx.next_deadline() == 6.0
    phx.tick(5.9)
    assert phx.events_received() == []
    phx.tick(6.0)
    assert phx.events_received() == [PushTimeout(TOPIC, ref, "ping")]
    assert phx.channel_state(TOPIC) == "joined"


def test_push_requires_a_joined_channel() -> None:
    phx = client()
    with pytest.raises(RuntimeError):
        phx.push(TOPIC, "ping", {}, 0.0)
    phx.join(TOPIC, {}, 0.0)
    with pytest.raises(RuntimeError):
        phx.push(TOPIC, "ping", {}, 0.0)


def test_reply_without_ref_is_ignored() -> None:
    phx = joined(client())
    phx.receive('[null,null,"ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 1.0)
    assert phx.events_received() == []


# -- heartbeat ----------------------------------------------------------------------------------------


def test_heartbeat_sent_every_interval() -> None:
    phx = client(heartbeat=30.0)
    assert phx.next_deadline() == 30.0
    phx.tick(29.999)
    assert phx.data_to_send() == []
    for ref in range(1, 5):  # the heartbeat refs are 1, 2, 3, 4 and due every 30 s
        now = 30.0 * ref
        assert phx.next_deadline() == now
        phx.tick(now)
        assert phx.data_to_send() == [f'[null,"{ref}","phoenix","heartbeat",{{}}]']
        phx.receive(f'[null,"{ref}","phoenix","phx_reply",{{"status":"ok","response":{{}}}}]', now + 0.01)
        assert phx.events_received() == []
    assert phx.next_deadline() == 150.0


def test_heartbeat_missed_is_a_timeout() -> None:
    phx = client(heartbeat=30.0)
    phx.tick(30.0)
    assert phx.data_to_send() == ['[null,"1","phoenix","heartbeat",{}]']
    phx.tick(59.0)
    assert phx.events_received() == []
    phx.tick(60.0)
    assert phx.events_received() == [HeartbeatTimeout()]
    assert phx.data_to_send() == []
    assert phx.next_deadline() is None
    phx.tick(1000.0)
    assert phx.events_received() == []


def test_heartbeat_restarts_on_reopen() -> None:
    phx = client(heartbeat=30.0)
    phx.tick(30.0)
    assert phx.data_to_send() == ['[null,"1","phoenix","heartbeat",{}]']
    phx.tick(60.0)
    assert phx.events_received() == [HeartbeatTimeout()]
    phx.connection_lost(60.0)
    assert phx.next_deadline() is None
    phx.connection_opened(70.0)
    assert phx.next_deadline() == 100.0
    phx.tick(100.0)
    assert phx.data_to_send() == ['[null,"2","phoenix","heartbeat",{}]']


# -- seq, rejoin and dedupe -------------------------------------------------------------------------


def test_messages_are_delivered_and_seq_tracked() -> None:
    phx = joined(client())
    phx.receive(tokens(1, "hel"), 1.0)
    phx.receive(tokens(2, "lo", join_ref="1"), 1.0)
    phx.receive('[null,null,"ai_response:abc","response",{"status":"success","content":"hello"}]', 1.0)
    assert received(phx) == [
        ("tokens", {"data": "hel", "seq": 1}),
        ("tokens", {"data": "lo", "seq": 2}),
        ("response", {"status": "success", "content": "hello"}),
    ]
    assert phx.last_seq(TOPIC) == 2


def test_channel_messages_carry_their_text_frame_for_relays() -> None:
    phx = joined(client())
    phx.receive(tokens(1, "hi", join_ref="1"), 1.0)
    phx.receive(tokens(2, "yo").encode(), 1.0)
    first, second = phx.events_received()
    assert isinstance(first, ChannelMessage) and isinstance(second, ChannelMessage)
    assert first.frame == tokens(1, "hi", join_ref="1") and second.frame is None  # bytes: none
    assert first == ChannelMessage(TOPIC, "tokens", {"data": "hi", "seq": 1})  # not compared


def test_channel_messages_are_frozen_dataclasses() -> None:
    phx = joined(client())
    phx.receive(tokens(1, "hi"), 1.0)
    [event] = phx.events_received()
    assert event == ChannelMessage(TOPIC, "tokens", {"data": "hi", "seq": 1})
    assert type(event) is ChannelMessage
    assert repr(event) == (
        "ChannelMessage(topic='ai_response:abc', event='tokens', payload={'data': 'hi', 'seq': 1})"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.topic = "other"  # type: ignore[misc]


def test_rejoin_after_connection_lost_carries_last_seq() -> None:
    phx = joined(client(), params={"coalesce": True})
    for seq in (1, 2, 3):
        phx.receive(tokens(seq), 1.0)
    phx.events_received()
    phx.connection_lost(2.0)
    assert phx.channel_state(TOPIC) == "errored"
    assert phx.data_to_send() == []
    phx.connection_opened(3.0)
    assert phx.data_to_send() == ['["2","2","ai_response:abc","phx_join",{"coalesce":true,"last_seq":3}]']
    phx.receive('["2","2","ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 3.1)
    assert phx.events_received() == [Joined(TOPIC, {})]


def test_rejoin_without_seq_sends_the_original_params() -> None:
    phx = joined(client())
    phx.connection_lost(1.0)
    phx.connection_opened(2.0)
    assert phx.data_to_send() == ['["2","2","ai_response:abc","phx_join",{}]']


def test_replayed_seq_is_dropped() -> None:
    phx = joined(client())
    for seq in (1, 2, 3):
        phx.receive(tokens(seq, f"t{seq}"), 1.0)
    phx.events_received()
    phx.connection_lost(2.0)
    phx.connection_opened(3.0)
    phx.data_to_send()
    phx.receive('["2","2","ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 3.0)
    # A server that ignores last_seq replays from the start.
    for seq in (1, 2, 3, 4, 5):
        phx.receive(tokens(seq, f"t{seq}", join_ref="2"), 3.1)
    assert received(phx) == [("tokens", {"data": "t4", "seq": 4}), ("tokens", {"data": "t5", "seq": 5})]
    assert phx.duplicates_dropped == 3
    assert phx.last_seq(TOPIC) == 5


def test_seq_must_be_an_integer_to_count() -> None:
    phx = joined(client())
    phx.receive(tokens(5), 1.0)
    phx.receive('[null,null,"ai_response:abc","tokens",{"seq":"2","data":"a"}]', 1.0)
    phx.receive('[null,null,"ai_response:abc","tokens",{"seq":true,"data":"b"}]', 1.0)
    phx.receive('[null,null,"ai_response:abc","status",["not","a","dict"]]', 1.0)
    assert len(received(phx)) == 4
    assert phx.last_seq(TOPIC) == 5


def test_phx_error_rejoins_on_rejoin_backoff() -> None:
    phx = joined(client())
    phx.receive(tokens(7), 1.0)
    phx.events_received()
    phx.receive('["1",null,"ai_response:abc","phx_error",{}]', 2.0)
    assert phx.events_received() == [ChannelErrored(TOPIC)]
    assert phx.channel_state(TOPIC) == "errored"
    assert phx.next_deadline() == 3.0
    phx.tick(2.9)
    assert phx.data_to_send() == []
    phx.tick(3.0)
    assert phx.data_to_send() == ['["2","2","ai_response:abc","phx_join",{"last_seq":7}]']
    phx.tick(13.0)  # that join times out: the next delay is the second one
    assert phx.events_received() == [PushTimeout(TOPIC, "2", "phx_join")]
    assert phx.next_deadline() == 15.0


def test_phx_error_while_errored_is_ignored() -> None:
    phx = joined(client())
    phx.receive('["1",null,"ai_response:abc","phx_error",{}]', 2.0)
    phx.receive('["1",null,"ai_response:abc","phx_error",{}]', 2.5)
    assert phx.events_received() == [ChannelErrored(TOPIC)]
    assert phx.next_deadline() == 3.0


def test_stale_join_ref_messages_are_dropped() -> None:
    phx = joined(client())
    phx.connection_lost(1.0)
    phx.connection_opened(2.0)
    phx.data_to_send()
    phx.receive('["2","2","ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 2.0)
    phx.events_received()
    phx.receive(tokens(1, "old", join_ref="1"), 2.1)  # from the first join
    phx.receive('["1",null,"ai_response:abc","phx_error",{}]', 2.1)
    phx.receive('["1","1","ai_response:abc","phx_close",{}]', 2.1)
    assert phx.events_received() == []
    assert phx.channel_state(TOPIC) == "joined"
    phx.receive(tokens(1, "new", join_ref="2"), 2.2)
    phx.receive(tokens(2, "broadcast"), 2.2)
    assert received(phx) == [
        ("tokens", {"data": "new", "seq": 1}),
        ("tokens", {"data": "broadcast", "seq": 2}),
    ]


def test_messages_for_unknown_topics_are_dropped() -> None:
    phx = joined(client())
    phx.receive(f'[null,null,"{OTHER}","tokens",{{"seq":1}}]', 1.0)
    assert phx.events_received() == []
    assert phx.last_seq(OTHER) is None


def test_rejoin_backoff_resets_when_the_socket_reopens() -> None:
    phx = client(timeout=10.0)
    phx.join(TOPIC, {}, 0.0)
    phx.tick(10.0)  # rejoin after 1
    phx.tick(11.0)
    phx.tick(21.0)  # rejoin after 2
    phx.tick(23.0)
    phx.tick(33.0)  # rejoin after 5
    assert phx.next_deadline() == 38.0
    assert len(phx.data_to_send()) == 3
    phx.connection_lost(34.0)
    phx.connection_opened(35.0)  # rejoins at once; its timeout waits 1 s again
    phx.events_received()
    assert phx.data_to_send() == ['["4","4","ai_response:abc","phx_join",{}]']
    phx.tick(45.0)
    assert phx.events_received() == [PushTimeout(TOPIC, "4", "phx_join")]
    assert phx.next_deadline() == 46.0


# -- v1, close, leave -------------------------------------------------------------------------------


def test_v1_object_frames_are_decoded() -> None:
    phx = joined(client())
    phx.receive(
        '{"topic":"ai_response:abc","event":"tokens","payload":{"seq":1,"data":"v1"},"ref":null}', 1.0
    )
    phx.receive(
        '{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"9"}', 1.0
    )
    assert received(phx) == [("tokens", {"seq": 1, "data": "v1"})]


def test_v1_reply_with_integer_ref_answers_a_push() -> None:
    phx = joined(client())
    ref = phx.push(TOPIC, "ping", {}, 1.0)
    reply = {"status": "ok", "response": {}}
    phx.receive(f'{{"topic":"{TOPIC}","event":"phx_reply","payload":{json.dumps(reply)},"ref":{ref}}}', 1.1)
    assert phx.events_received() == [Reply(TOPIC, ref, "ok", {})]


def test_phx_close_closes_the_channel() -> None:
    phx = joined(client())
    phx.receive('["1","1","ai_response:abc","phx_close",{}]', 1.0)
    assert phx.events_received() == [ChannelClosed(TOPIC)]
    assert phx.channel_state(TOPIC) == "closed"
    phx.connection_lost(2.0)
    phx.connection_opened(3.0)
    assert phx.data_to_send() == []  # not rejoined


def test_leave_sends_phx_leave_and_closes_on_reply() -> None:
    phx = joined(client())
    assert phx.leave(TOPIC, 1.0) == "2"
    assert phx.data_to_send() == ['["1","2","ai_response:abc","phx_leave",{}]']
    assert phx.channel_state(TOPIC) == "leaving"
    phx.receive('["1","2","ai_response:abc","phx_reply",{"status":"ok","response":{}}]', 1.1)
    assert phx.events_received() == [ChannelClosed(TOPIC)]
    assert phx.channel_state(TOPIC) == "closed"


def test_leave_times_out_into_closed() -> None:
    phx = joined(client())
    phx.leave(TOPIC, 1.0)
    phx.tick(11.0)
    assert phx.events_received() == [ChannelClosed(TOPIC), PushTimeout(TOPIC, "2", "phx_leave")]
    assert phx.channel_state(TOPIC) == "closed"


def test_connection_lost_while_leaving_closes() -> None:
    phx = joined(client())
    phx.leave(TOPIC, 1.0)
    phx.data_to_send()
    phx.connection_lost(1.5)
    assert phx.events_received() == [ChannelClosed(TOPIC)]
    phx.connection_opened(2.0)
    assert phx.data_to_send() == []


def test_leave_while_joining_closes_at_once_without_a_late_timeout() -> None:
    phx = client()
    phx.join(TOPIC, {}, 0.0)
    assert phx.leave(TOPIC, 1.0) is None
    assert phx.events_received() == [ChannelClosed(TOPIC)]
    phx.tick(10.0)
    assert phx.events_received() == []
    assert phx.next_deadline() == NEVER


def test_leave_unknown_topic() -> None:
    assert client().leave(TOPIC, 0.0) is None


def test_next_deadline_idle() -> None:
    assert PhoenixClient().next_deadline() is None


# -- malformed input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("nope", 1007),
        (b"\xff", 1007),
        ('["1","1"]', 1007),
        ('[null,null,"t","e",{}]' + " " * 100, 1009),
    ],
)
def test_malformed_and_oversized_frames(frame: str | bytes, code: int) -> None:
    phx = PhoenixClient(max_frame_size=100)
    with pytest.raises(ProtocolError) as info:
        phx.receive(frame, 0.0)
    assert info.value.close_code == code


# -- property tests ---------------------------------------------------------------------------------

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)
small_refs = st.none() | st.sampled_from(["1", "2", "3", "4", "5", "x"]) | st.integers(0, 5)
payloads = (
    json_values
    | st.fixed_dictionaries({"status": json_values, "response": json_values})
    | st.fixed_dictionaries({"seq": st.integers(-2, 8) | json_values, "data": json_values})
)
frames = st.builds(
    lambda join_ref, ref, topic, event, payload: json.dumps([join_ref, ref, topic, event, payload]),
    small_refs,
    small_refs,
    st.sampled_from([TOPIC, OTHER, "phoenix"]) | st.text(max_size=5),
    st.sampled_from(["phx_reply", "phx_error", "phx_close", "phx_join", "tokens", "response"])
    | st.text(max_size=5),
    payloads,
)


def busy_client() -> PhoenixClient:
    """Open, one channel joined with a push in flight, one joining, a heartbeat pending."""
    phx = joined(client(heartbeat=5.0))
    phx.push(TOPIC, "ping", {}, 1.0)
    phx.join(OTHER, {}, 1.0)
    phx.tick(5.0)
    return phx


@SETTINGS
@given(st.lists(st.binary(max_size=60) | st.text(max_size=60), max_size=5))
def test_arbitrary_bytes_and_text_raise_only_protocol_error(data: list[str | bytes]) -> None:
    phx = busy_client()
    for item in data:
        with contextlib.suppress(ProtocolError):
            phx.receive(item, 6.0)


@SETTINGS
@given(st.lists(st.tuples(frames, st.floats(0, 30)), max_size=6))
def test_arbitrary_frames_raise_only_protocol_error(steps: list[tuple[str, float]]) -> None:
    phx = busy_client()
    now = 6.0
    for frame, dt in steps:
        now += dt
        code = None
        try:
            phx.receive(frame, now)
        except ProtocolError as exc:
            code = exc.close_code
        assert code in (None, 1007)
        phx.tick(now)
        phx.data_to_send()
        events = phx.events_received()
        for event in events:
            if isinstance(event, ChannelMessage):
                assert event.topic in (TOPIC, OTHER)
        if HeartbeatTimeout() in events:  # what an I/O layer does
            phx.connection_lost(now)
            phx.connection_opened(now)
        deadline = phx.next_deadline()
        assert deadline is None or deadline > now
