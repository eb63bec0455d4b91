"""CPU instructions per hit, counted by valgrind: a low-noise A/B for hot-path changes.

Why: on a shared VM, wall-clock and CPU-time figures move by 10-30 % from run to run, more than
most single hot-path changes are worth, so a change measured that way is often a guess.
``valgrind --tool=callgrind`` counts the instructions the process executes, which repeat within
a few per cent on every run of the same code (the L1 scenarios vary most), whatever else the
machine does. A count is not a time (cache misses and branch mispredictions are not in it), but
for the changes measured both ways here, fewer instructions went with less time.

Each scenario runs twice in a child Python under callgrind, with two numbers of hits; the
difference divided by the extra hits is the cost of one hit, free of start-up, imports and
warm-up. The anchors are issue 4's bare-minimum versions of the same job (``_hits.py``): what
the bare job costs. Compare counts of one path across versions, not paths with each other:
orjson and xxh3 do many bytes per instruction (SIMD), the interpreter a few instructions per
byte, so an anchor's count is far smaller than its share of the time. Under valgrind the client
runs ~50x slower while redis-server does not, so Redis batches are always full here: this
counts the per-hit work, not how well batches fill under real timing.

    python benchmarks/instructions.py            # every scenario (about 8 minutes)
    python benchmarks/instructions.py l1 l2      # some

Needs valgrind (``apt-get install valgrind``) and redis-server; it starts its own server on a
free loopback port and stops it at the end.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _fixtures import chat_body, request  # noqa: E402

SCENARIOS = {
    "l1": "L1 hit, get_or_fetch on memory://, one caller",
    "l1-anchor": "minimal async wrapper incl. key build (issue 4's L1 anchor)",
    "l2": "L2 hit, get_or_fetch on redis:// with l1_max_entries=0, 100 callers",
    "l2-anchor": "batched MGET per loop tick + orjson.loads (issue 4's L2 anchor)",
    "l2-anchor-fetch": "l2-anchor with its keys built beforehand: the anchor's MGET + loads",
    "l2-fetch": "of l2, what the anchor does too: the backend's batched MGET + orjson.loads",
    "l2-read": "of l2, l2-fetch + the stored entry checked and verified (the engine's read)",
    "sdk": "wrap_openai hit -> ChatCompletion, memory://, FakeProvider (issue 4's goal 3)",
    "sdk-validate": "the pydantic validation of that ChatCompletion alone (part of sdk)",
}
#: Callers, and the two numbers of hits per caller whose difference is measured.
RUNS = {"l1": (1, 1_000, 6_000), "l1-anchor": (1, 1_000, 6_000)}
RUNS |= {
    name: (100, 20, 120) for name in ("l2", "l2-anchor", "l2-anchor-fetch", "l2-fetch", "l2-read")
}
RUNS |= {"sdk": (1, 500, 3_000), "sdk-validate": (1, 500, 3_000)}
VALUE = {
    "id": "chatcmpl-instructions",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "a" * 600},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 300, "completion_tokens": 120, "total_tokens": 420},
}


async def _ops(
    scenario: str, url: str, namespace: str
) -> tuple[list[Callable[[], Awaitable[Any]]], Any]:
    """One op per caller, everything stored first; and what to close afterwards."""
    from contextlib import AsyncExitStack

    import orjson
    import redis.asyncio as aioredis
    import xxhash

    from asynccache import Cache

    n = RUNS[scenario][0]
    bodies = [chat_body(i) for i in range(n)]
    stack = AsyncExitStack()

    async def fetch() -> Any:
        return VALUE

    if scenario in ("sdk", "sdk-validate"):
        return await _sdk_ops(scenario, stack)

    if scenario in ("l1", "l2", "l2-fetch", "l2-read"):
        cache = (
            Cache.from_url("memory://")
            if scenario == "l1"
            else Cache.from_url(url, namespace=namespace, l1_max_entries=0)
        )
        stack.push_async_callback(cache.aclose)
        requests = [request(b) for b in bodies]
        for req in requests:
            await cache.get_or_fetch(req, fetch)
        if scenario in ("l1", "l2"):
            return [lambda r=r: cache.get_or_fetch(r, fetch) for r in requests], stack
        return _parts_of_l2(scenario, cache, requests), stack

    def key(body: dict[str, Any]) -> str:
        return xxhash.xxh3_128_hexdigest(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))

    if scenario == "l1-anchor":
        store = {key(b): VALUE for b in bodies}

        async def hit(body: dict[str, Any]) -> Any:
            return store.get(key(body))

        return [lambda b=b: hit(b) for b in bodies], stack

    from _hits import _MgetBatcher  # imports the SDKs: only where it is needed

    client = aioredis.Redis.from_url(url)
    stack.push_async_callback(client.aclose)
    await client.mset({f"{namespace}:{key(b)}".encode(): orjson.dumps(VALUE) for b in bodies})
    conn = await client.connection_pool.get_connection()
    stack.push_async_callback(client.connection_pool.release, conn)
    batcher = _MgetBatcher(conn)

    async def lookup(body: dict[str, Any]) -> Any:
        raw = await batcher.get(f"{namespace}:{key(body)}".encode())
        return orjson.loads(raw) if raw is not None else None

    async def fetch_stored(stored: bytes) -> Any:
        raw = await batcher.get(stored)
        return orjson.loads(raw) if raw is not None else None

    if scenario == "l2-anchor-fetch":
        keys = [f"{namespace}:{key(b)}".encode() for b in bodies]
        return [lambda k=k: fetch_stored(k) for k in keys], stack
    return [lambda b=b: lookup(b) for b in bodies], stack


def _parts_of_l2(scenario: str, cache: Any, requests: list[Any]) -> list[Callable[[], Any]]:
    """Parts of an L2 hit, keys built beforehand: what the anchor does too (``l2-fetch``), and
    that plus the engine's checks of what it read (``l2-read``, a private method: this is a
    diagnosis, not a report). ``l2`` minus ``l2-read`` is the rest of ``get_or_fetch``: the
    key build, the admission memo, the stats and the answer's provenance."""
    import orjson

    backend, layers = cache.backend, cache._layers

    async def fetch(key: str) -> Any:
        return orjson.loads((await backend.get_many((key,)))[0])

    async def read(key: str, digest: str, tenant: str | None) -> Any:
        return await layers.read(key, digest, tenant)

    keyed = [(cache._key(r), r.tenant) for r in requests]
    if scenario == "l2-fetch":
        return [lambda k=k: fetch(k) for (k, _), _ in keyed]
    return [lambda k=k, d=d, t=t: read(k, d, t) for (k, d), t in keyed]


