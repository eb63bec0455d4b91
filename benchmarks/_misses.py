"""Workloads 5, 6 and 8: misses. Miss + store, a 10,000-caller stampede, a mixed Zipf load.

Why: hits are only half of a cache's cost. A miss pays for the key, the lookup, the upstream
call and the store; a burst of identical misses (a popular question asked by many users at once)
is where single-flight earns its keep, and a realistic load mixes both. Peers use the plain
pattern a generic cache offers (get; on a miss call the same sender, then set), and where a peer
documents stampede protection it is driven too: cashews ``@cache(...)`` (which coalesces in the
process by default, ``protected=True``) and ``@cache(..., lock=True)``, aiocache
``cached_stampede``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from _context import Ctx
from _fixtures import chat_body, naive_key, request, zipf_sequence
from _measure import median
from _peers import Peer, PeerSpec, memory_peers, redis_peers

from asynccache import Cache, CacheRequest

W5 = "5. Miss + store (zero-latency sender), 1 caller"
W6 = "6. Concurrent identical misses (a stampede)"
W8 = "8. Mixed Zipf workload"

DAY = 86_400.0  # asynccache's default TTL; peers store with the same
#: Body indices per workload, far apart, so no workload reads another's entries.
MISS_BASE, STAMPEDE_BASE, ZIPF_BASE = 1_000_000, 2_000_000, 3_000_000


class Upstream:
    """The sender: counts calls, optionally sleeps, notes when the first answer came back."""

    def __init__(self, value: Any, sleep: float = 0.0) -> None:
        self.value = value
        self.sleep = sleep
        self.calls = 0
        self.first_return = 0.0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.sleep:
            await asyncio.sleep(self.sleep)
            if not self.first_return:
                self.first_return = time.perf_counter()
        return self.value


def plain(peer: Peer, upstream: Upstream) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    """The generic-cache pattern: get; on a miss call the sender, then set."""

    async def call(body: dict[str, Any]) -> Any:
        key = naive_key(body)
        value = await peer.get(key)
        if value is None:
            value = await upstream()
            await peer.set(key, value, DAY)
        return value

    return call


# --- 5. miss + store ----------------------------------------------------------------------------


async def _ours_misses(ctx: Ctx, cache: Cache, bodies: list[dict[str, Any]], n: int) -> float:
    """p50 of ``get_or_fetch`` misses, each for a request never asked before."""
    upstream = Upstream(ctx.value)
    fresh = iter([request(b) for b in bodies])

    async def call() -> Any:
        return await cache.get_or_fetch(next(fresh), upstream)

    lat = await ctx.bench.latency(call, n)
    st = cache.stats()
    if st.misses != upstream.calls or st.stores != st.misses:
        ctx.rec.note(
            f"miss + store: {st.misses} misses, {st.stores} stores, {upstream.calls} calls."
        )
    return lat.p50


async def _peer_misses(ctx: Ctx, peer: Peer, bodies: list[dict[str, Any]], n: int) -> float:
    """p50 of the plain pattern (get, miss, send, set), each for a request never asked before."""
    call, fresh = plain(peer, Upstream(ctx.value)), iter(bodies)

    async def once() -> Any:
        return await call(next(fresh))

    return (await ctx.bench.latency(once, n)).p50


async def miss_store(ctx: Ctx) -> None:
    """Per-call time of a miss that stores, for L1 (memory://) and L2 (Redis)."""
    sizes = ctx.sizes
    ns = f"{ctx.namespace}-miss"
    variants: list[tuple[str, str, Callable[[], Cache], int, Callable[[], list[PeerSpec]]]] = [
        (
            "miss.mem",
            "miss + store p50, L1 (memory://)",
            lambda: Cache.from_url("memory://", l1_max_entries=1_000_000, l1_max_bytes=1 << 30),
            sizes.miss_mem,
            lambda: memory_peers(size=1_000_000),
        ),
        (
            "miss.redis",
            "miss + store p50, L2 (Redis, `l1_max_entries=0`)",
            lambda: Cache.from_url(ctx.redis_url, namespace=ns, l1_max_entries=0),
            sizes.miss_io,
            lambda: redis_peers(ctx.redis_url, ctx.redis_port),
        ),
    ]
    for mid, label, make, n, peers in variants:
        bodies = [chat_body(MISS_BASE + i) for i in range(n * ctx.bench.repeats)]
        async with make() as cache:
            ctx.rec.ours(mid, W5, label, "ns", await _ours_misses(ctx, cache, bodies, n))
        if not ctx.rec.with_peers:
            continue
        for spec in peers():
            if spec.open is None:
                ctx.rec.peer(mid, spec.name, None, spec.missing)
                continue
            peer = await spec.open()
            try:
                ctx.rec.peer(mid, spec.name, await _peer_misses(ctx, peer, bodies, n))
            finally:
                await peer.close()


# --- 6. stampede --------------------------------------------------------------------------------


async def _timed_gather(
    n: int, call: Callable[[], Awaitable[Any]], upstream: Upstream
) -> tuple[float, float, float]:
    """Start ``n`` concurrent callers; (upstream calls, wall ns, release ns): release is from the
    first answer coming back upstream to the last caller holding it."""
    gc.collect()
    start = time.perf_counter()
    results = await asyncio.gather(*(call() for _ in range(n)))
    end = time.perf_counter()
    if any(r is None for r in results):
        raise RuntimeError("a stampede caller got no answer")
    return upstream.calls, (end - start) * 1e9, (end - upstream.first_return) * 1e9


async def _baseline(n: int, sleep: float, value: Any) -> tuple[float, float, float]:
    """The floor: the same ``n`` tasks awaiting one plain shared Future, which a sleeper started
    first sets after the same sleep. Ideal coalescing starts the upstream call as the first
    caller arrives and wakes everyone as it returns; whatever a cache adds to that (building
    keys, looking up, starting the call later, waking waiters more slowly) is its overhead."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    upstream = Upstream(value, sleep)

    async def release() -> Any:
        fut.set_result(await upstream())
        return True

    async def wait() -> Any:
        return await fut

    gc.collect()
    start = time.perf_counter()
    await asyncio.gather(release(), *(wait() for _ in range(n)))
    end = time.perf_counter()
    return 1, (end - start) * 1e9, (end - upstream.first_return) * 1e9


Opened = tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]] | None]
#: Opens one peer variant for one run: (upstream, request body) -> (the call every caller
#: makes, a closer or None).
Opener = Callable[[Upstream, dict[str, Any]], Awaitable[Opened]]


def _peer_variants() -> list[tuple[str, Opener]]:
    """Every peer way of answering the stampede: the plain pattern on each memory peer, and the
    stampede protection aiocache and cashews document."""
    out: list[tuple[str, Opener]] = []
    for spec in memory_peers(size=1_000_000):
        if spec.open is None:
            continue

        async def open_plain(
            up: Upstream,
            body: dict[str, Any],
            opener: Callable[[], Awaitable[Peer]] = spec.open,
        ) -> Opened:
            peer = await opener()
            call = plain(peer, up)
            return (lambda: call(body)), peer.close

        out.append((f"{spec.name}, get → send → set", open_plain))
    try:
        from aiocache import SimpleMemoryCache, cached_stampede  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:

        async def open_aiocache(up: Upstream, body: dict[str, Any]) -> Opened:
            @cached_stampede(lease=2, ttl=DAY, key_builder=lambda f, k: k, cache=SimpleMemoryCache)
            async def fetch(k: str) -> Any:
                return await up()

            return (lambda: fetch(naive_key(body))), None

        out.append(("aiocache `cached_stampede(lease=2)`", open_aiocache))
    try:
        from cashews import Cache as CashewsCache
    except ImportError:
        pass
    else:
        for lock in (False, True):

            async def open_cashews(up: Upstream, body: dict[str, Any], lock: bool = lock) -> Opened:
                cc = CashewsCache()
                cc.setup("mem://?size=1000000")

                @cc(ttl=DAY, key="stampede:{k}", lock=lock)
                async def fetch(k: str) -> Any:
                    return await up()

                return (lambda: fetch(naive_key(body))), cc.close

            name = "cashews `@cache(ttl, lock=True)`" if lock else "cashews `@cache(ttl)`"
            out.append((name, open_cashews))
    return out


async def stampede(ctx: Ctx) -> None:
    sizes = ctx.sizes
    n, sleep = sizes.stampede, sizes.stampede_sleep
    repeats = min(ctx.bench.repeats, sizes.stampede_repeats)
    fresh = iter(range(STAMPEDE_BASE, STAMPEDE_BASE + 1_000_000))  # one new request per run

    async def runs(make: Callable[[], Awaitable[tuple[float, float, float]]]) -> list[float]:
        got = [await make() for _ in range(repeats)]
        return [median([g[j] for g in got]) for j in range(3)]

    base = await runs(lambda: _baseline(n, sleep, ctx.value))

    async def ours() -> tuple[float, float, float]:
        up = Upstream(ctx.value, sleep)
        req: CacheRequest = request(chat_body(next(fresh)))
        async with Cache.from_url("memory://") as cache:
            got = await _timed_gather(n, lambda: cache.get_or_fetch(req, up), up)
            st = cache.stats()
        if st.coalesced + st.misses != n:
            ctx.rec.note(f"stampede: {st.misses} misses + {st.coalesced} coalesced != {n}.")
        return got

    calls, wall, release = await runs(ours)
    rows = [
        ("st.calls", "upstream calls", "count", 0),
        ("st.wall", "wall time, start to last answer", "ns", 1),
        ("st.release", "release: first upstream answer → last caller", "ns", 2),
        ("st.over", "follower overhead per waiter (vs plain Future)", "ns", -1),
    ]
    workload = f"{W6}: {n:,} callers, the sender sleeps {sleep * 1e3:.0f} ms"
    figures = [calls, wall, release]
    for mid, text, kind, j in rows:
        value = figures[j] if j >= 0 else (wall - base[1]) / n
        ctx.rec.ours(mid, workload, text, kind, value)  # type: ignore[arg-type]
    if not ctx.rec.with_peers:
        return
    for mid, _, _, j in rows[1:3]:
        ctx.rec.peer(mid, "floor: a plain shared Future, set after the sleep", base[j])
    for name, opener in _peer_variants():

        async def theirs(opener: Opener = opener) -> tuple[float, float, float]:
            up = Upstream(ctx.value, sleep)
            call, close = await opener(up, chat_body(next(fresh)))
            try:
                return await _timed_gather(n, call, up)
            finally:
                if close is not None:
                    await close()

        got = await runs(theirs)
        for mid, _, _, j in rows:
            ctx.rec.peer(mid, name, got[j] if j >= 0 else (got[1] - base[1]) / n)


# --- 8. Zipf ------------------------------------------------------------------------------------


async def _drive(seq: Sequence[int], workers: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """``workers`` tasks take the next index from one shared iterator: calls per second."""
    it = iter(seq)

    async def worker() -> None:
        for index in it:
            await op(index)

    gc.collect()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return len(seq) / (time.perf_counter() - start)


class _Zipf:
    """One Zipf run per call, on a cold cache: the same sequence for every library."""

    def __init__(self, ctx: Ctx, seq: list[int], redis: aioredis.Redis | None) -> None:
        self.ctx, self.seq, self.redis = ctx, seq, redis
        self.bodies = {i: chat_body(ZIPF_BASE + i) for i in set(seq)}
        self.requests = {i: request(b) for i, b in self.bodies.items()}

    async def _cold(self) -> None:
        if self.redis is not None:
            await self.redis.flushdb()

    async def ours(self, make: Callable[[], Cache]) -> tuple[float, float]:
        """(calls per second, upstream calls) for asynccache."""
        await self._cold()
        up, reqs = Upstream(self.ctx.value), self.requests
        async with make() as cache:

            async def op(i: int) -> Any:
                return await cache.get_or_fetch(reqs[i], up)

            rate = await _drive(self.seq, self.ctx.sizes.concurrency, op)
        return rate, up.calls

    async def theirs(self, opener: Callable[[], Awaitable[Peer]]) -> tuple[float, float]:
        """(calls per second, upstream calls) for a peer's plain pattern."""
        await self._cold()
        peer = await opener()
        try:
            up, bodies = Upstream(self.ctx.value), self.bodies
            call = plain(peer, up)

            async def op(i: int) -> Any:
                return await call(bodies[i])

            return await _drive(self.seq, self.ctx.sizes.concurrency, op), up.calls
        finally:
            await peer.close()


async def zipf(ctx: Ctx) -> None:
    """Throughput of a seeded Zipf mix (a share of brand-new requests among repeats), the same
    sequence for every library, each run on a cold cache (Redis flushed before each run)."""
    sizes = ctx.sizes
    repeats = min(ctx.bench.repeats, sizes.stampede_repeats)
    conc = sizes.concurrency
    capacity = 4 * (sizes.zipf_distinct + sizes.zipf_calls_mem)
    redis = aioredis.Redis.from_url(ctx.redis_url)
    variants: list[
        tuple[str, str, int, Callable[[], Cache], Callable[[], list[PeerSpec]], bool]
    ] = [
        (
            "zipf.mem",
            "memory (L1)",
            sizes.zipf_calls_mem,
            lambda: Cache.from_url("memory://", l1_max_entries=capacity, l1_max_bytes=1 << 30),
            lambda: memory_peers(size=capacity),
            False,
        ),
        (
            "zipf.redis",
            "Redis (L1 + L2)",
            sizes.zipf_calls_io,
            lambda: Cache.from_url(
                ctx.redis_url, namespace=f"{ctx.namespace}-zipf", l1_max_entries=capacity
            ),
            lambda: redis_peers(ctx.redis_url, ctx.redis_port),
            True,
        ),
    ]
    try:
        for seed, (mid, where, n_calls, make, peers, io) in enumerate(variants):
            seq = zipf_sequence(
                n_calls, sizes.zipf_distinct, sizes.zipf_s, sizes.zipf_miss_share, seed
            )
            run = _Zipf(ctx, seq, redis if io else None)
            got = [await run.ours(make) for _ in range(repeats)]
            ctx.rec.ours(
                mid, W8, f"calls/s, {conc} callers, {where}", "rate", median([g[0] for g in got])
            )
            calls_label = (
                f"upstream calls, {where} ({len(seq):,} calls, {len(run.bodies):,} distinct)"
            )
            ctx.rec.ours(f"{mid}.calls", W8, calls_label, "count", median([g[1] for g in got]))
            if not ctx.rec.with_peers:
                continue
            for spec in peers():
                if spec.open is None:
                    ctx.rec.peer(mid, spec.name, None, spec.missing)
                    continue
                got = [await run.theirs(spec.open) for _ in range(repeats)]
                name = f"{spec.name}, get → send → set"
                ctx.rec.peer(mid, name, median([g[0] for g in got]))
                ctx.rec.peer(f"{mid}.calls", name, median([g[1] for g in got]))
    finally:
        await redis.aclose()
