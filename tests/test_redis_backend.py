"""Redis specifics on a real server: batching, cancellation, a stalled server, tag expiry.

How lookups are batched, cancelled, failed and closed is in tests/test_redis_batching.py."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

from asynccache import BackendError, ConfigurationError
from asynccache.backends import RedisBackend
from tests.support import RedisClusterServer, RedisServer
from tests.support.delay_proxy import DelayProxy


def mget_calls(url: str) -> int:
    """MGET commands the server has executed so far (INFO commandstats)."""
    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


def value(i: int) -> bytes:
    return f"value-{i}".encode()


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend.from_url(redis_url)
    yield b
    await b.aclose()


@pytest.fixture
def redis_cluster() -> Iterator[RedisClusterServer]:
    """A three-node Redis Cluster of this test's own (about 2 s to form)."""
    with RedisClusterServer() as cluster:
        yield cluster


async def test_concurrent_lookups_in_one_tick_share_one_mget(
    backend: RedisBackend, redis_url: str
) -> None:
    await backend.set_many([(f"k{i}", value(i), None) for i in range(200)])
    before = mget_calls(redis_url)
    results = await asyncio.gather(*(backend.get_many([f"k{i}"]) for i in range(200)))
    # The first is sent at once; the 199 that arrive while it is in flight share one MGET.
    assert mget_calls(redis_url) - before == 2
    assert results == [[value(i)] for i in range(200)]


async def test_big_batches_are_split_into_bounded_mgets_in_one_pipeline(redis_url: str) -> None:
    backend = RedisBackend.from_url(redis_url, max_batch_keys=512)
    try:
        await backend.set_many([(f"k{i}", value(i), None) for i in range(0, 1200, 2)])
        before = mget_calls(redis_url)
        keys = [f"k{i}" for i in range(1200)]
        got = await backend.get_many(keys)
        assert mget_calls(redis_url) - before == 3  # ceil(1200 / 512)
        assert got == [value(i) if i % 2 == 0 else None for i in range(1200)]
    finally:
        await backend.aclose()


async def test_cancelled_callers_do_not_break_the_others(backend: RedisBackend) -> None:
    n = 200
    await backend.set_many([(f"k{i}", value(i), None) for i in range(n)])
    tasks = [asyncio.create_task(backend.get_many([f"k{i}"])) for i in range(n)]
    await asyncio.sleep(0)  # every task has queued its lookup
    victims = random.Random(7).sample(range(n), k=60)
    for i in victims[:30]:  # before the flush
        tasks[i].cancel()
    await asyncio.sleep(0)
    for i in victims[30:]:  # while the MGET is (most likely) in flight
        tasks[i].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for i, result in enumerate(results):
        if i in victims and isinstance(result, asyncio.CancelledError):
            continue
        assert result == [value(i)], i
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) >= 30
    assert await backend.get_many(["k0", "k1", "nope"]) == [value(0), value(1), None]


async def test_stalled_server_fails_fast_and_recovers(private_redis: RedisServer) -> None:
    backend = RedisBackend.from_url(private_redis.url)
    try:
        await backend.set_many([("k", b"v", None)])
        private_redis.pause()
        try:
            started = time.monotonic()
            with pytest.raises(BackendError):
                await backend.get_many(["k"])
            with pytest.raises(BackendError):
                await backend.set_many([("k2", b"v2", None)])
            assert time.monotonic() - started < 3.0
        finally:
            private_redis.resume()
        assert await backend.get_many(["k"]) == [b"v"]
    finally:
        await backend.aclose()


