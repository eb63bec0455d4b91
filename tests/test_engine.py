"""The engine over every store: lookups, modes, single-flight, invalidation, integrity, retries.

The upstream is the engine's one seam (a ``sender`` coroutine); here it is a small counting
coroutine standing in for a provider. Everything else is real: memory, SQLite in a temp dir,
and a redis-server this test run started itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import random
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from asynccache import (
    Cache,
    CachedResponse,
    CacheMissError,
    CacheOptions,
    CachePolicy,
    CacheRequest,
    CacheStatus,
    ConfigurationError,
    Entry,
    KeyBuildError,
    RetryPolicy,
    Usage,
)
from asynccache._exceptions import CacheClosedError
from asynccache._models import answer_of, entry_of, usage_of
from asynccache._recording import Recording
from asynccache.backends import MemoryBackend, RedisBackend, SQLiteBackend
from tests.support import RedisServer, TaskCounter
from tests.support.held_store import HeldStore

FAST_RETRY = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)


class Upstream:
    """A stand-in provider: counts calls, answers after ``delay``, fails on demand."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0
        self.failures: list[BaseException] = []

    def answer(self, text: str, finish: str = "stop") -> dict[str, Any]:
        return {
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100},
        }

    def sender(self, text: str = "answer", finish: str = "stop") -> Any:
        async def send() -> dict[str, Any]:
            self.calls += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.failures:
                raise self.failures.pop(0)
            return self.answer(text, finish)

        return send


class StatusError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def chat(prompt: str = "hello", tenant: str | None = None, **extra: Any) -> CacheRequest:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
    }
    return CacheRequest("openai", "chat.completions", body, tenant, **extra)


def with_body(**fields: Any) -> CacheRequest:
    """``chat()`` with these body fields set."""
    return CacheRequest("openai", "chat.completions", {**chat().body, **fields})


@pytest.fixture(params=["memory", "l2-only-sqlite", "sqlite", "redis"])
async def cache(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Cache]:
    kind = request.param
    if kind == "memory":
        c = Cache.from_url("memory://", retry=FAST_RETRY)
    elif kind == "l2-only-sqlite":
        c = Cache(SQLiteBackend(str(tmp_path / "c.db")), l1_max_entries=0, retry=FAST_RETRY)
    elif kind == "sqlite":
        c = Cache.from_url(f"sqlite:///{tmp_path}/c.db", retry=FAST_RETRY)
    else:
        url = request.getfixturevalue("redis_url")
        c = Cache.from_url(url, retry=FAST_RETRY)
    async with c:
        yield c


async def test_miss_then_hit_counts_and_saves(cache: Cache) -> None:
    up = Upstream()
    first = await cache.get_or_fetch(chat(), up.sender())
    second = await cache.get_or_fetch(chat(), up.sender())
    assert first.status.outcome == "miss" and second.status.outcome == "hit"
    assert second.status.layer == ("l2" if cache._l1 is None else "l1")
    assert second.value == first.value and up.calls == 1
    st = cache.stats()
    assert (st.misses, st.hits, st.upstream_calls, st.stores) == (1, 1, 1, 1)
    assert st.input_tokens_saved == 1000 and st.output_tokens_saved == 100
    assert st.usd_saved == pytest.approx((1000 * 0.15 + 100 * 0.60) / 1e6)
    assert st.hit_rate == 0.5


async def test_remembered_decisions_follow_the_body_and_the_policy() -> None:
    """The policy's decision is remembered per body, like the digest (``Cache._admit``): a
    body changed in place is judged again, and a new policy judges every request afresh."""
    up = Upstream()
    async with Cache.from_url("memory://") as cache:
        request = chat()
        assert (await cache.get_or_fetch(request, up.sender())).status.outcome == "miss"
        assert (await cache.get_or_fetch(request, up.sender())).status.outcome == "hit"
        request.body["temperature"] = 0.7  # type: ignore[index]
        sampled = await cache.get_or_fetch(request, up.sender())
        assert sampled.status.outcome == "bypass" and "temperature=0.7" in str(sampled.status)
        request.body["temperature"] = 0  # type: ignore[index]
        assert (await cache.get_or_fetch(request, up.sender())).status.outcome == "hit"
        del request.body["temperature"]  # type: ignore[attr-defined]
        assert (await cache.get_or_fetch(request, up.sender())).status.outcome == "miss"
        assert (await cache.get_or_fetch(request, up.sender())).status.outcome == "hit"
        cache.policy = CachePolicy(require_zero_temperature=True)
        strict = await cache.get_or_fetch(request, up.sender())
        assert strict.status.outcome == "bypass" and "requires temperature=0" in str(strict.status)
        assert up.calls == 4


async def test_every_answer_l1_holds_keeps_its_remembered_digest() -> None:
    """The digest memo grows with L1 (``Cache._remember``): hits cycling over more requests
    than its 4,096 floor, every one held by L1, find every digest remembered, so no hit pays
    for the policy and the key rules again."""
    up = Upstream()
    async with Cache.from_url("memory://") as cache:
        requests = [chat(f"question {i}") for i in range(5000)]
        for request in requests:
            await cache.get_or_fetch(request, up.sender())
        for _ in range(2):
            for request in requests:
                await cache.get_or_fetch(request, up.sender())
        assert cache.stats().hits_l1 == 2 * len(requests)
        assert len(cache._admitted) == len(requests)


