"""What every workload is handed: how much to run, where Redis is, the value, the recorder.

Why counts live here: ``make bench`` must finish in about five minutes on a 2-CPU VM, so slow
workloads (network round trips, 10,000-task stampedes, 100,000-entry fills, idle windows) get
smaller counts than sub-microsecond ones, and ``--quick`` shrinks everything for a smoke run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from _measure import Bench
from _report import Recorder


@dataclass(frozen=True)
class Sizes:
    n_keys: int = 100  # distinct requests in the hit workloads: one per concurrent caller
    concurrency: int = 100
    key_build_number: int = 20_000  # key builds per timeit repeat
    lat_fast: int = 10_000  # sequential in-memory calls per repeat
    rate_fast: int = 30_000  # in-memory calls per repeat, all callers together
    lat_io: int = 2_000  # sequential calls per repeat with a Redis round trip
    rate_io: int = 5_000
    sdk_hits: int = 5_000  # wrap_openai hits per repeat
    sdk_direct: int = 300  # direct SDK calls per repeat (each a loopback HTTP request)
    miss_mem: int = 2_000  # sequential misses per repeat, memory
    miss_io: int = 500  # ... with Redis
    stampede: int = 10_000  # concurrent identical misses
    stampede_sleep: float = 0.02  # seconds the sender takes
    stampede_repeats: int = 3  # at most this many repeats (each builds 10,000 tasks per peer)
    zipf_distinct: int = 10_000
    zipf_calls_mem: int = 30_000
    zipf_calls_io: int = 6_000
    zipf_s: float = 1.1
    zipf_miss_share: float = 0.10
    count_sample: int = 1_000  # hits / followers observed by the task and shield counters
    stall_entries: int = 100_000
    stall_idle: float = 3.0  # seconds idle while the ticker watches the loop
    stall_windows: int = 3  # idle windows per contender: the median of their worst lateness
    mem_entries: int = 25_000  # bytes per entry does not depend on the count; tracing is slow
    mem_value_bytes: int = 2_048
    bound_bytes: int = 16 << 20  # the L1 byte bound under test
    bound_inserts: int = 40_000  # about 5x what fits at 2 KB per answer

    def quick(self) -> Sizes:
        """About a tenth of everything: checks the harness runs, not the figures."""
        return replace(
            self,
            key_build_number=2_000,
            lat_fast=2_000,
            rate_fast=5_000,
            lat_io=200,
            rate_io=1_000,
            sdk_hits=500,
            sdk_direct=30,
            miss_mem=300,
            miss_io=50,
            stampede=1_000,
            stampede_repeats=1,
            zipf_distinct=1_000,
            zipf_calls_mem=5_000,
            zipf_calls_io=1_000,
            count_sample=200,
            stall_entries=10_000,
            stall_idle=1.0,
            stall_windows=1,
            mem_entries=5_000,
            bound_bytes=2 << 20,
            bound_inserts=5_000,
        )


@dataclass
class Ctx:
    bench: Bench
    sizes: Sizes
    rec: Recorder
    redis_url: str
    redis_port: int
    value: Any = None  # the FakeProvider's ChatCompletion JSON, set by the wrap_openai workload
    namespace: str = "bench"  # differs per pass, so passes never read each other's entries
