"""Shared fixtures: real stores only (a private redis-server, SQLite files in a temp dir), and
the real SDK clients talking HTTP to a FakeProvider on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import openai
import pytest
import redis

from asynccache import Cache
from asynccache.testing import FakeProvider
from tests.support import FAST_RETRY, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole run, on a free loopback port, stopped at the end."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A server of the test's own, for tests that freeze (SIGSTOP) or stop it."""
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


@pytest.fixture
async def fp() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as provider:
        yield provider


@pytest.fixture
async def oai(fp: FakeProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="sk-test") as client:
        yield client


@pytest.fixture
async def claude(fp: FakeProvider) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=fp.anthropic_base_url, api_key="sk-ant-test")
    async with client:
        yield client


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    """A cache in memory, then on the session's redis-server (modules may define their own)."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    async with Cache.from_url(url, retry=FAST_RETRY) as c:
        yield c
