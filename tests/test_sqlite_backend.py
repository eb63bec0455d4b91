"""SQLite specifics on real files: group commit, several writers on one file, expiry, size cap."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asynccache import BackendError, BackendTimeoutError
from asynccache.backends import SQLiteBackend

REPO_ROOT = Path(__file__).resolve().parent.parent

WRITER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from asynccache.backends import SQLiteBackend

    async def main() -> None:
        backend = SQLiteBackend(sys.argv[1])
        try:
            await backend.set_many([("proc-ready", b"1", None)])
            print("ready", flush=True)
            for i in range(200):
                await backend.set_many([(f"proc-{i}", b"p%d" % i, None)])
        finally:
            await backend.aclose()

    asyncio.run(main())
    """
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def query(path: Path, sql: str) -> object:
    with sqlite3.connect(path) as conn:  # a second, independent reader of the same file
        row = conn.execute(sql).fetchone()
    conn.close()
    return row[0]


@pytest.fixture
async def backend(tmp_sqlite_path: Path) -> AsyncIterator[SQLiteBackend]:
    b = SQLiteBackend(tmp_sqlite_path)
    yield b
    await b.aclose()


async def test_schema_version_and_wal(backend: SQLiteBackend, tmp_sqlite_path: Path) -> None:
    await backend.set_many([("k", b"v", None)])
    assert query(tmp_sqlite_path, "PRAGMA user_version") == 1
    assert query(tmp_sqlite_path, "PRAGMA journal_mode") == "wal"


async def test_concurrent_writes_are_group_committed(backend: SQLiteBackend) -> None:
    await asyncio.gather(*(backend.set_many([(f"k{i}", b"%d" % i, None)]) for i in range(500)))
    got = await backend.get_many([f"k{i}" for i in range(500)])
    assert got == [b"%d" % i for i in range(500)]
    stats = backend.statistics()
    assert stats.writes == 500
    assert stats.commits <= 5, stats  # one transaction for the whole tick, give or take


async def test_writers_in_two_instances_and_a_subprocess_share_one_file(
    tmp_sqlite_path: Path,
) -> None:
    a, b = SQLiteBackend(tmp_sqlite_path), SQLiteBackend(tmp_sqlite_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER_SCRIPT, str(tmp_sqlite_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 8) == b"ready\n"

        async def write(backend: SQLiteBackend, name: str) -> None:
            for i in range(200):
                await backend.set_many([(f"{name}-{i}", b"x", None)])

        await asyncio.gather(write(a, "a"), write(b, "b"))
        _, stderr = await asyncio.wait_for(proc.communicate(), 8)
        assert proc.returncode == 0, stderr.decode()
        keys = [f"{name}-{i}" for name in ("a", "b", "proc") for i in range(200)]
        got = await a.get_many(keys)
        assert [k for k, v in zip(keys, got, strict=True) if v is None] == []
        assert (await b.get_many(["proc-7"])) == [b"p7"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await a.aclose()
        await b.aclose()


async def test_expired_rows_are_misses_and_get_purged(tmp_sqlite_path: Path) -> None:
    clock = FakeClock()
    backend = SQLiteBackend(tmp_sqlite_path, clock=clock)
    try:
        await backend.set_many([(f"old{i}", b"v", 5) for i in range(100)])
        await backend.set_many([("keep", b"k", None)])
        clock.now += 6
        assert await backend.get_many(["old0", "old99", "keep"]) == [None, None, b"k"]
        assert await backend.delete_many(["old1"]) == 0  # expired rows did not "exist"
        await backend.set_many([("trigger", b"t", None)])  # a write purges a bounded batch
        assert query(tmp_sqlite_path, "SELECT count(*) FROM entries") == 2
    finally:
        await backend.aclose()


async def test_max_bytes_cap_evicts_least_recently_written(tmp_sqlite_path: Path) -> None:
    backend = SQLiteBackend(tmp_sqlite_path, max_bytes=10_000)
    try:
        for i in range(50):
            await backend.set_many([(f"k{i}", bytes(1000), None)])
        total = query(tmp_sqlite_path, "SELECT sum(size) FROM entries")
        assert isinstance(total, int) and 0 < total <= 10_000
        assert query(tmp_sqlite_path, "SELECT value FROM meta WHERE name = 'total_bytes'") == total
        got = await backend.get_many(["k0", "k10", "k49"])
        assert got == [None, None, bytes(1000)]
    finally:
        await backend.aclose()


async def test_a_held_lock_is_a_timeout_then_the_write_still_lands(tmp_sqlite_path: Path) -> None:
    backend = SQLiteBackend(tmp_sqlite_path, busy_timeout=5.0, op_timeout=0.2)
    try:
        await backend.set_many([("warm", b"w", None)])  # opened, schema in place
        holder = sqlite3.connect(tmp_sqlite_path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with pytest.raises(BackendTimeoutError):
                await backend.set_many([("late", b"l", None)])
            holder.execute("COMMIT")
        finally:
            holder.close()
        # the worker kept waiting inside busy_timeout and committed once the lock was free
        for _ in range(50):
            if await backend.get_many(["late"]) == [b"l"]:
                break
            await asyncio.sleep(0.02)
        assert await backend.get_many(["late", "warm"]) == [b"l", b"w"]
    finally:
        await backend.aclose()


async def test_a_newer_schema_is_refused_clearly(tmp_sqlite_path: Path) -> None:
    tmp_sqlite_path.parent.mkdir(parents=True)
    with sqlite3.connect(tmp_sqlite_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    backend = SQLiteBackend(tmp_sqlite_path)
    try:
        with pytest.raises(BackendError, match="newer"):
            await backend.get_many(["k"])
    finally:
        await backend.aclose()


async def test_closed_backend_raises_backend_error(backend: SQLiteBackend) -> None:
    await backend.aclose()
    with pytest.raises(BackendError, match="closed"):
        await backend.set_many([("k", b"v", None)])


async def test_reads_in_one_tick_share_one_trip_to_the_thread(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "reads.db")
    try:
        await backend.set_many([(f"k{i}", str(i).encode(), None) for i in range(50)])
        results = await asyncio.gather(
            *(backend.get_many([f"k{i % 50}", "missing"]) for i in range(200))
        )
        assert [r[0] for r in results] == [str(i % 50).encode() for i in range(200)]
        assert all(r[1] is None for r in results)
        stats = backend.statistics()
        assert (stats.reads, stats.read_trips) == (200, 1)
    finally:
        await backend.aclose()