async def test_values_json_writes_as_null_are_judged_every_time() -> None:
    """orjson writes NaN and Infinity as null, so such bodies share a fingerprint with a None in
    their place: a body with a top-level None is not remembered, and each is judged as given
    (``Cache._rememberable``). A top-level NaN is bad input."""
    up = Upstream()
    async with Cache.from_url("memory://") as cache:
        for first in (None, float("inf")):
            for temperature in (first, float("inf") if first is None else None):
                got = await cache.get_or_fetch(with_body(temperature=temperature), up.sender())
                if temperature is None:
                    assert got.status.outcome in ("miss", "hit")
                else:
                    assert got.status.outcome == "bypass"
                    assert got.status.reason == "sampling requested (temperature=inf)"
        with pytest.raises(KeyBuildError, match="top_p is nan, not a finite number"):
            await cache.get_or_fetch(with_body(top_p=float("nan")), up.sender())
        assert cache.stats().stores == 1


async def test_a_name_the_policy_cannot_read_is_never_remembered() -> None:
    """A key that is not a str is written as one (an enum as its value) but not found by the
    policy under that name: admitted, it must not make the plain spelling a hit."""
    import enum

    class Field(enum.Enum):
        TEMPERATURE = "temperature"

    up = Upstream()
    async with Cache.from_url("memory://") as cache:
        body: dict[Any, Any] = {**chat().body, Field.TEMPERATURE: 0.9}
        del body["temperature"]
        twin = CacheRequest("openai", "chat.completions", body)
        assert (await cache.get_or_fetch(twin, up.sender())).status.outcome == "miss"
        sampled = await cache.get_or_fetch(with_body(temperature=0.9), up.sender())
        assert sampled.status.outcome == "bypass"


async def test_a_top_level_value_written_as_null_is_never_remembered() -> None:
    """An enum whose value is None is written as null, like a NaN: remembered, it would let a
    top-level NaN (bad input) be served as its hit."""
    import enum

    class Knob(enum.Enum):
        UNSET = None

    up = Upstream()
    async with Cache.from_url("memory://") as cache:
        assert (
            await cache.get_or_fetch(with_body(top_p=Knob.UNSET), up.sender())
        ).status.outcome == "miss"
        for bad in (float("nan"), float("inf")):
            with pytest.raises(KeyBuildError, match="top_p"):
                await cache.get_or_fetch(with_body(top_p=bad), up.sender())


async def test_sampling_asked_for_through_extra_body_is_not_cached() -> None:
    """The SDKs send ``extra_body`` at the top level of the request, so the policy reads it,
    and the memo takes only bodies whose ``extra_body`` it reads plainly: an enum name or a
    value written as null there must not make a sampled request a hit."""
    import enum

    class Param(enum.Enum):
        TEMPERATURE = "temperature"

    up = Upstream()
    async with Cache.from_url("memory://") as cache:
        for extra in ({"temperature": 0.9}, {"n": 3}, {"previous_response_id": "resp_1"}):
            got = await cache.get_or_fetch(with_body(extra_body=extra), up.sender())
            assert got.status.outcome == "bypass", extra
        for first, then in (
            ({Param.TEMPERATURE: 0.9}, {"temperature": 0.9}),
            ({"temperature": float("-inf")}, {"temperature": float("inf")}),
        ):
            await cache.get_or_fetch(with_body(extra_body=first), up.sender())
            got = await cache.get_or_fetch(with_body(extra_body=then), up.sender())
            assert got.status.outcome == "bypass", (first, then)


async def test_bodies_the_key_rules_take_apart_from_json() -> None:
    """The key is built from the body's JSON without the fields it drops: any Mapping is a
    body, and a volatile field needs no JSON (openai's ``timeout=`` takes a Timeout object)."""
    import types

    class Timeout:  # what openai's timeout= takes: not JSON
        def __init__(self, seconds: float) -> None:
            self.seconds = seconds

    up = Upstream()
    async with Cache.from_url("memory://") as cache:
        plain = with_body(timeout=Timeout(10.0))
        frozen = CacheRequest("openai", "chat.completions", types.MappingProxyType(chat().body))
        for request in (plain, plain, frozen):
            await cache.get_or_fetch(request, up.sender())
        assert up.calls == 1
        assert cache.key_for(plain) == cache.key_for(frozen) == cache.key_for(chat())


async def test_a_policy_of_ones_own_judges_every_call() -> None:
    """Only the built-in policy's decisions are remembered: a subclass may read what the
    memo is not keyed by, such as the tenant."""
    import dataclasses

    from asynccache._policy import Decision

    @dataclasses.dataclass(frozen=True, slots=True)
    class NoFreeTier(CachePolicy):
        def check_request(self, request: CacheRequest) -> Decision:
            if request.tenant == "free":
                return Decision(False, "free tier")
            return CachePolicy.check_request(self, request)

    up = Upstream()
    async with Cache.from_url("memory://", policy=NoFreeTier()) as cache:
        outcomes = [
            (await cache.get_or_fetch(chat(tenant=t), up.sender())).status.outcome
            for t in ("paid", "free", "paid", "free")
        ]
    assert outcomes == ["miss", "bypass", "hit", "bypass"]


