"""L1's byte bound is a bound on memory: entries are charged what they hold as Python objects
(``_footprint``), checked here against tracemalloc rather than trusted."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

from asynccache import Cache, CacheRequest

LATIN = "lorem ipsum dolor sit amet "
CYRILLIC = "привет как дела у тебя сегодня "  # noqa: RUF001 (Cyrillic on purpose)
JAPANESE = "今日はいい天気ですね、散歩に行きましょう。"


def answer(i: int, content_len: int, words: str = LATIN) -> Any:
    """A ChatCompletion as the SDK wrapper stores it (decoded by orjson, as from the wire)."""
    content = (f"answer {i} " + words * (content_len // len(words) + 1))[:content_len]
    return orjson.loads(
        orjson.dumps(
            {
                "id": f"chatcmpl-{i}",
                "object": "chat.completion",
                "created": 1_700_000_000 + i,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 400, "total_tokens": 420},
            }
        )
    )


@pytest.mark.parametrize(
    ("content_len", "words"),
    [(50, LATIN), (2_000, LATIN), (8_000, LATIN), (2_000, CYRILLIC), (2_000, JAPANESE)],
)
async def test_a_full_l1_holds_its_byte_bound_within_ten_percent(
    content_len: int, words: str
) -> None:
    """Non-ASCII answers too: encoding one leaves a UTF-8 copy in each of its strings."""
    bound = 2 << 20
    requests = [
        CacheRequest("openai", "chat.completions", {"model": "m", "messages": [str(i)]})
        for i in range(3 * bound // max(content_len, 1_000))  # more than fits
    ]
    async with Cache.from_url("memory://", l1_max_entries=10**9, l1_max_bytes=bound) as cache:
        gc.collect()
        tracemalloc.start()
        try:
            for i, request in enumerate(requests):
                value = answer(i, content_len, words)

                async def send(value: Any = value) -> Any:
                    return value

                await cache.get_or_fetch(request, send)
            del value, send
            gc.collect()
            full = tracemalloc.get_traced_memory()[0]
            await cache.clear()  # drops every L1 entry, nothing else
            gc.collect()
            held = full - tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    assert cache.stats().stores == len(requests)
    assert 0.9 * bound <= held <= 1.1 * bound, f"L1 held {held:,} B for a {bound:,} B bound"


async def test_a_table_of_distinct_keys_is_charged_for_its_keys() -> None:
    """Field names repeat across answers and are shared; the keys of a table (ids to values)
    are the answer's own memory, and a full L1 of them still holds its bound."""
    bound = 2 << 20
    async with Cache.from_url("memory://", l1_max_entries=10**9, l1_max_bytes=bound) as cache:

        @cache.memoize()
        async def scores(batch: int) -> Any:  # a per-user score table
            return {f"user-{batch:04d}-{j:05d}-" + "x" * 30: j for j in range(2_000)}

        gc.collect()
        tracemalloc.start()
        try:
            for i in range(60):
                await scores(i)
            gc.collect()
            full = tracemalloc.get_traced_memory()[0]
            await cache.clear()
            gc.collect()
            held = full - tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    # A bound, first of all; tables are charged a little more than they hold (orjson keeps
    # some of their keys in its own cache), so L1 stays somewhat under it.
    assert 0.6 * bound <= held <= 1.1 * bound, f"L1 held {held:,} B for a {bound:,} B bound"


@pytest.mark.parametrize("hint", ["the writer's", "implausible", "another build's"])
async def test_an_l1_filled_from_l2_holds_its_bound(tmp_path: Path, hint: str) -> None:
    """An L2 hit puts the answer in L1 charged with the size its writer measured and stored
    with it (no second walk of the answer); a hint no decoded answer could have, or one from a
    Python whose objects have other sizes, is ignored and the answer measured instead. Either
    way the reader's L1 holds its bound."""
    bound = 2 << 20
    url = f"sqlite:///{tmp_path / 'l2.db'}"
    requests = [
        CacheRequest("openai", "chat.completions", {"model": "m", "messages": [str(i)]})
        for i in range(3 * bound // 2_000)  # more than fits
    ]
    async with Cache.from_url(url, l1_max_entries=1) as writer:
        for i, request in enumerate(requests):
            value = answer(i, 2_000)

            async def send(value: Any = value) -> Any:
                return value

            await writer.get_or_fetch(request, send)
        if hint != "the writer's":  # every entry claims to hold 1 byte
            store = writer.backend
            assert store is not None
            keys = [writer.key_for(request) for request in requests]
            raws = await store.get_many(keys)
            forged = [[*orjson.loads(raw or b"[]")] for raw in raws]
            for doc in forged:  # the held-memory field of the envelope (_codec)
                tag = doc[9][0] if hint == "implausible" else "cpython-399t-32"
                doc[9] = [tag, 1 if hint == "implausible" else len(orjson.dumps(doc)) // 2]
            await store.set_many(
                [(k, orjson.dumps(d), None) for k, d in zip(keys, forged, strict=True)]
            )

    async def never() -> Any:
        raise AssertionError("every request is in L2")

    async with Cache.from_url(url, l1_max_entries=10**9, l1_max_bytes=bound) as reader:
        gc.collect()
        tracemalloc.start()
        try:
            for request in requests:
                assert (await reader.get_or_fetch(request, never)).status.layer == "l2"
            gc.collect()
            full = tracemalloc.get_traced_memory()[0]
            await reader.clear()  # drops every L1 entry (and moves on the namespace generation)
            gc.collect()
            held = full - tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    assert reader.stats().integrity_errors == 0
    assert 0.9 * bound <= held <= 1.1 * bound, f"L1 held {held:,} B for a {bound:,} B bound"
