"""The embedded default store for one machine: a SQLite file shared by threads and processes.

Why one worker thread: sqlite3 calls block, and a connection is cheapest and safest when one
thread owns it. Every call is shipped to that thread, so the event loop never waits on disk; the
loop side only waits (bounded by ``op_timeout``) on a future.

Why group commit: a commit costs an fsync-ish barrier, and SQLite allows one writer at a time.
Writes from many tasks are queued on the loop side; while the writer is busy the queue grows, and
the next transaction takes all of it. Each queued operation runs inside its own SAVEPOINT, so one
failing operation does not fail its neighbours. ``SQLITE_BUSY`` (another process holds the write
lock) is waited out by ``busy_timeout`` and retried inside the writer, so "database is locked"
never reaches a caller; a caller whose deadline passes gets :class:`BackendTimeoutError` while the
transaction carries on, whole or not at all.

Housekeeping rides on writes and is bounded: each transaction deletes at most a few hundred
expired rows (through the ``expires_at`` indexes), and, when ``max_bytes`` is set, evicts the
least recently written rows (rowid order: a replaced row gets a new rowid) in batches until the
running total, kept by triggers in ``meta``, fits. Reads never write, so hits stay cheap and
eviction is by write order, not by reads; the in-process L1 in front absorbs hot keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from .._exceptions import BackendError, BackendTimeoutError, ConfigurationError
from ._base import Item

__all__ = ["SQLiteBackend", "SQLiteStatistics"]

T = TypeVar("T")
_Op = Callable[[sqlite3.Connection], Any]
_Outcome = tuple[bool, Any]  # (ok, result or exception)

SCHEMA_VERSION = 1
_CHUNK = 500  # bound parameters per statement, well under SQLITE_MAX_VARIABLE_NUMBER
_PURGE_BATCH = 256
_EVICT_BATCH = 256
_BUSY_ATTEMPTS = 3
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NULL, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS entries_expires_at ON entries (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS tags (
    tag TEXT NOT NULL, key TEXT NOT NULL, expires_at REAL NULL, PRIMARY KEY (tag, key));
CREATE INDEX IF NOT EXISTS tags_expires_at ON tags (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('total_bytes', 0);
CREATE TRIGGER IF NOT EXISTS entries_size_ins AFTER INSERT ON entries BEGIN
    UPDATE meta SET value = value + NEW.size WHERE name = 'total_bytes'; END;
CREATE TRIGGER IF NOT EXISTS entries_size_del AFTER DELETE ON entries BEGIN
    UPDATE meta SET value = value - OLD.size WHERE name = 'total_bytes'; END;
CREATE TRIGGER IF NOT EXISTS entries_size_upd AFTER UPDATE OF size ON entries BEGIN
    UPDATE meta SET value = value - OLD.size + NEW.size WHERE name = 'total_bytes'; END;
"""
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