async def test_a_hits_status_is_the_status_its_constructor_builds() -> None:
    """Hits build their status the fast way (``_models.answer_of``, via a twin class): an
    ordinary frozen ``CacheStatus`` with every field set, the same for orjson and ``asdict``
    as one from ``CacheStatus(...)``."""
    up = Upstream()
    async with Cache.from_url("memory://") as cache:
        await cache.get_or_fetch(chat(), up.sender())
        got = await cache.get_or_fetch(chat(), up.sender())
    hit = got.status
    built = CacheStatus("hit", "l1", hit.key, age=hit.age)
    assert type(got) is CachedResponse and got == CachedResponse(got.value, built, got.entry)
    assert type(hit) is CacheStatus and hit == built and hash(hit) == hash(built)
    assert dataclasses.asdict(hit) == dataclasses.asdict(built)
    assert orjson.dumps(hit) == orjson.dumps(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hit.age = 0.0  # type: ignore[misc]


def test_the_fast_constructors_build_what_the_dataclasses_build() -> None:
    """``answer_of``, ``entry_of`` and ``usage_of`` fill a twin class and switch its class: a
    distinct value per argument, so that two fields swapped or one left unset fails here (an
    unset slot would not fail until read, and orjson does not check)."""
    usage = usage_of(1, 2, 3, 4, 5)
    assert type(usage) is Usage and usage == Usage(1, 2, 3, 4, 5)
    rec = Recording((), ())
    entry = entry_of("v", "d", "t", 1.5, 2.5, "m", usage, ("a",), "c", rec)
    assert type(entry) is Entry
    assert entry == Entry("v", "d", "t", 1.5, 2.5, "m", usage, ("a",), "c", rec)
    for outcome, layer, key, age in [("hit", "l2", "K", 1.5), ("coalesced", None, "K2", None)]:
        got = answer_of("v", outcome, layer, key, age, entry)  # type: ignore[arg-type]
        want = CachedResponse("v", CacheStatus(outcome, layer, key, age=age), entry)  # type: ignore[arg-type]
        assert type(got) is CachedResponse and type(got.status) is CacheStatus
        assert got == want and repr(got) == repr(want)
        assert orjson.dumps(got.status) == orjson.dumps(want.status)
    for obj in (usage, entry, got, got.status):
        assert all(hasattr(obj, f.name) for f in dataclasses.fields(obj))


async def test_an_entry_read_from_the_store_is_the_frozen_entry_its_constructor_builds() -> None:
    """The store's entries are decoded the fast way (``_models.entry_of`` and ``usage_of``, via
    a twin class): the result must be an ``Entry`` and a ``Usage`` like any other, with every
    field set (an unset slot would raise here), equal and immutable."""
    up = Upstream()
    opts = CacheOptions(ttl=60, tags=("faq",), category="support")
    async with Cache(MemoryBackend(), l1_max_entries=0) as cache:
        stored = (await cache.get_or_fetch(chat(options=opts), up.sender())).entry
        read = (await cache.get_or_fetch(chat(options=opts), up.sender())).entry
    assert stored is not None and read is not None and read is not stored
    for got in (stored, read):
        assert type(got) is Entry and type(got.usage) is Usage
        rebuilt = Entry(**{f.name: getattr(got, f.name) for f in dataclasses.fields(Entry)})
        assert got == rebuilt and hash(got.usage) == hash(Usage(1000, 100))
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.value = None  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.usage.input_tokens = 0  # type: ignore[misc]
    assert read == stored and read.tags == ("faq",) and read.category == "support"


async def test_thousand_concurrent_identical_misses_make_one_call(cache: Cache) -> None:
    up = Upstream(delay=0.05)
    results = await asyncio.gather(*(cache.get_or_fetch(chat(), up.sender()) for _ in range(1000)))
    assert up.calls == 1
    outcomes = [r.status.outcome for r in results]
    assert outcomes.count("miss") == 1 and outcomes.count("coalesced") == 999
    assert all(r.value == results[0].value for r in results)


async def _until(done: Any, what: str) -> None:
    for _ in range(1000):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def test_a_lone_miss_reads_the_store_once() -> None:
    store, up = HeldStore(), Upstream()
    async with Cache(store, l1_max_entries=0, generation_refresh=3600) as cache:
        await cache.get_or_fetch(chat("first"), up.sender())  # reads the generation too
        reads = store.reads
        got = await cache.get_or_fetch(chat("second"), up.sender())
        assert got.status.outcome == "miss" and store.reads - reads == 1
        assert (await cache.get_or_fetch(chat("second"), up.sender())).status.outcome == "hit"
    assert up.calls == 2


async def test_a_miss_whose_read_raced_a_local_write_reads_again_instead_of_calling() -> None:
    # B's read is answered (nothing there) before A's flight stores, and reaches B after that
    # flight has ended: B finds no flight to join, and must not pay for a second call.
    store, up = HeldStore(), Upstream()
    release = asyncio.Event()

    async def held_send() -> dict[str, Any]:
        up.calls += 1
        await release.wait()
        return up.answer("from A")

    async with Cache(store, l1_max_entries=0, generation_refresh=3600) as cache:
        await cache.get_or_fetch(chat("warm"), up.sender())
        a = asyncio.create_task(cache.get_or_fetch(chat(), held_send))
        await _until(lambda: up.calls == 2, "A's flight calls upstream")
        store.hold = asyncio.Event()
        reads = store.reads
        b = asyncio.create_task(cache.get_or_fetch(chat(), up.sender("from B")))
        await _until(lambda: store.held == 1, "B's read is answered and held")
        release.set()
        assert (await a).status.outcome == "miss"  # A's flight stored and ended
        store.hold.set()
        got = await b
    assert up.calls == 2 and store.reads - reads == 2  # B's lookup, and B's flight again
    assert (got.status.outcome, got.status.layer) == ("hit", "l2")
    assert got.value["choices"][0]["message"]["content"] == "from A"


async def test_a_miss_whose_read_raced_a_write_under_way_reads_again_instead_of_calling() -> None:
    # W (a refresh: a flight no one joins) has put its answer in the store, and its write has
    # not returned, when B's empty read reaches B. No flight is left for B to join.
    store, up = HeldStore(), Upstream()
    go_f, go_w = asyncio.Event(), asyncio.Event()

    def held(text: str, go: asyncio.Event, fail: bool = False) -> Any:
        async def send() -> dict[str, Any]:
            up.calls += 1
            await go.wait()
            if fail:
                raise StatusError(400)
            return up.answer(text)

        return send

    async with Cache(store, l1_max_entries=0, generation_refresh=3600) as cache:
        await cache.get_or_fetch(chat("warm"), up.sender())
        f = asyncio.create_task(cache.get_or_fetch(chat(), held("from F", go_f, fail=True)))
        await _until(lambda: up.calls == 2, "F's flight calls upstream")
        refresh = chat(options=CacheOptions(mode="refresh"))
        w = asyncio.create_task(cache.get_or_fetch(refresh, held("from W", go_w)))
        await _until(lambda: up.calls == 3, "W calls upstream beside F")
        go_f.set()
        with pytest.raises(StatusError):
            await f  # F's error is never stored: the key has no flight now
        store.hold = asyncio.Event()
        reads = store.reads
        b = asyncio.create_task(cache.get_or_fetch(chat(), up.sender("from B")))
        await _until(lambda: store.held == 1, "B's read is answered and held")
        store.hold_writes = asyncio.Event()
        go_w.set()
        await _until(lambda: store.writes_held == 1, "W's answer is in the store")
        store.hold.set()
        await _until(lambda: store.reads - reads == 2 or b.done(), "B reads again")
        store.hold_writes.set()
        got = await b
        assert (await w).value["choices"][0]["message"]["content"] == "from W"
    assert up.calls == 3
    assert (got.status.outcome, got.status.layer) == ("hit", "l2")
    assert got.value["choices"][0]["message"]["content"] == "from W"


async def test_cancelled_callers_do_not_cancel_the_flight(cache: Cache) -> None:
    up = Upstream(delay=0.5)  # long enough that a loaded machine still cancels mid-flight
    tasks = [asyncio.create_task(cache.get_or_fetch(chat(), up.sender())) for _ in range(50)]
    await asyncio.sleep(0.02)
    for t in tasks[:25]:  # the leader (first task) among them
        t.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(d, asyncio.CancelledError) for d in done[:25])
    assert all(d.value["choices"][0]["message"]["content"] == "answer" for d in done[25:])  # type: ignore[union-attr]
    assert up.calls == 1
    assert (await cache.get_or_fetch(chat(), up.sender())).status.outcome == "hit"


