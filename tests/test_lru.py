"""LRU: both bounds, recency order, expiry on an injected clock, exact byte accounting."""

from __future__ import annotations

import pytest

from asynccache.backends import LRU


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bounded_by_entry_count_evicts_least_recently_used() -> None:
    lru: LRU[str] = LRU(max_entries=3, max_bytes=1000)
    for key in "abc":
        lru.set(key, key.upper(), 1, None)
    assert lru.get("a") == "A"  # a is now most recent; b is the oldest
    lru.set("d", "D", 1, None)
    assert len(lru) == 3
    assert lru.get("b") is None
    assert [lru.get(k) for k in "acd"] == ["A", "C", "D"]


def test_bounded_by_bytes() -> None:
    lru: LRU[bytes] = LRU(max_entries=100, max_bytes=10)
    lru.set("a", b"aaaa", 4, None)
    lru.set("b", b"bbbb", 4, None)
    lru.set("c", b"cccc", 4, None)  # 12 > 10: a goes
    assert lru.get("a") is None
    assert lru.nbytes == 8
    lru.set("big", b"x" * 10, 10, None)  # fits alone: everything else goes
    assert len(lru) == 1
    assert lru.nbytes == 10


def test_oversize_entry_is_rejected_and_drops_the_old_value() -> None:
    lru: LRU[bytes] = LRU(max_entries=10, max_bytes=10)
    lru.set("k", b"small", 5, None)
    lru.set("k", b"x" * 11, 11, None)
    assert lru.get("k") is None
    assert len(lru) == 0
    assert lru.nbytes == 0


def test_zero_capacity_stores_nothing() -> None:
    lru: LRU[int] = LRU(max_entries=0, max_bytes=100)
    lru.set("k", 1, 1, None)
    assert lru.get("k") is None
    assert len(lru) == 0


def test_expiry_uses_the_injected_clock() -> None:
    clock = FakeClock()
    lru: LRU[str] = LRU(max_entries=10, max_bytes=100, clock=clock)
    lru.set("short", "s", 1, ttl=5)
    lru.set("forever", "f", 1, ttl=None)
    clock.now += 4.9
    assert lru.get("short") == "s"
    assert "short" in lru
    clock.now += 0.2
    assert "short" not in lru
    assert lru.get("short") is None
    assert lru.get("forever") == "f"
    assert len(lru) == 1
    assert lru.nbytes == 1


def test_non_positive_ttl_is_not_stored() -> None:
    lru: LRU[str] = LRU(max_entries=10, max_bytes=100)
    lru.set("k", "v", 1, None)
    lru.set("k", "v2", 1, ttl=0)
    assert lru.get("k") is None


def test_writes_sweep_expired_entries_from_the_lru_end() -> None:
    clock = FakeClock()
    lru: LRU[str] = LRU(max_entries=100, max_bytes=1000, clock=clock)
    for i in range(3):
        lru.set(f"old{i}", "v", 10, ttl=1)
    clock.now += 2
    lru.set("new", "v", 10, ttl=None)  # never read, yet the expired ones are gone
    assert len(lru) == 1
    assert lru.nbytes == 10


def test_nbytes_exact_after_overwrite_and_delete() -> None:
    lru: LRU[bytes] = LRU(max_entries=10, max_bytes=1000)
    lru.set("a", b"1", 100, None)
    lru.set("b", b"2", 50, None)
    assert lru.nbytes == 150
    lru.set("a", b"3", 30, None)  # overwrite: old size leaves, new size arrives
    assert lru.nbytes == 80
    assert lru.delete("b") is True
    assert lru.delete("b") is False
    assert lru.nbytes == 30
    lru.clear()
    assert (len(lru), lru.nbytes) == (0, 0)


def test_delete_of_expired_entry_reports_false() -> None:
    clock = FakeClock()
    lru: LRU[str] = LRU(max_entries=10, max_bytes=100, clock=clock)
    lru.set("k", "v", 7, ttl=1)
    clock.now += 5
    assert lru.delete("k") is False
    assert lru.nbytes == 0


def test_bounds_are_exposed_and_validated() -> None:
    lru: LRU[str] = LRU(max_entries=5, max_bytes=64)
    assert (lru.max_entries, lru.max_bytes) == (5, 64)
    with pytest.raises(ValueError, match="max_entries"):
        LRU(max_entries=-1, max_bytes=1)
    with pytest.raises(ValueError, match="size"):
        lru.set("k", "v", -1, None)


def test_items_is_a_snapshot_of_live_entries_without_touching_recency() -> None:
    clock = FakeClock()
    lru: LRU[str] = LRU(max_entries=3, max_bytes=100, clock=clock)
    lru.set("a", "A", 1, None)
    lru.set("b", "B", 1, ttl=1)
    lru.set("c", "C", 1, None)
    clock.now += 2
    assert lru.items() == [("a", "A"), ("c", "C")]
    lru.set("d", "D", 1, None)
    lru.set("e", "E", 1, None)  # items() did not refresh "a": it is the one evicted
    assert lru.get("a") is None
    assert lru.get("c") == "C"
