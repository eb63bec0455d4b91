"""How RedisBackend sends lookups, on a real redis-server: at once when idle, batched under load.

Each test pins down a rule of the module docstring of ``asynccache/backends/redis.py``. Round
trips are counted by the server itself (INFO commandstats), never by patching the backend; a
DelayProxy keeps commands in flight long enough to cancel or close around them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio

from asynccache import BackendError, BackendTimeoutError
from asynccache.backends import RedisBackend
from tests.support import RedisServer, TaskCounter
from tests.support.delay_proxy import DelayProxy

# DelayProxy delay per chunk: a command stays in flight for 100 ms or more, against sleeps of 5 ms
# to put it there, a margin that holds on a loaded machine.
SLOW = (0.05, 0.06)


def round_trips(url: str) -> tuple[int, int]:
    """(GET, MGET) commands the server has executed so far."""
    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    get, mget = (int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)) for cmd in ("get", "mget"))
    return get, mget


def value(i: int) -> bytes:
    return f"value-{i}".encode()


async def store(backend: RedisBackend, n: int) -> None:
    await backend.set_many([(f"k{i}", value(i), None) for i in range(n)])


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend.from_url(redis_url)
    yield b
    await b.aclose()


@pytest.fixture
async def private_backend(private_redis: RedisServer) -> AsyncIterator[RedisBackend]:
    """A backend on the test's own server (which the test may freeze or stop)."""
    b = RedisBackend.from_url(private_redis.url)
    yield b
    await b.aclose()


async def test_a_lone_lookup_is_one_mget(backend: RedisBackend, redis_url: str) -> None:
    await store(backend, 3)
    get0, mget0 = round_trips(redis_url)
    assert await backend.get_many(["k0"]) == [value(0)]
    assert await backend.get_many(["k1", "nope", "k2", "k1"]) == [
        value(1),
        None,
        value(2),
        value(1),
    ]
    assert await backend.get_many([]) == []
    assert round_trips(redis_url) == (get0, mget0 + 2)


