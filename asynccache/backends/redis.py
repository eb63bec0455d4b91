"""The shared store for many processes: Redis (or Redis Cluster) through redis.asyncio + hiredis.

Why auto-batching: the engine looks keys up one request at a time, but under load many requests
arrive in the same event-loop tick. Every ``get_many`` call in a tick is parked on a future; the
first one schedules a flush with ``loop.call_soon``, and the flush sends ONE MGET (several in one
pipeline past ``max_batch_keys``) for all of them. N concurrent lookups cost one round trip, not
N. The flush runs in a task the backend owns, so a caller that is cancelled only drops its own
future; the batch, and every other caller in it, carries on.

Why tight timeouts and no client retries: the cache is an optimisation. A stalled Redis must turn
into :class:`BackendError` within about ``socket_timeout`` so the engine can fail open and go
upstream; retries inside the driver would multiply that delay. The connection pool is bounded and
blocking with a short wait, so exhausting it is an error, never a hang.

Tags are Redis sets (``tag_prefix + tag``). A set's expiry may grow but never shrink (PEXPIRE NX
for a fresh set, then PEXPIRE GT), so a tag outlives every entry recorded under it; a tag of an
entry without expiry gets a century instead of PERSIST, which keeps "grow only" true with plain
commands (no Lua), and so works unchanged on a cluster.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Union, cast

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._exceptions import BackendError, BackendTimeoutError, ConfigurationError
from ._base import Item

_ALL_MEMBERS = 2**31 - 1  # SPOP count: larger than any tag set we will hold

__all__ = ["RedisBackend"]

_Client = Union["Redis", "RedisCluster"]
_Pending = tuple[Sequence[str], "asyncio.Future[list[bytes | None]]"]
_CENTURY_MS = 100 * 365 * 24 * 3600 * 1000
_TIMEOUTS = (RedisTimeoutError, asyncio.TimeoutError)


def _backend_error(exc: BaseException, what: str) -> BaseException:
    """The BackendError (chained to ``exc``) that callers see for a driver failure."""
    if not isinstance(exc, (RedisError, OSError, asyncio.TimeoutError)):
        return exc  # a bug, not a store failure: let it through untouched
    cls = BackendTimeoutError if isinstance(exc, _TIMEOUTS) else BackendError
    err = cls(f"Redis {what} failed: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


@contextmanager
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        raise _backend_error(exc, what) from exc


def _px(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


class RedisBackend:
    """A :class:`~asynccache.backends.Backend` over Redis.

    Pass a URL (the backend builds and owns the client and closes it in :meth:`aclose`) or an
    existing ``redis.asyncio.Redis`` / ``RedisCluster`` (yours to configure and close).
    ``redis+cluster://`` URLs, or ``cluster=True``, build a cluster client.
    """

    def __init__(
        self,
        url_or_client: str | Redis | RedisCluster,
        *,
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        max_connections: int = 64,
        cluster: bool = False,
        pool_timeout: float | None = None,
        max_batch_keys: int = 512,
        tag_prefix: str = "asynccache:tag:",
    ) -> None:
        if max_batch_keys < 1:
            raise ConfigurationError(f"max_batch_keys must be >= 1, got {max_batch_keys!r}")
        self._client: _Client
        if isinstance(url_or_client, str):
            self._client = _client_from_url(
                url_or_client,
                socket_timeout=socket_timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
                cluster=cluster,
                pool_timeout=socket_timeout + connect_timeout
                if pool_timeout is None
                else pool_timeout,
            )
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self._cluster = isinstance(self._client, RedisCluster)
        self._max_batch_keys = max_batch_keys
        self._tag_prefix = tag_prefix
        self._pending: list[_Pending] = []
        self._flush_scheduled = False
        self._batches: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **opts: Any) -> RedisBackend:
        return cls(url, **opts)

    @property
    def client(self) -> _Client:
        return self._client

    # -- reads: auto-batched -------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[bytes | None]] = loop.create_future()
        self._pending.append((keys, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush, loop)
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_scheduled = False
        batch = [(keys, fut) for keys, fut in self._pending if not fut.done()]
        self._pending = []
        if batch:
            task = loop.create_task(self._run_batch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        unique = list(dict.fromkeys(key for keys, _ in batch for key in keys))
        try:
            values = await self._mget(unique)
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(BackendError("the Redis lookup batch was cancelled"))
            raise
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(_backend_error(exc, "MGET"))
            return
        found = dict(zip(unique, values, strict=True))
        for keys, fut in batch:
            if not fut.done():
                fut.set_result([found[key] for key in keys])

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        client = self._client
        if isinstance(client, RedisCluster):
            return cast("list[bytes | None]", await client.mget_nonatomic(keys))
        size = self._max_batch_keys
        if len(keys) <= size:
            return cast("list[bytes | None]", await client.mget(keys))
        async with client.pipeline(transaction=False) as pipe:
            for i in range(0, len(keys), size):
                pipe.mget(keys[i : i + size])
            replies = await pipe.execute()
        return [value for reply in replies for value in reply]

    # -- writes: one pipeline each -------------------------------------------------------------

    async def set_many(self, items: Sequence[Item]) -> None:
        if not items:
            return
        self._check_open()
        with _errors("SET"):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value, ttl in items:
                    if ttl is None:
                        pipe.set(key, value)
                    elif ttl > 0:
                        pipe.set(key, value, px=_px(ttl))
                    else:  # already expired: a reader must not see the previous value either
                        # execute_command, not .unlink(): that is a coroutine on ClusterPipeline
                        pipe.execute_command("UNLINK", key)
                await pipe.execute()

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        self._check_open()
        with _errors("UNLINK"):
            return int(await self._client.unlink(*dict.fromkeys(keys)))

    async def add_tags(self, pairs: Sequence[tuple[str, str]], ttl: float | None) -> None:
        if not pairs or (ttl is not None and ttl <= 0):
            return
        self._check_open()
        by_tag: dict[str, list[str]] = {}
        for tag, key in pairs:
            by_tag.setdefault(tag, []).append(key)
        ms = _CENTURY_MS if ttl is None else _px(ttl)
        with _errors("SADD"):
            async with self._client.pipeline(transaction=False) as pipe:
                for tag, keys in by_tag.items():
                    name = self._tag_prefix + tag
                    pipe.sadd(name, *keys)
                    pipe.pexpire(name, ms, nx=True)  # a fresh set has no expiry yet
                    pipe.pexpire(name, ms, gt=True)  # an existing one only ever grows
                await pipe.execute()

    async def pop_tags(self, tags: Sequence[str]) -> list[str]:
        if not tags:
            return []
        self._check_open()
        # SPOP with a count past any set's size takes every member and deletes the key in ONE
        # command: a key tagged by another client at the same moment is either returned here or
        # stays tagged, never dropped from the index while its entry survives (which reading
        # with SMEMBERS and then UNLINK would allow). One key per command, so cluster-safe.
        with _errors("SPOP"):
            async with self._client.pipeline(transaction=False) as pipe:
                for tag in dict.fromkeys(tags):
                    pipe.execute_command("SPOP", self._tag_prefix + tag, _ALL_MEMBERS)
                replies = await pipe.execute()
        found: dict[str, None] = {}
        for members in replies:
            found.update((_text(member), None) for member in members or ())
        return list(found)

    async def aclose(self) -> None:
        """Let in-flight batches finish, fail queued lookups, close the client if we own it."""
        if self._closed:
            return
        self._closed = True
        pending, self._pending = self._pending, []
        for _, fut in pending:
            if not fut.done():
                fut.set_exception(BackendError("RedisBackend was closed before the lookup ran"))
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        if self._owns_client:
            with _errors("close"):
                await self._client.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("RedisBackend is closed; create a new one")


def _text(member: bytes | str) -> str:
    return member.decode() if isinstance(member, bytes) else member


def _client_from_url(
    url: str,
    *,
    socket_timeout: float,
    connect_timeout: float,
    max_connections: int,
    cluster: bool,
    pool_timeout: float,
) -> _Client:
    scheme, sep, rest = url.partition("://")
    if scheme.endswith("+cluster"):
        cluster, url = True, scheme.removesuffix("+cluster") + sep + rest
    no_retry = Retry(NoBackoff(), 0)  # fail fast; the engine decides what to do next
    try:
        if cluster:
            return RedisCluster.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                max_connections=max_connections,
                retry=no_retry,
            )
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=no_retry,
        )
    except (ValueError, RedisError, RedisClusterException) as exc:
        raise ConfigurationError(
            f"invalid Redis URL {url!r} ({exc}); expected redis://host:port/db, rediss://..., "
            "unix:///path.sock or redis+cluster://host:port"
        ) from exc
    return Redis.from_pool(pool)
