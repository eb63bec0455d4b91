"""Tee: one upstream stream, any number of readers, each from the first event.

Single-flight for streams (DESIGN.md): concurrent identical stream requests share ONE upstream
stream. The flight task (owned by the cache) appends each event as it arrives; every caller
reads through its own cursor, so a caller who joins late still gets every event from the
first, and a caller who stops reading (breaks out, closes, is cancelled) only drops its own
cursor: the flight, and everyone else, carries on. Nothing is buffered in front of a reader:
an event is readable the moment it is appended.

Waiting uses an :class:`asyncio.Event` that is set and cleared on every append: each waiter
parks on its own future inside ``Event.wait``, so cancelling one reader cancels nothing shared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

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
        self._clock = clock
        self._start: float | None = None
        self._changed = asyncio.Event()
        self._done = False
        self._error: BaseException | None = None
        #: The categories of followers who read this stream instead of calling upstream; the
        #: engine credits their savings once the stream's usage is known (it comes last).
        self.credits: list[str | None] = []

    @property
    def done(self) -> bool:
        return self._done

    def open(self, source: Entry | None = None) -> None:
        if not self.opened.done():
            self.opened.set_result(source)

    def append(self, event: Event) -> None:
        now = self._clock()
        if self._start is None:
            self._start = now
        self.events.append(event)
        self.offsets.append(now - self._start)
        self._wake()

    def extend(self, events: list[Event], offsets: list[float] | None = None) -> None:
        """Fill from a stored answer (offsets as recorded, else all zero)."""
        self.events.extend(events)
        self.offsets.extend(offsets if offsets is not None else [0.0] * len(events))
        self._wake()

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
        self._wake()

    def recording(self) -> Recording:
        return Recording(tuple(self.events), tuple(self.offsets))

    async def read(self) -> AsyncIterator[Event]:
        """Every event from the first, live until the stream ends."""
        i = 0
        while True:
            events = self.events
            while i < len(events):
                yield events[i]
                i += 1
            if self._done:
                if i < len(self.events):
                    continue
                if self._error is not None:
                    raise self._error
                return
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed.clear()
