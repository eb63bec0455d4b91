"""URL -> backend. The only place the engine reaches for a concrete store, lazily."""

from __future__ import annotations

from urllib.parse import urlsplit

from ._exceptions import ConfigurationError
from .backends._base import Backend

SCHEMES = ("memory://", "sqlite:///", "redis://", "rediss://", "unix://", "redis+cluster://")


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db`` (SQLAlchemy's rule)."""
    rest = url[len("sqlite:///") :]
    if not rest:
        raise ConfigurationError(
            f"{url!r} names no file: use sqlite:///cache.db (relative) or sqlite:////abs/cache.db"
        )
    return rest


def backend_from_url(url: str, l1_max_entries: int = 1) -> Backend | None:
    """None for ``memory://`` (the engine's own L1 is the store), else the L2 backend."""
    if not isinstance(url, str):
        raise ConfigurationError(f"cache URL must be a string, got {type(url).__name__}")
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        if l1_max_entries == 0:
            from .backends.memory import MemoryBackend

            return MemoryBackend()
        return None
    if scheme == "sqlite":
        if not url.startswith("sqlite:///"):
            raise ConfigurationError(
                f"{url!r}: SQLite URLs have three slashes: sqlite:///cache.db or sqlite:////abs/cache.db"
            )
        from .backends.sqlite import SQLiteBackend

        return SQLiteBackend(sqlite_path(url))
    if scheme in ("redis", "rediss", "unix", "redis+cluster"):
        from .backends.redis import RedisBackend

        if scheme == "redis+cluster":
            return RedisBackend.from_url("redis" + url[len("redis+cluster") :], cluster=True)
        return RedisBackend.from_url(url)
    raise ConfigurationError(
        f"unsupported cache URL scheme {scheme!r} in {url!r}; use one of: {', '.join(SCHEMES)}"
    )