async def test_tag_expiry_grows_but_never_shrinks(backend: RedisBackend, redis_url: str) -> None:
    def pttl() -> int:
        with redis.Redis.from_url(redis_url) as client:
            return int(client.pttl("asynccache:tag:t"))

    await backend.add_tags([("t", "a")], ttl=1)
    assert 0 < pttl() <= 1000  # a fresh tag set gets the entry's TTL
    await backend.add_tags([("t", "b")], ttl=100)
    assert pttl() > 90_000  # grows
    await backend.add_tags([("t", "c")], ttl=1)
    assert pttl() > 90_000  # never shrinks
    await backend.add_tags([("t", "d")], ttl=None)
    assert pttl() > 10 * 365 * 24 * 3600 * 1000  # an entry without expiry: a century
    assert sorted(await backend.pop_tags(["t"])) == ["a", "b", "c", "d"]


async def test_a_client_passed_in_stays_open(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        backend = RedisBackend(client)
        await backend.set_many([("k", b"v", 60)])
        assert await backend.get_many(["k"]) == [b"v"]
        await backend.aclose()
        assert await client.get("k") == b"v"
    finally:
        await client.aclose()


async def test_closed_backend_raises_backend_error(backend: RedisBackend) -> None:
    await backend.aclose()
    with pytest.raises(BackendError, match="closed"):
        await backend.get_many(["k"])


def test_bad_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Redis URL"):
        RedisBackend.from_url("http://127.0.0.1:1/0")


async def test_cluster_spreads_keys_over_slots_and_keeps_the_contract(
    redis_cluster: RedisClusterServer,
) -> None:
    backend = RedisBackend.from_url(redis_cluster.url)  # redis+cluster:// picks the cluster client
    try:
        n = 100  # keys land on all three nodes
        await backend.set_many([(f"k{i}", value(i), None if i % 2 else 30) for i in range(n)])
        got = await asyncio.gather(*(backend.get_many([f"k{i}", "nope"]) for i in range(n)))
        assert got == [[value(i), None] for i in range(n)]
        got = await asyncio.gather(*(backend.get_many([f"k{i}"]) for i in range(n)))
        assert got == [[value(i)] for i in range(n)]
        assert [await backend.get_many([f"k{i}"]) for i in range(3)] == [
            [value(i)] for i in range(3)
        ]
        await backend.set_many([("k0", b"gone", 0)])
        assert await backend.get_many(["k0", "k1"]) == [None, value(1)]
        await backend.add_tags([("t", f"k{i}") for i in range(1, 10)], ttl=10)
        await backend.add_tags([("u", "k1")], ttl=None)
        assert sorted(await backend.pop_tags(["t", "u"])) == sorted(f"k{i}" for i in range(1, 10))
        assert await backend.pop_tags(["t", "u"]) == []
        assert await backend.delete_many([f"k{i}" for i in range(n)] + ["nope"]) == n - 1
    finally:
        await backend.aclose()


async def test_an_error_reply_among_packed_writes_fails_them_and_leaves_the_connection_in_step(
    private_redis: RedisServer,
) -> None:
    """Writes are packed and sent on the connections lookups lease: one reply per command. A
    server that refuses one of them (here: an ACL that allows keys ``ok*`` only) must fail
    the call, and the replies after the refusal must still be read, or a later lookup on that
    connection would get a write's reply instead of its own. Values of 100 KB reach the server
    in several delayed chunks (the proxy), so the replies after the refusal are still on
    their way when the pool checks the connection for unread data, and that check passes."""
    with redis.Redis.from_url(private_redis.url) as admin:
        admin.acl_setuser(
            "limited", enabled=True, passwords=["+secret"], keys=["ok*"], commands=["+@all"]
        )
    async with DelayProxy(private_redis.port) as proxy:
        backend = RedisBackend.from_url(f"redis://limited:secret@127.0.0.1:{proxy.port}/0")
        try:
            for round_ in range(5):
                items = [(f"ok{i}", value(round_) * 10_000, 60) for i in range(3)]
                with pytest.raises(BackendError, match="NoPermission"):
                    await backend.set_many([("refused", b"x" * 100_000, 60), *items])
                got = await backend.get_many([key for key, _, _ in items])
                assert got == [v for _, v, _ in items], round_
        finally:
            await backend.aclose()


async def test_writes_keep_no_connection_of_a_client_passed_in(redis_url: str) -> None:
    """Writes lease connections as lookups do, any number at once, and the last one here takes
    the connection the lookup kept. None may stay kept once the backend is closed, even by a
    write that was still on the wire: the pool of a client passed in must be whole again."""
    size = 4
    client = redis.asyncio.Redis.from_url(redis_url, max_connections=size)
    try:
        backend = RedisBackend(client)
        await asyncio.gather(
            *(backend.set_many([(f"w{i}", value(i), 60)]) for i in range(size - 1)),
            backend.get_many(["w0"]),
        )
        late = asyncio.ensure_future(backend.set_many([("late", b"x" * 1_000_000, 60)]))
        await asyncio.sleep(0)  # the write is on the wire
        await backend.aclose()
        await late
        # Every connection is free: as many blocking commands at once as the pool holds.
        got = await asyncio.gather(*(client.blpop([f"nothing{i}"], 0.05) for i in range(size)))
        assert got == [None] * size
        assert await client.get("late") == b"x" * 1_000_000
    finally:
        await client.aclose()


async def test_writes_and_lookups_share_a_pool_of_one(redis_url: str) -> None:
    """A connection the backend keeps between commands is invisible to the pool's waiters: it
    must go back to the pool while a command of ours waits there, or with a small pool the
    writes would starve the lookups and each other until the pool's timeout."""
    backend = RedisBackend.from_url(redis_url, max_connections=1)
    try:
        assert await backend.get_many(["p0"]) == [None]  # the one connection is kept
        await asyncio.gather(
            backend.set_many([("p0", value(0), 60)]),
            backend.set_many([("p1", value(1), 60)]),
            backend.get_many(["p2"]),
            backend.set_many([("p2", value(2), 60)]),
        )
        assert await backend.get_many(["p0", "p1", "p2"]) == [value(0), value(1), value(2)]
    finally:
        await backend.aclose()


async def test_a_write_keeps_no_connection_it_took_from_a_client_passed_in(redis_url: str) -> None:
    """The backend keeps connections for lookups only; one a write took from the pool goes
    back, so the user's own commands on a client passed in still find it."""
    client = redis.asyncio.Redis.from_url(redis_url, max_connections=1)
    try:
        backend = RedisBackend(client)
        await backend.set_many([("mine", b"v", 60)])
        assert await client.get("mine") == b"v"  # would be "Too many connections"
        await backend.aclose()
    finally:
        await client.aclose()


async def test_keys_are_written_in_the_clients_encoding(redis_url: str) -> None:
    """The backend packs its own MGET and SET commands: a client set to another encoding than
    UTF-8, or to other encoding errors, still finds through its own API what the backend
    wrote, and the other way round."""
    client = redis.asyncio.Redis.from_url(redis_url, encoding="latin-1")
    backend = RedisBackend(client)
    try:
        await backend.set_many([("café:1", b"one", 60), ("café:2", b"two", None)])
        await client.set("café:3", b"three")
        assert await backend.get_many(["café:1", "café:2", "café:3"]) == [b"one", b"two", b"three"]
        assert await client.get("café:1") == b"one"
        assert "café:1".encode("latin-1") in await client.keys("caf*")
    finally:
        await backend.aclose()
        await client.aclose()
    client = redis.asyncio.Redis.from_url(redis_url, encoding="ascii", encoding_errors="replace")
    backend = RedisBackend(client)
    try:
        await backend.set_many([("naïve:1", b"one", 60)])
        assert await client.keys("na*ve:1") == [b"na?ve:1"]
        assert await backend.get_many(["naïve:1"]) == [b"one"]
    finally:
        await backend.aclose()
        await client.aclose()


async def test_a_client_with_an_unknown_encoding_is_refused_at_once(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, encoding="no-such-codec")
    try:
        with pytest.raises(ConfigurationError, match="no-such-codec"):
            RedisBackend(client)
    finally:
        await client.aclose()
