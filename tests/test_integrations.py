"""The real openai and anthropic SDKs, over HTTP, against FakeProvider, through the cache."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anthropic
import openai
import pydantic
import pytest
from anthropic.types import Message
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from asynccache import (
    Cache,
    CacheClosedError,
    CacheMissError,
    CacheOptions,
    ConfigurationError,
    cache_status,
    wrap_anthropic,
    wrap_openai,
)
from asynccache.testing import FakeProvider
from tests.support.streams import MSGS, WEATHER


async def test_chat_miss_then_hit_returns_equal_chat_completions(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    first = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    second = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, temperature=0.0
    )
    assert isinstance(first, ChatCompletion) and isinstance(second, ChatCompletion)
    assert first == second and first.model_dump() == second.model_dump()
    assert first.choices[0].message.content
    assert cache_status(first).outcome == "miss"  # type: ignore[union-attr]
    status = cache_status(second)
    assert status is not None and status.outcome == "hit" and status.layer == "l1"
    assert fp.calls == 1
    st = cache.stats()
    assert st.usd_saved > 0 and st.input_tokens_saved == first.usage.prompt_tokens  # type: ignore[union-attr]


async def test_transport_arguments_do_not_change_the_key(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    r = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,
        temperature=0,
        timeout=12,
        extra_headers={"x-trace": "abc"},
        user="u-1",
    )
    assert cache_status(r).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]


async def test_tool_calls_round_trip_exactly(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": msgs,
        "tools": [WEATHER],
        "temperature": 0,
    }
    miss = await client.chat.completions.create(**kwargs)
    hit = await client.chat.completions.create(**kwargs)
    assert miss.choices[0].finish_reason == "tool_calls"
    calls = hit.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == miss.choices[0].message.tool_calls[0].function.arguments
    assert miss == hit and fp.calls == 1
    other_tools = {**kwargs, "tool_choice": "none"}
    await client.chat.completions.create(**other_tools)
    assert fp.calls == 2  # tool_choice is part of the key


async def test_concurrent_identical_sdk_calls_make_one_request(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    fp.latency = 0.1
    client = wrap_openai(oai, cache)
    results = await asyncio.gather(
        *(
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
            for _ in range(200)
        )
    )
    assert fp.calls == 1
    outcomes = [cache_status(r).outcome for r in results]  # type: ignore[union-attr]
    assert outcomes.count("miss") == 1 and outcomes.count("coalesced") == 199
    assert len({r.choices[0].message.content for r in results}) == 1
    assert results[0] is not results[1]  # every caller gets its own object


async def test_cache_owns_retries_and_sdk_retries_are_off(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)  # oai itself has the SDK default max_retries=2
    fp.fail_next(2, 500)
    r = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    assert cache_status(r).outcome == "miss" and fp.calls == 3  # type: ignore[union-attr]
    fp.reset()
    fp.fail_next(10, 503)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], temperature=0
        )
    assert fp.calls == 3  # 3 cache attempts, never 3 x 3
    fp.reset()
    fp.fail_next(1, 400)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "y"}], temperature=0
        )
    assert fp.calls == 1  # client errors are not retried
    fp.reset()
    fp.fail_next(1, kind="disconnect")
    r = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "z"}], temperature=0
    )
    assert fp.calls == 2 and r.choices[0].message.content


async def test_retry_after_is_honoured(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    fp.fail_next(1, 429, retry_after=0.3)
    t0 = time.perf_counter()
    await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    assert time.perf_counter() - t0 >= 0.28  # our own backoff would have waited ~0.01 s
    assert fp.calls == 2 and cache.stats().upstream_retries == 1


async def test_uncacheable_answers_and_requests(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    fp.finish_reason = "length"
    await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    fp.finish_reason = None
    r = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    assert cache_status(r).outcome == "miss" and fp.calls == 2  # type: ignore[union-attr]
    r = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0.8)
    status = cache_status(r)
    assert (
        status is not None and status.outcome == "bypass" and "temperature" in (status.reason or "")
    )


async def test_bad_parameter_is_a_clear_error_and_nothing_is_sent(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    with pytest.raises(TypeError, match=r"messages\[0\]\.content"):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": {1, 2}}], temperature=0
        )
    assert fp.calls == 0


async def test_bad_cache_options_or_tenant_are_clear_errors_and_nothing_is_sent(
    fp: FakeProvider, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, cache: Cache
) -> None:
    with pytest.raises(ConfigurationError, match="cache_options"):
        await wrap_openai(oai, cache).chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, temperature=0, cache_options="ttl=60"
        )
    with pytest.raises(ConfigurationError, match="tenant"):
        await wrap_openai(oai, cache, tenant=42).chat.completions.create(  # type: ignore[arg-type]
            model="gpt-4o-mini", messages=MSGS, temperature=0
        )
    with pytest.raises(ConfigurationError, match="cache_options"):
        await wrap_anthropic(claude, cache).messages.create(
            model="claude-sonnet-4-5", max_tokens=50, messages=MSGS, cache_options={"ttl": 60}
        )
    assert fp.calls == 0


async def test_modes_per_call_and_scoped(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    with pytest.raises(CacheMissError):
        await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MSGS,
            temperature=0,
            cache_options=CacheOptions(mode="only"),
        )
    assert fp.calls == 0
    await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    with cache.options(mode="skip"):
        r = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    assert cache_status(r).outcome == "bypass" and fp.calls == 2  # type: ignore[union-attr]
    r = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,
        temperature=0,
        cache_options=CacheOptions(mode="refresh"),
    )
    assert cache_status(r).outcome == "miss" and fp.calls == 3  # type: ignore[union-attr]


async def test_tenants_are_isolated(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    a, b = wrap_openai(oai, cache, tenant="acme"), wrap_openai(oai, cache, tenant="globex")
    await a.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    r = await b.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    assert cache_status(r).outcome == "miss" and fp.calls == 2  # type: ignore[union-attr]


async def test_embeddings_are_cached_per_input(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    texts = [f"document number {i}" for i in range(100)]
    direct = await oai.embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="float"
    )
    fp.reset()
    await client.embeddings.create(
        model="text-embedding-3-small", input=texts[:90], encoding_format="float"
    )
    r = await client.embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="float"
    )
    assert isinstance(r, CreateEmbeddingResponse)
    assert (
        fp.calls == 2 and len(fp.requests[-1]["input"]) == 10
    )  # only the 10 new texts went upstream
    assert [d.embedding for d in r.data] == [d.embedding for d in direct.data]
    assert [d.index for d in r.data] == list(range(100))
    one = await client.embeddings.create(
        model="text-embedding-3-small", input=texts[5], encoding_format="float"
    )
    assert cache_status(one).outcome == "hit" and one.data[0].embedding == direct.data[5].embedding  # type: ignore[union-attr]
    assert fp.calls == 2


async def test_responses_api(fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache) -> None:
    client = wrap_openai(oai, cache)
    miss = await client.responses.create(
        model="gpt-4.1-mini", input="Summarise our refund policy.", temperature=0
    )
    hit = await client.responses.create(
        model="gpt-4.1-mini", input="Summarise our refund policy.", temperature=0
    )
    assert isinstance(hit, Response) and hit == miss and hit.output_text == miss.output_text
    assert cache_status(hit).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]
    chained = await client.responses.create(
        model="gpt-4.1-mini", input="And returns?", previous_response_id=miss.id, temperature=0
    )
    status = cache_status(chained)
    assert (
        status is not None
        and status.outcome == "bypass"
        and "previous_response_id" in (status.reason or "")
    )


async def test_anthropic_messages(
    fp: FakeProvider, claude: anthropic.AsyncAnthropic, cache: Cache
) -> None:
    client = wrap_anthropic(claude, cache)
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "system": "You are a support bot.",
        "messages": [{"role": "user", "content": "Where is my order?"}],
    }
    miss = await client.messages.create(**kwargs)
    hit = await client.messages.create(**kwargs)
    assert isinstance(hit, Message) and hit == miss and hit.content[0].text  # type: ignore[union-attr]
    assert cache_status(hit).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]
    as_part = {
        **kwargs,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Where is my order?"}]}],
    }
    assert cache_status(await client.messages.create(**as_part)).outcome == "hit"  # type: ignore[union-attr]
    fp.fail_next(1, 529)  # Anthropic's "overloaded" is transient
    await client.messages.create(**{**kwargs, "max_tokens": 300})
    assert fp.calls == 3


async def test_other_endpoints_pass_through(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    assert client.models is oai.models and client.api_key == "sk-test"
    assert client.files is oai.files and client.chat.completions.with_raw_response
    assert [m.id async for m in client.models.list()] and fp.calls == 1


async def test_wrapped_client_after_close_raises_clearly(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    cache = Cache.from_url("memory://")
    client = wrap_openai(oai, cache)
    await cache.aclose()
    with pytest.raises(CacheClosedError, match="aclose"):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    assert fp.calls == 0


async def test_cached_answers_equal_what_the_sdk_returns_directly(
    fp: FakeProvider, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, cache: Cache
) -> None:
    direct = await oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    client = wrap_openai(oai, cache)
    miss = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    hit = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    same = {"id", "created"}  # the provider mints these per call
    assert (
        direct.model_dump(exclude=same)
        == miss.model_dump(exclude=same)
        == hit.model_dump(exclude=same)
    )
    assert miss.id == hit.id
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 128,
        "messages": [{"role": "user", "content": "hi"}],
    }
    direct_msg = await claude.messages.create(**kwargs)
    cached_msg = await wrap_anthropic(claude, cache).messages.create(**kwargs)
    assert direct_msg.model_dump(exclude={"id"}) == cached_msg.model_dump(exclude={"id"})


def test_answers_the_schema_rejects_are_still_built_like_the_sdk_does() -> None:
    from asynccache.integrations._common import build

    value = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "a_future_reason",
                "message": {"role": "assistant", "content": "x"},
            }
        ],
    }
    built = build(ChatCompletion, value)
    assert isinstance(built, ChatCompletion) and built.choices[0].finish_reason == "a_future_reason"
    assert built.choices[0].message.content == "x"


async def test_sdk_objects_inside_messages_are_keyed_like_the_sdk_sends_them(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    msgs: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await client.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, tools=[WEATHER], temperature=0
    )
    follow_up = [
        *msgs,
        first.choices[0].message,
        {"role": "user", "content": "and tomorrow?"},
    ]  # the SDK's tool loop
    a = await client.chat.completions.create(model="gpt-4o-mini", messages=follow_up, temperature=0)
    b = await client.chat.completions.create(model="gpt-4o-mini", messages=follow_up, temperature=0)
    assert cache_status(a).outcome == "miss" and cache_status(b).outcome == "hit"  # type: ignore[union-attr]
    assert fp.calls == 2


async def test_extra_query_is_part_of_the_key(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    await client.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, temperature=0, extra_query={"api-version": "1"}
    )
    r = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, temperature=0, extra_query={"api-version": "2"}
    )
    assert cache_status(r).outcome == "miss" and fp.calls == 2  # type: ignore[union-attr]


async def test_mutating_a_returned_embedding_does_not_change_the_cache(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    client = wrap_openai(oai, cache)
    first = await client.embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="float"
    )
    original = list(first.data[0].embedding)
    first.data[0].embedding[0] = 999.0  # an app normalising in place
    again = await client.embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="float"
    )
    assert again.data[0].embedding == original


async def test_with_options_keeps_the_cache(
    fp: FakeProvider, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, cache: Cache
) -> None:
    client = wrap_openai(oai, cache, tenant="acme")
    await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, temperature=0)
    r = await client.with_options(timeout=5).chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, temperature=0
    )
    assert cache_status(r).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]
    m = (
        await wrap_anthropic(claude, cache)
        .with_options(timeout=5)
        .messages.create(
            model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    )
    assert cache_status(m).outcome == "miss"  # type: ignore[union-attr]


async def test_structured_outputs_round_trip_exactly(
    fp: FakeProvider, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, cache: Cache
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    client = wrap_openai(oai, cache)
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "schema": schema, "strict": True}}
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Plan a trip to Lisbon"}],
        "temperature": 0,
        "response_format": fmt,
    }
    miss = await client.chat.completions.create(**kwargs)
    hit = await client.chat.completions.create(**kwargs)
    assert hit == miss and cache_status(hit).outcome == "hit"  # type: ignore[union-attr]
    assert set(json.loads(hit.choices[0].message.content or "{}")) == {"city", "days"}
    other = {**fmt, "json_schema": {**fmt["json_schema"], "name": "trip2"}}
    await client.chat.completions.create(**{**kwargs, "response_format": other})
    assert fp.calls == 2  # the response format is part of the key
    text = {"format": {"type": "json_schema", "name": "trip", "schema": schema}}
    r1 = await client.responses.create(
        model="gpt-4.1-mini", input="Plan a trip to Lisbon", temperature=0, text=text
    )
    r2 = await client.responses.create(
        model="gpt-4.1-mini", input="Plan a trip to Lisbon", temperature=0, text=text
    )
    assert r1 == r2 and json.loads(r2.output_text)["city"] and fp.calls == 3
    claude_kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Plan a trip to Lisbon"}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }
    m1 = await wrap_anthropic(claude, cache).messages.create(**claude_kwargs)
    m2 = await wrap_anthropic(claude, cache).messages.create(**claude_kwargs)
    assert m1 == m2 and set(json.loads(m2.content[0].text)) == {"city", "days"}  # type: ignore[union-attr]
    assert fp.calls == 4


async def test_pydantic_response_format_through_the_stream_helper(
    fp: FakeProvider, oai: openai.AsyncOpenAI, cache: Cache
) -> None:
    class Trip(pydantic.BaseModel):
        city: str
        days: int

    client = wrap_openai(oai, cache)
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Plan a trip to Lisbon"}],
        "temperature": 0,
        "response_format": Trip,
    }
    parsed = []
    for _ in range(2):
        async with client.chat.completions.stream(**kwargs) as s:
            final = await s.get_final_completion()
            parsed.append(final.choices[0].message.parsed)
    assert parsed[0] == parsed[1] and isinstance(parsed[1], Trip) and fp.calls == 1
    assert fp.requests[0]["response_format"]["type"] == "json_schema"  # the SDK converted it
