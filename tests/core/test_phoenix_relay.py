"""The relay layer above the sans-I/O server: ``phoenix.log`` and ``phoenix.relay``, on literal frames."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest

from modelriver.phoenix import (
    CATCH_UP_CHUNK,
    ChannelLog,
    Entry,
    ServerConnection,
    Subscription,
    merge_entries,
    on_topic,
    payload_of,
    relay_entry,
)
from modelriver.phoenix.log import BLOCK

TOPIC = "ai_response:p:c"
ALIAS = "ai_response:c"


def token(seq: int, topic: str = TOPIC) -> Entry:
    frame = f'[null,null,"{topic}","tokens",{{"data":"t{seq}","seq":{seq}}}]'
    return Entry(seq, "tokens", {}, frame)


def status(seq: int) -> Entry:
    return Entry(seq, "status", {}, f'[null,null,"{TOPIC}","status",{{"status":"started","seq":{seq}}}]')


def connection(*topics: str, max_buffer: int = 1 << 20) -> ServerConnection:
    conn = ServerConnection(lambda topic, payload: None, max_buffer=max_buffer)
    for n, topic in enumerate(topics or (TOPIC,), 1):
        conn.receive(f'["{n}","{n}","{topic}","phx_join",{{}}]')
    conn.data_to_send()
    conn.events_received()
    return conn


def sent(conn: ServerConnection) -> list[list[Any]]:
    frames = [json.loads(f) for f in conn.data_to_send()]
    conn.update_flow(0, 0, 0.0)  # all written
    return frames


# -- the compact log -----------------------------------------------------------------------------------


def test_log_appends_literal_frames_and_replays_them_after_a_seq() -> None:
    log = ChannelLog(TOPIC)
    first = log.append("tokens", {"data": "a"})
    log.append("response", {"status": "success"})
    assert first.frame == '[null,null,"ai_response:p:c","tokens",{"data":"a","seq":1}]'
    assert [(e.seq, e.event, e.frame) for e in log.after(1)] == [
        (2, "response", '[null,null,"ai_response:p:c","response",{"status":"success","seq":2}]')]
    assert [e.seq for e in log.after(None, limit=1)] == [1]


def test_log_keeps_relayed_seqs_drops_repeats_and_stays_bounded() -> None:
    log = ChannelLog(TOPIC, max_events=4)
    log.add([token(3), token(5), token(4), token(6)])  # 4 is at or below the last: a repeat
    log.add([token(s) for s in range(7, 12)])
    assert log.last_seq == 11
    assert [e.seq for e in log.after(None)] == [8, 9, 10, 11]
    assert [e.seq for e in log.after(9)] == [10, 11]
    assert len(log) == 4


def test_log_packs_frames_on_its_topic_without_their_head_and_seals_into_one_block() -> None:
    log = ChannelLog(TOPIC, max_events=100)
    other = token(2, ALIAS)  # a frame on another topic is kept whole
    escaped = Entry(3, 'we"ird', {}, '[null,null,"ai_response:p:c","we\\"ird",{"seq":3}]')
    entries = [token(1), other, escaped, token(4)]
    log.add(entries)
    assert log._tail == ['"tokens",{"data":"t1","seq":1}]', other.frame, '"we\\"ird",{"seq":3}]',
                         '"tokens",{"data":"t4","seq":4}]']
    expected = [(e.seq, e.event, e.frame) for e in entries]
    assert [(e.seq, e.event, e.frame) for e in log.after(None)] == expected
    log.seal()
    assert log.sealed and log._tail == log._blocks == [] and isinstance(log._sealed, bytes)
    assert [(e.seq, e.event, e.frame) for e in log.after(None)] == expected
    assert [e.seq for e in log.after(2, limit=1)] == [3]
    log.append("response", {})  # a late event unseals
    assert not log.sealed and [e.seq for e in log.after(3)] == [4, 5]


def test_a_log_without_a_topic_keeps_whole_frames_and_cannot_stamp() -> None:
    log = ChannelLog(None)
    log.add([token(1)])
    assert log.after(None)[0].frame == token(1).frame
    with pytest.raises(ValueError, match="topic"):
        log.append("tokens", {})


def test_a_log_compresses_each_full_run_of_entries_and_replays_any_window_of_it() -> None:
    log = ChannelLog(TOPIC, max_events=300)
    entries = [token(s) if s % 7 else Entry(s, "tokens", {}, token(s, ALIAS).frame) for s in range(1, 1_001)]
    log.add(entries)
    kept = entries[-300:]
    assert not log._tail or len(log._tail) < BLOCK
    assert len(log._blocks) * BLOCK + len(log._tail) < 300 + 300 // 4 + 2 * BLOCK  # trimmed in whole blocks
    frames = [e.frame for e in kept]
    assert [e.frame for e in log.after(None)] == frames
    for after, limit in [(kept[0].seq, None), (kept[63].seq, 5), (kept[64].seq, 130), (kept[-2].seq, 512), (0, 1)]:
        expected = [e.frame for e in kept if e.seq > after][:limit]
        assert [e.frame for e in log.after(after, limit)] == expected
    text = sum(len(e.frame) for e in kept)
    assert sum(map(len, log._blocks)) < text / 4  # a stream's frames share most of their text


def test_a_kept_log_holds_nothing_the_collector_tracks_per_event() -> None:
    log = ChannelLog(TOPIC, max_events=5_000)
    gc.collect()
    before = len(gc.get_objects())
    log.add([token(s) for s in range(1, 5_001)])
    gc.collect()
    assert len(gc.get_objects()) - before < 50


# -- frame helpers --------------------------------------------------------------------------------------


def test_relay_entry_keeps_the_upstream_seq_and_frame() -> None:
    received = '["3","7","ai_response:p:c","tokens",{"data":"x","seq":7}]'
    entry = relay_entry(TOPIC, "tokens", {"data": "x", "seq": 7}, 6, received)
    assert entry is not None and entry.frame == '[null,null,"ai_response:p:c","tokens",{"data":"x","seq":7}]'
    assert relay_entry(TOPIC, "tokens", {"data": "x", "seq": 7}, 7, received) is None  # a repeat
    stamped = relay_entry(TOPIC, "status", {"status": "queued"}, 3)
    assert stamped is not None and stamped.seq == 4 and payload_of(stamped) == {"status": "queued", "seq": 4}


def test_on_topic_reencodes_only_for_another_spelling() -> None:
    entry = token(5)
    assert on_topic(entry, TOPIC) is entry
    assert on_topic(entry, ALIAS).frame == '[null,null,"ai_response:c","tokens",{"data":"t5","seq":5}]'


def test_merge_entries_keeps_one_per_seq_in_order() -> None:
    first, second = [token(1), token(2), token(3)], [token(3, ALIAS), token(4)]
    merged = merge_entries(first, second)
    assert [e.seq for e in merged] == [1, 2, 3, 4] and merged[2] is first[2]


# -- the subscription ------------------------------------------------------------------------------------


def test_replay_then_live_merges_without_loss_or_duplicates() -> None:
    conn = connection()
    sub = Subscription(conn, TOPIC, TOPIC, last_seq=None, coalesce=False)
    assert not sub.push([token(4), token(5)])  # live while the replay is read: held
    assert sent(conn) == []
    assert sub.start([token(1), token(2), token(3), token(4)])
    assert [f[4]["seq"] for f in sent(conn)] == [1, 2, 3, 4, 5]
    sub.push([token(5), token(6)])
    sub.push([token(6)])
    assert [(f[0], f[4]["seq"]) for f in sent(conn)] == [("1", 6)]  # stamped with the join ref


def test_a_join_with_last_seq_gets_only_what_came_after() -> None:
    conn = connection()
    sub = Subscription(conn, TOPIC, TOPIC, last_seq=2, coalesce=False)
    sub.start([token(1), token(2), token(3)])
    assert [f[4]["seq"] for f in sent(conn)] == [3]


def test_coalesced_replay_and_live_batches() -> None:
    conn = connection()
    sub = Subscription(conn, TOPIC, TOPIC, last_seq=1, coalesce=True)
    sub.start([token(1), token(2), token(3), status(4), token(5)])
    frames = sent(conn)
    assert [f[3] for f in frames] == ["tokens", "status", "tokens"]
    assert frames[0][4] == {"data": "t2t3", "seq": 3, "from_seq": 2}
    sub.push([token(6), token(7)])  # live batches are not merged unless asked
    assert len(sent(conn)) == 2
    other = connection()
    live = Subscription(other, TOPIC, TOPIC, last_seq=None, coalesce=True, coalesce_live=True)
    live.start([])
    live.push([token(1), token(2)])
    assert [f[4] for f in sent(other)] == [{"data": "t1t2", "seq": 2, "from_seq": 1}]


def test_another_spelling_of_the_topic_gets_its_own_frames() -> None:
    conn = connection(ALIAS)
    sub = Subscription(conn, ALIAS, TOPIC, last_seq=None, coalesce=True)
    sub.start([token(1), token(2), status(3)])
    assert [(f[2], f[3]) for f in sent(conn)] == [(ALIAS, "tokens"), (ALIAS, "status")]


def test_a_paused_socket_gets_nothing_then_catches_up_from_the_log_in_order() -> None:
    log = ChannelLog(TOPIC)
    conn = connection(max_buffer=400)
    sub = Subscription(conn, TOPIC, TOPIC, last_seq=None, coalesce=False)
    sub.start([])
    for _ in range(1, 4):
        sub.push([log.append("tokens", {"data": "x" * 100})])
    assert conn.paused and sub.sent_seq == 3
    for _ in range(4, 7):
        assert not sub.push([log.append("tokens", {"data": "x"})])  # produced nothing: behind
    assert sub.behind and sub.sent_seq == 3
    assert [f[4]["seq"] for f in sent(conn)] == [1, 2, 3]  # drained
    assert sub.catch_up(log)
    assert not sub.behind and [f[4]["seq"] for f in sent(conn)] == [4, 5, 6]
    sub.push([log.append("tokens", {"data": "y"})])
    assert [f[4]["seq"] for f in sent(conn)] == [7]


def test_a_long_replay_goes_out_a_chunk_at_a_time_and_stops_when_paused() -> None:
    log = ChannelLog(TOPIC, max_events=5 * CATCH_UP_CHUNK)
    for _ in range(3 * CATCH_UP_CHUNK):
        log.append("tokens", {"data": "x"})
    conn = connection(max_buffer=100)
    sub = Subscription(conn, TOPIC, TOPIC, last_seq=None, coalesce=False)
    sub.start(log.after(None))
    assert sub.behind and sub.sent_seq == CATCH_UP_CHUNK  # one chunk, then paused
    seqs = [f[4]["seq"] for f in sent(conn)]
    while sub.behind:
        sub.catch_up(log)
        seqs += [f[4]["seq"] for f in sent(conn)]
    assert seqs == list(range(1, 3 * CATCH_UP_CHUNK + 1))


def test_deferred_and_resumed_joins_catch_up_through_a_replay_read_elsewhere() -> None:
    conn = connection(max_buffer=10)
    conn.deliver(TOPIC, ["x" * 20])  # paused before the join's replay
    sub = Subscription(conn, TOPIC, TOPIC, last_seq=None, coalesce=False)
    sub.push([token(1)])
    sub.defer()
    assert sub.pending == [] and sub.behind and not sub.push([token(2)])
    conn.data_to_send()
    conn.update_flow(0, 20, 0.0)
    sub.resume()
    sub.push([token(3)])  # waits for the replay
    sub.start([token(1), token(2)])
    assert [f[4]["seq"] for f in sent(conn)] == [1, 2, 3]


def test_a_left_topic_delivers_nothing() -> None:
    conn = connection()
    conn.receive(f'["1","2","{TOPIC}","phx_leave",{{}}]')
    conn.data_to_send()
    sub = Subscription(conn, TOPIC, TOPIC, last_seq=None, coalesce=False)
    assert not sub.start([token(1)])
    assert conn.data_to_send() == []
