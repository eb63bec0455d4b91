"""Helpers for tests that need real parts. The redis-server launchers live in
``asynccache.testing`` so the benchmarks (and users' own tests) can use them too."""

from asynccache import RetryPolicy
from asynccache.testing import RedisClusterServer, RedisServer

__all__ = ["FAST_RETRY", "RedisClusterServer", "RedisServer"]

#: The cache's retry policy with millisecond backoff, so retry tests take no time.
FAST_RETRY = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)
