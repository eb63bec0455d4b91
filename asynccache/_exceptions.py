"""One exception tree for everything asynccache raises on purpose.

    CacheError                      base: catch this to catch anything of ours
    ├── ConfigurationError          bad URL, option or argument (also a ValueError)
    ├── KeyBuildError               request params that cannot be canonicalised (also a TypeError)
    ├── CacheMissError              mode="only" found nothing; no upstream call was made
    ├── CacheClosedError            the cache (or a client wrapped around it) was used after aclose()
    └── BackendError                a store failed; the engine counts it and fails open, so callers
        └── BackendTimeoutError     only see it when they talk to a backend directly

Upstream (provider) errors are never wrapped: callers keep catching the SDK's own exceptions.
Driver errors are chained with ``raise ... from exc`` so the original cause stays visible.
"""

from __future__ import annotations


class CacheError(Exception):
    """Base class of every error asynccache raises on purpose."""


class ConfigurationError(CacheError, ValueError):
    """An argument, option or URL is invalid; the message names it and says how to fix it."""


class KeyBuildError(CacheError, TypeError):
    """Request parameters could not be canonicalised into a key (e.g. not JSON-serialisable)."""


class CacheMissError(CacheError):
    """Raised for ``mode="only"`` when the answer is not cached; nothing was sent upstream."""


class CacheClosedError(CacheError, RuntimeError):
    """The cache was used after ``aclose()``; create a new Cache or keep it open longer."""


class BackendError(CacheError):
    """A store (Redis, SQLite, ...) failed. The engine fails open on it; direct users see it."""


class BackendTimeoutError(BackendError, TimeoutError):
    """A store did not answer within its deadline."""
