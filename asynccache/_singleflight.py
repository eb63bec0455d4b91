"""Single-flight: concurrent identical misses share one upstream call.

The rules (DESIGN.md, "Single-flight") and how this module keeps them:
- The flight is a task the *cache* owns, not the first caller: cancelling the caller who
  happened to start it must not cancel the call everyone else is waiting for.
- Every caller, leader included, awaits the flight through ``asyncio.shield``: a cancelled
  caller stops waiting; the flight and the other callers carry on.
- Only the flight's own completion removes its key, so a cancelled caller can never open the
  door to a duplicate flight while the first is still running.
- An error reaches every caller of that flight and is never cached: the key is removed, so the
  next call starts a fresh flight.
- A follower waits at most ``follower_timeout`` seconds, then the caller goes upstream itself:
  a wedged flight must not wedge every request for that key.
- Keys are the engine's full keys (tenant included), so flights never cross tenants.

The hit path never comes here: tasks, shields and timeouts are paid only by misses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

from ._exceptions import CacheClosedError

T = TypeVar("T")
R = TypeVar("R")


def _cancelling() -> bool:
    """Is the current task itself being cancelled? (Task.cancelling exists from 3.11.)"""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


class FollowerTimeout(Exception):
    """A follower gave up waiting for a flight; the caller should go upstream on its own."""


class SingleFlight(Generic[T]):
    def __init__(self, follower_timeout: float = 30.0) -> None:
        self.follower_timeout = follower_timeout
        self._flights: dict[str, asyncio.Future[T]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._flights)

    def get(self, key: str) -> asyncio.Future[T] | None:
        return self._flights.get(key)

    def start(self, key: str, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Start the flight for ``key`` as an owned task; the caller must know none is running."""
        task = asyncio.get_running_loop().create_task(coro, name=f"asynccache-flight:{key}")
        self._own(task)
        self._flights[key] = task
        task.add_done_callback(lambda t: self._land(key, t))
        return task

    def forget(self, key: str, flight: asyncio.Future[Any]) -> None:
        """Stop new callers from joining ``flight`` before it completes (a stream that broke or
        will not be stored: the next caller should start afresh, not share its end)."""
        if self._flights.get(key) is flight:
            del self._flights[key]

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """An owned flight no one else joins (a refresh, or a follower that gave up waiting):
        still the cache's task, so a cancelled caller cannot cut it and aclose() drains it."""
        task = asyncio.get_running_loop().create_task(coro, name="asynccache-flight")
        self._own(task)
        task.add_done_callback(_retrieve)
        return task

    def start_many(
        self, keys: list[str], coro: Coroutine[Any, Any, list[T]]
    ) -> list[asyncio.Future[T]]:
        """One task answering several keys (an embeddings batch): one future per key."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[T]] = [loop.create_future() for _ in keys]
        for key, fut in zip(keys, futures, strict=True):
            self._flights[key] = fut
            fut.add_done_callback(lambda f, k=key: self._land(k, f))  # type: ignore[misc]
        task = loop.create_task(coro, name=f"asynccache-flight-batch:{len(keys)}")
        self._own(task)

        def settle(t: asyncio.Task[list[T]]) -> None:
            exc = None if t.cancelled() else t.exception()
            for i, fut in enumerate(futures):
                if fut.done():
                    continue
                if t.cancelled():
                    fut.cancel()
                elif exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(t.result()[i])

        task.add_done_callback(settle)
        return futures

    async def wait(self, flight: asyncio.Future[R], *, follower: bool) -> R:
        """Await a flight (or a future a flight resolves) without being able to cancel it."""
        try:
            if not follower:
                return await asyncio.shield(flight)
            return await asyncio.wait_for(asyncio.shield(flight), self.follower_timeout)
        except TimeoutError:
            if flight.done():  # finished in the same tick the timer fired
                return flight.result()
            raise FollowerTimeout from None
        except asyncio.CancelledError:
            # Only drain() cancels flights. A caller nobody cancelled must not see a bare
            # CancelledError (task groups would take it for their own cancellation).
            if flight.cancelled() and not _cancelling():
                raise CacheClosedError(
                    "the cache was closed (aclose) while this call was waiting for its answer"
                ) from None
            raise

    async def drain(self, timeout: float) -> None:
        """Give running flights ``timeout`` seconds to finish, then cancel what is left."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def _own(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _land(self, key: str, fut: asyncio.Future[Any]) -> None:
        if self._flights.get(key) is fut:
            del self._flights[key]
        _retrieve(fut)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark the outcome retrieved: if every caller was cancelled, nobody else will read it, and
    asyncio would log "exception was never retrieved" for an error we already handled."""
    if not fut.cancelled():
        fut.exception()
