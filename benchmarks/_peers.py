"""The peers: generic async caches a user could put in front of an LLM SDK instead.

Why adapters: every workload drives every peer through the same three calls (``get``, ``set``
with a TTL, ``close``), configured as each library's docs show (default serializers, default
timeouts), so a workload is written once and no peer gets a special path. Keys are built by the
caller with :func:`_fixtures.naive_key`, as a generic cache needs some key for a chat request.

A peer that is not installed is reported as such (with the install command), never skipped
silently. Peers that were looked at and not driven are listed in :data:`NOT_DRIVEN` with why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from _fixtures import LLM_STRING


@dataclass(frozen=True)
class Peer:
    """An open peer cache: ``get`` (None on a miss), ``set`` (ttl in seconds or None)."""

    name: str
    get: Callable[[str], Awaitable[Any]]
    set: Callable[[str, Any, float | None], Awaitable[Any]]
    close: Callable[[], Awaitable[Any]]
    has_ttl: bool = True


@dataclass(frozen=True)
class PeerSpec:
    """A peer to open in the running loop, or why it cannot be (``open`` is None)."""

    name: str
    open: Callable[[], Awaitable[Peer]] | None
    missing: str = ""


async def _nothing() -> None:
    return None


def aiocache_memory() -> PeerSpec:
    name = "aiocache SimpleMemoryCache"
    try:
        from aiocache import SimpleMemoryCache  # type: ignore[import-untyped]
    except ImportError:
        return PeerSpec(name, None, "not installed (pip install aiocache)")

    async def open_() -> Peer:
        cache = SimpleMemoryCache()

        async def set_(key: str, value: Any, ttl: float | None) -> Any:
            return await cache.set(key, value, ttl=ttl)

        return Peer(name, cache.get, set_, cache.close)

    return PeerSpec(name, open_)


def aiocache_redis(port: int, namespace: str = "aiocache") -> PeerSpec:
    name = "aiocache RedisCache"
    try:
        from aiocache import RedisCache
    except ImportError:
        return PeerSpec(name, None, "not installed (pip install 'aiocache[redis]')")

    async def open_() -> Peer:
        cache = RedisCache(endpoint="127.0.0.1", port=port, namespace=namespace)

        async def set_(key: str, value: Any, ttl: float | None) -> Any:
            return await cache.set(key, value, ttl=ttl)

        return Peer(name, cache.get, set_, cache.close)

    return PeerSpec(name, open_)


def _cashews(name: str, url: str) -> PeerSpec:
    try:
        from cashews import Cache as CashewsCache
    except ImportError:
        return PeerSpec(name, None, "not installed (pip install cashews)")

    async def open_() -> Peer:
        cache = CashewsCache()
        cache.setup(url)

        async def set_(key: str, value: Any, ttl: float | None) -> Any:
            return await cache.set(key, value, expire=ttl)

        return Peer(name, cache.get, set_, cache.close)

    return PeerSpec(name, open_)


def cashews_memory(size: int) -> PeerSpec:
    """cashews ``mem://`` holds 1,000 entries by default; ``size`` lifts that to the same
    capacity asynccache is given in the workload, so neither evicts where the other would not."""
    return _cashews("cashews mem://", f"mem://?size={size}")


def cashews_redis(url: str) -> PeerSpec:
    return _cashews("cashews redis://", url)


def langchain_memory() -> PeerSpec:
    """LangChain's ``InMemoryCache`` keyed by (prompt, llm_string): the prompt is the same
    naive key the other peers use, the llm_string a constant (it has no TTL)."""
    name = "LangChain InMemoryCache"
    try:
        from langchain_core.caches import InMemoryCache
    except ImportError:
        return PeerSpec(name, None, "not installed (pip install langchain-core)")

    async def open_() -> Peer:
        cache = InMemoryCache()

        async def get(key: str) -> Any:
            return await cache.alookup(key, LLM_STRING)

        async def set_(key: str, value: Any, ttl: float | None) -> Any:
            return await cache.aupdate(key, LLM_STRING, value)

        return Peer(name, get, set_, _nothing, has_ttl=False)

    return PeerSpec(name, open_)


def memory_peers(size: int, *, langchain: bool = True) -> list[PeerSpec]:
    peers = [aiocache_memory(), cashews_memory(size)]
    return [*peers, langchain_memory()] if langchain else peers


def redis_peers(url: str, port: int) -> list[PeerSpec]:
    return [aiocache_redis(port), cashews_redis(url)]


#: Looked at, not driven, and why (printed under the tables).
NOT_DRIVEN = {
    "GPTCache": (
        "not driven: needs an embedding model. Its semantic mode loads one at run time (ONNX or "
        "transformers weights: a download), and it needs numpy; without a model only its "
        "exact-match `gptcache.adapter.api.get`/`put` remain, which are synchronous (its async "
        "path is its own OpenAI adapter, written for the pre-1.0 SDK), so it has no async hit "
        "path to put next to these."
    ),
}
