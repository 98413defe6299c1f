"""The fan-out pieces without I/O: entries keep the upstream seq, subscriptions never deliver a
seq twice (replay and live events overlap), coalescing merges only what the socket asked for."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
import uuid
from typing import Any

from django_modelriver.conf import AppSettings
from django_modelriver.hub import Hub, Subscription
from django_modelriver.store import EntryBuffer, MemoryBackend, RequestRecord, make_entry
from modelriver.phoenix import Entry, ServerConnection, encode_parts, payload_of

TOPIC = "ai_response:p:c"


class Sink:
    def __init__(self) -> None:
        self.connection = ServerConnection(lambda topic, payload: None)
        self.connection.receive(json.dumps(["1", "1", TOPIC, "phx_join", {}]))
        self.connection.data_to_send()

    async def flush(self) -> None:
        return None

    def events(self) -> list[list[Any]]:
        return [json.loads(frame) for frame in self.connection.data_to_send()]


def tokens(first: int, last: int) -> list[Entry]:
    entries = []
    for seq in range(first, last + 1):
        entry = make_entry(TOPIC, "tokens", {"seq": seq, "data": f" t{seq}"}, seq - 1)
        assert entry is not None
        entries.append(entry)
    return entries


def test_make_entry_keeps_the_upstream_seq_and_drops_repeats() -> None:
    entry = make_entry(TOPIC, "tokens", {"seq": 7, "data": "x"}, 6)
    assert entry is not None and entry.seq == 7
    assert json.loads(entry.frame) == [None, None, TOPIC, "tokens", {"seq": 7, "data": "x"}]
    assert make_entry(TOPIC, "tokens", {"seq": 7, "data": "x"}, 7) is None
    unstamped = make_entry(TOPIC, "status", {"status": "queued"}, 3)
    assert unstamped is not None and unstamped.seq == 4
    assert payload_of(unstamped) == {"status": "queued", "seq": 4}
    final = make_entry(TOPIC, "response", {"seq": 5, "status": "success"}, 4)
    assert final is not None and final.payload == {"seq": 5, "status": "success"}


def test_make_entry_forwards_the_received_frame_when_it_can() -> None:
    received = '["3",null,"ai_response:p:c","tokens",{"seq":8,"data":"caf\\u00e9"}]'
    entry = make_entry(TOPIC, "tokens", json.loads(received)[4], 7, received)
    assert entry is not None and entry.frame == "[null,null," + received[len('["3",null,'):]  # not re-encoded
    other = make_entry(TOPIC, "tokens", {"data": "x"}, 8, '["3",null,"ai_response:p:c","tokens",{"data":"x"}]')
    assert other is not None and json.loads(other.frame)[4] == {"data": "x", "seq": 9}  # stamped: encoded


def test_entry_buffer_replays_after_a_seq_and_stays_bounded() -> None:
    buffer = EntryBuffer(5)
    buffer.add(tokens(1, 8))
    assert [e.seq for e in buffer.after(None)] == [4, 5, 6, 7, 8]
    assert [e.seq for e in buffer.after(6)] == [7, 8]
    assert buffer.after(8) == [] and buffer.last_seq == 8
    buffer.add(tokens(3, 9))  # repeats are ignored
    assert [e.seq for e in buffer.after(7)] == [8, 9]


def test_entry_buffer_replays_the_same_frames_live_and_sealed() -> None:
    odd = [Entry(3, 'we"ird', {}, encode_parts(None, None, TOPIC, 'we"ird', {"seq": 3})),
           Entry(4, "tokens", {}, encode_parts(None, None, "ai_response:c", "tokens", {"seq": 4}))]
    entries = [*tokens(1, 2), *odd, *tokens(5, 9)]  # an escaped event name, a frame on another topic
    buffer = EntryBuffer(6, TOPIC)
    buffer.add(entries)
    expected = [(e.seq, e.event, e.frame) for e in entries[-6:]]
    assert [(e.seq, e.event, e.frame) for e in buffer.after(None)] == expected
    assert len(buffer) == 6 and buffer.last_seq == 9
    buffer.seal()
    assert buffer.sealed
    assert [(e.seq, e.event, e.frame) for e in buffer.after(None)] == expected
    assert [e.seq for e in buffer.after(7)] == [8, 9]
    assert [json.loads(e.frame)[4] for e in buffer.after(8)] == [payload_of(e) for e in buffer.after(8)]
    buffer.add(tokens(10, 10))  # a late event unseals
    assert not buffer.sealed and [e.seq for e in buffer.after(8)] == [9, 10]


def test_entry_buffer_weighs_about_the_payloads_it_keeps() -> None:
    """A token costs ~100 bytes in a live log and ~20 once sealed, not an Entry, a payload dict
    and a whole frame (~400 bytes with a real topic)."""
    topic = f"ai_response:{uuid.uuid4()}:{uuid.uuid4()}"
    entries = []
    for seq in range(1, 1001):
        entry = make_entry(topic, "tokens", {"data": f"w{seq} ", "seq": seq}, seq - 1)
        assert entry is not None
        entries.append(entry)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        buffer = EntryBuffer(10_000, topic)
        buffer.add(entries)
        live = (tracemalloc.get_traced_memory()[0] - before) / len(entries)
        buffer.seal()
        sealed = (tracemalloc.get_traced_memory()[0] - before) / len(entries)
    finally:
        tracemalloc.stop()
    assert live < 130 and sealed < 40, (live, sealed)
    assert [e.frame for e in buffer.after(None)] == [e.frame for e in entries]


async def test_memory_backend_seals_ended_logs_and_forgets_them_after_retention() -> None:
    backend = MemoryBackend(buffer_size=100, retention=0.05, token_lifetime=60)
    record = RequestRecord("c", None, TOPIC, owner="s1", user_id="u1", workflow="w")
    await backend.save(record)
    backend.add_now("c", tokens(1, 3))
    assert await backend.latest("s1", None) is record
    await backend.mark_ended("c")
    assert backend._buffers["c"].sealed
    assert [e.seq for e in await backend.replay("c", TOPIC, 1)] == [2, 3]
    await asyncio.sleep(0.1)
    await backend.save(RequestRecord("d", None, TOPIC, owner="s2", user_id=None, workflow="w"))
    assert await backend.get("c") is None and await backend.replay("c", TOPIC, None) == []
    assert "s:s1" not in backend._latest and "u:u1" not in backend._latest  # no key per visitor left behind


async def test_retained_answers_hold_no_object_per_event_for_the_garbage_collector() -> None:
    """The soak's failed streams (Daphne refusing handshakes after its 5 s connect timeout) came
    from the relay stalling once ten minutes of finished answers were retained: each of their
    events was a GC-tracked ``Entry``, so every full collection walked all of them (~270 ms at
    5,000 answers), and each start's expiry scan walked every retained request."""
    backend = MemoryBackend(buffer_size=10_000, retention=600, token_lifetime=300)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(200):
        channel_id = f"c{n}"
        await backend.save(RequestRecord(channel_id, None, f"ai_response:{channel_id}", f"s{n}", None, "w"))
        backend.add_now(channel_id, [e for e in (make_entry(f"ai_response:{channel_id}", "tokens",
                                                            {"seq": seq, "data": f" t{seq}"}, seq - 1)
                                                 for seq in range(1, 101)) if e is not None])
        await backend.mark_ended(channel_id)
    gc.collect()
    assert (len(gc.get_objects()) - before) / 200 < 8  # a record and its log, not 100 entries
    assert [e.seq for e in await backend.replay("c7", "ai_response:c7", 98)] == [99, 100]


