"""Side-by-side speed of asynccache's hot paths against the nearest thing a user could use instead.

Why these workloads: a cache for LLM calls earns its keep on hits, so what matters is what a hit
costs on top of the store it comes from: building the key from a chat request, an L1 (memory)
hit, a hit through the wrapped SDK client, and an L2 (Redis) hit. Each is measured next to a
peer doing the same job on the same machine in the same run: a naive key function, aiocache and
cashews (generic async caches) for memory and Redis gets, raw redis-py for the floor of a Redis
round trip, and a direct SDK call to a zero-latency fake provider for the floor of "no cache".

Peer lookups include building their key from the same request with ``json.dumps(sort_keys=True)``
+ SHA-256, because a generic cache needs some key for a chat request and that is the usual one;
raw redis-py GET rows take a precomputed key (the floor, not a like-for-like cache). Values are
the same ChatCompletion JSON everywhere. Every number is a median over ``--repeats`` runs.

Run from the repository root: ``python benchmarks/run.py`` (``make bench``). It starts its own
``redis-server`` on a free loopback port (no persistence) and stops it by PID at the end, and a
FakeProvider on 127.0.0.1; nothing else is touched. Results go to stdout and
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import openai
import orjson
import redis.asyncio as aioredis

from asynccache import Cache, CacheRequest, cache_status, wrap_openai
from asynccache._demo_workload import support_answer
from asynccache._keys import digest
from asynccache.testing import FakeProvider, RedisServer

ROOT = Path(__file__).resolve().parent.parent
Op = Callable[[], Awaitable[Any]]

SYSTEM = (
    "You are Sam, the customer support assistant of Northwind Devices. Answer questions about "
    "orders, billing, shipping, returns and warranty. Be accurate, friendly and brief: at most "
    "five sentences, plain text, no markdown. Never ask for a password, a full card number or a "
    "one-time code; offer a hand-off to a human agent when a request needs account access. "
    "Warranty: two years. Returns: 30 days from delivery, free for defective items."
)


def chat_body(i: int = 0) -> dict[str, Any]:
    """A typical ~1 KB chat request: system prompt, a short exchange, sampling parameters."""
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Hi, I bought an Aurora X2 router last month."},
            {
                "role": "assistant",
                "content": (
                    "Thanks for reaching out! I am sorry it is giving you trouble. What happens "
                    "when you try to connect, and which firmware version does the app show?"
                ),
            },
            {
                "role": "user",
                "content": f"How do I reset it to factory settings? (question {i}) The status "
                "light keeps blinking orange and the app does not find it anymore.",
            },
        ],
        "temperature": 0,
        "max_tokens": 400,
        "user": "user-1234",
    }


def naive_key(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# --- measurement --------------------------------------------------------------------------------


async def per_call_ns(op: Op, n: int) -> list[int]:
    """Latency of ``n`` sequential calls, each timed on its own."""
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        start = clock()
        await op()
        out[i] = clock() - start
    return out


async def rate(ops: list[Op], total: int) -> float:
    """Calls per second with ``len(ops)`` concurrent workers (worker i calls ``ops[i]``)."""
    per = total // len(ops)

    async def worker(op: Op) -> None:
        for _ in range(per):
            await op()

    start = time.perf_counter()
    await asyncio.gather(*(worker(op) for op in ops))
    return per * len(ops) / (time.perf_counter() - start)


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))])


@dataclass(frozen=True)
class Latency:
    p50: float  # ns
    p99: float


@dataclass
class Bench:
    repeats: int

    async def latency(self, op: Op, n: int) -> Latency:
        p50s, p99s = [], []
        for _ in range(self.repeats):
            gc.collect()
            samples = await per_call_ns(op, n)
            p50s.append(pct(samples, 50))
            p99s.append(pct(samples, 99))
        return Latency(statistics.median(p50s), statistics.median(p99s))

    async def rate(self, ops: list[Op], total: int) -> float:
        results = []
        for _ in range(self.repeats):
            gc.collect()
            results.append(await rate(ops, total))
        return statistics.median(results)


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    workload: str
    ours: float
    peer_name: str
    peer: float | None  # None: the peer is not installed
    kind: str  # "ns" (lower is better) or "rate" (higher is better)

    def cell(self, value: float) -> str:
        if self.kind == "rate":
            return f"{value:,.0f}/s"
        if value < 1_000:
            return f"{value:.0f} ns"
        if value < 1_000_000:
            return f"{value / 1_000:.1f} µs"
        return f"{value / 1_000_000:.2f} ms"

    def markdown(self) -> str:
        if self.peer is None:
            return (
                f"| {self.workload} | {self.cell(self.ours)} | {self.peer_name}: not installed | |"
            )
        ratio = self.ours / self.peer if self.kind == "rate" else self.peer / self.ours
        return (
            f"| {self.workload} | {self.cell(self.ours)} | {self.cell(self.peer)} "
            f"({self.peer_name}) | {ratio:.2f}x |"
        )


# --- redis-server -------------------------------------------------------------------------------


# --- workloads ----------------------------------------------------------------------------------

N_KEYS = 100  # distinct requests: each of the 100 concurrent workers asks its own
LAT_CALLS_FAST = 20_000  # sequential calls per repeat for in-memory latency
RATE_CALLS_FAST = 50_000
LAT_CALLS_IO = 2_000  # ... for anything with a network round trip
RATE_CALLS_IO = 10_000


@dataclass(frozen=True)
class Measured:
    p50: float
    p99: float
    rate1: float
    rate100: float


async def measure(bench: Bench, ops: list[Op], io: bool) -> Measured:
    """Latency from one caller, then calls/s from 1 and from len(ops) concurrent callers."""
    lat = await bench.latency(ops[0], LAT_CALLS_IO if io else LAT_CALLS_FAST)
    total = RATE_CALLS_IO if io else RATE_CALLS_FAST
    # From one caller over the network, calls/s is just 1 / mean latency: not worth the time.
    rate1 = float("nan") if io else await bench.rate(ops[:1], total)
    return Measured(lat.p50, lat.p99, rate1, await bench.rate(ops, total))


def bodies() -> list[dict[str, Any]]:
    return [chat_body(i) for i in range(N_KEYS)]


def key_build_rows(repeats: int) -> list[Row]:
    """asynccache's key (canonical body, orjson with sorted keys, xxh3-128) vs the naive one."""
    body = chat_body()
    request = CacheRequest("openai", "chat.completions", body)
    number = 20_000

    def per_op(fn: Callable[[], object]) -> float:
        runs = timeit.Timer(fn).repeat(repeat=repeats, number=number)
        return statistics.median(runs) / number * 1e9

    return [
        Row(
            f"key build, {len(json.dumps(body)):,} B chat request",
            per_op(lambda: digest(request)),
            "json.dumps(sort_keys=True) + sha256",
            per_op(lambda: naive_key(body)),
            "ns",
        )
    ]


