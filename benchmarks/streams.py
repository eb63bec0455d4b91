"""What a cached stream costs next to the same stream straight from the provider.

Three figures, each a median over ``--repeats`` runs in one process on loopback:
- a direct SDK stream from FakeProvider with zero latency (the floor of "no cache": the SDK's own
  HTTP, SSE decoding and chunk parsing) against a stream hit through ``wrap_openai`` (the
  recorded chunks replayed as the SDK's own ``AsyncStream``), per stream and per chunk;
- ``--concurrent`` identical stream requests on a cold cache: how many upstream calls they make,
  and the wall time until every caller has read the whole stream.

Run from the repository root: ``python benchmarks/streams.py``. It starts a FakeProvider on
127.0.0.1 and touches nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import openai

from asynccache import Cache, cache_status, wrap_openai
from asynccache.testing import FakeProvider

CHAT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "temperature": 0,
    "messages": [
        {"role": "system", "content": "You are a support bot."},
        {"role": "user", "content": "How do I reset my password on the Aurora X2 router?"},
    ],
}


async def read(stream: Any) -> int:
    async with stream:
        return sum([1 async for _ in stream])


async def per_stream(create: Any, n: int) -> tuple[float, int]:
    chunks = 0
    t0 = time.perf_counter()
    for _ in range(n):
        chunks = await read(await create(**CHAT, stream=True))
    return (time.perf_counter() - t0) / n, chunks


async def main(repeats: int, n: int, concurrent: int) -> None:
    async with (
        FakeProvider() as fp,
        openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="bench") as oai,
    ):
        cached = wrap_openai(oai, Cache.from_url("memory://"))
        await read(await cached.chat.completions.create(**CHAT, stream=True))  # store it
        direct, hit = [], []
        for _ in range(repeats):
            d, chunks = await per_stream(oai.chat.completions.create, n)
            h, _ = await per_stream(cached.chat.completions.create, n)
            direct.append(d)
            hit.append(h)
        d, h = statistics.median(direct), statistics.median(hit)
        print(f"stream of {chunks} chunks, median of {repeats} x {n} streams")
        print(
            f"  direct SDK stream (0-latency FakeProvider)  {d * 1e3:8.3f} ms/stream  {d / chunks * 1e6:7.1f} us/chunk"
        )
        print(
            f"  cached stream hit (wrap_openai)             {h * 1e3:8.3f} ms/stream  {h / chunks * 1e6:7.1f} us/chunk"
        )
        print(f"  ratio                                       {d / h:8.2f}x")

        fp.latency, fp.stream_chunk_delay = 0.05, 0.002
        walls, calls = [], []
        for r in range(repeats):
            fp.reset()
            client = wrap_openai(oai, Cache.from_url("memory://"))
            body = {**CHAT, "messages": [*CHAT["messages"], {"role": "user", "content": str(r)}]}

            async def one(client: Any = client, body: dict[str, Any] = body) -> str:
                stream = await client.chat.completions.create(**body, stream=True)
                await read(stream)
                return cache_status(stream).outcome  # type: ignore[union-attr,no-any-return]

            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(concurrent)))
            walls.append(time.perf_counter() - t0)
            calls.append(fp.calls)
        print(
            f"{concurrent} concurrent identical streams (upstream 50 ms + 2 ms/chunk): "
            f"{max(calls)} upstream call(s), all read in {statistics.median(walls) * 1e3:.0f} ms (median)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("-n", type=int, default=50, help="streams per timing run")
    parser.add_argument("--concurrent", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.repeats, args.n, args.concurrent))