def test_overlapping_replay_and_live_events_are_delivered_once() -> None:
    sink = Sink()
    sub = Subscription(sink, "c", TOPIC, TOPIC, last_seq=None, coalesce=False)  # type: ignore[arg-type]
    sub.push(tokens(5, 7))  # live events while the replay is read
    assert sink.events() == []
    sub.start(tokens(1, 6))
    assert [f[4]["seq"] for f in sink.events()] == [1, 2, 3, 4, 5, 6, 7]
    sub.push(tokens(6, 9))
    sub.push(tokens(8, 8))
    assert [f[4]["seq"] for f in sink.events()] == [8, 9]


def test_coalesced_replay_merges_without_repeating() -> None:
    sink = Sink()
    sub = Subscription(sink, "c", TOPIC, TOPIC, last_seq=2, coalesce=True)  # type: ignore[arg-type]
    sub.push(tokens(5, 7))
    sub.start(tokens(1, 6))
    [merged] = sink.events()
    assert merged[4]["from_seq"] == 3 and merged[4]["seq"] == 7
    assert merged[4]["data"] == " t3 t4 t5 t6 t7"
    sub.push(tokens(8, 8))  # live events are never merged
    assert [f[4]["data"] for f in sink.events()] == [" t8"]


def test_a_fallback_topic_gets_its_own_frames() -> None:
    sink = Sink()
    sink.connection.receive(json.dumps(["2", "2", "ai_response:c", "phx_join", {}]))
    sink.connection.data_to_send()
    sub = Subscription(sink, "c", "ai_response:c", TOPIC, last_seq=None, coalesce=False)  # type: ignore[arg-type]
    sub.start(tokens(1, 2))
    assert [f[2] for f in sink.events()] == ["ai_response:c", "ai_response:c"]


class Layer:
    """A channel layer whose group_add completes only when the test says so."""

    def __init__(self) -> None:
        self.added = asyncio.Event()
        self.release = asyncio.Event()
        self.calls: list[str] = []

    async def group_add(self, group: str, channel: str) -> None:
        self.calls.append("add")
        self.added.set()
        await self.release.wait()
        self.calls.append("added")

    async def group_discard(self, group: str, channel: str) -> None:
        self.calls.append("discard")


class Backend(MemoryBackend):
    def __init__(self, layer: Layer) -> None:
        super().__init__(buffer_size=100, retention=60, token_lifetime=60)
        self.layer = layer

    async def replay(self, channel_id: str, topic: str, after: int | None) -> list[Entry]:
        self.layer.calls.append("replay")
        return []


async def test_every_join_reads_its_replay_only_once_the_process_is_in_the_group() -> None:
    layer = Layer()
    hub = Hub(AppSettings(None, "http://x", None, None, None, "django_modelriver.permissions.allow_any",
                          100, 60, 60, None, True, None, 10, 0.02, True))
    hub.backend, hub.distributed, hub._layer, hub._relay_channel, hub._started = \
        Backend(layer), True, layer, "relay", True
    first = Subscription(Sink(), "c", TOPIC, TOPIC, last_seq=None, coalesce=False)  # type: ignore[arg-type]
    second = Subscription(Sink(), "c", TOPIC, TOPIC, last_seq=None, coalesce=False)  # type: ignore[arg-type]
    one = asyncio.ensure_future(hub.subscribe(first))
    await layer.added.wait()
    two = asyncio.ensure_future(hub.subscribe(second))
    await asyncio.sleep(0)
    assert layer.calls == ["add"]  # the second join waits for the group, it does not replay yet
    layer.release.set()
    await asyncio.gather(one, two)
    assert layer.calls == ["add", "added", "replay", "replay"]
    await hub.unsubscribe(first)
    await hub.unsubscribe(second)
    assert layer.calls[-1] == "discard"
