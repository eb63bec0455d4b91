"""Faults against a real redis-server: cancel storms through a delaying proxy, and a server
frozen with SIGSTOP mid-load. The cache must never deliver a wrong answer and never hang."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from asynccache import Cache, CacheRequest
from asynccache._breaker import CircuitBreaker
from asynccache.backends import RedisBackend
from tests.support import RedisServer
from tests.support.delay_proxy import DelayProxy


def chat(i: int) -> CacheRequest:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"question {i}"}],
        "temperature": 0,
    }
    return CacheRequest("openai", "chat.completions", body)


def answer(text: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    }


async def test_cancel_storm_never_delivers_a_wrong_answer(
    redis_server: RedisServer, redis_url: str
) -> None:
    keys = 200
    upstream_calls = 0

    def sender(i: int) -> Any:
        async def send() -> dict[str, Any]:
            nonlocal upstream_calls
            upstream_calls += 1
            await asyncio.sleep(0.001)
            return answer(f"answer {i}")

        return send

    async with (
        DelayProxy(redis_server.port) as proxy,
        Cache.from_url(proxy.url, l1_max_entries=0) as cache,
    ):
        for i in range(keys):  # warm through the proxy too
            await cache.get_or_fetch(chat(i), sender(i))
        rng = random.Random(42)
        delivered = cancelled = 0

        async def lookup(i: int) -> None:
            nonlocal delivered
            r = await cache.get_or_fetch(chat(i), sender(i))
            assert r.value["choices"][0]["message"]["content"] == f"answer {i}"
            delivered += 1

        tasks = []
        for n in range(3000):
            t = asyncio.create_task(lookup(rng.randrange(keys)))
            tasks.append(t)
            if rng.random() < 0.3:
                asyncio.get_running_loop().call_later(rng.uniform(0, 0.01), t.cancel)
            if n % 100 == 0:
                await asyncio.sleep(rng.uniform(0, 0.003))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        ]
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        assert errors == []
        assert delivered + cancelled == 3000 and cancelled > 300
        assert cache.stats().integrity_errors == 0


async def test_backend_batches_survive_cancellation_through_the_proxy(
    redis_server: RedisServer,
) -> None:
    async with DelayProxy(redis_server.port) as proxy:
        backend = RedisBackend.from_url(proxy.url)
        try:
            await backend.set_many([(f"storm:{i}", str(i).encode(), None) for i in range(100)])
            rng = random.Random(3)

            async def get(i: int) -> None:
                (value,) = await backend.get_many([f"storm:{i}"])
                assert value == str(i).encode()

            tasks = [asyncio.create_task(get(rng.randrange(100))) for _ in range(2000)]
            for t in tasks:
                if rng.random() < 0.3:
                    asyncio.get_running_loop().call_later(rng.uniform(0, 0.01), t.cancel)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert not [r for r in results if isinstance(r, Exception)]
        finally:
            await backend.aclose()


async def test_sigstopped_redis_fails_open_then_recovers() -> None:
    with RedisServer() as server:
        upstream_calls = 0

        def sender(i: int) -> Any:
            async def send() -> dict[str, Any]:
                nonlocal upstream_calls
                upstream_calls += 1
                await asyncio.sleep(0.005)
                return answer(f"answer {i}")

            return send

        breaker = CircuitBreaker(threshold=3, cooldown=0.5)
        async with Cache.from_url(server.url, l1_max_entries=0, breaker=breaker) as cache:
            for i in range(20):
                await cache.get_or_fetch(chat(i), sender(i))
            latencies: list[float] = []

            async def timed(i: int) -> None:
                t0 = time.perf_counter()
                r = await cache.get_or_fetch(chat(i), sender(i))
                latencies.append(time.perf_counter() - t0)
                assert r.value["choices"][0]["message"]["content"] == f"answer {i}"

            server.pause()
            try:
                calls_before = upstream_calls
                for _ in range(5):  # bursts of concurrent requests while Redis is frozen
                    await asyncio.gather(*(timed(i) for i in range(20)))
                assert upstream_calls - calls_before == 100  # served from upstream, not failed
                # Generous bound: this checks "never hangs", not speed (socket timeouts are 0.25 s).
                assert max(latencies) < 2.0, max(latencies)
                st = cache.stats()
                assert st.backend_errors >= 1 and st.breaker_open_skips >= 1
            finally:
                server.resume()
            deadline = time.monotonic() + 5
            while True:  # the breaker lets a probe through after its cooldown
                r = await cache.get_or_fetch(chat(0), sender(0))
                if r.status.outcome == "hit" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert r.status.outcome == "hit" and r.status.layer == "l2"
