"""The in-process store: for tests, single-process apps, and as the L1 of a TieredBackend.

It is the :class:`LRU` behind the async :class:`Backend` protocol. Nothing here awaits anything
real, so every method completes without yielding; it exists so the engine has one interface.

The tag index is a plain dict with a deadline per (tag, key) pair, matching the other stores'
rule that a tag never outlives the entry it points to. It is pruned of expired pairs when it has
doubled since the last prune, which keeps the cost amortised O(1) per recorded pair.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .._exceptions import BackendError
from ._base import Item
from ._lru import LRU

__all__ = ["MemoryBackend"]

_NEVER = float("inf")
_MIB = 1024 * 1024


class MemoryBackend:
    """A :class:`~asynccache.backends.Backend` kept in this process's memory."""

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * _MIB,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lru: LRU[bytes] = LRU(max_entries, max_bytes, clock)
        self._clock = clock
        self._tags: dict[str, dict[str, float]] = {}
        self._tag_pairs = 0
        self._prune_at = max(1024, 2 * max_entries)
        self._closed = False

    @property
    def lru(self) -> LRU[bytes]:
        """The underlying map (read its ``nbytes`` / ``len`` for sizing dashboards)."""
        return self._lru

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._check_open()
        get = self._lru.get
        return [get(key) for key in keys]

    async def set_many(self, items: Sequence[Item]) -> None:
        self._check_open()
        lru = self._lru
        for key, value, ttl in items:
            lru.set(key, value, len(value), ttl)

    async def delete_many(self, keys: Sequence[str]) -> int:
        self._check_open()
        delete = self._lru.delete
        return sum(delete(key) for key in keys)

    async def add_tags(self, pairs: Sequence[tuple[str, str]], ttl: float | None) -> None:
        self._check_open()
        deadline = _NEVER if ttl is None else self._clock() + ttl
        for tag, key in pairs:
            keys = self._tags.setdefault(tag, {})
            previous = keys.get(key)
            if previous is None:
                self._tag_pairs += 1
                keys[key] = deadline
            elif deadline > previous:  # never shorten: another entry may still need the tag
                keys[key] = deadline
        if self._tag_pairs > self._prune_at:
            self._prune_tags()

    async def pop_tags(self, tags: Sequence[str]) -> list[str]:
        self._check_open()
        now = self._clock()
        found: dict[str, None] = {}  # ordered set
        for tag in tags:
            keys = self._tags.pop(tag, None)
            if keys is None:
                continue
            self._tag_pairs -= len(keys)
            for key, deadline in keys.items():
                if deadline > now:
                    found[key] = None
        return list(found)

    async def aclose(self) -> None:
        self._closed = True
        self._lru.clear()
        self._tags.clear()
        self._tag_pairs = 0

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("MemoryBackend is closed; create a new one")

    def _prune_tags(self) -> None:
        now = self._clock()
        for tag in list(self._tags):
            keys = self._tags[tag]
            live = {key: deadline for key, deadline in keys.items() if deadline > now}
            if live:
                self._tags[tag] = live
            else:
                del self._tags[tag]
        self._tag_pairs = sum(len(keys) for keys in self._tags.values())
        self._prune_at = max(self._prune_at, 2 * self._tag_pairs)
