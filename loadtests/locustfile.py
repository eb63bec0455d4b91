"""Locust load test: many simulated users asking support questions through a cached OpenAI client.

Why it is built this way: asynccache is asyncio code, Locust users are gevent greenlets, and the
two must not share an event loop. So the "app" (one ``Cache`` and one ``wrap_openai`` client, as
one app process would hold) runs on its own asyncio loop in one native thread, and each Locust
user hands it a request and waits cooperatively (a gevent async watcher wakes the greenlet; no
greenlet ever blocks the hub). Every call is reported to Locust under its cache outcome
(``chat [hit]``, ``chat [miss]``, ``chat [coalesced]``), so the stats table shows hit and miss
latencies apart.

The upstream is a FakeProvider in its own process (see README.md): loopback only, no keys, no
cost. Settings come from the environment:

- ``FAKE_PROVIDER_URL``: OpenAI base URL of the FakeProvider (default http://127.0.0.1:8900/v1)
- ``ASYNCCACHE_URL``: cache URL (default ``memory://``; ``redis://127.0.0.1:PORT/0`` shares
  answers between Locust workers)

Run: ``locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 30s``. Locust is not a
dependency of asynccache: ``pip install locust``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

import gevent
import gevent.event
import gevent.monkey
from locust import User, between, events, task
from locust.runners import MasterRunner

from asynccache import Cache, CacheOptions, cache_status, wrap_openai
from asynccache._demo_workload import SYSTEM_PROMPT, Question, question_pool

FAKE_PROVIDER_URL = os.environ.get("FAKE_PROVIDER_URL", "http://127.0.0.1:8900/v1")
ASYNCCACHE_URL = os.environ.get("ASYNCCACHE_URL", "memory://")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
T = TypeVar("T")

# Locust sets the root logger to INFO; the SDK's HTTP client would log every request.
for _name in ("httpx", "httpx2", "openai"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class App:
    """The asyncio side: one loop in one native thread, one Cache, one wrapped client."""

    def __init__(self) -> None:
        for name, url in (
            ("FAKE_PROVIDER_URL", FAKE_PROVIDER_URL),
            ("ASYNCCACHE_URL", ASYNCCACHE_URL),
        ):
            host = urlsplit(url).hostname
            if host is not None and host not in LOOPBACK:
                raise SystemExit(f"{name}={url!r}: this load test targets 127.0.0.1 only")
        if ASYNCCACHE_URL.startswith("sqlite"):
            # SQLiteBackend's worker thread would be a gevent greenlet here (Locust patches
            # threading), which the app's loop never runs: use Redis to share answers.
            raise SystemExit("ASYNCCACHE_URL: use memory:// or redis://; SQLite is not supported")
        self.loop = _new_loop()
        # The SDK runs a blocking helper through loop.run_in_executor: give it native threads
        # too, or it would get a gevent "thread" that Python cannot join at exit.
        self.loop.set_default_executor(_NativeThreadExecutor())
        _start_native_thread(self.loop.run_forever, ())  # work sent before it runs just waits
        self.client: Any = None
        self.cache: Cache = self.call(self._open())

    async def _open(self) -> Cache:
        import openai

        cache = Cache.from_url(ASYNCCACHE_URL, namespace="locust")
        self.client = wrap_openai(
            openai.AsyncOpenAI(base_url=FAKE_PROVIDER_URL, api_key="loadtest"), cache
        )
        return cache

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the app loop; the calling greenlet yields until it is done."""
        done = gevent.event.Event()
        watcher = gevent.get_hub().loop.async_()
        watcher.start(done.set)  # started before the work is scheduled: no wake-up is lost
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
            future.add_done_callback(lambda _: watcher.send())  # thread-safe by design
            done.wait()
        finally:
            watcher.close()
        return future.result()

    async def ask(self, question: Question) -> tuple[str, float, int]:
        started = time.perf_counter()
        response = await self.client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": question.text},
            ],
            temperature=0,
            max_tokens=400,
            cache_options=CacheOptions(category=question.category, tags=question.tags),
        )
        elapsed = time.perf_counter() - started
        status = cache_status(response)
        outcome = "untagged" if status is None else status.outcome
        return outcome, elapsed, len(response.choices[0].message.content or "")

    async def close(self) -> None:
        stats = self.cache.stats()
        await self.cache.aclose()
        await self.client.close()
        print(
            f"asynccache: {stats.requests:,} requests, hit rate {stats.hit_rate:.1%}, "
            f"{stats.upstream_calls:,} upstream calls, ${stats.usd_saved:.4f} saved"
        )


_start_native_thread = gevent.monkey.get_original("_thread", "start_new_thread")


class _NativeThreadExecutor(ThreadPoolExecutor):
    """One short-lived native thread per job (the SDK sends one per client, at its first call).
    A ThreadPoolExecutor only because asyncio's set_default_executor insists on one."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        _start_native_thread(run, ())
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # no pool threads to stop


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # stdlib asyncio, with the selector gevent has not patched
        selector = gevent.monkey.get_original("selectors", "DefaultSelector")
        return asyncio.SelectorEventLoop(selector())
    return uvloop.new_event_loop()


_app: App | None = None
# Zipf-like popularity over the demo's question pool (see asynccache/_demo_workload.py).
_POOL = question_pool()
random.Random(42).shuffle(_POOL)
_WEIGHTS = [1.0 / rank**1.1 for rank in range(1, len(_POOL) + 1)]


@events.test_start.add_listener
def _start(environment: Any, **_: Any) -> None:
    global _app
    if not isinstance(environment.runner, MasterRunner):  # the master sends no requests
        _app = App()


@events.test_stop.add_listener
def _stop(**_: Any) -> None:
    global _app
    if _app is not None:
        _app.call(_app.close())
        _app.loop.call_soon_threadsafe(_app.loop.stop)
        _app = None


class SupportBotUser(User):
    """One customer: asks a question, reads the answer for a moment, asks another."""

    wait_time = between(0.1, 0.5)

    @task
    def ask(self) -> None:
        if _app is None:
            raise RuntimeError("the app did not start: see the error logged at test start")
        question = random.choices(_POOL, weights=_WEIGHTS)[0]
        started = time.perf_counter()
        try:
            outcome, elapsed, size = _app.call(_app.ask(question))
        except Exception as exc:
            events.request.fire(
                request_type="chat",
                name="chat [error]",
                response_time=(time.perf_counter() - started) * 1000,
                response_length=0,
                exception=exc,
            )
            return
        events.request.fire(
            request_type="chat",
            name=f"chat [{outcome}]",
            response_time=elapsed * 1000,
            response_length=size,
            exception=None,
        )