async def test_a_key_of_another_type_reads_as_a_miss_alone_or_batched(
    backend: RedisBackend, redis_url: str
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.sadd("a-set", "member")
    assert await backend.get_many(["a-set"]) == [None]  # GET would answer WRONGTYPE
    assert await asyncio.gather(*(backend.get_many(["a-set"]) for _ in range(3))) == [[None]] * 3


async def test_under_steady_load_callers_share_round_trips(
    backend: RedisBackend, redis_url: str
) -> None:
    await store(backend, 50)
    _, mget0 = round_trips(redis_url)
    lookups = 0

    async def worker(i: int) -> None:
        nonlocal lookups
        for _ in range(40):
            assert await backend.get_many([f"k{i}"]) == [value(i)]
            lookups += 1

    await asyncio.gather(*(worker(i) for i in range(50)))
    mgets = round_trips(redis_url)[1] - mget0
    assert lookups == 2000
    assert 0 < mgets <= lookups // 4, mgets  # at most two on the wire; everyone else waits in one


async def test_batches_past_max_batch_keys_go_out_as_one_pipeline(redis_url: str) -> None:
    backend = RedisBackend.from_url(redis_url, max_batch_keys=8)
    try:
        await store(backend, 30)
        _, mget0 = round_trips(redis_url)
        got = await asyncio.gather(*(backend.get_many([f"k{i}"]) for i in range(30)))
        assert got == [[value(i)] for i in range(30)]
        assert round_trips(redis_url)[1] - mget0 == 1 + 4  # the first alone, then ceil(29 / 8)
    finally:
        await backend.aclose()


async def test_callers_asking_for_several_and_the_same_keys_share_a_batch(
    backend: RedisBackend, redis_url: str
) -> None:
    await store(backend, 3)
    asks = [["k0"], ["k0", "k1"], ["k2", "nope", "k0"], ["k1"], ["k1", "k1"], ["nope"]]
    _, mget0 = round_trips(redis_url)
    got = await asyncio.gather(*(backend.get_many(keys) for keys in asks))
    found = {"k0": value(0), "k1": value(1), "k2": value(2), "nope": None}
    assert got == [[found[key] for key in keys] for keys in asks]
    assert round_trips(redis_url)[1] - mget0 == 2


async def test_callers_arriving_during_a_direct_lookup_do_not_wait_for_it(
    redis_server: RedisServer,
) -> None:
    async with DelayProxy(redis_server.port, delay=SLOW) as proxy:
        backend = RedisBackend.from_url(proxy.url)
        try:
            await store(backend, 11)
            await asyncio.gather(*(backend.get_many(["k0"]) for _ in range(2)))  # connect both
            _, mget0 = round_trips(redis_server.url)
            direct = asyncio.create_task(backend.get_many(["k0"]))
            await asyncio.sleep(0.005)  # on the wire
            joiners = asyncio.gather(*(backend.get_many([f"k{i}"]) for i in range(1, 11)))
            # Their MGET reaches the server while the direct one's reply is still on its way
            # back: it was sent next to the direct lookup, not queued behind it.
            for _ in range(2000):
                if round_trips(redis_server.url)[1] - mget0 >= 2:
                    break
                assert not direct.done()
                await asyncio.sleep(0.001)
            assert not direct.done()
            assert round_trips(redis_server.url)[1] - mget0 == 2
            assert await joiners == [[value(i)] for i in range(1, 11)]
            assert await direct == [value(0)]
        finally:
            await backend.aclose()


async def test_cancelling_a_direct_caller_spares_the_callers_that_joined(
    redis_server: RedisServer,
) -> None:
    async with DelayProxy(redis_server.port, delay=SLOW) as proxy:
        backend = RedisBackend.from_url(proxy.url, max_connections=4)
        try:
            await store(backend, 40)
            for round_ in range(2):
                direct = asyncio.create_task(backend.get_many(["k0"]))
                await asyncio.sleep(0.005)  # on the wire
                first = [asyncio.create_task(backend.get_many([f"k{i}"])) for i in range(1, 20)]
                await asyncio.sleep(0.005)  # their batch is on the wire too
                queued = [asyncio.create_task(backend.get_many([f"k{i}"])) for i in range(20, 40)]
                await asyncio.sleep(0)  # both slots are busy: these wait for one
                direct.cancel()
                results = await asyncio.gather(*first, *queued)
                assert results == [[value(i)] for i in range(1, 40)], round_
                with pytest.raises(asyncio.CancelledError):
                    await direct
            # Later lookups, alone and together, still work, and no connection leaked
            # (the pool holds four; a leak would show as "No connection available").
            for _ in range(2):
                assert await backend.get_many(["k0"]) == [value(0)]
                got = await asyncio.gather(*(backend.get_many([f"k{i}"]) for i in range(40)))
                assert got == [[value(i)] for i in range(40)]
        finally:
            await backend.aclose()


async def test_direct_callers_cancelled_mid_command_never_get_a_wrong_answer(
    redis_server: RedisServer,
) -> None:
    """Cancel lone lookups at random points of their round trip, each followed by one left
    alone: a cancel drops its connection mid-reply, and that reply must never reach a later
    command (the redis-py CVE-2023-28858 shape)."""
    async with DelayProxy(redis_server.port) as proxy:
        backend = RedisBackend.from_url(proxy.url, max_connections=4)
        try:
            await store(backend, 50)
            rng = random.Random(5)
            cancelled = 0
            for n in range(80):
                i, j = n % 50, (n + 25) % 50
                task = asyncio.create_task(backend.get_many([f"k{i}"]))
                asyncio.get_running_loop().call_later(rng.uniform(0, 0.006), task.cancel)
                try:
                    assert await task == [value(i)], n
                except asyncio.CancelledError:
                    cancelled += 1
                assert await backend.get_many([f"k{j}"]) == [value(j)], n
            assert cancelled >= 10, cancelled
        finally:
            await backend.aclose()


async def test_a_cancelled_caller_in_a_batch_does_not_affect_the_others(
    redis_server: RedisServer,
) -> None:
    async with DelayProxy(redis_server.port, delay=SLOW) as proxy:
        backend = RedisBackend.from_url(proxy.url)
        try:
            await store(backend, 30)
            direct = asyncio.create_task(backend.get_many(["k0"]))
            await asyncio.sleep(0.005)
            tasks = [asyncio.create_task(backend.get_many([f"k{i}"])) for i in range(1, 30)]
            await asyncio.sleep(0)  # parked, their batch not sent yet
            for t in tasks[:5]:
                t.cancel()
            await asyncio.sleep(0.005)  # the batch is on the wire
            for t in tasks[5:10]:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in results[:10])
            assert results[10:] == [[value(i)] for i in range(11, 30)]
            assert await backend.get_many(["k1"]) == [value(1)]
            assert await direct == [value(0)]
        finally:
            await backend.aclose()


