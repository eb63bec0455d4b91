"""Streams through the engine: hits replayed, misses recorded as they stream, and concurrent
identical streams sharing ONE upstream stream.

The same rules as plain requests (DESIGN.md), with a stream's timing:
- Lookup is the same: L1, then L2. A hit replays the stored recording (the provider's own
  deltas, in order, optionally at their original pace) or, for an answer stored whole, the
  events the integration's :class:`StreamShape` splits it into.
- A miss starts a flight the cache owns. It opens the upstream stream (retried while opening
  only: once events have gone out, a retry would repeat them), appends every event to a
  :class:`Tee` the moment it arrives, and when the stream ends, assembles the whole answer and
  stores it with the recording. Only a stream that finished (a terminal event, no error) is
  stored; readers are never held up by the store write.
- Every caller, the first included, reads the Tee through its own cursor: late joiners get every
  event from the first; a caller who stops reading or is cancelled does not cut the stream for
  the others. A stream that breaks reaches every reader as the same error.
- One key, one flight, whatever the caller asked for: a stream request that finds a plain
  request's flight waits for its answer and gets it split; a plain request that finds a stream
  flight gets the assembled answer (``_cache``). A follower waits at most ``follower_timeout``
  for the stream to open, then goes upstream itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._answers import AnswerFacts, Landed
from ._exceptions import CacheClosedError, CacheMissError
from ._layers import Write
from ._models import CacheOptions, CacheRequest, CacheStatus, Entry, Pacing
from ._recording import Event, StreamShape
from ._retry import RetryPolicy
from ._singleflight import FollowerTimeout, landed
from ._tee import Cursor, Tee

if TYPE_CHECKING:
    from ._cache import Cache

logger = logging.getLogger("asynccache")

#: Opens the upstream stream and returns its events (an async generator: closed when done).
Opener = Callable[[], Awaitable[AsyncIterator[Event]]]


@dataclass(frozen=True, slots=True)
class StreamAnswer:
    """What a stream request gets: where it came from, and its events to read.

    ``events`` is None for a bypass: then ``value`` is the uncached stream the ``bypass``
    callable opened, untouched.
    """

    status: CacheStatus
    events: Cursor | None
    value: Any = None


async def get_or_stream(
    cache: Cache,
    request: CacheRequest,
    opener: Opener,
    shape: StreamShape,
    bypass: Callable[[], Awaitable[Any]],
    retry: RetryPolicy | None,
) -> StreamAnswer:
    if cache.closed:
        raise CacheClosedError("this Cache was closed with aclose(); create a new one")
    retry = retry if retry is not None else cache.retry
    st = cache._stats
    st.requests += 1
    opts = request.options or cache.current_options()
    if opts.mode == "skip":
        return await _bypass(cache, bypass, "mode=skip", retry)
    decision, digest = cache._admit(request)
    if digest is None:
        if opts.mode == "only":
            raise CacheMissError(f"mode='only' but the request is not cacheable: {decision.reason}")
        return await _bypass(cache, bypass, decision.reason, retry)
    key = await cache._keyed(request.tenant, digest)
    read_after = -1  # as in Cache._miss: re-read the store only if a write raced this lookup
    if opts.mode != "refresh":
        read_after = cache._layers.written
        hit = await cache._lookup(key, digest, request.tenant, opts)
        if hit is not None and hit.entry is not None:
            return StreamAnswer(hit.status, replay(hit.entry, shape, opts.stream_pacing))
        if opts.mode == "only":
            raise CacheMissError(f"mode='only' and no cached answer for key {key}")
    flight = cache._flights.get(key)
    fly = _Fly(cache, key, digest, request, opts, opener, shape, retry)
    if flight is None or opts.mode == "refresh":
        raced = cache._layers.raced(read_after)  # never for a refresh: it did not read
        return await fly.lead(register=flight is None, recheck=raced)
    tee = cache._tees.get(key)
    waited: asyncio.Future[Any] = flight if tee is None else tee.opened
    try:
        outcome = await cache._flights.wait(waited, follower=True)
    except FollowerTimeout:
        if not landed(waited):
            logger.warning("asynccache follower timeout on %s; streaming from upstream", key)
            return await fly.lead(register=False, recheck=False)
        outcome = waited.result()  # it landed as we gave up: as if we had waited
    if tee is None:  # a plain request's flight: share its whole answer, split
        answer = _coalesced(cache, key, opts, shape, outcome)
        return answer if answer is not None else await fly.lead(register=False, recheck=False)
    st.coalesced += 1
    if tee.facts is not None:  # the stream has finished already
        st.saved(tee.facts.model, tee.facts.usage, opts.category)
    else:  # credited when it finishes (its usage comes last)
        tee.credits.append(opts.category)
    return StreamAnswer(CacheStatus("coalesced", None, key), tee.cursor())


def _coalesced(
    cache: Cache, key: str, opts: CacheOptions, shape: StreamShape, done: Landed
) -> StreamAnswer | None:
    """A stream for a follower of a plain request's flight: its whole answer, split; None
    when that flight did not finish (the follower then opens its own stream)."""
    if not done.complete:
        return None
    cache._stats.coalesced += 1
    cache._stats.saved(done.facts.model, done.facts.usage, opts.category)
    status = CacheStatus("coalesced", None, key)
    return StreamAnswer(status, Tee.complete(shape.split(done.value)).cursor())


async def _bypass(
    cache: Cache, bypass: Callable[[], Awaitable[Any]], reason: str | None, retry: RetryPolicy
) -> StreamAnswer:
    cache._stats.bypassed += 1
    logger.debug("asynccache bypass: %s", reason)
    value = await cache._upstream(bypass, retry)
    return StreamAnswer(CacheStatus("bypass", reason=reason), None, value)


def replay(entry: Entry, shape: StreamShape, pacing: Pacing) -> Cursor:
    """A stored answer as a stream, to read from the first event."""
    return Tee.complete(*_stored_events(entry, shape)).cursor(paced=pacing == "original")


def _stored_events(
    entry: Entry, shape: StreamShape
) -> tuple[Sequence[Event], Sequence[float] | None]:
    """Its recording (events and their times), or the whole answer split into events."""
    if entry.stream is not None:
        return entry.stream.events, entry.stream.offsets
    return shape.split(entry.value), None


@dataclass(slots=True)
class _Fly:
    """One stream request's miss: start the flight, then read it like any follower."""

    cache: Cache
    key: str
    digest: str
    request: CacheRequest
    opts: CacheOptions
    opener: Opener
    shape: StreamShape
    retry: RetryPolicy

    async def lead(self, *, register: bool, recheck: bool) -> StreamAnswer:
        cache, key = self.cache, self.key
        tee = Tee()
        coro = self.flight(tee, recheck=recheck)
        if register:
            fut = cache._flights.start(key, coro)
            cache._tees[key] = tee
            fut.add_done_callback(lambda _: self._unregister(tee))
        else:
            cache._flights.spawn(coro)
        source = await cache._flights.wait(tee.opened, follower=False)
        st = cache._stats
        if source is not None:  # the re-read found it: a write raced the lookup
            st.hits_l2 += 1
            st.saved(source.model, source.usage, self.opts.category)
            age = max(0.0, cache._clock() - source.created_at)
            return StreamAnswer(CacheStatus("hit", "l2", key, age=age), tee.cursor())
        st.missed(self.opts.category)
        return StreamAnswer(CacheStatus("miss", None, key), tee.cursor())

    async def flight(self, tee: Tee, *, recheck: bool) -> Landed:
        cache = self.cache
        try:
            if recheck and cache.backend is not None:
                entry = await cache._layers.read(self.key, self.digest, self.request.tenant)
                if entry is not None:
                    return self._from_store(tee, entry)
            source = await cache._upstream(self.opener, self.retry)
            tee.open(None)
            async with contextlib.aclosing(source):
                async for event in source:
                    tee.append(event)
        except asyncio.CancelledError:
            self._release(tee)
            tee.close(CacheClosedError("the cache was closed (aclose) while this stream ran"))
            raise
        except BaseException as exc:
            self._release(tee)
            tee.close(exc)
            raise
        try:
            landed, write = self._finish(tee)
        except Exception as exc:  # a bug here must not fail (or hang) a stream that finished
            logger.warning("asynccache could not store the stream for %s: %r", self.key, exc)
            self._release(tee)
            landed, write = Landed(None, None, AnswerFacts(), None, complete=False), None
        try:
            if write is not None:
                await cache._layers.write([(self.key, write)])
        finally:
            # Readers have every event already; their stream ends once the answer is stored,
            # as a plain request returns once it is: whoever asks next finds it (a hit), and
            # a slow store costs at most its timeout, never a failure.
            tee.close()
        return landed

    def _from_store(self, tee: Tee, entry: Entry) -> Landed:
        tee.extend(*_stored_events(entry, self.shape))
        tee.open(entry)
        tee.close()
        return Landed(entry.value, entry, AnswerFacts(model=entry.model, usage=entry.usage), "l2")

    def _finish(self, tee: Tee) -> tuple[Landed, Write | None]:
        """The stream ended: assemble the whole answer and decide whether to store it, before
        readers see the end, so that whoever comes next either replays a stored answer or
        starts afresh — never joins a stream that is not going to be stored."""
        cache = self.cache
        try:
            value = self.shape.assemble(tee.events)
        except Exception as exc:  # a shape bug must not fail a stream the caller already has
            logger.warning("asynccache could not assemble the stream for %s: %r", self.key, exc)
            value = None
        if value is None:
            cache._stats.store_refused += 1
            logger.debug("asynccache not storing %s: the stream did not finish", self.key)
            self._release(tee)
            return Landed(None, None, AnswerFacts(), None, complete=False), None
        write, facts = cache._make_entry(
            self.digest, self.request, self.opts, value, tee.recording()
        )
        tee.facts = facts
        for category in tee.credits:  # followers made no upstream call: what they saved
            cache._stats.saved(facts.model, facts.usage, category)
        tee.credits.clear()
        if write is None:
            self._release(tee)
        return Landed(value, write.entry if write else None, facts, None), write

    def _unregister(self, tee: Tee) -> None:
        """The flight is over: forget its tee, unless a newer flight registered its own."""
        if self.cache._tees.get(self.key) is tee:
            del self.cache._tees[self.key]

    def _release(self, tee: Tee) -> None:
        """Let the next request for this key start its own flight right away."""
        task = asyncio.current_task()
        if task is not None:
            self.cache._flights.forget(self.key, task)
        self._unregister(tee)
