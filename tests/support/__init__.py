"""Helpers for tests that need real parts. The redis-server launchers live in
``asynccache.testing`` so the benchmarks (and users' own tests) can use them too."""

from asynccache.testing import RedisClusterServer, RedisServer

__all__ = ["RedisClusterServer", "RedisServer"]