async def measure_engine(bench: Bench, cache: Cache, value: Any, io: bool) -> Measured:
    """``Cache.get_or_fetch`` hits: key build, lookup, decode (L2), provenance."""
    requests = [CacheRequest("openai", "chat.completions", b) for b in bodies()]

    async def fetch() -> Any:
        return value

    for request in requests:
        await cache.get_or_fetch(request, fetch)
    cache.reset_stats()
    ops: list[Op] = [lambda r=r: cache.get_or_fetch(r, fetch) for r in requests]  # type: ignore[misc]
    result = await measure(bench, ops, io)
    stats = cache.stats()
    if stats.misses or stats.coalesced or stats.bypassed:
        raise RuntimeError(f"expected only hits while timing, got {stats}")
    return result


async def measure_peer(
    bench: Bench, name: str, get: Callable[[str], Awaitable[Any]], io: bool
) -> Measured:
    """A generic cache's ``get``, keyed the usual way (json.dumps(sort_keys) + sha256)."""
    all_bodies = bodies()
    if await get(naive_key(all_bodies[0])) is None:
        raise RuntimeError(f"{name}: a stored key reads back as None")
    ops: list[Op] = [lambda b=b: get(naive_key(b)) for b in all_bodies]  # type: ignore[misc]
    return await measure(bench, ops, io)


