"""A bounded, expiring LRU map that never stalls the event loop.

It serves twice: as :class:`MemoryBackend`'s store (bytes) and as the engine's in-process L1
(decoded objects). The L1 sits on the hit path, so :meth:`LRU.get` is kept to one dict lookup,
one deadline compare and one ``move_to_end``; nothing else happens on a read.

Why two bounds: an entry count alone lets a few huge answers exhaust memory, a byte budget alone
lets millions of tiny entries bloat dict overhead. Sizes are given by the caller (it already knows
the encoded length), so the map never measures objects.

Why no full sweep: expired entries are dropped lazily when read, and each write checks only a
few entries at the LRU end. A scan over everything would be O(n) on one loop iteration; the
byte and count bounds already cap what expired entries can cost, so lazy is enough.

Synchronous and lock-free on purpose: it is only touched from one event loop thread.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from .._exceptions import ConfigurationError

__all__ = ["LRU"]

V = TypeVar("V")

_NEVER = float("inf")
#: How many entries at the LRU end each write inspects for expiry.
_SWEEP_PER_WRITE = 4


class LRU(Generic[V]):
    """Map of ``str -> V`` bounded by ``max_entries`` and ``max_bytes``, with per-entry TTL.

    ``clock`` returns seconds; TTLs are turned into absolute deadlines on that clock, so tests can
    inject a fake one. ``max_entries=0`` or ``max_bytes=0`` gives a map that stores nothing.
    """

    __slots__ = ("_clock", "_data", "_max_bytes", "_max_entries", "_nbytes")

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 0:
            raise ConfigurationError(f"max_entries must be >= 0, got {max_entries!r}")
        if max_bytes < 0:
            raise ConfigurationError(f"max_bytes must be >= 0, got {max_bytes!r}")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        # key -> (value, size, deadline); a plain tuple is the cheapest record to build and read.
        self._data: OrderedDict[str, tuple[V, int, float]] = OrderedDict()
        self._nbytes = 0

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def nbytes(self) -> int:
        """Sum of the sizes of the entries held (expired-but-not-yet-dropped included)."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is held and not expired; does not touch recency."""
        entry = self._data.get(key)  # type: ignore[call-overload]
        return entry is not None and entry[2] > self._clock()

    def get(self, key: str) -> V | None:
        """The value for ``key`` (and mark it most recently used), or ``None``."""
        return self.get_at(key, self._clock())

    def get_at(self, key: str, now: float) -> V | None:
        """:meth:`get` for a caller that has just read the clock (the engine's hit path)."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[2] <= now:
            del self._data[key]
            self._nbytes -= entry[1]
            return None
        self._data.move_to_end(key)
        return entry[0]

    def set(self, key: str, value: V, size: int, ttl: float | None) -> None:
        """Store ``value`` (``size`` bytes) for ``ttl`` seconds (``None``: until evicted).

        A value larger than ``max_bytes``, or a ``ttl <= 0``, is not stored, and any previous
        value for ``key`` is dropped, so a reader never sees the older answer.
        """
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size!r}")
        data = self._data
        old = data.pop(key, None)
        if old is not None:
            self._nbytes -= old[1]
        if size > self._max_bytes or self._max_entries == 0 or (ttl is not None and ttl <= 0):
            return
        now = self._clock()
        deadline = _NEVER if ttl is None else now + ttl
        data[key] = (value, size, deadline)
        self._nbytes += size
        self._sweep(now)
        # Evict from the LRU end; the new entry is at the MRU end and fits on its own.
        while len(data) > self._max_entries or self._nbytes > self._max_bytes:
            _, evicted = data.popitem(last=False)
            self._nbytes -= evicted[1]

    def delete(self, key: str) -> bool:
        """Drop ``key``; ``True`` if it was held and not expired."""
        entry = self._data.pop(key, None)
        if entry is None:
            return False
        self._nbytes -= entry[1]
        return entry[2] > self._clock()

    def items(self) -> list[tuple[str, V]]:
        """A snapshot of the live ``(key, value)`` pairs, oldest first; recency is untouched.

        O(n): for rare administrative scans (e.g. tag invalidation in the engine's L1), never
        for the request path.
        """
        now = self._clock()
        return [(key, entry[0]) for key, entry in self._data.items() if entry[2] > now]

    def clear(self) -> None:
        self._data.clear()
        self._nbytes = 0

    def _sweep(self, now: float) -> None:
        """Drop up to a few expired entries from the LRU end (bounded work per write)."""
        data = self._data
        for _ in range(_SWEEP_PER_WRITE):
            if not data:
                return
            key = next(iter(data))
            entry = data[key]
            if entry[2] > now:
                return
            del data[key]
            self._nbytes -= entry[1]