async def test_a_lone_lookup_creates_no_task(private_backend: RedisBackend) -> None:
    """Not ours, and not redis-py's: its send timeout would be an asyncio.wait_for (a task per
    command); the backend puts one deadline of its own over the send and the read instead."""
    backend = private_backend
    await store(backend, 3)
    assert await backend.get_many(["k0"]) == [value(0)]  # a warm, leased connection
    with TaskCounter() as counter:
        for i in range(3):
            assert await backend.get_many([f"k{i}"]) == [value(i)]
    assert counter.created == 0


async def test_a_batch_cancelled_before_it_ran_fails_its_callers_and_frees_its_slot(
    private_backend: RedisBackend,
) -> None:
    """As when the loop shuts down: the batch never took its queue, so the backend must
    answer those callers itself, and later lookups must not park behind it forever."""
    backend = private_backend
    await store(backend, 3)
    assert await backend.get_many(["k0"]) == [value(0)]
    direct = asyncio.create_task(backend.get_many(["k0"]))
    await asyncio.sleep(0)  # on the wire
    parked = asyncio.create_task(backend.get_many(["k1"]))
    await asyncio.sleep(0)  # parked: its batch task exists and has not run yet
    batches = [
        t
        for t in asyncio.all_tasks()
        if t.get_coro().__qualname__.endswith("_run_batch")  # type: ignore[union-attr]
    ]
    assert len(batches) == 1
    batches[0].cancel()
    with pytest.raises(BackendError, match="cancelled"):
        await parked
    assert await direct == [value(0)]
    assert await asyncio.wait_for(backend.get_many(["k2"]), 2) == [value(2)]


async def test_a_stalled_redis_fails_every_caller_of_the_batch(
    private_redis: RedisServer, private_backend: RedisBackend
) -> None:
    backend = private_backend
    await store(backend, 20)
    assert await backend.get_many(["k0"]) == [value(0)]  # a warm, leased connection
    private_redis.pause()
    try:
        results = await asyncio.gather(
            *(backend.get_many([f"k{i}"]) for i in range(20)), return_exceptions=True
        )
    finally:
        private_redis.resume()
    assert all(isinstance(r, BackendError) for r in results), results
    assert isinstance(results[0], BackendTimeoutError)  # the direct one: a read timeout
    assert len({id(r) for r in results}) == 20  # each caller its own exception
    got = await asyncio.gather(*(backend.get_many([f"k{i}"]) for i in range(20)))
    assert got == [[value(i)] for i in range(20)]


async def test_a_redis_that_went_away_fails_alone_and_batched_callers(
    private_redis: RedisServer, private_backend: RedisBackend
) -> None:
    backend = private_backend
    await store(backend, 20)
    await asyncio.gather(*(backend.get_many([f"k{i}"]) for i in range(20)))  # warm leases
    private_redis.stop()
    with pytest.raises(BackendError):
        await backend.get_many(["k0"])
    results = await asyncio.gather(
        *(backend.get_many([f"k{i}"]) for i in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, BackendError) for r in results), results


