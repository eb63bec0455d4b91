"""Helpers for tests that need real parts (a redis-server of our own, ...)."""

from .redis_server import RedisClusterServer, RedisServer

__all__ = ["RedisClusterServer", "RedisServer"]
