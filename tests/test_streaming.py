"""Streams through the cache: the real SDKs, over HTTP, against FakeProvider.

Recorded and replayed faithfully (same chunks, same order), shared live between concurrent
callers (one upstream stream), interchangeable with plain requests (one entry), never stored
when cut short.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from asynccache import (
    Cache,
    CacheClosedError,
    CacheMissError,
    CacheOptions,
    cache_status,
    wrap_anthropic,
    wrap_openai,
)
from asynccache.testing import FakeProvider
from tests.support.streams import CHAT, CLAUDE, WEATHER, chat_text, chunks_of, dumps

# --- miss, then hit ----------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream_miss_then_hit_replays_the_same_chunks(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache, include_usage: bool
) -> None:
    client = wrap_openai(oai, cache)
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    miss_stream = await client.chat.completions.create(**CHAT, stream=True, **extra)
    assert isinstance(miss_stream, openai.AsyncStream)
    assert cache_status(miss_stream).outcome == "miss"  # type: ignore[union-attr]
    miss = await chunks_of(miss_stream)
    hit_stream = await client.chat.completions.create(**CHAT, stream=True, **extra)
    status = cache_status(hit_stream)
    assert status is not None and status.outcome == "hit"  # L2 while the L1 write settles
    hit = await chunks_of(hit_stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in hit)
    assert len(hit) == len(miss) > 3 and dumps(hit) == dumps(miss)  # same deltas, same order
    assert chat_text(hit) == chat_text(miss) != ""
    assert fp.calls == 1
    usage_chunks = [c for c in hit if c.usage is not None]
    assert len(usage_chunks) == (1 if include_usage else 0)  # as the provider would send
    assert "usage" not in hit[0].to_dict() or include_usage
    # The cache always asked upstream for usage, so the entry is accounted in tokens.
    assert fp.requests[0]["stream_options"]["include_usage"] is True
    assert cache.stats().output_tokens_saved > 0


async def test_direct_stream_and_cached_stream_carry_the_same_chunks(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    direct = await chunks_of(await oai.chat.completions.create(**CHAT, stream=True))
    client = wrap_openai(oai, cache)
    miss = await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
    hit = await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
    minted = {"id", "created"}
    assert [c.model_dump(exclude=minted) for c in direct] == [
        c.model_dump(exclude=minted) for c in miss
    ]
    assert [c.to_dict(exclude_unset=True) for c in direct] == [
        {**c.to_dict(exclude_unset=True), "id": d.id, "created": d.created}
        for c, d in zip(miss, direct, strict=True)
    ]  # the very fields the provider set, no more
    assert [c.to_dict() for c in hit] == [c.to_dict() for c in miss]


async def test_tool_call_stream_round_trips(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER],
        "temperature": 0,
    }
    miss = await chunks_of(await client.chat.completions.create(**kwargs, stream=True))
    hit = await chunks_of(await client.chat.completions.create(**kwargs, stream=True))
    assert dumps(hit) == dumps(miss)
    arguments = "".join(
        (c.choices[0].delta.tool_calls or [])[0].function.arguments or ""  # type: ignore[union-attr]
        for c in hit
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert '"city":"Paris"' in arguments.replace(" ", "")
    whole = await client.chat.completions.create(**kwargs)  # the same entry, assembled
    assert cache_status(whole).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]
    call = whole.choices[0].message.tool_calls[0]
    assert call.function.arguments == arguments and whole.choices[0].finish_reason == "tool_calls"


async def test_stream_hit_serves_a_plain_request_and_back(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    direct = await oai.chat.completions.create(**CHAT)
    fp.reset()
    streamed = await chunks_of(
        await client.chat.completions.create(
            **CHAT, stream=True, stream_options={"include_usage": True}
        )
    )
    whole = await client.chat.completions.create(**CHAT)  # assembled from the recording
    assert isinstance(whole, ChatCompletion) and cache_status(whole).outcome == "hit"  # type: ignore[union-attr]
    assert whole.choices[0].message.content == chat_text(streamed)
    assert whole.usage == streamed[-1].usage and whole.usage is not None
    minted = {"id", "created"}
    assert whole.model_dump(exclude=minted) == direct.model_dump(exclude=minted)
    assert fp.calls == 1
    # ... and the reverse: a plain answer stored first, then streamed from it.
    other = {**CHAT, "messages": [{"role": "user", "content": "Opening hours?"}]}
    plain = await client.chat.completions.create(**other)
    split = await chunks_of(
        await client.chat.completions.create(
            **other, stream=True, stream_options={"include_usage": True}
        )
    )
    assert cache_status(plain).outcome == "miss" and fp.calls == 2  # type: ignore[union-attr]
    assert chat_text(split) == plain.choices[0].message.content
    assert split[-1].usage == plain.usage and split[-2].choices[0].finish_reason == "stop"
    assert len(split) > 3  # split into deltas, not one lump


async def test_responses_stream_miss_hit_and_plain(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    kwargs: dict[str, Any] = {
        "model": "gpt-4.1-mini",
        "input": "Summarise our refund policy.",
        "temperature": 0,
    }
    miss = await chunks_of(await client.responses.create(**kwargs, stream=True))
    hit_stream = await client.responses.create(**kwargs, stream=True)
    assert cache_status(hit_stream).outcome == "hit"  # type: ignore[union-attr]
    hit = await chunks_of(hit_stream)
    assert dumps(hit) == dumps(miss) and hit[-1].type == "response.completed"
    text = "".join(e.delta for e in hit if e.type == "response.output_text.delta")
    whole = await client.responses.create(**kwargs)
    assert whole.output_text == text != "" and whole == hit[-1].response
    assert fp.calls == 1


async def test_anthropic_stream_create_and_helper(
    fp: FakeProvider, claude: anthropic.AsyncAnthropic, cache: Cache
) -> None:
    client = wrap_anthropic(claude, cache)
    miss_stream = await client.messages.create(**CLAUDE, stream=True)
    assert isinstance(miss_stream, anthropic.AsyncStream)
    miss = await chunks_of(miss_stream)
    async with client.messages.stream(**CLAUDE) as helper:
        assert cache_status(helper).outcome == "hit"  # type: ignore[union-attr]
        text = "".join([t async for t in helper.text_stream])
        final = await helper.get_final_message()
    assert text and final.content[0].text == text  # type: ignore[union-attr]
    whole = await client.messages.create(**CLAUDE)
    assert isinstance(whole, Message) and cache_status(whole).outcome == "hit"  # type: ignore[union-attr]
    assert whole.model_dump() == Message.model_validate(final.model_dump()).model_dump()
    assert whole.usage.output_tokens == final.usage.output_tokens > 0
    hit = await chunks_of(await client.messages.create(**CLAUDE, stream=True))
    assert dumps(hit) == dumps(miss) and fp.calls == 1


async def test_anthropic_tool_use_stream_round_trips(
    fp: FakeProvider, claude: anthropic.AsyncAnthropic, cache: Cache
) -> None:
    client = wrap_anthropic(claude, cache)
    tool = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    kwargs = {
        **CLAUDE,
        "tools": [tool],
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    }
    async with client.messages.stream(**kwargs) as s:
        first = await s.get_final_message()
    async with client.messages.stream(**kwargs) as s:
        again = await s.get_final_message()
        assert cache_status(s).outcome == "hit"  # type: ignore[union-attr]
    assert first == again and first.content[0].type == "tool_use"
    assert first.content[0].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert first.stop_reason == "tool_use" and fp.calls == 1


async def test_a_new_cache_on_the_same_store_replays_the_recording(
    fp: FakeProvider, oai: openai.AsyncOpenAI, redis_url: str
) -> None:
    async with Cache.from_url(redis_url) as first:
        miss = await chunks_of(
            await wrap_openai(oai, first).chat.completions.create(**CHAT, stream=True)
        )
    async with Cache.from_url(redis_url) as second:
        stream = await wrap_openai(oai, second).chat.completions.create(**CHAT, stream=True)
        status = cache_status(stream)
        assert status is not None and status.outcome == "hit" and status.layer == "l2"
        assert dumps(await chunks_of(stream)) == dumps(miss) and fp.calls == 1


# --- sharing one upstream stream ---------------------------------------------------------------


async def test_200_concurrent_streams_share_one_upstream_stream(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    fp.latency = 0.05
    fp.stream_chunk_delay = 0.002
    client = wrap_openai(oai, cache)

    async def one() -> tuple[str, list[dict[str, Any]]]:
        stream = await client.chat.completions.create(**CHAT, stream=True)
        return cache_status(stream).outcome, dumps(await chunks_of(stream))  # type: ignore[union-attr]

    results = await asyncio.gather(*(one() for _ in range(200)))
    assert fp.calls == 1
    outcomes = [outcome for outcome, _ in results]
    assert outcomes.count("miss") == 1 and outcomes.count("coalesced") == 199
    first = results[0][1]
    assert len(first) > 3 and all(chunks == first for _, chunks in results)
    st = cache.stats()
    assert st.coalesced == 199 and st.output_tokens_saved > 0  # credited when the flight landed


async def test_a_late_follower_gets_every_chunk(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    fp.stream_chunk_delay = 0.01
    client = wrap_openai(oai, cache)
    leader = await client.chat.completions.create(**CHAT, stream=True)
    seen = []
    async for chunk in leader:
        seen.append(chunk)
        if len(seen) == 5:
            break
    follower = await client.chat.completions.create(**CHAT, stream=True)
    assert cache_status(follower).outcome == "coalesced"  # type: ignore[union-attr]
    late = await chunks_of(follower)
    seen += [c async for c in leader]
    await leader.close()
    assert dumps(late) == dumps(seen) and fp.calls == 1


async def test_a_leader_that_stops_reading_does_not_cut_the_followers(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    fp.stream_chunk_delay = 0.005
    client = wrap_openai(oai, cache)
    leader = await client.chat.completions.create(**CHAT, stream=True)
    follower = await client.chat.completions.create(**CHAT, stream=True)
    async with leader:
        async for _ in leader:
            break  # the leader's consumer leaves after one chunk
    cancelled = asyncio.create_task(
        chunks_of(await client.chat.completions.create(**CHAT, stream=True))
    )
    await asyncio.sleep(0.02)
    cancelled.cancel()  # another reader is cancelled mid-stream
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    chunks = await chunks_of(follower)
    assert chunks[-1].choices[0].finish_reason == "stop" and chat_text(chunks)
    again = await client.chat.completions.create(**CHAT, stream=True)
    assert cache_status(again).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]
    assert dumps(await chunks_of(again)) == dumps(chunks)


async def test_plain_request_joins_a_running_stream_and_the_reverse(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    fp.stream_chunk_delay = 0.005
    client = wrap_openai(oai, cache)
    stream = await client.chat.completions.create(**CHAT, stream=True)
    whole = await client.chat.completions.create(**CHAT)  # waits for the stream to finish
    assert cache_status(whole).outcome == "coalesced"  # type: ignore[union-attr]
    assert whole.choices[0].message.content == chat_text(await chunks_of(stream))
    assert fp.calls == 1
    fp.latency = 0.1
    other = {**CHAT, "messages": [{"role": "user", "content": "Opening hours?"}]}
    plain = asyncio.create_task(client.chat.completions.create(**other))
    await asyncio.sleep(0.02)
    joined = await client.chat.completions.create(**other, stream=True)
    assert cache_status(joined).outcome == "coalesced"  # type: ignore[union-attr]
    assert chat_text(await chunks_of(joined)) == (await plain).choices[0].message.content
    assert fp.calls == 2


# --- failures ----------------------------------------------------------------------------------


async def test_a_stream_cut_midway_stores_nothing_and_every_reader_gets_the_error(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    fp.stream_chunk_delay = 0.005
    fp.abort_stream_after(6)
    client = wrap_openai(oai, cache)
    leader = await client.chat.completions.create(**CHAT, stream=True)
    follower = await client.chat.completions.create(**CHAT, stream=True)
    for stream in (leader, follower):
        with pytest.raises(openai.APIConnectionError):
            await chunks_of(stream)
    assert cache.stats().stores == 0
    fresh = await client.chat.completions.create(**CHAT, stream=True)
    assert cache_status(fresh).outcome == "miss" and fp.calls == 2  # type: ignore[union-attr]
    assert (await chunks_of(fresh))[-1].choices[0].finish_reason == "stop"


async def test_a_stream_without_its_end_is_not_stored(
    fp: FakeProvider, claude: anthropic.AsyncAnthropic, cache: Cache
) -> None:
    client = wrap_anthropic(claude, cache)
    fp.abort_stream_after(4)  # message_start, ping, block start, one delta: then cut
    with pytest.raises(Exception):  # noqa: B017 - the SDK lets the transport error through
        await chunks_of(await client.messages.create(**CLAUDE, stream=True))
    assert cache.stats().stores == 0
    await chunks_of(await client.messages.create(**CLAUDE, stream=True))
    again = await client.messages.create(**CLAUDE)
    assert cache_status(again).outcome in ("hit", "coalesced") and fp.calls == 2  # type: ignore[union-attr]


async def test_truncated_streams_are_returned_but_not_stored(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    fp.finish_reason = "length"
    client = wrap_openai(oai, cache)
    chunks = await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"
    fp.finish_reason = None
    await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
    assert fp.calls == 2 and cache.stats().store_refused == 1


async def test_opening_errors_are_retried_and_raised_at_create(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    fp.fail_next(2, 503)
    chunks = await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
    assert chat_text(chunks) and fp.calls == 3
    fp.fail_next(1, 400)
    with pytest.raises(openai.BadRequestError):  # at create(), as the SDK raises it
        await client.chat.completions.create(
            **{**CHAT, "messages": [{"role": "user", "content": "x"}]}, stream=True
        )


async def test_modes_and_bypass_for_streams(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    with pytest.raises(CacheMissError):
        await client.chat.completions.create(
            **CHAT, stream=True, cache_options=CacheOptions(mode="only")
        )
    assert fp.calls == 0
    sampled = await client.chat.completions.create(**{**CHAT, "temperature": 0.9}, stream=True)
    status = cache_status(sampled)
    assert (
        status is not None and status.outcome == "bypass" and "temperature" in (status.reason or "")
    )
    assert isinstance(sampled, openai.AsyncStream) and chat_text(await chunks_of(sampled))
    assert "stream_options" not in fp.requests[-1]  # a bypass sends exactly what was asked
    with cache.options(mode="skip"):
        skipped = await client.chat.completions.create(**CHAT, stream=True)
    assert cache_status(skipped).outcome == "bypass"  # type: ignore[union-attr]
    await chunks_of(skipped)
    await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
    refreshed = await client.chat.completions.create(
        **CHAT, stream=True, cache_options=CacheOptions(mode="refresh")
    )
    assert cache_status(refreshed).outcome == "miss"  # type: ignore[union-attr]
    await chunks_of(refreshed)
    assert fp.calls == 4


async def test_original_pacing_replays_the_gaps(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    fp.stream_chunk_delay = 0.01
    client = wrap_openai(oai, cache)
    t0 = time.perf_counter()
    miss = await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
    recorded = time.perf_counter() - t0
    paced = CacheOptions(stream_pacing="original")
    t0 = time.perf_counter()
    hit = await chunks_of(
        await client.chat.completions.create(**CHAT, stream=True, cache_options=paced)
    )
    replayed = time.perf_counter() - t0
    gaps = 0.01 * (len(miss) - 1)  # at least what the provider waited between events
    assert dumps(hit) == dumps(miss) and recorded >= gaps * 0.9 and replayed >= gaps * 0.9


async def test_closed_cache_streams_raise_clearly_and_the_rest_passes_through(
    fp: FakeProvider, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    cache = Cache.from_url("memory://")
    client, other = wrap_openai(oai, cache), wrap_anthropic(claude, cache)
    await cache.aclose()
    with pytest.raises(CacheClosedError, match="aclose"):
        await client.chat.completions.create(**CHAT, stream=True)
    with pytest.raises(CacheClosedError, match="aclose"):
        async with other.messages.stream(**CLAUDE):
            pass
    assert fp.calls == 0
    assert [m.id async for m in client.models.list()]  # not cached: still works


async def test_aclose_cuts_a_running_stream_with_a_clear_error(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    fp.stream_chunk_delay = 0.05
    cache = Cache.from_url("memory://")
    stream = await wrap_openai(oai, cache).chat.completions.create(**CHAT, stream=True)
    await cache.aclose(timeout=0.05)
    with pytest.raises(CacheClosedError):
        await chunks_of(stream)


async def test_openai_stream_helpers_read_cached_streams(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    async with client.chat.completions.stream(**CHAT) as s:
        assert cache_status(s).outcome == "miss"  # type: ignore[union-attr]
        first = await s.get_final_completion()
    async with client.chat.completions.stream(**CHAT) as s:
        assert cache_status(s).outcome == "hit"  # type: ignore[union-attr]
        events = [e.type async for e in s]
        again = await s.get_final_completion()
    assert "content.delta" in events and again == first and first.choices[0].message.content
    kwargs: dict[str, Any] = {"model": "gpt-4.1-mini", "input": "Refunds?", "temperature": 0}
    async with client.responses.stream(**kwargs) as r:
        response = await r.get_final_response()
    async with client.responses.stream(**kwargs) as r:
        assert cache_status(r).outcome == "hit"  # type: ignore[union-attr]
        assert await r.get_final_response() == response and response.output_text
    assert fp.calls == 2


async def test_stream_savings_price_provider_cached_tokens_at_their_own_rate(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, fp: FakeProvider
) -> None:
    fp.prompt_tokens, fp.completion_tokens, fp.cached_tokens = 1000, 50, 400
    async with Cache.from_url("memory://") as cache:
        client = wrap_openai(oai, cache)
        for _ in range(2):
            await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
        # gpt-4o-mini, per 1M tokens: input $0.15, cached input $0.075, output $0.60.
        # The hit saved 600 fresh + 400 cached input tokens and 50 output tokens:
        # (600 * 0.15 + 400 * 0.075 + 50 * 0.60) / 1e6 = (90 + 30 + 30) / 1e6 = $0.000150
        assert cache.stats().usd_saved == pytest.approx(0.000150, rel=1e-9)
        assert cache.stats().input_tokens_saved == 1000
    fp.prompt_tokens, fp.completion_tokens = 1000, 100
    fp.cached_tokens, fp.cache_creation_tokens = 2000, 500
    async with Cache.from_url("memory://") as cache:
        client = wrap_anthropic(claude, cache)
        for _ in range(2):
            async with client.messages.stream(**CLAUDE) as s:
                await s.until_done()
        # claude-sonnet-4*, per 1M: input $3, cache read $0.30, cache write $3.75, output $15.
        # Anthropic counts the 2000 cache-read and 500 cache-write tokens apart from the
        # 1000 input tokens: (1000 * 3 + 2000 * 0.30 + 500 * 3.75 + 100 * 15) / 1e6
        # = (3000 + 600 + 1875 + 1500) / 1e6 = $0.006975
        assert cache.stats().usd_saved == pytest.approx(0.006975, rel=1e-9)
        assert cache.stats().input_tokens_saved == 3500
