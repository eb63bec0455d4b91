"""Two backends as one: a fast near store (L1) in front of a shared far store (L2).

Why: a process that asks the same keys again should not pay a network or disk round trip, while
other processes still share what it learnt. L2 is the source of truth; L1 is a bounded copy.

Rules, kept simple on purpose:

* Reads ask L1, then L2 for L1's misses only, and copy L2's hits into L1. Bytes carry no expiry,
  so a copy lives ``l1_ttl`` seconds; a write through this backend caps the L1 copy at the
  smaller of its TTL and ``l1_ttl``. That bound is how stale an L1 may be after another process
  changes or deletes the key in L2.
* If L1 answers every key, L2 is not asked, so an L2 outage is invisible for those reads. If L2
  must be asked and fails, the read raises (``BackendError``) rather than returning partial data.
* Writes go to L2 first, then L1, so L1 never holds what L2 refused. Deletes go to L1 first
  (stop serving it here), then L2; the count returned is L2's, the authoritative one.
* Tags live in L2 only; ``pop_tags`` also drops the popped keys from L1.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._exceptions import ConfigurationError
from ._base import Backend, Item

__all__ = ["TieredBackend"]


class TieredBackend:
    """A :class:`~asynccache.backends.Backend` reading ``l1`` before ``l2``."""

    def __init__(self, l1: Backend, l2: Backend, *, l1_ttl: float = 60.0) -> None:
        if l1_ttl <= 0:
            raise ConfigurationError(f"l1_ttl must be > 0, got {l1_ttl!r}")
        self.l1 = l1
        self.l2 = l2
        self._l1_ttl = l1_ttl

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = list(await self.l1.get_many(keys))
        missing = [i for i, value in enumerate(values) if value is None]
        if not missing:
            return values
        found = await self.l2.get_many([keys[i] for i in missing])
        backfill: list[Item] = []
        for i, value in zip(missing, found, strict=True):
            if value is not None:
                values[i] = value
                backfill.append((keys[i], value, self._l1_ttl))
        if backfill:
            await self.l1.set_many(backfill)
        return values

    async def set_many(self, items: Sequence[Item]) -> None:
        await self.l2.set_many(items)
        cap = self._l1_ttl
        await self.l1.set_many(
            [(key, value, cap if ttl is None else min(ttl, cap)) for key, value, ttl in items]
        )

    async def delete_many(self, keys: Sequence[str]) -> int:
        await self.l1.delete_many(keys)
        return await self.l2.delete_many(keys)

    async def add_tags(self, pairs: Sequence[tuple[str, str]], ttl: float | None) -> None:
        await self.l2.add_tags(pairs, ttl)

    async def pop_tags(self, tags: Sequence[str]) -> list[str]:
        keys = await self.l2.pop_tags(tags)
        if keys:
            await self.l1.delete_many(keys)
        return keys

    async def aclose(self) -> None:
        """Close both, L1 then L2; L2 is closed even if closing L1 failed."""
        try:
            await self.l1.aclose()
        finally:
            await self.l2.aclose()
