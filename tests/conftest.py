"""Shared fixtures: real stores only (a private redis-server, SQLite files in a temp dir)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole run, on a free loopback port, stopped at the end."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied (FLUSHALL) before each test."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def tmp_sqlite_path(tmp_path: Path) -> Path:
    """A not-yet-existing SQLite file in the test's temp dir (parent dir created by the backend)."""
    return tmp_path / "db" / "cache.sqlite3"