def compare(label: str, ours: Measured, name: str, peer: Measured | None, io: bool) -> list[Row]:
    def get(m: Measured | None, field: str) -> float | None:
        return None if m is None else float(getattr(m, field))

    rows = [Row(f"{label} hit p50, 1 caller", ours.p50, name, get(peer, "p50"), "ns")]
    if io:
        rows.append(Row(f"{label} hit p99, 1 caller", ours.p99, name, get(peer, "p99"), "ns"))
    else:
        rows.append(Row(f"{label} hits/s, 1 caller", ours.rate1, name, get(peer, "rate1"), "rate"))
    rows.append(
        Row(f"{label} hits/s, {N_KEYS} concurrent callers", ours.rate100, name,
            get(peer, "rate100"), "rate")
    )  # fmt: skip
    return rows


async def memory_rows(bench: Bench, value: Any) -> list[Row]:
    async with Cache.from_url("memory://") as cache:
        ours = await measure_engine(bench, cache, value, io=False)
    label = "L1 (memory)"
    rows: list[Row] = []
    keys = [naive_key(b) for b in bodies()]
    try:
        from aiocache import SimpleMemoryCache  # type: ignore[import-untyped]
    except ImportError:
        rows += compare(label, ours, "aiocache", None, io=False)
    else:
        ac = SimpleMemoryCache()
        for key in keys:
            await ac.set(key, value)
        peer = await measure_peer(bench, "aiocache", ac.get, io=False)
        rows += compare(label, ours, "aiocache SimpleMemoryCache.get", peer, io=False)
        await ac.close()
    try:
        from cashews import Cache as CashewsCache
    except ImportError:
        rows += compare(label, ours, "cashews", None, io=False)
    else:
        cc = CashewsCache()
        cc.setup("mem://")
        for key in keys:
            await cc.set(key, value)
        peer = await measure_peer(bench, "cashews", cc.get, io=False)
        rows += compare(label, ours, "cashews mem:// get", peer, io=False)
        await cc.close()
    return rows


async def redis_rows(bench: Bench, value: Any, port: int) -> list[Row]:
    url = f"redis://127.0.0.1:{port}/0"
    async with Cache.from_url(url, namespace="bench", l1_max_entries=0) as cache:
        ours = await measure_engine(bench, cache, value, io=True)
    label = "L2 (Redis)"
    keys = [naive_key(b) for b in bodies()]
    raw_value = orjson.dumps(value)

    client = aioredis.Redis.from_url(url)
    try:
        await client.mset({f"raw:{k}": raw_value for k in keys})
        raw_ops: list[Op] = [lambda k=k: client.get(f"raw:{k}") for k in keys]  # type: ignore[misc]
        raw = await measure(bench, raw_ops, io=True)
    finally:
        await client.aclose()
    rows = compare(label, ours, "redis-py GET, precomputed key, no decode", raw, io=True)

    try:
        from aiocache import RedisCache
    except ImportError:
        rows += compare(label, ours, "aiocache", None, io=True)
    else:
        ac = RedisCache(endpoint="127.0.0.1", port=port, namespace="aiocache")
        try:
            for key in keys:
                await ac.set(key, value)
            peer = await measure_peer(bench, "aiocache", ac.get, io=True)
        finally:
            await ac.close()
        rows += compare(label, ours, "aiocache RedisCache.get", peer, io=True)
    try:
        from cashews import Cache as CashewsCache
    except ImportError:
        rows += compare(label, ours, "cashews", None, io=True)
    else:
        cc = CashewsCache()
        cc.setup(url)
        try:
            for key in keys:
                await cc.set(key, value)
            peer = await measure_peer(bench, "cashews", cc.get, io=True)
        finally:
            await cc.close()
        rows += compare(label, ours, "cashews redis:// get", peer, io=True)
    return rows


