"""modelriver.store: both backends behind one protocol, time from an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelriver.store import (
    DEFAULT_MAX_AGE,
    MemoryStore,
    RequestStore,
    SQLiteStore,
    StoredRequest,
)
from modelriver.types import AsyncRequest

T0 = 1_704_825_600.0


class Clock:
    """A hand-moved clock: the store reads it, the test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(channel: str = "ch-1", *, at: float = T0, seq: int | None = None) -> StoredRequest:
    return StoredRequest(
        channel_id=channel,
        ws_token=f"tok-{channel}",
        websocket_url="wss://api.modelriver.com/socket",
        websocket_channel=f"ai_response:proj:{channel}",
        last_seq=seq,
        timestamp=at,
    )


StoreFactory = Callable[..., RequestStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[SQLiteStore] = []

    def factory(*, clock: Clock, max_age: float = DEFAULT_MAX_AGE) -> RequestStore:
        if request.param == "memory":
            return MemoryStore(clock=clock, max_age=max_age)
        store = SQLiteStore(tmp_path / "requests.sqlite3", clock=clock, max_age=max_age)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def test_both_satisfy_the_protocol(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.sqlite3") as sqlite_store:
        assert isinstance(sqlite_store, RequestStore)
    assert isinstance(MemoryStore(), RequestStore)
    assert DEFAULT_MAX_AGE == 300


def test_put_get_roundtrip(make_store: StoreFactory) -> None:
    store = make_store(clock=Clock())
    assert store.get("user-1") is None
    rec = record(seq=None)
    store.put("user-1", rec)
    assert store.get("user-1") == rec
    assert store.get("user-2") is None


def test_put_replaces(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    store.put("k", record("ch-1", seq=7))
    fresh = record("ch-2", at=T0 + 10)
    store.put("k", fresh)
    assert store.get("k") == fresh


def test_expiry_at_the_boundary(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    store.put("k", record())
    clock.now = T0 + 300
    assert store.get("k") is not None, "exactly max_age old is still live"
    clock.now = T0 + 300.5
    assert store.get("k") is None
    clock.now = T0  # even with the clock back, the expired entry was dropped
    assert store.get("k") is None


def test_expired_entries_swept_on_put(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    store.put("old", record("old"))
    clock.now = T0 + 301
    store.put("new", record("new", at=clock.now))
    clock.now = T0
    assert store.get("old") is None
    assert store.get("new") is not None


def test_custom_max_age(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock=clock, max_age=10)
    store.put("k", record())
    clock.now = T0 + 10
    assert store.get("k") is not None
    clock.now = T0 + 11
    assert store.get("k") is None


def test_record_stored_long_ago_is_never_returned(make_store: StoreFactory) -> None:
    store = make_store(clock=Clock(T0 + 3600))
    store.put("k", record(at=T0))
    assert store.get("k") is None


def test_update_seq_only_moves_forward(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    store.put("k", record())
    assert store.update_seq("k", 3) is True
    assert store.get("k") == record(seq=3)
    assert store.update_seq("k", 9) is True
    assert store.update_seq("k", 5) is True  # late, out of order: ignored, still live
    got = store.get("k")
    assert got is not None
    assert got.last_seq == 9
    assert got.timestamp == T0, "update_seq keeps the token's age"


def test_update_seq_missing_or_expired(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    assert store.update_seq("nobody", 1) is False
    store.put("k", record())
    clock.now = T0 + 301
    assert store.update_seq("k", 1) is False
    clock.now = T0  # the refused update changed nothing
    assert store.get("k") == record()


def test_delete(make_store: StoreFactory) -> None:
    store = make_store(clock=Clock())
    store.put("a", record("a"))
    store.put("b", record("b"))
    store.delete("a")
    store.delete("a")  # absent: no error
    assert store.get("a") is None
    assert store.get("b") == record("b")


def test_concurrent_update_seq_keeps_the_maximum(make_store: StoreFactory) -> None:
    store = make_store(clock=Clock())
    store.put("k", record())
    start = threading.Barrier(8)

    def worker(offset: int) -> None:
        start.wait()
        for seq in range(offset, 400, 8):
            assert store.update_seq("k", seq)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = store.get("k")
    assert got is not None
    assert got.last_seq == 399


def test_sqlite_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "requests.sqlite3"
    path.parent.mkdir()
    clock = Clock()
    with SQLiteStore(path, clock=clock) as first:
        first.put("k", record())
        first.update_seq("k", 42)
    with SQLiteStore(path, clock=clock) as second:
        assert second.get("k") == record(seq=42)
        second.delete("k")
    with SQLiteStore(str(path), clock=clock) as third:
        assert third.get("k") is None


def test_sqlite_two_live_instances_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    clock = Clock()
    with SQLiteStore(path, clock=clock) as a, SQLiteStore(path, clock=clock) as b:
        a.put("k", record())
        assert b.update_seq("k", 5)
        assert a.get("k") == record(seq=5)
        b.delete("k")
        assert a.get("k") is None


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    with SQLiteStore(path) as store:
        mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_sqlite_in_memory() -> None:
    clock = Clock()
    with SQLiteStore(":memory:", clock=clock) as store:
        store.put("k", record())
        assert store.get("k") == record()


def test_stored_request_from_and_to_async_request() -> None:
    request = AsyncRequest(
        channel_id="ch-9",
        ws_token="tok",
        websocket_url="wss://example.test/socket",
        websocket_channel="ai_response:p:ch-9",
    )
    rec = StoredRequest.from_request(request, timestamp=T0)
    assert rec == StoredRequest("ch-9", "tok", "wss://example.test/socket", "ai_response:p:ch-9",
                                None, T0)
    assert rec.to_request() == request


def test_default_clock_is_wall_time() -> None:
    # No injected clock: time.time() decides, and a record stamped in 1970 is long expired.
    store = MemoryStore()
    store.put("old", record(at=0.0))
    assert store.get("old") is None