@dataclass(frozen=True, slots=True)
class SQLiteStatistics:
    """Counters since the backend was created (``writes / commits`` is the group-commit gain,
    ``reads / read_trips`` the read-batching gain)."""

    commits: int
    writes: int
    busy_retries: int
    reads: int = 0
    read_trips: int = 0


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _chunks(seq: Sequence[T]) -> list[Sequence[T]]:
    return [seq[i : i + _CHUNK] for i in range(0, len(seq), _CHUNK)]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SQLiteBackend:
    """A :class:`~asynccache.backends.Backend` in a SQLite file (WAL), safe across processes.

    ``clock`` is wall-clock seconds (``time.time``) because expiry deadlines are stored in the
    file and compared by every process that opens it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 5.0,
        op_timeout: float = 1.0,
    ) -> None:
        if max_bytes is not None and max_bytes < 0:
            raise ConfigurationError(f"max_bytes must be None or >= 0, got {max_bytes!r}")
        self._path = os.fspath(path)
        self._max_bytes = max_bytes
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._op_timeout = op_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asynccache-sqlite")
        self._conn: sqlite3.Connection | None = None  # owned by the worker thread only
        self._queue: list[tuple[_Op, asyncio.Future[Any]]] = []
        self._reads: list[tuple[list[str], asyncio.Future[list[bytes | None]]]] = []
        self._writer_busy = False
        self._idle: asyncio.Event | None = None
        self._closed = False
        self._abandoned = False  # aclose gave up on a stuck worker thread
        self._commits = self._writes = self._busy_retries = 0
        self._reads_asked = self._read_trips = 0

    @property
    def path(self) -> str:
        return self._path

    def statistics(self) -> SQLiteStatistics:
        return SQLiteStatistics(
            self._commits, self._writes, self._busy_retries, self._reads_asked, self._read_trips
        )

    # -- protocol ------------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Lookups issued in the same loop tick share one trip to the worker thread and one
        ``SELECT ... IN``: with 200 requests in flight that is one hop instead of 200 queued
        behind each other (the same idea as RedisBackend's per-tick MGET)."""
        if not keys:
            return []
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[bytes | None]] = loop.create_future()
        if not self._reads:
            loop.call_soon(self._flush_reads, loop)
        self._reads.append((list(keys), fut))
        return await self._bounded(fut)

    async def set_many(self, items: Sequence[Item]) -> None:
        if not items:
            return
        now = self._clock()
        latest: dict[str, tuple[str, bytes, float | None, int]] = {}
        for key, value, ttl in items:
            latest.pop(key, None)  # keep the last write for a key, in its position
            latest[key] = (key, value, None if ttl is None else now + ttl, len(value))
        rows = [row for row in latest.values() if row[2] is None or row[2] > now]
        await self._write(partial(_op_set, list(latest), rows))

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        result: int = await self._write(
            partial(_op_delete, list(dict.fromkeys(keys)), self._clock())
        )
        return result

    async def add_tags(self, pairs: Sequence[tuple[str, str]], ttl: float | None) -> None:
        if not pairs:
            return
        expires_at = None if ttl is None else self._clock() + ttl
        await self._write(partial(_op_add_tags, list(dict.fromkeys(pairs)), expires_at))

    async def pop_tags(self, tags: Sequence[str]) -> list[str]:
        if not tags:
            return []
        result: list[str] = await self._write(
            partial(_op_pop_tags, list(dict.fromkeys(tags)), self._clock())
        )
        return result

    async def aclose(self) -> None:
        """Flush queued writes, close the connection and stop the worker thread.

        Bounded: if the worker is still stuck behind another process's lock after every busy
        retry, the thread is abandoned (it exits when its job ends) and this raises.
        """
        if self._closed:
            return
        self._closed = True
        limit = self._busy_timeout * _BUSY_ATTEMPTS + self._op_timeout
        try:
            await asyncio.wait_for(self._drain_and_close(), limit)
        except asyncio.TimeoutError as exc:
            self._abandon()
            raise BackendTimeoutError(f"SQLite at {self._path!r} did not close in time") from exc
        except sqlite3.Error as exc:
            self._abandon()
            raise BackendError(f"closing SQLite at {self._path!r} failed: {exc}") from exc
        self._executor.shutdown(wait=True)  # the worker is idle: this returns at once

    async def _drain_and_close(self) -> None:
        if self._writer_busy:
            assert self._idle is not None
            await self._idle.wait()
        loop = asyncio.get_running_loop()
        self._flush_reads(loop)  # reads already asked for run before the close (FIFO thread)
        await loop.run_in_executor(self._executor, self._close_connection)

    def _abandon(self) -> None:
        self._abandoned = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- loop side -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("SQLiteBackend is closed; create a new one")

    async def _write(self, op: _Op) -> Any:
        """Queue ``op`` for the next group commit and wait for its own result."""
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, fut))
        if not self._writer_busy:
            self._writer_busy = True
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            loop.call_soon(self._start_batch, loop)  # gather the rest of this tick first
        return await self._bounded(fut)

    async def _bounded(self, fut: asyncio.Future[T]) -> T:
        try:
            return await asyncio.wait_for(fut, self._op_timeout)
        except asyncio.TimeoutError as exc:
            raise BackendTimeoutError(
                f"SQLite at {self._path!r} did not answer within op_timeout={self._op_timeout}s"
            ) from exc
        except sqlite3.Error as exc:
            raise BackendError(f"SQLite at {self._path!r} failed: {exc}") from exc
        except OSError as exc:
            raise BackendError(f"cannot open SQLite at {self._path!r}: {exc}") from exc

    def _flush_reads(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = [(keys, fut) for keys, fut in self._reads if not fut.done()]
        self._reads = []
        if not batch:
            return
        if self._abandoned:
            for _, fut in batch:
                fut.set_exception(BackendError("SQLiteBackend was closed before this read ran"))
            return
        every = [key for keys, _ in batch for key in keys]
        self._reads_asked += len(batch)
        self._read_trips += 1
        cf = self._executor.submit(self._read, every, self._clock())

        def settle(cf: ThreadFuture[list[bytes | None]]) -> None:
            try:
                values = cf.result()
            except BaseException as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                return
            start = 0
            for keys, fut in batch:
                if not fut.done():
                    fut.set_result(values[start : start + len(keys)])
                start += len(keys)

        def on_done(cf: ThreadFuture[list[bytes | None]]) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to tell
                loop.call_soon_threadsafe(settle, cf)

        cf.add_done_callback(on_done)

    def _start_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        # Callers that timed out or were cancelled before their turn are dropped, not written.
        batch = [(op, fut) for op, fut in self._queue if not fut.done()]
        self._queue = []
        if self._abandoned:
            for _, fut in batch:
                fut.set_exception(BackendError("SQLiteBackend was closed before this write ran"))
            batch = []
        if not batch:
            self._writer_busy = False
            assert self._idle is not None
            self._idle.set()
            return
        cf = self._executor.submit(self._write_batch, [op for op, _ in batch], self._clock())

        def on_done(cf: ThreadFuture[list[_Outcome]]) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to tell
                loop.call_soon_threadsafe(self._finish_batch, loop, batch, cf)

        cf.add_done_callback(on_done)

    def _finish_batch(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[_Op, asyncio.Future[Any]]],
        cf: ThreadFuture[list[_Outcome]],
    ) -> None:
        try:
            outcomes = cf.result()
        except BaseException as exc:  # the whole transaction failed: every caller hears it
            outcomes = [(False, exc)] * len(batch)
        for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        self._start_batch(loop)  # whatever queued up meanwhile is the next transaction

    # -- worker thread -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        parent = os.path.dirname(os.path.abspath(self._path))
        os.makedirs(parent, exist_ok=True)
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        try:
            self._retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
            conn.execute("PRAGMA synchronous=NORMAL")
            self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                if version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f"schema version {version} is newer than this asynccache understands "
                        f"({SCHEMA_VERSION}); upgrade asynccache or use another file"
                    )
                if version < SCHEMA_VERSION:
                    for statement in _SCHEMA.split(";\n"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _retry_busy(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; on SQLITE_BUSY (after ``busy_timeout`` inside SQLite) try again."""
        for attempt in range(_BUSY_ATTEMPTS):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == _BUSY_ATTEMPTS - 1:
                    raise
                self._busy_retries += 1
                time.sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")

    def _read(self, keys: list[str], now: float) -> list[bytes | None]:
        conn = self._connection()
        found: dict[str, bytes] = {}
        for chunk in _chunks(list(dict.fromkeys(keys))):
            sql = f"SELECT key, value FROM entries WHERE key IN ({_marks(len(chunk))}) AND {_LIVE}"
            found.update(self._retry_busy(partial(_fetchall, conn, sql, (*chunk, now))))
        return [found.get(key) for key in keys]

    def _write_batch(self, ops: list[_Op], now: float) -> list[_Outcome]:
        conn = self._connection()
        self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
        outcomes: list[_Outcome] = []
        try:
            for op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, op(conn)))
                except Exception as exc:  # this caller's failure only; its neighbours commit
                    conn.execute("ROLLBACK TO op")
                    outcomes.append((False, exc))
                conn.execute("RELEASE op")
            self._housekeep(conn, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._commits += 1
        self._writes += len(ops)
        return outcomes

    def _housekeep(self, conn: sqlite3.Connection, now: float) -> None:
        for table in ("entries", "tags"):
            conn.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table}"
                " WHERE expires_at <= ? LIMIT ?)",
                (now, _PURGE_BATCH),
            )
        if self._max_bytes is None:
            return
        total_sql = "SELECT value FROM meta WHERE name = 'total_bytes'"
        while conn.execute(total_sql).fetchone()[0] > self._max_bytes:
            evicted = conn.execute(
                "DELETE FROM entries WHERE rowid IN"
                " (SELECT rowid FROM entries ORDER BY rowid LIMIT ?)",
                (_EVICT_BATCH,),
            ).rowcount
            if evicted == 0:  # empty table: the total drifted (edited by hand?); stop here
                break

    def _close_connection(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


def _fetchall(conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


# -- write operations: each runs in the worker thread, inside the group transaction -------------


def _op_set(
    keys: list[str], rows: list[tuple[str, bytes, float | None, int]], conn: sqlite3.Connection
) -> None:
    # DELETE + INSERT rather than UPSERT: the new row gets a fresh rowid (write order for
    # eviction) and the size triggers fire without needing recursive_triggers.
    conn.executemany("DELETE FROM entries WHERE key = ?", [(key,) for key in keys])
    conn.executemany("INSERT INTO entries (key, value, expires_at, size) VALUES (?, ?, ?, ?)", rows)


def _op_delete(keys: list[str], now: float, conn: sqlite3.Connection) -> int:
    existed = 0
    for chunk in _chunks(keys):
        marks = _marks(len(chunk))
        existed += conn.execute(
            f"SELECT count(*) FROM entries WHERE key IN ({marks}) AND {_LIVE}", (*chunk, now)
        ).fetchone()[0]
        conn.execute(f"DELETE FROM entries WHERE key IN ({marks})", chunk)
    return existed


def _op_add_tags(
    pairs: list[tuple[str, str]], expires_at: float | None, conn: sqlite3.Connection
) -> None:
    # Never shorten a recorded expiry: the same (tag, key) may be re-recorded by a shorter write.
    conn.executemany(
        "INSERT INTO tags (tag, key, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (tag, key) DO UPDATE SET expires_at = CASE"
        " WHEN tags.expires_at IS NULL OR excluded.expires_at IS NULL THEN NULL"
        " ELSE max(tags.expires_at, excluded.expires_at) END",
        [(tag, key, expires_at) for tag, key in pairs],
    )


def _op_pop_tags(tags: list[str], now: float, conn: sqlite3.Connection) -> list[str]:
    found: dict[str, None] = {}
    for chunk in _chunks(tags):
        marks = _marks(len(chunk))
        rows = conn.execute(
            f"SELECT key FROM tags WHERE tag IN ({marks}) AND {_LIVE}", (*chunk, now)
        ).fetchall()
        found.update((key, None) for (key,) in rows)
        conn.execute(f"DELETE FROM tags WHERE tag IN ({marks})", chunk)
    return list(found)