async def test_aclose_fails_queued_lookups_and_waits_for_those_in_flight(
    redis_server: RedisServer,
) -> None:
    async with DelayProxy(redis_server.port, delay=SLOW) as proxy:
        backend = RedisBackend.from_url(proxy.url)
        await store(backend, 12)
        direct = asyncio.create_task(backend.get_many(["k0"]))
        await asyncio.sleep(0.005)  # on the wire, first slot
        batched = [asyncio.create_task(backend.get_many([f"k{i}"])) for i in range(1, 6)]
        await asyncio.sleep(0.005)  # on the wire, second slot
        queued = [asyncio.create_task(backend.get_many([f"k{i}"])) for i in range(6, 12)]
        await asyncio.sleep(0)  # no slot free: queued
        await backend.aclose()
        assert direct.done() and all(t.done() for t in batched)
        assert direct.result() == [value(0)]
        assert [t.result() for t in batched] == [[value(i)] for i in range(1, 6)]
        for t in queued:
            with pytest.raises(BackendError, match="closed"):
                await t
        with pytest.raises(BackendError, match="closed"):
            await backend.get_many(["k0"])


async def test_aclose_waits_for_a_lone_lookup_in_flight(redis_server: RedisServer) -> None:
    async with DelayProxy(redis_server.port, delay=SLOW) as proxy:
        backend = RedisBackend.from_url(proxy.url)
        await store(backend, 1)
        direct = asyncio.create_task(backend.get_many(["k0"]))
        await asyncio.sleep(0.005)
        await backend.aclose()
        assert direct.done() and direct.result() == [value(0)]


async def test_a_passed_in_client_gets_its_connections_back(redis_url: str) -> None:
    # A non-blocking pool of two: a connection the backend kept would make the client's own
    # commands fail with "Too many connections".
    client = redis.asyncio.Redis.from_url(redis_url, max_connections=2)
    try:
        backend = RedisBackend(client)
        await store(backend, 20)
        got = await asyncio.gather(*(backend.get_many([f"k{i}"]) for i in range(20)))
        assert got == [[value(i)] for i in range(20)]
        await backend.aclose()
        assert await asyncio.gather(client.get("k1"), client.get("k2")) == [value(1), value(2)]
    finally:
        await client.aclose()


async def test_a_single_connection_client_reads_through_its_own_api(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, single_connection_client=True)
    try:
        backend = RedisBackend(client)
        await store(backend, 20)
        _, mget0 = round_trips(redis_url)
        assert await backend.get_many(["k0", "nope"]) == [value(0), None]
        got = await asyncio.gather(*(backend.get_many([f"k{i}"]) for i in range(20)))
        assert got == [[value(i)] for i in range(20)]
        assert round_trips(redis_url)[1] - mget0 == 3
        await backend.aclose()
    finally:
        await client.aclose()


async def test_writes_get_the_idle_read_connections_back(redis_url: str) -> None:
    # A pool of ONE connection, which the reads lease: every write must get it back rather
    # than wait for (here: fail to get) a connection of its own.
    client = redis.asyncio.Redis.from_url(redis_url, max_connections=1)
    try:
        backend = RedisBackend(client)
        assert await backend.get_many(["k0"]) == [None]
        await store(backend, 2)
        assert await backend.get_many(["k0", "k1"]) == [value(0), value(1)]
        await backend.add_tags([("t", "k0")], ttl=60)
        assert await backend.get_many(["k0"]) == [value(0)]
        assert await backend.pop_tags(["t"]) == ["k0"]
        assert await backend.get_many(["k1"]) == [value(1)]
        assert await backend.delete_many(["k0", "k1"]) == 2
        assert await backend.get_many(["k0", "k1"]) == [None, None]
        await backend.aclose()
    finally:
        await client.aclose()
