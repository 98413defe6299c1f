"""The hub's cross-process fan-out fills gaps from the replay stream (found by tests/e2e's pump
takeover test: a second socket on a process that had not joined the request's group yet lost the
batch sent meanwhile)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from django_modelriver.conf import modelriver_settings
from django_modelriver.hub import BATCH_TYPE, Hub, Subscription
from django_modelriver.store import make_entry
from modelriver.phoenix import ServerConnection

pytestmark = pytest.mark.usefixtures("mr_settings")

CHANNEL = "33333333-3333-4333-8333-333333333333"
TOPIC = f"ai_response:{CHANNEL}"


class Sink:
    def __init__(self) -> None:
        self.connection = ServerConnection(lambda topic, payload: None)
        self.connection.receive(json.dumps(["1", "1", TOPIC, "phx_join", {}]))
        self.connection.data_to_send()
        self.seqs: list[int] = []

    async def flush(self) -> None:
        for frame in self.connection.data_to_send():
            self.seqs.append(json.loads(frame)[4]["seq"])


def batch(entries: list[Any]) -> dict[str, Any]:
    return {"type": BATCH_TYPE, "c": CHANNEL, "o": "another-process",
            "e": [[e.seq, e.event, e.frame] for e in entries]}


async def test_a_socket_behind_a_batch_gets_the_gap_from_the_replay_stream() -> None:
    hub = Hub(modelriver_settings())
    entries = [make_entry(TOPIC, "tokens", {"seq": n, "data": f" t{n}"}, n - 1) for n in range(1, 11)]
    await hub.backend.append({CHANNEL: entries})  # the replay stream holds 1..10
    first, second = Sink(), Sink()
    early = Subscription(first, CHANNEL, TOPIC, TOPIC, last_seq=5, coalesce=False)
    late = Subscription(second, CHANNEL, TOPIC, TOPIC, last_seq=7, coalesce=False)
    hub._subs[CHANNEL] = {early, late}
    early.start([])
    late.start([])
    # The process already relayed batches up to 7; the batch of 6..7 never reached ``early``'s
    # replay, and now 8..10 arrives.
    hub._seen[CHANNEL] = 7
    await hub._on_batch(batch(entries[7:]))
    assert first.seqs == [6, 7, 8, 9, 10]
    assert second.seqs == [8, 9, 10]


async def test_a_fresh_process_fills_the_gap_before_its_first_batch() -> None:
    hub = Hub(modelriver_settings())
    entries = [make_entry(TOPIC, "tokens", {"seq": n, "data": f" t{n}"}, n - 1) for n in range(1, 6)]
    await hub.backend.append({CHANNEL: entries})
    sink = Sink()
    sub = Subscription(sink, CHANNEL, TOPIC, TOPIC, last_seq=2, coalesce=False)
    hub._subs[CHANNEL] = {sub}
    sub.start([])
    await hub._on_batch(batch(entries[4:]))  # 5 arrives; 3 and 4 went out before the group join
    assert sink.seqs == [3, 4, 5]