async def test_error_reaches_every_waiter_and_is_not_cached(cache: Cache) -> None:
    up = Upstream(delay=0.05)
    up.failures = [StatusError(400)]  # not transient: no retry
    results = await asyncio.gather(
        *(cache.get_or_fetch(chat(), up.sender()) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, StatusError) for r in results) and up.calls == 1
    again = await cache.get_or_fetch(chat(), up.sender())
    assert again.status.outcome == "miss" and up.calls == 2
    assert cache.stats().upstream_errors == 1


async def test_transient_errors_are_retried_client_errors_are_not(cache: Cache) -> None:
    up = Upstream()
    up.failures = [StatusError(429), StatusError(503)]
    r = await cache.get_or_fetch(chat("a"), up.sender())
    assert r.status.outcome == "miss" and up.calls == 3
    assert cache.stats().upstream_retries == 2
    up.failures = [StatusError(503)] * 5
    with pytest.raises(StatusError):
        await cache.get_or_fetch(chat("b"), up.sender())
    assert up.calls == 6  # bounded: 3 attempts


def test_backoff_is_full_jitter_growing_to_a_cap_and_honours_retry_after() -> None:
    policy = RetryPolicy(initial=1.0, maximum=4.0, max_retry_after=10.0)
    for failures, cap in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)):
        waits = [policy.backoff(failures, None) for _ in range(300)]
        assert all(0 <= w <= cap for w in waits) and max(waits) > cap / 2

    class Limited(Exception):
        def __init__(self, retry_after: str) -> None:
            self.response = type("R", (), {"headers": {"retry-after": retry_after}})()

    assert policy.backoff(1, Limited("3")) == 3.0
    assert policy.backoff(2, Limited("60")) == 10.0  # capped at max_retry_after
    assert 0 <= policy.backoff(5_000, None) <= 4.0  # far past where 2**n overflows a float


async def test_modes(cache: Cache) -> None:
    up = Upstream()
    with pytest.raises(CacheMissError):
        await cache.get_or_fetch(chat(options=CacheOptions(mode="only")), up.sender())
    assert up.calls == 0
    r = await cache.get_or_fetch(chat(options=CacheOptions(mode="no-store")), up.sender())
    assert r.status.outcome == "miss"
    r = await cache.get_or_fetch(chat(), up.sender("v1"))
    assert r.status.outcome == "miss" and up.calls == 2  # no-store stored nothing
    r = await cache.get_or_fetch(chat(options=CacheOptions(mode="refresh")), up.sender("v2"))
    assert r.status.outcome == "miss" and up.calls == 3
    r = await cache.get_or_fetch(chat(options=CacheOptions(mode="only")), up.sender())
    assert r.value["choices"][0]["message"]["content"] == "v2"
    with cache.options(mode="skip"):
        r = await cache.get_or_fetch(chat(), up.sender("v3"))
    assert r.status.outcome == "bypass" and r.status.reason == "mode=skip" and up.calls == 4
    assert (await cache.get_or_fetch(chat(), up.sender())).value["choices"][0]["message"][
        "content"
    ] == "v2"


async def test_policy_refusals(cache: Cache) -> None:
    up = Upstream()
    r = await cache.get_or_fetch(chat(), up.sender(finish="length"))
    assert r.status.outcome == "miss"
    r = await cache.get_or_fetch(chat(), up.sender())
    assert r.status.outcome == "miss" and up.calls == 2  # the truncated answer was not stored
    hot = CacheRequest(
        "openai", "chat.completions", {"model": "m", "messages": [], "temperature": 0.9}
    )
    r = await cache.get_or_fetch(hot, up.sender())
    assert r.status.outcome == "bypass" and "temperature" in (r.status.reason or "")
    st = cache.stats()
    assert st.store_refused == 1 and st.bypassed == 1


async def test_tenants_never_share_answers(cache: Cache) -> None:
    up = Upstream()
    await cache.get_or_fetch(chat(tenant="acme"), up.sender("for acme"))
    r = await cache.get_or_fetch(chat(tenant="globex"), up.sender("for globex"))
    assert (
        r.status.outcome == "miss" and r.value["choices"][0]["message"]["content"] == "for globex"
    )


