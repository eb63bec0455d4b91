"""The shared store for many processes: Redis (or Redis Cluster) through redis.asyncio + hiredis.

Why natural batching: the engine looks keys up one request at a time. When nothing is in flight, a
lookup is sent at once, as one MGET in the caller's own task: a lone caller pays one round trip and
nothing more (no future or task of ours, no extra loop iteration). A lookup that arrives while
others are in flight parks a future instead, and the parked ones go out together as ONE MGET
(several in one pipeline past ``max_batch_keys``) as soon as one of ``_MAX_IN_FLIGHT`` slots is
free, sent by a task the backend owns whose first step takes everything queued by then. A batch is
thus as large as the load makes it: one key when idle, every waiting caller under load, and no
timer anywhere. Two slots, so that one batch fills while the other is on the wire: with one, a
lone direct lookup alternated with a batch of everyone else; three or four measured no better.

Rules that hold whichever path a lookup took:

- A parked caller that is cancelled only drops its own future; its batch, and everyone else in it,
  carries on.
- A direct caller that is cancelled abandons its own command. redis-py closes a connection on any
  exception between sending and reading (``send_packed_command`` and ``read_response`` disconnect
  on ``BaseException``) and the pool reconnects it before its next use, so a late reply can never
  reach another command. Callers parked behind a direct lookup never wait on it: its ``finally``
  starts their batch whether it returned, failed or was cancelled.
- A failed or timed-out lookup reaches every caller of that batch as its own
  :class:`BackendError` / :class:`BackendTimeoutError` and the engine fails open; nothing is
  retried here.
- Always MGET, even for one key: a key of another type then reads as a miss (GET would answer
  WRONGTYPE), so an answer never depends on which path the load picked.
- :meth:`RedisBackend.aclose` fails the lookups still queued and waits for the ones in flight.

Why reads and entry writes bypass the client's command path on a plain pooled ``Redis``: packing
MGET here costs a fifth of redis-py's ``pack_command`` per key, and a checkout from the blocking
pool plus ``execute_command`` cost about 15 us per command, a quarter of a loopback round trip; and
a redis-py pipeline of one SET cost a miss about as much as the SET's own round trip (miss + store
on Redis, p50: 281 us with it, about 220 us with SETs packed here; ``benchmarks/run.py --only 5``).
So lookups and ``set_many`` are sent on connections the backend leases from the pool, without the
client's retry policy, and keeps between commands: at most one per lookup slot, since a write keeps
only one it took from the kept ones, and none while a command of ours waits for the pool, whose
waiters cannot see them. Each reuse still passes the pool's own ``ensure_connection`` check; a
connection whose command failed goes straight back to the pool. Several writes on one connection
are read to their last reply even when the server refuses one (an error reply; errors that redis-py
treats as connection errors close the connection), so the connection stays in step. The other
writes (tags, deletes) go through the client's API, and the idle leased connections go back to the
pool before each: such a write must never wait for a new connection (a handshake of several round
trips) while reads sit on spare ones. Cluster clients, single-connection clients and redis-py
releases whose pool lacks ``ensure_connection()`` or an argument-free ``get_connection()`` use the
client's API for all.

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
import codecs
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, Union, cast

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._exceptions import BackendError, BackendTimeoutError, ConfigurationError
from ._base import Item

_ALL_MEMBERS = 2**31 - 1  # SPOP count: larger than any tag set we will hold
_MAX_IN_FLIGHT = 2  # lookups (direct or batched) on the wire at once; see the module docstring

__all__ = ["RedisBackend"]

_Client = Union["Redis", "RedisCluster"]
_Waiter = asyncio.Future[list[bytes | None]]  # one parked lookup
_CENTURY_MS = 100 * 365 * 24 * 3600 * 1000
_TIMEOUTS = (RedisTimeoutError, asyncio.TimeoutError)
#: ``asyncio.timeout`` (Python 3.11+); on 3.10 reads keep redis-py's own send timeout.
_deadline: Callable[[float], AbstractAsyncContextManager[Any]] | None = getattr(
    asyncio, "timeout", None
)


def _backend_error(exc: BaseException, what: str) -> BaseException:
    """The BackendError (chained to ``exc``) that callers see for a driver failure."""
    if not isinstance(exc, (RedisError, OSError, asyncio.TimeoutError)):
        return exc  # a bug, not a store failure: let it through untouched
    timed_out = isinstance(exc, _TIMEOUTS)
    cls = BackendTimeoutError if timed_out else BackendError
    detail = str(exc) or ("no reply within the socket timeout" if timed_out else "no detail")
    err = cls(f"Redis {what} failed: {type(exc).__name__}: {detail}")
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


async def _read(conn: AbstractConnection, replies: int) -> Any:
    """The reply to one command, or read the replies to several (and return None)."""
    if replies == 1:
        return await conn.read_response()
    error: ResponseError | None = None
    for _ in range(replies):
        try:
            await conn.read_response()
        except ResponseError as exc:  # the server's error reply: the rest still follow it
            error = error or exc
    if error is not None:
        raise error
    return None


class RedisBackend:
    """A :class:`~asynccache.backends.Backend` over Redis.

    Pass a URL (the backend builds and owns the client and closes it in :meth:`aclose`) or an
    existing ``redis.asyncio.Redis`` / ``RedisCluster`` (yours to configure and close; until
    :meth:`aclose`, the backend keeps up to two of its pool's connections for lookups).
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
        # Lookups queued for the next batch: their keys end to end, and per caller a future and
        # how many keys it asked for.
        self._keys: list[str] = []
        self._waiters: list[_Waiter] = []
        self._sizes: list[int] = []
        self._in_flight = 0  # lookups sent and not yet answered, direct ones and batches
        self._batch_starting = False  # a batch task is created and has not taken the queue yet
        self._batches: set[asyncio.Task[None]] = set()
        self._on_idle: asyncio.Future[None] | None = None  # set by aclose() while waiting
        self._closed = False
        self._pool = _leasable_pool(self._client)
        self._conns: list[AbstractConnection] = []  # leased, kept between commands (see _leased)
        self._pool_waits = 0  # our commands waiting for a connection from the pool
        #: Keys as redis-py's encoder writes them; UTF-8 (its default) without the arguments,
        #: which cost a lookup of the codec by name per key: ~800 instructions per L2 hit
        #: (``benchmarks/instructions.py l2-fetch``, 49,857 -> 49,050).
        self._encode: Callable[[str], bytes] = str.encode
        if self._pool is not None:
            encoder = self._pool.get_encoder()  # type: ignore[no-untyped-call]
            encoding, errors = encoder.encoding, encoder.encoding_errors
            try:
                codec = codecs.lookup(encoding).name
            except LookupError as exc:
                raise ConfigurationError(
                    f"the Redis client's encoding {encoding!r} is not a known codec"
                ) from exc
            if codec != "utf-8" or errors != "strict":
                self._encode = lambda key: key.encode(encoding, errors)

    @classmethod
    def from_url(cls, url: str, **opts: Any) -> RedisBackend:
        return cls(url, **opts)

    @property
    def client(self) -> _Client:
        return self._client

    # -- reads: sent at once when idle, naturally batched under load --------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        if self._closed:
            raise BackendError("RedisBackend is closed; create a new one")
        if self._in_flight or self._waiters:  # busy: park for the next batch
            fut: _Waiter = asyncio.get_running_loop().create_future()
            self._keys += keys
            self._waiters.append(fut)
            self._sizes.append(len(keys))
            if not self._batch_starting and self._in_flight < _MAX_IN_FLIGHT:
                self._start_batch()
            return await fut
        self._in_flight += 1  # idle: send at once, in the caller's own task
        try:
            return await self._mget(keys)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise _backend_error(exc, "MGET") from exc
        finally:  # on cancellation too: callers that parked meanwhile never wait on this one
            self._in_flight -= 1
            if self._waiters or self._on_idle is not None:
                self._lookup_done()

    def _start_batch(self) -> None:
        # The task's first step runs on the next loop iteration and takes every lookup queued by
        # then, so everyone arriving in this tick shares the batch.
        self._batch_starting = True
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run_batch())
        self._batches.add(task)
        task.add_done_callback(self._batch_ended)

    def _batch_ended(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        if task.cancelled() and self._batch_starting:
            # Cancelled before its first step (the loop shutting down): it never took the
            # queue, so nothing else would ever answer those callers or free the slot.
            self._batch_starting = False
            self._in_flight -= 1
            waiters, self._waiters = self._waiters, []
            self._keys, self._sizes = [], []
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(BackendError("the Redis lookup batch was cancelled"))

    def _lookup_done(self) -> None:
        """A slot came free: send what is queued, or tell a waiting aclose() all is done."""
        if self._waiters and not self._batch_starting and self._in_flight < _MAX_IN_FLIGHT:
            self._start_batch()
        elif not self._in_flight and self._on_idle is not None and not self._on_idle.done():
            self._on_idle.set_result(None)

    async def _run_batch(self) -> None:
        self._batch_starting = False
        keys, waiters, sizes = self._keys, self._waiters, self._sizes
        self._keys, self._waiters, self._sizes = [], [], []
        try:
            if waiters:  # empty when aclose() failed them first
                await self._answer(keys, waiters, sizes)
        finally:
            self._in_flight -= 1
            self._lookup_done()

    async def _answer(self, keys: list[str], waiters: list[_Waiter], sizes: list[int]) -> None:
        try:
            if len(set(keys)) == len(keys):
                values = await self._mget(keys)
            else:  # a key asked for twice in one batch: fetch (and transfer) it once
                unique = list(dict.fromkeys(keys))
                found = dict(zip(unique, await self._mget(unique), strict=True))
                values = [found[key] for key in keys]
        except asyncio.CancelledError:  # only if the loop itself is torn down
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(BackendError("the Redis lookup batch was cancelled"))
            raise
        except Exception as exc:
            for fut in waiters:  # each caller gets its own exception object (and traceback)
                if not fut.done():
                    fut.set_exception(_backend_error(exc, "MGET"))
            return
        if len(values) == len(waiters):  # one key per caller: the usual case
            for fut, value in zip(waiters, values, strict=True):
                if not fut.done():
                    fut.set_result([value])
            return
        start = 0
        for fut, size in zip(waiters, sizes, strict=True):
            if not fut.done():
                fut.set_result(values[start : start + size])
            start += size

    async def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        client = self._client
        size = self._max_batch_keys
        if self._pool is not None and len(keys) <= size:
            return cast("list[bytes | None]", await self._leased(self._pack_mget(keys)))
        if isinstance(client, RedisCluster):
            if len(keys) == 1:  # one slot: a plain MGET, routed by its key
                return cast("list[bytes | None]", await client.execute_command("MGET", *keys))
            return cast("list[bytes | None]", await client.mget_nonatomic(keys))
        if len(keys) <= size:
            return cast("list[bytes | None]", await client.mget(keys))
        async with client.pipeline(transaction=False) as pipe:
            for i in range(0, len(keys), size):
                pipe.mget(keys[i : i + size])
            replies = await pipe.execute()
        return [value for reply in replies for value in reply]

    def _pack_mget(self, keys: Sequence[str]) -> bytes:
        """MGET in RESP, as redis-py would pack it (same key encoding), in a fifth of the time."""
        encode = self._encode
        raw = [encode(key) for key in keys]
        head = b"*%d\r\n$4\r\nMGET\r\n" % (len(raw) + 1)
        return head + b"".join([b"$%d\r\n%s\r\n" % (len(key), key) for key in raw])

    def _pack_set(self, items: Sequence[Item]) -> bytes:
        """SET (with PX when the entry expires) per item in RESP, as redis-py would pack them,
        one after another: a pipeline without redis-py's pipeline object. A ``ttl <= 0`` is an
        UNLINK: already expired, and a reader must not see the previous value either."""
        parts = []
        encode = self._encode
        for key, value, ttl in items:
            k = encode(key)
            if ttl is None:
                parts.append(
                    b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                    % (len(k), k, len(value), value)
                )
            elif ttl > 0:
                ms = b"%d" % _px(ttl)
                parts.append(
                    b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nPX\r\n$%d\r\n%s\r\n"
                    % (len(k), k, len(value), value, len(ms), ms)
                )
            else:
                parts.append(b"*2\r\n$6\r\nUNLINK\r\n$%d\r\n%s\r\n" % (len(k), k))
        return b"".join(parts)

    async def _leased(self, packed: bytes, replies: int = 1, *, keep_fresh: bool = True) -> Any:
        """Send packed commands on a leased connection and read their ``replies``. One reply
        is returned; of several, none (writes): an error reply among them is raised once all
        are read, so the connection stays in step.

        A connection that worked is kept for the next command unless someone may need it
        more: one of our own commands waiting for the pool, the user's (a connection taken
        from the pool when ``keep_fresh`` is False: writes, which keep only what they took
        from the kept ones), or no one, once closed. Kept ones are invisible to the pool's
        waiters, so keeping one they wait for would stall them until the pool's timeout. As
        only lookups add to them, and at most ``_MAX_IN_FLIGHT`` run at once, no more are kept."""
        pool = self._pool
        assert pool is not None
        conn = self._conns.pop() if self._conns else None
        fresh = conn is None
        if conn is None:
            self._pool_waits += 1
            try:
                conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            finally:
                self._pool_waits -= 1
        timeout = conn.socket_timeout
        try:
            if not fresh:  # what a checkout checks: connected, nothing unread, not closed
                await pool.ensure_connection(conn)
            if _deadline is None or timeout is None:
                await conn.send_packed_command(packed)
                reply = await _read(conn, replies)
            else:
                # One deadline of ours over the send and the read. With a socket timeout set,
                # redis-py wraps every send in asyncio.wait_for: a task per lookup, twice the
                # cost of asyncio.timeout (12 vs 6 us, timeit). The connection's own timeout is
                # back before anyone else can use it.
                conn.socket_timeout = None
                try:
                    async with _deadline(timeout):
                        await conn.send_packed_command(packed)
                        reply = await _read(conn, replies)
                finally:
                    conn.socket_timeout = timeout
        except BaseException:
            # redis-py has closed the connection if the command may have left a reply unread;
            # the pool reconnects it before its next use. Shielded so that a second cancel
            # cannot interrupt the pool's bookkeeping.
            await asyncio.shield(pool.release(conn))
            raise
        if self._closed or self._pool_waits or (fresh and not keep_fresh):
            await pool.release(conn)
        else:
            self._conns.append(conn)
        return reply

    async def _give_back_idle(self) -> None:
        """Before a write through the client's API: the pool gets back the leased connections
        not in use right now.

        A write must never wait for a new connection (a handshake of several round trips)
        while this backend sits on idle ones; with a cold pool it otherwise lands after a read
        sent later, which is then a needless miss. The next read leases one again.
        """
        if self._conns and self._pool is not None:
            conns, self._conns = self._conns, []
            for conn in conns:
                await self._pool.release(conn)

    # -- writes: entries packed on a leased connection, the rest one pipeline each ------------

    async def set_many(self, items: Sequence[Item]) -> None:
        if not items:
            return
        self._check_open()
        if self._pool is not None:  # packed here and sent on a leased connection, as reads are
            with _errors("SET"):
                await self._leased(self._pack_set(items), len(items), keep_fresh=False)
            return
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
        await self._give_back_idle()
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
        await self._give_back_idle()
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
        await self._give_back_idle()
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
        """Fail queued lookups, let the ones in flight finish, close the client if we own it."""
        if self._closed:
            return
        self._closed = True
        waiters, self._waiters = self._waiters, []
        self._keys, self._sizes = [], []
        for fut in waiters:
            if not fut.done():
                fut.set_exception(BackendError("RedisBackend was closed before the lookup ran"))
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        if self._in_flight:  # direct lookups run in their callers' tasks: wait for the last one
            self._on_idle = asyncio.get_running_loop().create_future()
            await self._on_idle
        conns, self._conns = self._conns, []
        if self._pool is not None:
            for conn in conns:
                await self._pool.release(conn)
        if self._owns_client:
            with _errors("close"):
                await self._client.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("RedisBackend is closed; create a new one")


def _leasable_pool(client: _Client) -> ConnectionPool | None:
    """The pool to lease connections from (lookups, entry writes), or None to send every
    command through the client's API."""
    if isinstance(client, RedisCluster) or client.single_connection_client:
        return None
    pool = client.connection_pool
    if not hasattr(pool, "ensure_connection"):
        return None  # an older redis-py
    try:  # before 5.3, get_connection() wants a command name (and 5.3+ warns when given one)
        inspect.signature(pool.get_connection).bind()
    except (TypeError, ValueError):
        return None
    return pool


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