async def _sdk_ops(scenario: str, stack: Any) -> tuple[list[Callable[[], Awaitable[Any]]], Any]:
    """A hit through the wrapped SDK, as ``_hits.wrap_openai_hit`` times it; or only the
    validation of the stored answer into the ChatCompletion that hit returns."""
    import openai
    from _fixtures import ANSWER

    from asynccache import Cache, wrap_openai
    from asynccache.integrations._common import build
    from asynccache.testing import FakeProvider

    body = chat_body()
    fp = await stack.enter_async_context(FakeProvider(latency=0.0, answer=ANSWER))
    client = openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="instructions")
    stack.push_async_callback(client.close)
    cache = await stack.enter_async_context(Cache.from_url("memory://"))
    wrapped = wrap_openai(client, cache)
    first = await wrapped.chat.completions.create(**body)
    if scenario == "sdk":
        return [lambda: wrapped.chat.completions.create(**body)], stack
    stored = (await cache.get_or_fetch(request(body), _unreachable)).value
    model = type(first)

    async def validate() -> Any:
        return build(model, stored)

    return [validate], stack


async def _unreachable() -> Any:
    raise AssertionError("the answer was stored by the first call")


async def _child(scenario: str, per: int, url: str) -> None:
    ops, stack = await _ops(scenario, url, f"instr{os.getpid()}")
    async with stack:

        async def caller(op: Callable[[], Awaitable[Any]]) -> None:
            for _ in range(per):
                await op()

        await asyncio.gather(*(caller(op) for op in ops))


def _count(scenario: str, per: int, url: str) -> int:
    with tempfile.TemporaryDirectory(prefix="asynccache-callgrind-") as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={Path(tmp, 'out')}",
                sys.executable,
                __file__,
                "--child",
                scenario,
                str(per),
                url,
            ],
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts every run
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count for {scenario}:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        asyncio.run(_child(argv[1], int(argv[2]), argv[3]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    wanted = argv or list(SCENARIOS)
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}", file=sys.stderr)
        return 2
    from asynccache.testing import RedisServer

    per_hit: dict[str, float] = {}
    with RedisServer() as server:
        for scenario in wanted:
            callers, few_hits, many_hits = RUNS[scenario]
            hits = (many_hits - few_hits) * callers
            few = _count(scenario, few_hits, server.url)
            many = _count(scenario, many_hits, server.url)
            per_hit[scenario] = (many - few) / hits
    for scenario in wanted:
        print(
            f"{scenario:12s} {per_hit[scenario]:>10,.0f} instructions per hit  {SCENARIOS[scenario]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
