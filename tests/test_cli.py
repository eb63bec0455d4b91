"""The ``asynccache`` command, run in-process through ``main(argv)``.

``main`` runs its own event loop, so these are plain sync tests. The demo test runs the real
stack (FakeProvider over HTTP, the openai SDK, wrap_openai, a temp SQLite file) on a small, fast
workload and checks the printed table says what the demo promises: single-flight and hits save
upstream calls in pass 1, and a new Cache on the same file answers everything from L2/L1.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from asynccache import Cache, CacheMissError, CacheOptions, CacheRequest
from asynccache.cli import main


def _number(section: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d,.]+)", section, re.MULTILINE)
    assert match is not None, f"no {label!r} row in:\n{section}"
    return float(match.group(1).replace(",", ""))


def test_demo_prints_honest_tables(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--requests", "300", "--latency-min", "0.01", "--latency-max", "0.03"]
    assert main([*argv, "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    _, first, second = re.split(r"^pass \d: ", out, flags=re.MULTILINE)

    assert _number(first, "requests") == 300
    upstream = _number(first, "upstream calls")
    assert 0 < upstream < 300
    assert f"FakeProvider received {int(upstream):,}" in first  # the cache's count is the truth
    assert _number(first, "coalesced (single-flight)") > 0  # the burst of 20 shares one call
    served = sum(
        _number(first, label)
        for label in ("l1 hits (memory)", "l2 hits (shared store)", "coalesced (single-flight)")
    )
    assert served + _number(first, "misses") == 300

    assert _number(second, "requests") == 300
    assert _number(second, "upstream calls") == 0
    assert _number(second, "hit rate") == 100.0
    assert _number(second, "l2 hits (shared store)") > 0
    assert _number(second, "misses") == 0
    assert "dollars saved" in second and "wall time" in second


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"  # absolute path: four slashes, as SQLAlchemy


async def _store(url: str, text: str, tags: tuple[str, ...]) -> None:
    async def answer() -> str:
        return f"answer to {text}"

    async with Cache.from_url(url) as cache:
        req = CacheRequest("fn", "demo", {"q": text}, options=CacheOptions(tags=tags))
        await cache.get_or_fetch(req, answer)


async def _cached(url: str, text: str) -> bool:
    async def never() -> str:
        raise AssertionError("mode='only' must not call upstream")

    async with Cache.from_url(url) as cache:
        req = CacheRequest("fn", "demo", {"q": text}, options=CacheOptions(mode="only"))
        try:
            await cache.get_or_fetch(req, never)
        except CacheMissError:
            return False
        return True


def test_invalidate_tags_deletes_tagged_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _url(tmp_path)
    asyncio.run(_store(url, "reset router", ("faq", "product:router")))
    asyncio.run(_store(url, "opening hours", ("greeting",)))

    assert main(["invalidate-tags", "--url", url, "faq"]) == 0
    assert "invalidated 1 entry tagged faq" in capsys.readouterr().out
    assert not asyncio.run(_cached(url, "reset router"))
    assert asyncio.run(_cached(url, "opening hours"))


def test_clear_forgets_the_namespace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _url(tmp_path)
    asyncio.run(_store(url, "reset router", ()))
    assert asyncio.run(_cached(url, "reset router"))

    assert main(["clear", "--url", url, "--namespace", "other"]) == 0
    assert asyncio.run(_cached(url, "reset router"))  # another namespace: untouched

    assert main(["clear", "--url", url]) == 0
    assert "cleared namespace 'default'" in capsys.readouterr().out
    assert not asyncio.run(_cached(url, "reset router"))


@pytest.mark.parametrize("command", [["clear"], ["invalidate-tags", "faq"]])
def test_bad_url_scheme_is_one_line_and_exit_1(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command[0], "--url", "mongodb://127.0.0.1/x", *command[1:]]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "'mongodb'" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["clear"]) == 2  # --url is required
    assert main(["invalidate-tags", "--url", "memory://"]) == 2  # at least one tag
    assert main(["demo", "--requests", "0"]) == 2
    assert "usage: asynccache" in capsys.readouterr().err
