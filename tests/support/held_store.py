"""A store whose replies can be held back: the windows where a read and a write race.

A Redis MGET answered just before a SET lands, but whose reply is still on its way while the
SET's flight ends (or while the SET's own reply is on its way), is a real window on a busy
network, and loopback Redis closes it too fast to hit on purpose. This is a Backend of its own
(the public protocol, over a real MemoryBackend): each read is answered by the store at once,
then handed back only when ``hold`` allows; each write lands in the store at once, then
returns only when ``hold_writes`` allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from asynccache.backends import MemoryBackend
from asynccache.backends._base import Item


class HeldStore:
    def __init__(self) -> None:
        self.store = MemoryBackend()
        self.reads = 0  # get_many calls, generation reads included
        self.held = 0  # reads answered and now waiting on ``hold``
        self.hold: asyncio.Event | None = None
        self.writes_held = 0  # writes in the store, not yet returned
        self.hold_writes: asyncio.Event | None = None

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.reads += 1
        values = await self.store.get_many(keys)  # what the store holds now...
        if self.hold is not None and not self.hold.is_set():
            self.held += 1
            await self.hold.wait()  # ...reaches the reader later
            self.held -= 1
        return values

    async def set_many(self, items: Sequence[Item]) -> None:
        await self.store.set_many(items)
        if self.hold_writes is not None and not self.hold_writes.is_set():
            self.writes_held += 1
            await self.hold_writes.wait()
            self.writes_held -= 1

    async def delete_many(self, keys: Sequence[str]) -> int:
        return await self.store.delete_many(keys)

    async def add_tags(self, pairs: Sequence[tuple[str, str]], ttl: float | None) -> None:
        await self.store.add_tags(pairs, ttl)

    async def pop_tags(self, tags: Sequence[str]) -> list[str]:
        return await self.store.pop_tags(tags)

    async def aclose(self) -> None:
        await self.store.aclose()
