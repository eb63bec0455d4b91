"""Tee: one upstream stream, any number of readers, each from the first event.

Single-flight for streams (DESIGN.md): concurrent identical stream requests share ONE upstream
stream. The flight task (owned by the cache) appends each event as it arrives; every caller
reads through its own :class:`Cursor`, so a caller who joins late still gets every event from
the first, and a caller who stops reading (breaks out, closes, is cancelled) only drops its own
cursor: the flight, and everyone else, carries on. Nothing is buffered in front of a reader:
an event is readable the moment it is appended. A stored answer is replayed through the same
cursor over a tee that is already complete.

Waiting uses an :class:`asyncio.Event` that is set and cleared on every change: each waiter
parks on its own future inside ``Event.wait``, so cancelling one reader cancels nothing shared.
A cursor is a plain object, not a generator, so ``aclose()`` works from any task, even while
another task is waiting on it (an SDK stream closed by one task while another reads it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._models import Entry
from ._recording import Event, Recording


class Tee:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.events: list[Event] = []
        self.offsets: list[float] = []
        #: Resolved when the upstream stream is open (None), or with the stored entry when the
        #: flight found the answer stored meanwhile, or failed with the error that kept the
        #: stream from opening.
        self.opened: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        #: The engine's bookkeeping: categories of followers still to be credited with what
        #: they saved, and once the whole answer is known, its facts (then followers who join
        #: later are credited at once).
        self.credits: list[str | None] = []
        self.facts: Any = None
        self._clock = clock
        self._start: float | None = None
        self._changed = asyncio.Event()
        self._done = False
        self._error: BaseException | None = None

    @classmethod
    def complete(cls, events: Sequence[Event], offsets: Sequence[float] | None = None) -> Tee:
        """A tee holding a whole stream already (a stored answer to replay)."""
        tee = cls()
        tee.extend(events, offsets)
        tee.open()
        tee.close()
        return tee

    def open(self, source: Entry | None = None) -> None:
        if not self.opened.done():
            self.opened.set_result(source)

    def append(self, event: Event) -> None:
        now = self._clock()
        if self._start is None:
            self._start = now
        self.events.append(event)
        self.offsets.append(now - self._start)
        self.wake()

    def extend(self, events: Sequence[Event], offsets: Sequence[float] | None = None) -> None:
        """Fill from a stored answer (offsets as recorded, else all zero)."""
        self.events.extend(events)
        self.offsets.extend(offsets if offsets is not None else [0.0] * len(events))
        self.wake()

    def close(self, error: BaseException | None = None) -> None:
        """The stream ended (``error``: it broke). Readers drain what is there, then end or
        raise ``error``. A stream that never opened fails ``opened`` with the same error."""
        if self._done:
            return
        self._done = True
        self._error = error
        if not self.opened.done():
            if error is None:
                self.opened.set_result(None)
            else:
                self.opened.set_exception(error)
                self.opened.exception()  # retrieved here; waiters still get it
        self.wake()

    def recording(self) -> Recording:
        return Recording(tuple(self.events), tuple(self.offsets))

    def cursor(self, *, paced: bool = False) -> Cursor:
        """A reader from the first event; ``paced`` keeps the recorded gaps between events."""
        return Cursor(self, paced)

    def wake(self) -> None:
        self._changed.set()
        self._changed.clear()


class Cursor:
    """One reader's position in a tee: an async iterator of events, closable from anywhere."""

    __slots__ = ("_closed", "_index", "_paced", "_pause", "_start", "_tee")

    def __init__(self, tee: Tee, paced: bool) -> None:
        self._tee = tee
        self._index = 0
        self._closed = False
        self._paced = paced
        self._start: float | None = None
        self._pause: asyncio.Future[None] | None = None

    def __aiter__(self) -> Cursor:
        return self

    async def __anext__(self) -> Event:
        tee = self._tee
        while not self._closed:
            i = self._index
            if i < len(tee.events):
                if self._paced:
                    await self._pace(tee.offsets[i])
                    if self._closed:
                        break
                self._index = i + 1
                return tee.events[i]
            if tee._done:
                if tee._error is not None:
                    # Every reader raises the same error: drop the frames the last one added,
                    # or the traceback grows with every reader.
                    raise tee._error.with_traceback(None)
                break
            await tee._changed.wait()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading: a read waiting in another task ends (no more events) right away."""
        if self._closed:
            return
        self._closed = True
        if self._pause is not None and not self._pause.done():
            self._pause.set_result(None)
        self._tee.wake()

    async def _pace(self, at: float) -> None:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time() - at
        delay = self._start + at - loop.time()
        if delay <= 0:
            return
        self._pause = loop.create_future()
        timer = loop.call_later(delay, _resolve, self._pause)
        try:
            await self._pause
        finally:
            timer.cancel()
            self._pause = None


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
