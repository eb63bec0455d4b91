"""Where entries are stored: one narrow protocol (:class:`Backend`) and the stores behind it.

The engine depends on the protocol only; pick a store by deployment: :class:`MemoryBackend` for
one process, :class:`SQLiteBackend` for one machine, :class:`RedisBackend` for many machines, and
:class:`TieredBackend` to put a memory copy in front of a shared store. :class:`LRU` is exported
because the engine's in-process L1 uses it directly.
"""

from ._base import Backend, Item
from ._lru import LRU
from .memory import MemoryBackend
from .redis import RedisBackend
from .sqlite import SQLiteBackend, SQLiteStatistics
from .tiered import TieredBackend

__all__ = [  # noqa: RUF022 -- plain sorted(), which tests/test_public_api.py checks
    "Backend",
    "Item",
    "LRU",
    "MemoryBackend",
    "RedisBackend",
    "SQLiteBackend",
    "SQLiteStatistics",
    "TieredBackend",
]
