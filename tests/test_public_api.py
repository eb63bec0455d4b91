"""The public surface is a contract (DESIGN.md): this fails when it drifts."""

import asynccache
import asynccache.backends

CONTRACT = {
    "Cache",
    "CacheOptions",
    "CachePolicy",
    "CacheStats",
    "CacheStatus",
    "CacheMissError",
    "cache_status",
    "wrap_openai",
    "wrap_anthropic",
}


def test_all_is_sorted_and_complete() -> None:
    assert list(asynccache.__all__) == sorted(asynccache.__all__)
    assert set(asynccache.__all__) >= CONTRACT
    for name in asynccache.__all__:
        assert hasattr(asynccache, name), name


def test_backends_surface() -> None:
    names = {"MemoryBackend", "SQLiteBackend", "RedisBackend", "TieredBackend", "Backend"}
    assert names <= set(asynccache.backends.__all__)
    assert list(asynccache.backends.__all__) == sorted(asynccache.backends.__all__)


def test_exception_tree() -> None:
    from asynccache import (
        BackendError,
        BackendTimeoutError,
        CacheError,
        CacheMissError,
        ConfigurationError,
        KeyBuildError,
    )

    for exc in (BackendError, CacheMissError, ConfigurationError, KeyBuildError):
        assert issubclass(exc, CacheError)
    assert issubclass(BackendTimeoutError, BackendError)
    assert issubclass(KeyBuildError, TypeError)
    assert issubclass(ConfigurationError, ValueError)
