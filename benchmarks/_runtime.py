"""Workloads 7, 9 and 10: what the cache does to the event loop and to memory.

Why: speed per call is not the whole cost. A hit that creates a task, a ``wait_for`` or a
``shield`` allocates and schedules work the caller does not see in a microbenchmark but the
loop pays for under load; a cache that sweeps 100,000 entries on a timer stalls every other
coroutine while it does; and a byte bound that counts encoded bytes can hold far more memory
than it promises. These are observed from outside, through public hooks only: a counting task
factory (``loop.set_task_factory``, delegating to the default), ``sys.setprofile`` call events
for ``asyncio.shield`` / ``asyncio.wait_for`` (nothing in asyncio is patched), a 1 ms ticker's
lateness, and ``tracemalloc``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

import redis.asyncio as aioredis
from _context import Ctx
from _fixtures import chat_body, naive_key, request, sized_value
from _measure import median
from _misses import Upstream
from _peers import Peer, PeerSpec, aiocache_memory, cashews_memory, memory_peers, redis_peers
from _report import fmt

from asynccache import Cache

W7 = "7. Tasks, `shield` and `wait_for` per hit / per coalesced follower"
W9 = "9. Event-loop stall while idle with 100,000 entries"
W10 = "10. Memory"

COUNT_BASE, STALL_BASE, MEM_BASE = 4_000_000, 5_000_000, 6_000_000
_WATCHED = {asyncio.shield.__code__: "shield", asyncio.wait_for.__code__: "wait_for"}


class Counting:
    """Counts tasks created on ``loop`` and calls of ``asyncio.shield`` / ``asyncio.wait_for``
    while active. A coroutine's frame reports a 'call' event each time it resumes, so calls are
    counted as distinct frames (held until the count is read, so no id is reused)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tasks = 0
        self._frames: dict[str, set[FrameType]] = {"shield": set(), "wait_for": set()}
        self._previous: Any = None

    @property
    def shield(self) -> int:
        return len(self._frames["shield"])

    @property
    def wait_for(self) -> int:
        return len(self._frames["wait_for"])

    def _factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        self.tasks += 1
        if self._previous is not None:
            return self._previous(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    def _profile(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            name = _WATCHED.get(frame.f_code)
            if name is not None:
                self._frames[name].add(frame)

    def __enter__(self) -> Counting:
        self._previous = self.loop.get_task_factory()
        self.loop.set_task_factory(self._factory)
        sys.setprofile(self._profile)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sys.setprofile(None)
        self.loop.set_task_factory(self._previous)


async def _count(
    call: Callable[[Any], Awaitable[Any]], args: list[Any], sample: int, workers: int
) -> Counting:
    """``sample`` calls of ``call(arg)`` (cycling through ``args``) split over ``workers`` tasks
    that exist before counting starts, so the harness's own tasks are not counted."""
    loop = asyncio.get_running_loop()
    per = sample // workers
    chosen = [args[i % len(args)] for i in range(per * workers)]

    async def worker(chunk: list[Any]) -> None:
        for arg in chunk:
            await call(arg)

    tasks = [loop.create_task(worker(chosen[i * per : (i + 1) * per])) for i in range(workers)]
    with Counting(loop) as counting:
        await asyncio.gather(*tasks)
    return counting


async def _mget_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def counters(ctx: Ctx) -> None:
    sizes = ctx.sizes
    sample, conc = sizes.count_sample, sizes.concurrency
    bodies = [chat_body(COUNT_BASE + i) for i in range(sizes.n_keys)]
    reqs = [request(b) for b in bodies]
    up = Upstream(ctx.value)
    rec = ctx.rec

    def record(prefix: str, what: str, c: Counting, n: float, name: str | None = None) -> None:
        for field in ("tasks", "shield", "wait_for"):
            mid, label = f"c.{prefix}.{field}", f"{field} per {what}"
            value = getattr(c, field) / n
            if name is None:
                rec.ours(mid, W7, label, "per", value)
            else:
                rec.peer(mid, name, value)

    # L1 hits, one caller.
    async with Cache.from_url("memory://") as cache:
        for r in reqs:
            await cache.get_or_fetch(r, up)
        hit = functools.partial(cache.get_or_fetch, sender=up)
        record("l1", "L1 hit", await _count(hit, reqs, sample, 1), sample)
    if rec.with_peers:
        await _peer_counts(ctx, memory_peers(size=1_000), bodies, 1, "l1", "L1 hit", record)

    # L2 hits, concurrent callers (a batch may own one task; MGETs counted by Redis itself).
    raw = aioredis.Redis.from_url(ctx.redis_url)
    try:
        ns = f"{ctx.namespace}-count"
        async with Cache.from_url(ctx.redis_url, namespace=ns, l1_max_entries=0) as cache:
            for r in reqs:
                await cache.get_or_fetch(r, up)
            # One concurrent round first: the first overlap of lookups makes the backend open its
            # second read connection, whose handshake (HELLO, CLIENT SETINFO...) sends each
            # command under redis-py's wait_for, a task each. Once per process, not per hit.
            await asyncio.gather(*(cache.get_or_fetch(r, up) for r in reqs))
            before = await _mget_calls(raw)
            hit = functools.partial(cache.get_or_fetch, sender=up)
            counted = await _count(hit, reqs, sample, conc)
            batches = await _mget_calls(raw) - before
        record("l2", f"L2 hit, {conc} callers", counted, sample)
        per_batch = counted.tasks / max(batches, 1)
        rec.ours("c.l2.batch", W7, "tasks per Redis MGET batch", "per", per_batch)
        rec.ours("c.l2.hpb", W7, "L2 hits per Redis MGET batch", "count", sample / max(batches, 1))
    finally:
        await raw.aclose()
    if rec.with_peers:
        peers = redis_peers(ctx.redis_url, ctx.redis_port)
        await _peer_counts(ctx, peers, bodies, conc, "l2", "L2 hit", record)

    # Coalesced followers: what a lone miss (the leader's path) costs is subtracted.
    loop = asyncio.get_running_loop()
    async with Cache.from_url("memory://") as cache:
        lone = loop.create_task(cache.get_or_fetch(request(chat_body(COUNT_BASE - 1)), up))
        with Counting(loop) as leader:
            await lone
        slow, req = Upstream(ctx.value, 0.005), request(chat_body(COUNT_BASE - 2))
        cache.reset_stats()
        tasks = [loop.create_task(cache.get_or_fetch(req, slow)) for _ in range(sample)]
        with Counting(loop) as crowd:
            await asyncio.gather(*tasks)
        followers = max(cache.stats().coalesced, 1)
    for field in ("tasks", "shield", "wait_for"):
        extra = getattr(crowd, field) - getattr(leader, field)
        rec.ours(f"c.f.{field}", W7, f"{field} per coalesced follower", "per", extra / followers)


def _keyed_get(peer: Peer) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    async def get(body: dict[str, Any]) -> Any:
        return await peer.get(naive_key(body))

    return get


async def _peer_counts(
    ctx: Ctx,
    specs: list[PeerSpec],
    bodies: list[dict[str, Any]],
    workers: int,
    prefix: str,
    what: str,
    record: Callable[[str, str, Counting, float, str | None], None],
) -> None:
    sample = ctx.sizes.count_sample
    for spec in specs:
        if spec.open is None:
            continue
        peer = await spec.open()
        try:
            for body in bodies:
                await peer.set(naive_key(body), ctx.value, None)
            get = _keyed_get(peer)
            await asyncio.gather(*(get(b) for b in bodies[:workers]))  # its pool warm, as ours
            counted = await _count(get, bodies, sample, workers)
            record(prefix, what, counted, sample, spec.name)
        finally:
            await peer.close()


# --- 9. stall -----------------------------------------------------------------------------------


#: Stores one entry: (index, ttl in seconds). None: nothing is stored (the ticker alone).
Put = Callable[[int, float], Awaitable[Any]]
#: Seconds between two idle windows, where the harness's own gc.collect() runs.
_GAP = 0.5


@dataclass(frozen=True)
class Window:
    """One idle window: the ticker's worst lateness, and the entries that fell due in it."""

    worst_ns: float
    due: int


async def _idle_windows(put: Put | None, n: int, idle: float, windows: int) -> list[Window]:
    """Store ``n`` entries through ``put``, then watch ``windows`` windows of ``idle`` seconds
    while a ticker sleeps 1 ms in a loop: each window's worst lateness, and how many entries
    fell due in it.

    Half the entries live an hour. The other half expire in bursts, a share in the middle of
    each window, at deadlines fixed before any of them is stored: a TTL counts from its own
    store time, and a contender that stores slowly (ours, through a miss per entry) would
    otherwise see its bursts earlier, or before the windows. The windows start once the second
    half is stored: the first half's time again, and a margin."""
    expiries: list[float] = []
    if put is None:
        first = time.perf_counter() + _GAP
    else:
        began = time.perf_counter()
        for i in range(n - n // 2):
            await put(i, 3600.0)
        first = time.perf_counter() + (time.perf_counter() - began) * 1.5 + 1.0
    starts = [first + k * (idle + _GAP) for k in range(windows)]
    if put is not None:
        i = n - n // 2
        for k in reversed(range(windows)):  # the earliest burst stored last
            due = starts[k] + idle / 2
            for _ in range(n // 2 // windows + (k < n // 2 % windows)):
                now = time.perf_counter()
                ttl = max(0.001, due - now)  # past due when the stores overran: counted below
                await put(i, ttl)
                expiries.append(now + ttl)
                i += 1
    out = []
    for start in starts:
        gc.collect()
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        begin = time.perf_counter()
        worst, end = 0.0, begin + idle
        while (tick := time.perf_counter()) < end:
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - tick - 0.001)
        out.append(Window(worst * 1e9, sum(begin <= t < end for t in expiries)))
    return out


def _summary(name: str, got: list[Window]) -> str:
    return f"{name} " + " / ".join(f"{fmt('ns', w.worst_ns)} ({w.due:,} due)" for w in got)


async def stall(ctx: Ctx) -> None:
    """The median over the windows of each one's worst lateness: a sweep that runs in most
    windows (cashews sweeps each second) or a burst of expiries (one in every window) shows
    in it; a one-off pause of the VM itself (3.9 ms in one window of the ticker alone, with
    nothing stored, in a run here) stalls one window, and is not the cache's. The notes give
    every window."""
    sizes = ctx.sizes
    n, idle, windows = sizes.stall_entries, sizes.stall_idle, sizes.stall_windows
    up = Upstream(ctx.value)
    label = f"worst lateness of a 1 ms ticker per {idle:.0f} s idle window, median of {windows}"
    workload = f"{W9} (half expiring in bursts, one mid-window)".replace("100,000", f"{n:,}")
    seen: list[str] = []
    async with Cache.from_url("memory://", l1_max_entries=2 * n, l1_max_bytes=1 << 31) as cache:

        async def ours(i: int, ttl: float) -> Any:
            return await cache.get_or_fetch(request(chat_body(STALL_BASE + i), ttl=ttl), up)

        got = await _idle_windows(ours, n, idle, windows)
        ctx.rec.ours("stall", workload, label, "ns", median([w.worst_ns for w in got]))
        seen.append(_summary("asynccache", got))
    if ctx.rec.with_peers:
        got = await _idle_windows(None, 0, idle, windows)
        ctx.rec.peer("stall", "the ticker alone, nothing stored", median([w.worst_ns for w in got]))
        seen.append(_summary("the ticker alone", got))
        for spec in (cashews_memory(size=2 * n), aiocache_memory()):
            if spec.open is None:
                ctx.rec.peer("stall", spec.name, None, spec.missing)
                continue
            peer = await spec.open()
            try:

                async def theirs(i: int, ttl: float, peer: Peer = peer) -> Any:
                    return await peer.set(naive_key(chat_body(STALL_BASE + i)), ctx.value, ttl)

                got = await _idle_windows(theirs, n, idle, windows)
                ctx.rec.peer("stall", spec.name, median([w.worst_ns for w in got]))
                seen.append(_summary(spec.name, got))
            finally:
                await peer.close()
    loop = " (uvloop)" if ctx.rec.uvloop else ""
    ctx.rec.note(
        f"Stall{loop}, each window's worst lateness (entries due in it): {'; '.join(seen)}."
    )


# --- 10. memory ---------------------------------------------------------------------------------


async def _growth(fill: Callable[[], Awaitable[Any]]) -> float:
    """Bytes still allocated after ``fill`` (and a full collection), traced by tracemalloc.
    ``fill`` returns what holds the entries, kept alive until the reading is taken, then
    closed if it is a Cache."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        holder = await fill()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    if isinstance(holder, Cache):
        await holder.aclose()
    return float(grown)


async def memory(ctx: Ctx) -> None:
    """Bytes per entry for 2 KB answers in each library, and whether asynccache's L1 holds what
    its byte bound says. Allocation-only, so it runs in the stock-asyncio pass only."""
    if ctx.rec.uvloop:
        return
    sizes = ctx.sizes
    n, nbytes = sizes.mem_entries, sizes.mem_value_bytes
    template = ctx.value

    def answer(i: int) -> dict[str, Any]:
        return sized_value(template, nbytes, i)

    mid = "mem.entry"
    label = f"bytes per entry, {n:,} entries of {nbytes:,} B answers (value included)"

    async def ours() -> Any:
        cache = Cache.from_url("memory://", l1_max_entries=2 * n, l1_max_bytes=1 << 31)
        for i in range(n):

            async def send(i: int = i) -> Any:
                return answer(i)

            await cache.get_or_fetch(request(chat_body(MEM_BASE + i)), send)
        return cache

    per_100k, label_100k = f"{mid}.100k", "the same, per 100,000 entries"

    def both(name: str | None, per_entry: float) -> None:
        if name is None:
            ctx.rec.ours(mid, W10, label, "bytes", per_entry)
            ctx.rec.ours(per_100k, W10, label_100k, "bytes", per_entry * 100_000)
        else:
            ctx.rec.peer(mid, name, per_entry)
            ctx.rec.peer(per_100k, name, per_entry * 100_000)

    both(None, await _growth(ours) / n)

    async def payload() -> Any:
        return [answer(i) for i in range(n)]

    both("the answers alone, in a list", await _growth(payload) / n)
    for spec in memory_peers(size=2 * n):
        if spec.open is None:
            ctx.rec.peer(mid, spec.name, None, spec.missing)
            ctx.rec.peer(per_100k, spec.name, None, spec.missing)
            continue
        peer = await spec.open()  # opened before tracing: an empty cache is not an entry

        async def theirs(peer: Peer = peer) -> Any:
            for i in range(n):
                await peer.set(naive_key(chat_body(MEM_BASE + i)), answer(i), None)
            return peer

        both(spec.name, await _growth(theirs) / n)
        await peer.close()

    bound, inserts = sizes.bound_bytes, sizes.bound_inserts

    async def bounded() -> Any:
        cache = Cache.from_url("memory://", l1_max_entries=10**9, l1_max_bytes=bound)
        for i in range(inserts):

            async def send(i: int = i) -> Any:
                return answer(i)

            await cache.get_or_fetch(request(chat_body(MEM_BASE + n + i)), send)
        return cache

    held = await _growth(bounded)
    text = f"L1 held ÷ `l1_max_bytes` ({bound >> 20} MiB bound, {inserts:,} answers inserted)"
    ctx.rec.ours("mem.bound", W10, text, "x", held / bound)
    ctx.rec.ours("mem.held", W10, "L1 memory held after those inserts", "bytes", held)