async def sdk_rows(bench: Bench) -> tuple[list[Row], Any]:
    """wrap_openai hits (a real ChatCompletion back) vs a direct call to a zero-latency server.
    Also returns the provider's answer, the value every other workload stores."""
    async with FakeProvider(latency=0.0, answer=support_answer) as fp:
        client = openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="bench")
        try:
            body = chat_body()
            raw = await client.chat.completions.with_raw_response.create(**body)
            value = orjson.loads(raw.content)
            async with Cache.from_url("memory://") as cache:
                wrapped = wrap_openai(client, cache)
                first = await wrapped.chat.completions.create(**body)
                hit = await wrapped.chat.completions.create(**body)
                status = cache_status(hit)
                if status is None or status.outcome != "hit" or type(hit) is not type(first):
                    raise RuntimeError(f"expected a ChatCompletion hit, got {status}")
                ours = await bench.latency(lambda: wrapped.chat.completions.create(**body), 5_000)
            direct = await bench.latency(lambda: client.chat.completions.create(**body), 300)
        finally:
            await client.close()
    row = Row(
        "`wrap_openai` L1 hit p50 → ChatCompletion",
        ours.p50,
        "direct SDK call, FakeProvider with 0 latency",
        direct.p50,
        "ns",
    )
    return [row], value


# --- report -------------------------------------------------------------------------------------


def pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


async def redis_version(port: int) -> str:
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return str(info.get("redis_version", "?"))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def step(what: str) -> None:
    print(f"benchmarking: {what} ...", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, loop_name: str, port: int) -> str:
    bench = Bench(args.repeats)
    started = time.perf_counter()
    step("key build")
    rows = key_build_rows(args.repeats)
    step("wrap_openai vs direct SDK calls")
    sdk, value = await sdk_rows(bench)
    step("L1 (memory) hits")
    rows += await memory_rows(bench, value)
    rows += sdk
    step("L2 (Redis) hits")
    rows += await redis_rows(bench, value, port)
    elapsed = time.perf_counter() - started
    machine = [
        f"- platform: {platform.platform()}; CPU: {cpu_model()}, {os.cpu_count()} logical CPUs",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"event loop: {loop_name}",
        f"- asynccache {pkg('asynccache')}, openai {pkg('openai')}, redis-py {pkg('redis')} "
        f"(hiredis {pkg('hiredis')}), Redis server {await redis_version(port)} on loopback, "
        f"aiocache {pkg('aiocache')}, cashews {pkg('cashews')}",
        f"- value: the FakeProvider's ChatCompletion JSON ({len(orjson.dumps(value)):,} B); "
        f"medians over {args.repeats} repeats; run took {elapsed:.0f} s",
    ]
    table = [
        "| workload | asynccache | peer | ratio |",
        "|---|---:|---:|---:|",
        *(row.markdown() for row in rows),
    ]
    return "\n".join([*machine, "", *table, ""])


NOTES = """\
Ratio: how many times faster asynccache is than the peer (peer time ÷ asynccache time, or
asynccache rate ÷ peer rate): above 1 asynccache is faster, below 1 it is slower.
Peer lookups include building their key from the same request with
`json.dumps(sort_keys=True)` + SHA-256, as a generic cache would need; asynccache's include its
own key build (canonicalisation + xxh3-128), lookup, integrity check and provenance. The
redis-py rows are the floor (precomputed key, no decoding), not a like-for-like cache.
"Concurrent callers" are asyncio tasks on one event loop, each asking its own key.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement (median)")
    parser.add_argument("--loop", choices=("auto", "asyncio"), default="auto")
    parser.add_argument(
        "--output",
        default=str(ROOT / "docs" / "benchmarks.md"),
        help="markdown file to write ('-' for none)",
    )
    args = parser.parse_args()
    runner: Callable[[Any], Any] = asyncio.run
    loop_name = f"asyncio (stdlib, Python {platform.python_version()})"
    if args.loop == "auto":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            runner, loop_name = uvloop.run, f"uvloop {pkg('uvloop')}"
    with RedisServer() as redis_server:
        port = redis_server.port
        report = runner(run(args, loop_name, port))
    command = "python benchmarks/run.py" + "".join(f" {a}" for a in sys.argv[1:])
    print(report)
    print(NOTES)
    if args.output != "-":
        today = dt.date.today().isoformat()
        doc = (
            "# Benchmarks\n\n"
            f"Produced by `{command}` on {today}; rerun it (or `make bench`) to check on your "
            "machine. Loopback round trips on a shared VM are noisy (single-caller Redis latencies "
            "moved by up to 1.5x between runs here): compare rows within one run, not across runs."
            "\n\n"
            f"{report}\n{NOTES}"
        )
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(doc)
        print(f"written to {os.path.relpath(args.output)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