async def test_invalidate_and_tags(cache: Cache) -> None:
    up = Upstream()
    await cache.get_or_fetch(chat("a", options=CacheOptions(tags=("product:42",))), up.sender())
    await cache.get_or_fetch(
        chat("b", options=CacheOptions(tags=("product:42", "faq"))), up.sender()
    )
    await cache.get_or_fetch(chat("c"), up.sender())
    assert await cache.invalidate_tags("product:42") >= 2
    for prompt, outcome in (("a", "miss"), ("b", "miss"), ("c", "hit")):
        assert (await cache.get_or_fetch(chat(prompt), up.sender())).status.outcome == outcome
    await cache.invalidate(chat("c"))
    assert (await cache.get_or_fetch(chat("c"), up.sender())).status.outcome == "miss"


async def test_clear_is_a_generation_bump(cache: Cache) -> None:
    up = Upstream()
    await cache.get_or_fetch(chat(), up.sender())
    key_before = cache.key_for(chat())
    await cache.clear()
    assert cache.key_for(chat()) != key_before
    assert (await cache.get_or_fetch(chat(), up.sender())).status.outcome == "miss"


async def test_memoize_distinguishes_none_and_normalises(cache: Cache) -> None:
    calls = 0

    @cache.memoize(ttl=60)
    async def lookup(x: int, flag: bool = False) -> Any:
        nonlocal calls
        calls += 1
        return None if x == 0 else (x, flag)

    assert await lookup(0) is None and await lookup(0) is None
    assert await lookup(1) == [1, False] and await lookup(x=1, flag=False) == [1, False]
    assert calls == 2
    await lookup.invalidate(1)  # type: ignore[attr-defined]
    await lookup(1)
    assert calls == 3

    @cache.memoize()
    async def bad() -> Any:
        return object()

    with pytest.raises(TypeError, match="not JSON-serialisable"):
        await bad()


async def test_closed_cache_raises_clearly(cache: Cache) -> None:
    await cache.aclose()
    with pytest.raises(CacheClosedError, match="aclose"):
        await cache.get_or_fetch(chat(), Upstream().sender())


async def test_ttl_with_injected_clock(tmp_path: Any) -> None:
    now = [1_000_000.0]
    backend = MemoryBackend(clock=lambda: now[0])
    async with Cache(backend, clock=lambda: now[0], policy=CachePolicy(default_ttl=60)) as cache:
        up = Upstream()
        await cache.get_or_fetch(chat(), up.sender())
        now[0] += 59
        assert (await cache.get_or_fetch(chat(), up.sender())).status.outcome == "hit"
        now[0] += 2
        assert (await cache.get_or_fetch(chat(), up.sender())).status.outcome == "miss"


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_corrupt_and_mismatched_entries_are_misses(
    kind: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    def make() -> Any:
        if kind == "sqlite":
            return SQLiteBackend(str(tmp_path / "c.db"))
        return RedisBackend.from_url(request.getfixturevalue("redis_url"))

    up = Upstream()
    async with Cache(make(), l1_max_entries=0) as cache:
        key = cache.key_for(chat())
        await cache.backend.set_many([(key, b"\x00not json", None)])  # type: ignore[union-attr]
        r = await cache.get_or_fetch(chat(), up.sender())
        assert r.status.outcome == "miss" and cache.stats().integrity_errors == 1
        # An entry written for another tenant under this key is refused too.
        other = cache.key_for(chat(tenant="acme"))
        raw = (await cache.backend.get_many([key]))[0]  # type: ignore[union-attr]
        await cache.backend.set_many([(other, raw, None)])  # type: ignore[union-attr,list-item]
        r = await cache.get_or_fetch(chat(tenant="acme"), up.sender())
        assert r.status.outcome == "miss" and cache.stats().integrity_errors == 2
        assert up.calls == 2


#: Positions in the stored envelope (``_codec``): the tests below rewrite stored entries.
POS = {
    "digest": 1,
    "created_at": 3,
    "ttl": 4,
    "model": 5,
    "usage": 6,
    "tags": 7,
    "category": 8,
    "held": 9,  # [the writer's object-size tag, bytes]
}


async def stored(cache: Cache, key: str) -> list[Any]:
    doc = orjson.loads((await cache.backend.get_many([key]))[0])  # type: ignore[union-attr,arg-type]
    assert type(doc) is list
    return doc


async def rewrite(cache: Cache, key: str, field: str, value: Any) -> None:
    doc = await stored(cache, key)
    doc[POS[field]] = value
    await cache.backend.set_many([(key, orjson.dumps(doc), None)])  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("usage", [1, 2, "3", 4, 5]),
        ("usage", [[1], 2, 3, 4, 5]),
        ("usage", [1.5, 2, 3, 4, 5]),
        ("usage", [True, 2.0, 3, 4, 5]),
        ("usage", [1, 2, 3]),
        ("usage", {"input": 1}),
        ("created_at", "yesterday"),
        ("created_at", True),
        ("held", "3 KB"),
        ("held", 1.5),
        ("held", 4096),
        ("held", ["cpython-311-64", "4 KB"]),
        ("ttl", "60"),
        ("tags", ["faq", 7]),
        ("model", 42),
        ("category", ["news"]),
        ("digest", None),
    ],
)
async def test_an_envelope_field_of_the_wrong_type_is_a_miss(field: str, bad: Any) -> None:
    """Stored bytes come from other processes and versions: every field is checked on read,
    whatever was read before (1, 2, 3, 4, 5 as counts first: ``1 == 1.0 == True``)."""
    up = Upstream()
    async with Cache(MemoryBackend(), l1_max_entries=0) as cache:
        await cache.get_or_fetch(chat(), up.sender())
        await rewrite(cache, cache.key_for(chat()), "usage", [1, 2, 3, 4, 5])
        assert (await cache.get_or_fetch(chat(), up.sender())).status.outcome == "hit"
        key = cache.key_for(chat())
        assert (await cache.get_or_fetch(chat(), up.sender())).status.outcome == "hit"
        await rewrite(cache, key, field, bad)
        r = await cache.get_or_fetch(chat(), up.sender())
        assert r.status.outcome == "miss" and cache.stats().integrity_errors == 1


