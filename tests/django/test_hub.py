"""The fan-out pieces without I/O: entries keep the upstream seq, subscriptions never deliver a
seq twice (replay and live events overlap), coalescing merges only what the socket asked for."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django_modelriver.conf import AppSettings
from django_modelriver.hub import Hub, Subscription, payload_of
from django_modelriver.store import EntryBuffer, MemoryBackend, make_entry
from modelriver.phoenix import Entry, ServerConnection

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


def test_entry_buffer_replays_after_a_seq_and_stays_bounded() -> None:
    buffer = EntryBuffer(5)
    buffer.add(tokens(1, 8))
    assert [e.seq for e in buffer.after(None)] == [4, 5, 6, 7, 8]
    assert [e.seq for e in buffer.after(6)] == [7, 8]
    assert buffer.after(8) == [] and buffer.last_seq == 8
    buffer.add(tokens(3, 9))  # repeats are ignored
    assert [e.seq for e in buffer.after(7)] == [8, 9]


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
