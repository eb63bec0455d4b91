"""The layered store under the engine: L1 (in-process LRU of decoded entries) over L2 (a backend).

Kept apart from the request flow in ``_cache`` because it has its own rules:
- Reads from L2 are decoded and *verified* (full digest and tenant recorded in the entry); a
  corrupt or mismatched entry is a miss, deleted and counted, never served.
- Writes go to L2 first, then L1, so this process never serves an answer other processes
  cannot see yet.
- Every L2 failure is counted, trips the circuit breaker and is logged at a bounded rate, and is
  swallowed: the store is an optimisation (DESIGN.md, "Failure").
- The key layout — ``{prefix}:{namespace}:v{KEY_SCHEMA}:g{generation}:{tenant}:{digest}`` —
  lives here because the namespace generation lives here: ``clear()`` bumps it (O(1)), and
  other processes notice within ``generation_refresh`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import _codec, _keys
from ._breaker import CircuitBreaker
from ._exceptions import BackendError
from ._footprint import footprint, plausible
from ._models import Entry
from ._stats import StatsRecorder
from .backends._base import Backend, Item
from .backends._lru import LRU

logger = logging.getLogger("asynccache")

_LOG_EVERY = 10.0  # seconds between two warnings about a failing store
_MAX_HEADS = 10_000  # cached key prefixes (one per tenant) before that cache is reset


@dataclass(frozen=True, slots=True)
class Write:
    """An entry, its encoded bytes (encoded once, for the size check and for L2) and the memory
    its objects hold (``_footprint.held_by``, measured once, for L1 and stored for readers)."""

    entry: Entry
    raw: bytes
    held: int | None = None


class Layers:
    def __init__(
        self,
        backend: Backend | None,
        l1: LRU[Entry] | None,
        *,
        base: str,
        l1_ttl: float | None,
        breaker: CircuitBreaker,
        stats: StatsRecorder,
        clock: Callable[[], float],
        generation_refresh: float,
    ) -> None:
        self.backend = backend
        self.l1 = l1
        self.base = base
        self._l1_ttl = l1_ttl
        self._breaker = breaker
        self._stats = stats
        self._clock = clock
        self._gen_key = f"{base}:gen"
        self._gen = 0
        self._gen_refresh = generation_refresh
        self.generation_due = 0.0 if backend is not None else float("inf")
        self._heads: dict[str | None, str] = {}
        #: Writes of this Cache finished, and under way: what a store read may have raced
        #: (:meth:`raced`).
        self.written = 0
        self.writing = 0
        self._last_warning = -_LOG_EVERY
        self._suppressed = 0

    # -- key layout ----------------------------------------------------------------------------

    def key(self, tenant: str | None, digest: str) -> str:
        head = self._heads.get(tenant)
        if head is None:
            if len(self._heads) >= _MAX_HEADS:  # one per tenant: bounded, whatever the tenants
                self._heads.clear()
            head = f"{self.base}:v{_keys.KEY_SCHEMA}:g{self._gen:x}:{_keys.tenant_hash(tenant)}:"
            self._heads[tenant] = head
        return head + digest

    def tag_name(self, tag: str) -> str:
        """Tags are per namespace; backends keep their tag index apart from entry keys."""
        return f"{self.base}:{tag}"

    # -- reads ---------------------------------------------------------------------------------

    async def read(self, key: str, digest: str, tenant: str | None) -> Entry | None:
        """One key: :meth:`read_many` without its lists (this is every L2 hit's path)."""
        backend = self.backend
        if backend is None:
            return None
        if not self._breaker.allow():
            self._stats.breaker_open_skips += 1
            return None
        try:
            raw = (await backend.get_many((key,)))[0]
        except Exception as exc:
            self._failed("get", exc)
            return None
        self._breaker.success()
        if raw is None:
            return None
        try:
            return self._accept(key, digest, tenant, raw, self._clock())
        except _codec.CodecError:
            await self._drop_bad([key])
            return None

    async def read_many(
        self, keys: list[str], digests: list[str], tenants: list[str | None]
    ) -> list[Entry | None]:
        """Read L2, decode and verify; anything wrong is a miss. Backfills L1 with the hits."""
        out: list[Entry | None] = [None] * len(keys)
        backend = self.backend
        if backend is None:
            return out
        if not self._breaker.allow():
            self._stats.breaker_open_skips += 1
            return out
        try:
            raws = await backend.get_many(keys)
        except Exception as exc:
            self._failed("get", exc)
            return out
        self._breaker.success()
        bad: list[str] = []
        now = self._clock()
        for i, raw in enumerate(raws):
            if raw is not None:
                try:
                    out[i] = self._accept(keys[i], digests[i], tenants[i], raw, now)
                except _codec.CodecError:
                    bad.append(keys[i])
        if bad:
            await self._drop_bad(bad)
        return out

    def _accept(
        self, key: str, digest: str, tenant: str | None, raw: bytes, now: float
    ) -> Entry | None:
        """The verified, live entry in ``raw`` (now in L1 too), or None if it expired by our
        clock before the store dropped it. CodecError if it is corrupt or was written for
        another request or tenant."""
        entry, held = _codec.decode(raw)
        if entry.digest != digest or entry.tenant != tenant:
            raise _codec.CodecError("entry written for another request or tenant")
        if entry.ttl is not None and now - entry.created_at >= entry.ttl:
            return None
        if self.l1 is not None:
            self.l1_put(key, entry, plausible(held, len(raw)))
        return entry

    async def _drop_bad(self, bad: list[str]) -> None:
        self._stats.integrity_errors += len(bad)
        logger.warning("asynccache dropped %d corrupt or mismatched entries: %s", len(bad), bad[:3])
        try:
            await self.backend.delete_many(bad)  # type: ignore[union-attr]
        except Exception as exc:
            self._failed("delete", exc)

    # -- writes --------------------------------------------------------------------------------

    def raced(self, read_after: int) -> bool:
        """Whether a store read made when :attr:`written` was ``read_after`` (-1: none was
        made) may have been answered before a write of this Cache landed: one that finished
        since, or one still under way (its data can be in the store before it returns)."""
        return read_after >= 0 and (read_after != self.written or self.writing > 0)

    async def write(self, writes: list[tuple[str, Write]]) -> None:
        """L2 first (other processes can see it no later than this one serves it), then L1."""
        self.writing += 1
        try:
            await self._write(writes)
        finally:  # cancelled or not: the store may hold it now
            self.writing -= 1
            self.written += 1

    async def _write(self, writes: list[tuple[str, Write]]) -> None:
        stored = False
        if self.backend is not None and self._breaker.allow():
            items: list[Item] = [(key, w.raw, w.entry.ttl) for key, w in writes]
            tags = [(self.tag_name(t), key) for key, w in writes for t in w.entry.tags]
            try:
                await self.backend.set_many(items)
                if tags:
                    ttls = [w.entry.ttl for _, w in writes]
                    await self.backend.add_tags(
                        tags, None if None in ttls else max(t or 0 for t in ttls)
                    )
            except Exception as exc:
                self._failed("set", exc)
            else:
                self._breaker.success()
                stored = True
        # L1 even when L2 failed: serving this process from memory is still right (fail open).
        for key, w in writes:
            self.l1_put(key, w.entry, w.held)
        if stored or self.l1 is not None:
            self._stats.stores += len(writes)

    def l1_put(self, key: str, entry: Entry, held: int | None = None) -> None:
        """Keep L1 no longer than the entry has left to live (and at most ``l1_ttl``), charged
        for the memory it really holds (``_footprint``), so ``l1_max_bytes`` bounds memory."""
        if self.l1 is None:
            return
        ttl = entry.ttl
        if ttl is not None:
            ttl -= self._clock() - entry.created_at
            if ttl <= 0:
                return
        if self._l1_ttl is not None:
            ttl = self._l1_ttl if ttl is None else min(ttl, self._l1_ttl)
        self.l1.set(key, entry, footprint(key, entry, held), ttl)

    async def delete(self, keys: list[str]) -> int:
        n = sum(self.l1.delete(k) for k in keys) if self.l1 is not None else 0
        if self.backend is not None and keys:
            n = await self.backend.delete_many(keys)
        return n

    async def keys_for_tags(self, tags: tuple[str, ...]) -> list[str]:
        """Every key stored under these tags, in L2's index and in L1 (dropping the L2 index)."""
        keys: set[str] = set()
        if self.backend is not None:
            keys.update(await self.backend.pop_tags([self.tag_name(t) for t in tags]))
        if self.l1 is not None:
            wanted = set(tags)
            keys.update(k for k, e in self.l1.items() if wanted.intersection(e.tags))
        return list(keys)

    # -- the namespace generation --------------------------------------------------------------

    def _set_generation(self, gen: int) -> None:
        self._gen = gen
        self._heads.clear()
        if self.l1 is not None:
            self.l1.clear()

    async def refresh_generation(self) -> None:
        """Pick up a clear() made by another process: at most one store read per interval.

        Generations only move forward. If the store lost the generation key (evicted, flushed,
        failed over) we write ours back instead of adopting "none": going back to an older
        generation would serve answers that a clear() had removed.
        """
        self.generation_due = self._clock() + self._gen_refresh
        if self.backend is None or not self._breaker.allow():
            return
        try:
            stored = _parse_generation((await self.backend.get_many([self._gen_key]))[0])
            if stored > self._gen:
                self._set_generation(stored)
            elif stored < self._gen:
                await self.backend.set_many([(self._gen_key, b"%d" % self._gen, None)])
        except Exception as exc:
            self._failed("generation", exc)
            return
        self._breaker.success()

    async def bump_generation(self) -> None:
        """Move every key of the namespace at once. L1 is cleared even if L2 cannot record it.

        The new generation is the wall clock in nanoseconds (or one more than the current one,
        if that is larger): unique across processes and restarts, so a generation key that was
        lost and re-created can never bring an old generation back into use.
        """
        gen = max(self._gen + 1, time.time_ns())
        if self.backend is not None:
            try:
                stored = _parse_generation((await self.backend.get_many([self._gen_key]))[0])
                gen = max(gen, stored + 1)
                await self.backend.set_many([(self._gen_key, b"%d" % gen, None)])
            except BackendError as exc:
                self._set_generation(gen)
                raise BackendError(f"clear() could not record the new generation: {exc}") from exc
        self._set_generation(gen)

    # -- failure accounting --------------------------------------------------------------------

    def _failed(self, op: str, exc: BaseException) -> None:
        """Count, trip the breaker, and warn at most every few seconds (never per request)."""
        self._stats.backend_errors += 1
        self._breaker.failure()
        now = time.monotonic()
        if now - self._last_warning >= _LOG_EVERY:
            logger.warning(
                "asynccache store %s failed (%s: %s); serving from upstream (%d more since last report)",
                op,
                type(exc).__name__,
                exc,
                self._suppressed,
            )
            self._last_warning = now
            self._suppressed = 0
        else:
            self._suppressed += 1


def _parse_generation(raw: bytes | None) -> int:
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        return 0  # unreadable: treat as lost; the caller writes its own back