@pytest.mark.parametrize(
    "doc",
    [{"v": 1, "d": "x"}, [1, "x"], [2, "x", None], "an answer", None],
    ids=["the old object envelope", "an old array", "too short", "a string", "null"],
)
async def test_an_envelope_of_another_shape_or_version_is_a_miss(doc: Any) -> None:
    up = Upstream()
    async with Cache(MemoryBackend(), l1_max_entries=0) as cache:
        await cache.get_or_fetch(chat(), up.sender())
        key = cache.key_for(chat())
        await cache.backend.set_many([(key, orjson.dumps(doc), None)])  # type: ignore[union-attr]
        r = await cache.get_or_fetch(chat(), up.sender())
        assert r.status.outcome == "miss" and cache.stats().integrity_errors == 1


async def test_an_envelope_from_before_one_hour_cache_writes_still_reads() -> None:
    up = Upstream()
    async with Cache(MemoryBackend(), l1_max_entries=0) as cache:
        await cache.get_or_fetch(chat(), up.sender())
        key = cache.key_for(chat())
        await rewrite(cache, key, "usage", [7, 8, 0, 0])
        r = await cache.get_or_fetch(chat(), up.sender())
        assert r.status.outcome == "hit" and r.entry is not None
        assert (r.entry.usage.input_tokens, r.entry.usage.output_tokens) == (7, 8)


async def test_an_envelope_from_a_newer_writer_still_reads() -> None:
    """The format grows by appending (usage counts, the fifth was; fields after the known ones):
    a reader takes what it knows and never deletes a newer writer's entry as corrupt."""
    up = Upstream()
    async with Cache(MemoryBackend(), l1_max_entries=0) as cache:
        await cache.get_or_fetch(chat(), up.sender())
        key = cache.key_for(chat())
        await rewrite(cache, key, "usage", [7, 8, 0, 0, 0, 9, {"reasoning": 3}])
        doc = await stored(cache, key)
        await cache.backend.set_many([(key, orjson.dumps([*doc, None, "later"]), None)])  # type: ignore[union-attr]
        r = await cache.get_or_fetch(chat(), up.sender())
        assert r.status.outcome == "hit" and cache.stats().integrity_errors == 0
        assert r.entry is not None and r.entry.usage.input_tokens == 7


