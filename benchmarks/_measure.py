"""Timing primitives: sequential per-call latency, concurrent throughput, medians over repeats.

Why these shapes: a cache's hit is a few microseconds, so latency is taken per call with
``perf_counter_ns`` (percentiles, not a mean that one GC pause would skew) and throughput from
N asyncio tasks on one loop. Client CPU comes from ``time.process_time()``, which counts this
process only: redis-server is another process, so its work is not charged to the client.
Every figure is the median over ``repeats`` runs, each after a ``gc.collect()``.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

Op = Callable[[], Awaitable[Any]]


def pct(values: Sequence[int | float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


async def sequential_ns(op: Op, n: int) -> list[int]:
    """Latency of ``n`` sequential calls, each timed on its own."""
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        start = clock()
        await op()
        out[i] = clock() - start
    return out


@dataclass(frozen=True)
class Latency:
    p50: float  # ns
    p99: float


@dataclass(frozen=True)
class Throughput:
    rate: float  # calls per second, all workers together
    cpu_per_call: float  # ns of this process's CPU time per call
    p50: float | None = None  # ns per call inside the concurrent run (when timed)
    p99: float | None = None


async def concurrent(ops: Sequence[Op], total: int, *, timed: bool = False) -> Throughput:
    """``len(ops)`` workers on one loop (worker i calls ``ops[i]``), ``total`` calls in all.

    With ``timed`` every call is also timed on its own, so the latency a caller sees under this
    load (waiting for a batch, for the loop, for the socket) is measured in the same run; it
    costs two clock reads per call, so it is off for the sub-microsecond in-memory runs.
    """
    per = max(1, total // len(ops))
    samples: list[int] = []
    clock = time.perf_counter_ns

    async def worker(op: Op) -> None:
        for _ in range(per):
            await op()

    async def timed_worker(op: Op) -> None:
        record = samples.append
        for _ in range(per):
            start = clock()
            await op()
            record(clock() - start)

    run = timed_worker if timed else worker
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(run(op) for op in ops))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    calls = per * len(ops)
    if timed:
        return Throughput(calls / wall, cpu / calls * 1e9, pct(samples, 50), pct(samples, 99))
    return Throughput(calls / wall, cpu / calls * 1e9)


@dataclass
class Bench:
    """Runs a measurement ``repeats`` times and keeps the median of each figure."""

    repeats: int

    async def latency(self, op: Op, n: int) -> Latency:
        p50s, p99s = [], []
        for _ in range(self.repeats):
            gc.collect()
            samples = await sequential_ns(op, n)
            p50s.append(pct(samples, 50))
            p99s.append(pct(samples, 99))
        return Latency(median(p50s), median(p99s))

    async def throughput(self, ops: Sequence[Op], total: int, *, timed: bool = False) -> Throughput:
        runs = []
        for _ in range(self.repeats):
            gc.collect()
            runs.append(await concurrent(ops, total, timed=timed))
        return Throughput(
            median([r.rate for r in runs]),
            median([r.cpu_per_call for r in runs]),
            median([r.p50 for r in runs if r.p50 is not None]) if timed else None,
            median([r.p99 for r in runs if r.p99 is not None]) if timed else None,
        )
