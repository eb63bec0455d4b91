"""Helpers for tests that need real parts. The redis-server launchers live in
``asynccache.testing`` so the benchmarks (and users' own tests) can use them too."""

from __future__ import annotations

import asyncio
from typing import Any

from asynccache import RetryPolicy
from asynccache.testing import RedisClusterServer, RedisServer

__all__ = ["FAST_RETRY", "RedisClusterServer", "RedisServer", "TaskCounter"]

#: The cache's retry policy with millisecond backoff, so retry tests take no time.
FAST_RETRY = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)


class TaskCounter:
    """Counts the tasks created on the running loop (a task factory: public asyncio API)."""

    def __init__(self) -> None:
        self.created = 0

    def __enter__(self) -> TaskCounter:
        loop = asyncio.get_running_loop()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
            self.created += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.get_running_loop().set_task_factory(None)