async def test_clear_reaches_other_processes_sharing_the_store(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    up = Upstream()
    async with (
        Cache.from_url(url, generation_refresh=0.0) as a,
        Cache.from_url(url, generation_refresh=0.0) as b,
    ):
        await a.get_or_fetch(chat(), up.sender())
        assert (await b.get_or_fetch(chat(), up.sender())).status.outcome == "hit"
        await a.clear()
        assert (await b.get_or_fetch(chat(), up.sender())).status.outcome == "miss"


async def test_batch_lookup_fetches_only_the_misses(cache: Cache) -> None:
    fetched: list[list[int]] = []

    def emb(text: str) -> CacheRequest:
        return CacheRequest(
            "openai", "embeddings", {"model": "text-embedding-3-small", "input": text}
        )

    texts = [f"t{i}" for i in range(100)]

    async def fetch_for(indices: list[int], names: list[str]) -> list[Any]:
        fetched.append(indices)
        return [
            {"embedding": [float(len(names[i]))], "tokens": 2, "model": "text-embedding-3-small"}
            for i in indices
        ]

    await cache.get_or_fetch_many(
        [emb(t) for t in texts[:90]], lambda ix: fetch_for(ix, texts[:90])
    )
    results = await cache.get_or_fetch_many(
        [emb(t) for t in texts], lambda ix: fetch_for(ix, texts)
    )
    assert len(fetched) == 2 and fetched[1] == list(range(90, 100))
    assert [r.status.outcome for r in results].count("hit") == 90
    assert [r.value["embedding"] for r in results] == [[float(len(t))] for t in texts]


async def test_skipped_and_refused_requests_build_no_key() -> None:
    """A request the cache will not read or write is never keyed, so a value the key cannot
    take (here an object) fails only where the key is needed: bypassed, it goes upstream."""
    odd = {"model": "m", "messages": [], "temperature": 0, "extra_body": {"x": object()}}
    refused = {**odd, "previous_response_id": "resp_1"}

    async def fetch(indices: list[int]) -> list[Any]:
        return [{"embedding": [1.0]} for _ in indices]

    async with Cache.from_url("memory://") as cache:
        with cache.options(mode="skip"):
            many = await cache.get_or_fetch_many([CacheRequest("openai", "e", odd)], fetch)
            one = await cache.get_or_fetch(CacheRequest("openai", "e", odd), fetch_one)
        assert many[0].status.outcome == one.status.outcome == "bypass"
        many = await cache.get_or_fetch_many([CacheRequest("openai", "e", refused)], fetch)
        one = await cache.get_or_fetch(CacheRequest("openai", "e", refused), fetch_one)
        assert (
            many[0].status.reason
            == one.status.reason
            == "stateful request (previous_response_id is set)"
        )
        mixed = [CacheRequest("openai", "e", refused), CacheRequest("openai", "e", odd)]
        judged_first = await cache.get_or_fetch_many(mixed, fetch)
        assert [r.status.outcome for r in judged_first] == ["bypass", "bypass"]
        with pytest.raises(KeyBuildError, match=r"extra_body\.x"):
            await cache.get_or_fetch(CacheRequest("openai", "e", odd), fetch_one)


async def fetch_one() -> Any:
    return {"embedding": [1.0]}


async def test_random_cancellations_never_cross_keys(cache: Cache) -> None:
    rng = random.Random(7)
    up = Upstream(delay=0.002)

    async def one(i: int) -> tuple[int, Any]:
        r = await cache.get_or_fetch(chat(f"q{i % 50}"), up.sender(f"a{i % 50}"))
        return i, r.value

    tasks = [asyncio.create_task(one(i)) for i in range(600)]
    for t in tasks:
        if rng.random() < 0.3:
            asyncio.get_running_loop().call_later(rng.random() * 0.01, t.cancel)
    for res in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(res, tuple):
            i, value = res
            assert value["choices"][0]["message"]["content"] == f"a{i % 50}"


def test_bad_urls_name_the_problem() -> None:
    with pytest.raises(ConfigurationError, match="ftp"):
        Cache.from_url("ftp://x")
    with pytest.raises(ConfigurationError, match="three slashes"):
        Cache.from_url("sqlite://cache.db")
    with pytest.raises(ConfigurationError, match="namespace"):
        Cache(namespace="a:b")


async def test_follower_waits_a_bounded_time_then_goes_upstream_itself() -> None:
    async with Cache.from_url("memory://", follower_timeout=0.05) as cache:
        slow, fast = Upstream(delay=0.5), Upstream()
        leader = asyncio.create_task(cache.get_or_fetch(chat(), slow.sender("slow")))
        await asyncio.sleep(0.01)
        follower = await cache.get_or_fetch(chat(), fast.sender("fast"))
        assert follower.status.outcome == "miss" and fast.calls == 1
        assert follower.value["choices"][0]["message"]["content"] == "fast"
        assert (await leader).status.outcome == "miss" and slow.calls == 1


async def test_each_follower_gets_its_own_follower_timeout() -> None:
    """One timer serves a flight's followers, re-armed for each: a follower that joined later
    is not timed out with the first one."""
    async with Cache.from_url("memory://", follower_timeout=0.2) as cache:
        slow = Upstream(delay=1.0)
        leader = asyncio.create_task(cache.get_or_fetch(chat(), slow.sender("slow")))
        await asyncio.sleep(0.01)
        early = asyncio.create_task(cache.get_or_fetch(chat(), Upstream().sender("early")))
        await asyncio.sleep(0.1)
        late = asyncio.create_task(cache.get_or_fetch(chat(), Upstream().sender("late")))
        assert (await early).status.outcome == "miss"  # gave up waiting, went upstream
        assert not late.done()  # still within its own 0.2 s
        assert (await late).value["choices"][0]["message"]["content"] == "late"
        leader.cancel()


async def test_followers_that_gave_up_are_not_kept_by_a_wedged_flight() -> None:
    """A follower that timed out went upstream itself; the flight it left must not keep it
    (its future holds the timeout, and so the caller's frames: a long prompt, say)."""
    release = asyncio.Event()

    class Marker:  # referenced only from one follower's frames
        pass

    async def wedged() -> Any:
        await release.wait()
        return Upstream().answer("late")

    refs: list[weakref.ref[Marker]] = []

    async def follower(cache: Cache) -> None:
        marker = Marker()
        refs.append(weakref.ref(marker))

        async def send() -> Any:
            return Upstream().answer(str(id(marker)))

        await cache.get_or_fetch(chat(), send)

    async with Cache.from_url("memory://", follower_timeout=0.01) as cache:
        leader = asyncio.create_task(cache.get_or_fetch(chat(), wedged))
        await asyncio.sleep(0)
        await asyncio.gather(*(follower(cache) for _ in range(50)))
        gc.collect()
        alive = sum(r() is not None for r in refs)
        release.set()
        await leader
    assert alive == 0, f"{alive} followers that gave up are still held by the flight"


async def test_a_follower_due_as_its_flight_lands_takes_the_answer() -> None:
    """Both timers come due in one loop iteration (the loop was busy): the flight's answer
    wins over the follower's timeout, so no second upstream call is paid for."""
    async with Cache.from_url("memory://", follower_timeout=0.02) as cache:
        up = Upstream(delay=0.03)
        leader = asyncio.create_task(cache.get_or_fetch(chat(), up.sender()))
        await asyncio.sleep(0)
        follower = asyncio.create_task(cache.get_or_fetch(chat(), up.sender()))
        await asyncio.sleep(0)
        time.sleep(0.1)  # noqa: ASYNC251 -- on purpose: the loop is held while both deadlines pass
        _, second = await asyncio.gather(leader, follower)
        assert up.calls == 1 and second.status.outcome == "coalesced"


async def test_hits_and_followers_create_no_tasks(cache: Cache) -> None:
    """The hot path creates no task (nor any shield or wait_for, which would create one):
    a hit is a lookup, a follower a future of its own; only the flight is a task."""
    up = Upstream(delay=0.05)
    callers = [asyncio.create_task(cache.get_or_fetch(chat(), up.sender())) for _ in range(500)]
    with TaskCounter() as counter:
        results = await asyncio.gather(*callers)
    # The flight, plus (Redis) at most one task per batch of L2 lookups: never one per caller.
    assert up.calls == 1 and counter.created < len(callers) // 10
    assert [r.status.outcome for r in results].count("coalesced") == 499
    with TaskCounter() as counter:
        hits = [await cache.get_or_fetch(chat(), up.sender()) for _ in range(100)]
    assert counter.created == 0 and {h.status.outcome for h in hits} == {"hit"}


async def test_a_locked_sqlite_file_fails_open(tmp_path: Any) -> None:
    import sqlite3

    path = tmp_path / "locked.db"
    async with Cache(SQLiteBackend(str(path), op_timeout=0.2), l1_max_entries=0) as cache:
        up = Upstream()
        await cache.get_or_fetch(chat("warm"), up.sender())
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
            results = await asyncio.gather(
                *(cache.get_or_fetch(chat(f"q{i}"), up.sender()) for i in range(10))
            )
            assert all(r.value["choices"][0]["message"]["content"] == "answer" for r in results)
            assert cache.stats().backend_errors >= 1
        finally:
            holder.execute("ROLLBACK")
            holder.close()


async def test_memoized_results_are_private_copies() -> None:
    async with Cache.from_url("memory://") as cache:

        @cache.memoize()
        async def items() -> dict[str, list[int]]:
            return {"items": [1, 2]}

        first = await items()
        first["items"].append(666)
        assert await items() == {"items": [1, 2]}


@pytest.mark.parametrize("ttl", [float("inf"), float("nan"), 10**400, 0, -5, True, "60"])
def test_ttls_that_no_store_can_hold_are_rejected_up_front(ttl: Any) -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        CacheOptions(ttl=ttl)
    with pytest.raises(ConfigurationError, match="default_ttl"):
        CachePolicy(default_ttl=ttl)


async def test_an_answer_that_cannot_be_stored_is_still_returned() -> None:
    class Opaque:
        pass

    async def send() -> dict[str, Any]:
        return {"o": Opaque()}

    async with Cache.from_url("memory://") as cache:
        r = await cache.get_or_fetch(CacheRequest("x", "y", {"a": 1}), send)
        assert isinstance(r.value["o"], Opaque) and r.entry is None
        st = cache.stats()
        assert (st.upstream_calls, st.store_refused, st.stores) == (1, 1, 0)


async def test_a_lost_generation_key_never_brings_cleared_answers_back(redis_url: str) -> None:
    up = Upstream()
    async with Cache.from_url(redis_url, l1_max_entries=0, generation_refresh=0.0) as cache:
        await cache.get_or_fetch(chat(), up.sender("old"))
        await cache.clear()
        await cache.get_or_fetch(chat(), up.sender("new"))
        gen_key = f"{cache.prefix}:{cache.namespace}:gen"
        assert await cache.backend.delete_many([gen_key]) == 1  # type: ignore[union-attr]  # evicted
        r = await cache.get_or_fetch(chat(), up.sender("never"))
        assert r.value["choices"][0]["message"]["content"] == "new"
        assert (await cache.backend.get_many([gen_key]))[0] is not None  # type: ignore[union-attr]  # written back
        await cache.clear()
        r = await cache.get_or_fetch(chat(), up.sender("newest"))
        assert (
            r.status.outcome == "miss" and r.value["choices"][0]["message"]["content"] == "newest"
        )


async def test_stores_counts_only_what_was_stored_somewhere(tmp_path: Any) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: Redis is "down"
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    async with Cache.from_url(f"redis://127.0.0.1:{dead}/0", l1_max_entries=0) as cache:
        for i in range(5):
            r = await cache.get_or_fetch(chat(f"q{i}"), Upstream().sender())
            assert r.status.outcome == "miss"
        st = cache.stats()
        assert st.stores == 0 and st.backend_errors >= 1 and st.upstream_calls == 5


def test_bad_constructor_arguments_name_the_field() -> None:
    with pytest.raises(ConfigurationError, match="l1_max_entries"):
        Cache.from_url("memory://", l1_max_entries="100")
    with pytest.raises(ConfigurationError, match="follower_timeout"):
        Cache.from_url("memory://", follower_timeout=-1)
    with pytest.raises(ConfigurationError, match="tenant"):
        chat(tenant=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cache_options"):
        chat(options={"mode": "skip"})
    with pytest.raises(ConfigurationError, match="initial"):
        RetryPolicy(initial=float("nan"))


async def test_callers_of_a_flight_cut_short_by_aclose_get_cache_closed_error() -> None:
    cache = Cache.from_url("memory://")
    up = Upstream(delay=5)
    callers = [asyncio.create_task(cache.get_or_fetch(chat(), up.sender())) for _ in range(3)]
    await asyncio.sleep(0.01)
    await cache.aclose(timeout=0.05)
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, CacheClosedError) for r in results), results


