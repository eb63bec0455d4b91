"""One contract, every store: the same assertions for memory, SQLite, Redis and tiered.

Time is injected (a fake clock the test advances) wherever the store lets us; Redis expires keys
on its own clock, so Redis-backed cases use a 50 ms TTL and poll for up to a second.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from asynccache import BackendError
from asynccache.backends import (
    Backend,
    MemoryBackend,
    RedisBackend,
    SQLiteBackend,
    TieredBackend,
)

KINDS = ["memory", "sqlite", "redis", "tiered-memory-sqlite", "tiered-memory-redis"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Case:
    backend: Backend
    clock: FakeClock
    real_time: bool  # some layer expires keys on its own (Redis) clock

    @property
    def short_ttl(self) -> float:
        return 0.05 if self.real_time else 10.0

    async def wait_expired(self, key: str) -> bool:
        """Let ``short_ttl`` pass; ``True`` once ``key`` reads as missing (within ~1 s)."""
        deadline = time.monotonic() + 1.0
        while True:
            self.clock.now += 3600  # every poll: an L1 backfill must expire too
            if (await self.backend.get_many([key]))[0] is None:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)


@pytest.fixture(params=KINDS)
async def case(request: pytest.FixtureRequest, tmp_sqlite_path: Path) -> AsyncIterator[Case]:
    kind: str = request.param
    clock = FakeClock()

    def sqlite() -> SQLiteBackend:
        return SQLiteBackend(tmp_sqlite_path, clock=clock)

    def redis() -> RedisBackend:
        return RedisBackend.from_url(request.getfixturevalue("redis_url"))

    backend: Backend
    if kind == "memory":
        backend = MemoryBackend(clock=clock)
    elif kind == "sqlite":
        backend = sqlite()
    elif kind == "redis":
        backend = redis()
    elif kind == "tiered-memory-sqlite":
        backend = TieredBackend(MemoryBackend(clock=clock), sqlite())
    else:
        backend = TieredBackend(MemoryBackend(clock=clock), redis())
    yield Case(backend, clock, real_time="redis" in kind)
    await backend.aclose()


@pytest.fixture
def backend(case: Case) -> Backend:
    return case.backend


async def test_is_a_backend(backend: Backend) -> None:
    assert isinstance(backend, Backend)


async def test_missing_key_is_none(backend: Backend) -> None:
    assert await backend.get_many(["nope"]) == [None]
    assert await backend.get_many([]) == []


@pytest.mark.parametrize(
    "value",
    [b"", b"\x00", bytes(range(256)), "ünïcødé".encode(), os.urandom(1024 * 1024)],
    ids=["empty", "nul", "all-bytes", "utf8", "1MB"],
)
async def test_round_trip_of_arbitrary_bytes(backend: Backend, value: bytes) -> None:
    await backend.set_many([("k", value, None)])
    assert await backend.get_many(["k"]) == [value]


async def test_get_many_keeps_order_with_hits_and_misses(backend: Backend) -> None:
    await backend.set_many([("a", b"1", None), ("c", b"3", 60), ("e", b"5", None)])
    keys = ["e", "b", "a", "d", "c", "a"]
    assert await backend.get_many(keys) == [b"5", None, b"1", None, b"3", b"1"]


async def test_overwrite_replaces_value(backend: Backend) -> None:
    await backend.set_many([("k", b"old", None)])
    await backend.set_many([("k", b"new", 60)])
    assert await backend.get_many(["k"]) == [b"new"]
    await backend.set_many([("k", b"first", None), ("k", b"last", None)])
    assert await backend.get_many(["k"]) == [b"last"]


async def test_delete_many_returns_how_many_existed(backend: Backend) -> None:
    await backend.set_many([("a", b"1", None), ("b", b"2", 60), ("c", b"3", None)])
    assert await backend.delete_many(["a", "b", "missing"]) == 2
    assert await backend.get_many(["a", "b", "c"]) == [None, None, b"3"]
    assert await backend.delete_many(["a"]) == 0
    assert await backend.delete_many([]) == 0


async def test_ttl_expiry(case: Case) -> None:
    backend = case.backend
    await backend.set_many([("short", b"s", case.short_ttl), ("forever", b"f", None)])
    assert await backend.get_many(["short"]) == [b"s"]
    assert await case.wait_expired("short")
    assert await backend.get_many(["forever"]) == [b"f"]


async def test_non_positive_ttl_leaves_nothing_behind(backend: Backend) -> None:
    await backend.set_many([("k", b"old", None)])
    await backend.set_many([("k", b"new", 0)])
    assert await backend.get_many(["k"]) == [None]


async def test_tags_add_and_pop_round_trip(backend: Backend) -> None:
    await backend.set_many([("k1", b"1", None), ("k2", b"2", None), ("k3", b"3", None)])
    await backend.add_tags([("t1", "k1"), ("t1", "k2"), ("t2", "k3"), ("t1", "k1")], ttl=60)
    assert sorted(await backend.pop_tags(["t1"])) == ["k1", "k2"]
    assert await backend.pop_tags(["t1"]) == []  # popped: the tag is gone
    assert sorted(await backend.pop_tags(["t2", "t2"])) == ["k3"]
    await backend.add_tags([("t3", "k1")], ttl=None)
    await backend.add_tags([("t4", "k2")], ttl=60)
    assert sorted(await backend.pop_tags(["t3", "t4"])) == ["k1", "k2"]


async def test_pop_of_unknown_tag_is_empty(backend: Backend) -> None:
    assert await backend.pop_tags(["never-seen"]) == []
    assert await backend.pop_tags([]) == []


async def test_aclose_is_idempotent(backend: Backend) -> None:
    await backend.set_many([("k", b"v", None)])
    await backend.aclose()
    await backend.aclose()


async def test_use_after_aclose_is_a_backend_error(backend: Backend) -> None:
    await backend.aclose()
    with pytest.raises(BackendError, match="closed"):
        await backend.get_many(["k"])
    with pytest.raises(BackendError, match="closed"):
        await backend.set_many([("k", b"v", None)])
