"""Batches through the engine: many requests, one upstream call for the misses (embeddings).

Kept apart from ``_cache`` (the single-request flow) so each reads in one sitting; these are
the engine's own functions over a Cache, as ``Cache.get_or_fetch_many`` delegates here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import _singleflight
from ._answers import Landed
from ._exceptions import CacheClosedError, CacheMissError
from ._layers import Write
from ._models import CachedResponse, CacheOptions, CacheRequest, CacheStatus
from ._singleflight import FollowerTimeout

if TYPE_CHECKING:
    from ._cache import Cache

BatchSender = Callable[[list[int]], Awaitable[list[Any]]]


async def get_or_fetch_many(
    cache: Cache, requests: Sequence[CacheRequest], fetch: BatchSender
) -> list[CachedResponse]:
    """Answer many requests at once; ``fetch(indices)`` returns values for the misses, in
    one upstream call. Used for embeddings: 100 texts with 90 cached make one call for 10."""
    if cache._closed:
        raise CacheClosedError("this Cache was closed with aclose(); create a new one")
    if not requests:
        return []
    st = cache._stats
    st.requests += len(requests)
    opts = requests[0].options or cache._scoped.get()
    reason: str | None = "mode=skip"
    if opts.mode != "skip":  # every request judged before any is keyed: a key may raise
        judged = map(cache.policy.check_request, requests)
        reason = next((d.reason for d in judged if not d.ok), None)
    if reason is not None:
        if opts.mode == "only":
            raise CacheMissError(f"mode='only' but the request is not cacheable: {reason}")
        st.bypassed += len(requests)
        values = await cache._upstream(lambda: fetch(list(range(len(requests)))))
        return [CachedResponse(v, CacheStatus("bypass", reason=reason)) for v in values]
    if cache._clock() >= cache._layers.generation_due:
        await cache._layers.refresh_generation()
    keyed = [cache._key(r) for r in requests]
    out: list[CachedResponse | None] = [None] * len(requests)
    if opts.mode != "refresh":
        await _read_many(cache, requests, keyed, out, opts)
        if opts.mode == "only" and any(o is None for o in out):
            raise CacheMissError("mode='only' and some inputs of the batch are not cached")
    # Misses: join running flights, and start one batch flight for the rest.
    waits: dict[int, tuple[asyncio.Future[Landed], bool]] = {}
    fresh: dict[str, list[int]] = {}
    for i, o in enumerate(out):
        if o is not None:
            continue
        key = keyed[i][0]
        flight = cache._flights.get(key) if opts.mode != "refresh" else None
        if flight is not None:
            waits[i] = (flight, True)
        else:
            fresh.setdefault(key, []).append(i)
    fresh_index = {i for idx in fresh.values() for i in idx}
    if fresh:
        keys = list(fresh)
        firsts = [fresh[k][0] for k in keys]
        futures = cache._flights.start_many(
            keys, _fly_many(cache, keys, firsts, requests, keyed, opts, fetch)
        )
        for key, fut in zip(keys, futures, strict=True):
            for n, i in enumerate(fresh[key]):
                waits[i] = (fut, n > 0)  # duplicates inside the batch are coalesced
    for i, (fut, follower) in waits.items():
        key = keyed[i][0]
        try:
            # Duplicates inside this batch wait on our own flight; other flights are bounded.
            landed = await cache._flights.wait(fut, follower=follower and i not in fresh_index)
        except FollowerTimeout:
            if _singleflight.landed(fut):  # it landed as we gave up: as if we had waited
                landed = fut.result()
            else:
                values = await cache._upstream(lambda i=i: fetch([i]))  # type: ignore[misc]
                st.missed(opts.category)
                out[i] = CachedResponse(values[0], CacheStatus("miss", None, key))
                continue
        if follower:
            st.coalesced += 1
            st.saved(landed.facts.model, landed.facts.usage, opts.category)
            out[i] = CachedResponse(landed.value, CacheStatus("coalesced", None, key), landed.entry)
        else:
            st.missed(opts.category)
            out[i] = CachedResponse(landed.value, CacheStatus("miss", None, key), landed.entry)
    return [o for o in out if o is not None]


async def _read_many(
    cache: Cache,
    requests: Sequence[CacheRequest],
    keyed: list[tuple[str, str]],
    out: list[CachedResponse | None],
    opts: CacheOptions,
) -> None:
    st = cache._stats
    now = cache._clock()
    todo: list[int] = []
    for i, (key, _) in enumerate(keyed):
        entry = cache._l1.get(key) if cache._l1 is not None else None
        if entry is None:
            todo.append(i)
            continue
        st.hits_l1 += 1
        st.saved(entry.model, entry.usage, opts.category)
        out[i] = CachedResponse(
            entry.value, CacheStatus("hit", "l1", key, age=now - entry.created_at), entry
        )
    if not todo or cache.backend is None:
        return
    found = await cache._layers.read_many(
        [keyed[i][0] for i in todo],
        [keyed[i][1] for i in todo],
        [requests[i].tenant for i in todo],
    )
    for i, entry in zip(todo, found, strict=True):
        if entry is not None:
            st.hits_l2 += 1
            st.saved(entry.model, entry.usage, opts.category)
            out[i] = CachedResponse(
                entry.value,
                CacheStatus("hit", "l2", keyed[i][0], age=now - entry.created_at),
                entry,
            )


async def _fly_many(
    cache: Cache,
    keys: list[str],
    firsts: list[int],
    requests: Sequence[CacheRequest],
    keyed: list[tuple[str, str]],
    opts: CacheOptions,
    fetch: BatchSender,
) -> list[Landed]:
    values = await cache._upstream(lambda: fetch(firsts))
    if len(values) != len(firsts):
        raise ValueError(f"batch sender returned {len(values)} values for {len(firsts)} inputs")
    landed: list[Landed] = []
    writes: list[tuple[str, Write]] = []
    for key, i, value in zip(keys, firsts, values, strict=True):
        write, facts = cache._make_entry(keyed[i][1], requests[i], opts, value)
        if write is not None:
            writes.append((key, write))
        landed.append(Landed(value, write.entry if write else None, facts, None))
    if writes:
        await cache._layers.write(writes)
    return landed
