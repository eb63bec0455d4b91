"""The one narrow protocol every store implements.

Batch-first and bytes-in/bytes-out: the engine encodes entries itself (``_codec``), so a backend
never sees Python objects and never needs to (de)serialise. Batch methods let Redis answer many
lookups in one round trip and SQLite commit many writes in one transaction; a single lookup is
just a batch of one.

Tags are a small secondary index (tag -> keys) kept next to the entries, so invalidating a tag is
one call; keys are recorded with the entry's TTL so the index does not outlive what it points to.

Every method raises :class:`asynccache.BackendError` (or its timeout subclass) on a store failure,
never a driver exception, so the engine has one thing to catch when it fails open.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

#: (key, value, ttl_seconds or None for no expiry)
Item = tuple[str, bytes, "float | None"]


@runtime_checkable
class Backend(Protocol):
    """A key -> bytes store with per-item TTL and a tag index."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys``, in order; ``None`` where missing or expired."""
        ...

    async def set_many(self, items: Sequence[Item]) -> None:
        """Store every item, replacing existing values; ttl ``None`` means no expiry."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Delete ``keys``; returns how many existed."""
        ...

    async def add_tags(self, pairs: Sequence[tuple[str, str]], ttl: float | None) -> None:
        """Record ``(tag, key)`` pairs in the tag index."""
        ...

    async def pop_tags(self, tags: Sequence[str]) -> list[str]:
        """Return every key recorded under ``tags`` and drop those tags from the index."""
        ...

    async def aclose(self) -> None:
        """Release connections/threads. Idempotent."""
        ...