async def test_memoize_calls_the_function_once_per_miss_unless_told_to_retry() -> None:
    async with Cache.from_url("memory://") as cache:
        runs = 0

        @cache.memoize()
        async def flaky() -> int:
            nonlocal runs
            runs += 1
            raise TimeoutError("side effects happened")

        with pytest.raises(TimeoutError):
            await flaky()
        assert runs == 1

        @cache.memoize(retry=FAST_RETRY)
        async def retried() -> int:
            nonlocal runs
            runs += 1
            if runs < 4:
                raise TimeoutError
            return runs

        assert await retried() == 4 and runs == 4


async def test_l1_judges_expiry_after_the_generation_refresh_it_waited_for(
    redis_server: RedisServer,
) -> None:
    """The refresh awaits the store (up to its socket timeout when it stalls); an L1 entry
    that expired meanwhile is a miss, not a hit."""
    ttl = CacheOptions(ttl=0.4)
    url = redis_server.url
    async with Cache.from_url(url, namespace="stale", generation_refresh=0.05) as cache:
        up = Upstream()
        first = await cache.get_or_fetch(chat(options=ttl), up.sender("first"))
        assert first.entry is not None
        expires = first.entry.created_at + 0.4
        await asyncio.sleep(max(0.0, expires - time.time() - 0.05))  # just before expiry
        redis_server.pause()  # the refresh now waits out the 0.25 s socket timeout
        try:
            again = await cache.get_or_fetch(chat(options=ttl), up.sender("second"))
        finally:
            redis_server.resume()
        assert time.time() > expires
        assert again.status.outcome != "hit" and up.calls == 2
