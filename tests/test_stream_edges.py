"""Edge cases of cached streams: single-flight, failure, faithfulness and resource rules, against
real parts (the real SDKs over HTTP to FakeProvider, a private redis-server). The first group
are regressions found in review (each failed before its fix); the rest pin cases that held.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from asynccache import (
    Cache,
    CacheClosedError,
    CacheMissError,
    CacheOptions,
    CachePolicy,
    cache_status,
    wrap_anthropic,
    wrap_openai,
)
from asynccache.testing import FakeProvider, RedisServer
from tests.support import FAST_RETRY
from tests.support.held_store import HeldStore
from tests.support.streams import CHAT, CLAUDE, WEATHER, chat_text, chunks_of, dumps


def watch_loop() -> list[dict[str, Any]]:
    """Collect what the event loop reports to its exception handler ("Task exception was never
    retrieved", "Task was destroyed but it is pending", errors in callbacks...)."""
    seen: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    return seen


_MINTED = frozenset({"id", "created", "created_at", "completed_at", "call_id", "item_id"})


def unminted(value: Any) -> Any:
    """Without the ids and timestamps FakeProvider mints anew for every call."""
    if isinstance(value, dict):
        return {k: unminted(v) for k, v in value.items() if k not in _MINTED}
    if isinstance(value, list):
        return [unminted(v) for v in value]
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# =============================================================================================
# Regressions found in review: each test below failed before its fix.
# =============================================================================================


async def test_refresh_stream_with_a_shared_store_goes_upstream(
    fp: FakeProvider, oai: openai.AsyncOpenAI, redis_url: str
) -> None:
    # Regression (refresh re-reads L2): get_or_stream starts a refresh's flight with
    # ``fly.lead(register=flight is None)`` and _Fly.lead passes ``recheck=register``, so a
    # refresh with no flight running re-reads L2 inside the flight, finds the old entry and
    # replays it as a "hit" without calling upstream. _cache._miss uses
    # ``recheck=opts.mode != "refresh"`` for the same case.
    async with Cache.from_url(redis_url, retry=FAST_RETRY) as first:
        await chunks_of(await wrap_openai(oai, first).chat.completions.create(**CHAT, stream=True))
    assert fp.calls == 1
    async with Cache.from_url(redis_url, retry=FAST_RETRY) as cache:  # cold L1, warm L2
        stream = await wrap_openai(oai, cache).chat.completions.create(
            **CHAT, stream=True, cache_options=CacheOptions(mode="refresh")
        )
        await chunks_of(stream)
        assert cache_status(stream).outcome == "miss"  # type: ignore[union-attr]  # got "hit"/"l2"
        assert fp.calls == 2  # the refresh made no upstream call


async def test_a_retry_right_after_a_cut_stream_is_still_shared_live(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    # Regression (a finished flight pops the next flight's tee): _Fly.lead registers
    # ``fut.add_done_callback(lambda _: cache._tees.pop(key, None))``, which pops whatever tee
    # is registered for the key when the flight task ends. A cut stream _release()s its key,
    # the reader woken by tee.close() retries at once (no await in between) and registers a
    # new flight + tee; then the old task's done callback removes the NEW tee. Later stream
    # requests find the flight without a tee, take it for a plain flight, wait for the whole
    # stream (up to follower_timeout) and then go upstream themselves.
    # Fix: pop only this flight's tee (``if cache._tees.get(key) is tee: del ...``).
    fp.stream_chunk_delay = 0.05  # the retried stream lasts about 1.5 s
    async with Cache.from_url("memory://", retry=FAST_RETRY, follower_timeout=0.5) as cache:
        client = wrap_openai(oai, cache)
        fp.abort_stream_after(3)
        first = await client.chat.completions.create(**CHAT, stream=True)
        with pytest.raises(openai.APIConnectionError):
            async for _ in first:
                pass
        retried = await client.chat.completions.create(**CHAT, stream=True)  # right away
        t0 = time.perf_counter()
        follower = await client.chat.completions.create(**CHAT, stream=True)
        first_chunk_after = None
        async with follower:
            async for _ in follower:
                if first_chunk_after is None:
                    first_chunk_after = time.perf_counter() - t0
        await chunks_of(retried)
        assert cache_status(follower).outcome == "coalesced"  # type: ignore[union-attr]  # got "miss"
        assert fp.calls == 2  # got 3: the follower went upstream after follower_timeout
        assert first_chunk_after is not None and first_chunk_after < 0.3


async def test_followers_of_a_fast_stream_are_credited_with_their_savings(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    # Regression (savings lost): a stream follower appends its category to ``tee.credits`` after
    # ``wait(tee.opened)`` returns; _Fly._finish credits ``tee.credits`` once, when the stream
    # ends. When the stream ends before the follower resumes (a fast stream, or any follower
    # arriving between the end and the store write), the follower is counted as coalesced but
    # its tokens and dollars (and its category hit) are never counted.
    # Fix: keep the facts on the tee once finished and credit late joiners immediately.
    fp.latency = 0.05
    fp.completion_tokens = 50
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        client = wrap_openai(oai, cache)

        async def one() -> str:
            stream = await client.chat.completions.create(**CHAT, stream=True)
            await chunks_of(stream)
            return cache_status(stream).outcome  # type: ignore[union-attr]

        outcomes = await asyncio.gather(*(one() for _ in range(10)))
        st = cache.stats()
        assert outcomes.count("coalesced") == st.coalesced == 9 and fp.calls == 1
        assert st.output_tokens_saved == 9 * 50  # got 0


async def test_closing_a_live_stream_from_another_task(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    # Regression (close() while a read is pending): AsyncStream.close() -> _EventBody.aclose() calls
    # aclose() on the caller's cursor (Tee.read / _present_live async generator) while another
    # task is suspended inside it: RuntimeError "aclose(): asynchronous generator is already
    # running" out of close(), and the reader is not stopped (it reads to the end). The SDK's
    # own stream closes and the pending read fails with APIConnectionError.
    # Fix: make the cursor an object with a close() that sets a flag and wakes the Tee's event
    # (the reader then ends), instead of acloseing a generator that may be running.
    fp.stream_chunk_delay = 0.02

    async def close_while_reading(client: Any) -> tuple[BaseException | None, int]:
        stream = await client.chat.completions.create(**CHAT, stream=True)
        got: list[Any] = []

        async def reader() -> None:
            with contextlib.suppress(Exception):  # the SDK: APIConnectionError
                async for chunk in stream:
                    got.append(chunk)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.05)
        error: BaseException | None = None
        try:
            await stream.close()
        except Exception as exc:
            error = exc
        await asyncio.wait_for(task, 5)
        return error, len(got)

    direct_error, direct_read = await close_while_reading(oai)
    assert direct_error is None and direct_read < 10  # the SDK: closed, the reader stopped
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        error, read = await close_while_reading(wrap_openai(oai, cache))
    assert error is None, repr(error)  # RuntimeError: aclose(): ... already running
    assert read < 10  # the reader read all 31 chunks


async def test_chat_stream_whose_connection_drops_after_done(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    # Regression (complete chat stream turned into an error): the openai SDK stops reading at
    # ``[DONE]`` and ignores transport errors while draining the rest ("Cleanup must not turn
    # completed output into a request error", openai/_streaming_cleanup.py). The flight reads
    # upstream to EOF, so a connection cut after ``[DONE]`` is a flight error: every reader gets
    # APIConnectionError after receiving the whole answer, and the complete answer is not stored.
    # Fix: stop reading upstream at the chat terminal event (or treat a transport error after
    # ``[DONE]`` as the end) before assembling.
    extra = {"stream_options": {"include_usage": True}}
    events = len(await chunks_of(await oai.chat.completions.create(**CHAT, stream=True, **extra)))
    fp.abort_stream_after(events + 1)  # every event and [DONE] sent, then the connection cut
    direct = await chunks_of(await oai.chat.completions.create(**CHAT, stream=True, **extra))
    assert len(direct) == events  # the SDK itself is fine with it
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        client = wrap_openai(oai, cache)
        fp.abort_stream_after(events + 1)
        cached = await chunks_of(await client.chat.completions.create(**CHAT, stream=True, **extra))
        assert len(cached) == events  # raises APIConnectionError instead
        again = await client.chat.completions.create(**CHAT, stream=True, **extra)
        await chunks_of(again)
        assert cache_status(again).outcome == "hit"  # type: ignore[union-attr]


async def test_an_error_while_finishing_a_stream_never_hangs_its_readers() -> None:
    # Regression (readers hang forever): in _Fly.flight, ``self._finish(tee)`` runs after the try
    # block, so an exception there (answer inspection, pricing...) ends the flight task with
    # the Tee never closed: every reader waits on it forever, and aclose() does not release
    # them. Here the provider's usage is not an object: inspect_answer raises AttributeError.
    # (The plain path fails the paid-for request with the same error instead of hanging.)
    # Fix: wrap _finish in the try (close the tee with the error, or better: never let
    # inspection/pricing fail a finished stream) and close the tee in a ``finally``.
    from asynccache import CacheRequest
    from asynccache.integrations import _chat_stream

    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    events = [
        (
            None,
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
        ),
        (None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        (None, {**base, "choices": [], "usage": "n/a"}),
        (None, "[DONE]"),
    ]

    async def opener() -> AsyncIterator[Any]:
        async def source() -> AsyncIterator[Any]:
            for event in events:
                yield event

        return source()

    async def bypass() -> Any:
        raise AssertionError("not a bypass")

    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        request = CacheRequest("openai", "chat.completions", dict(CHAT))
        answer = await cache.get_or_stream(request, opener, _chat_stream.SHAPE, bypass=bypass)
        assert answer.events is not None

        async def read_all() -> list[Any]:
            return [event async for event in answer.events]  # type: ignore[union-attr]

        got = await asyncio.wait_for(read_all(), 2)  # TimeoutError: the reader hangs
        assert got == events


async def test_readers_of_a_broken_stream_do_not_pile_up_one_traceback(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    # Regression (minor; one exception object for every reader): Tee.read does ``raise self._error``
    # in every reader, and the flight task raised it too. Each raise appends that reader's
    # frames to the same ``__traceback__``: with 50 readers the last one's traceback has ~600
    # frames (memory held, and a log of it prints them all).
    # Fix: raise a per-reader copy chained to the original, or at least
    # ``raise self._error.with_traceback(None)``.
    import traceback

    fp.stream_chunk_delay = 0.01
    fp.abort_stream_after(5)
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        client = wrap_openai(oai, cache)
        streams = [await client.chat.completions.create(**CHAT, stream=True) for _ in range(50)]
        errors: list[BaseException] = []

        async def read(stream: Any) -> None:
            try:
                await chunks_of(stream)
            except openai.APIConnectionError as exc:
                errors.append(exc)

        await asyncio.gather(*(read(s) for s in streams))
    assert len(errors) == 50 and fp.calls == 1
    assert max(len(traceback.extract_tb(e.__traceback__)) for e in errors) < 100  # got ~600


# =============================================================================================
# Checked and holding: edge cases of the same rules (these pass).
# =============================================================================================

# --- single-flight ---------------------------------------------------------------------------


async def test_cancelled_leader_and_follower_neither_cut_the_stream_nor_free_the_key(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    fp.latency = 0.2
    fp.stream_chunk_delay = 0.002
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        client = wrap_openai(oai, cache)
        leader = asyncio.create_task(client.chat.completions.create(**CHAT, stream=True))
        await asyncio.sleep(0.05)
        follower = asyncio.create_task(client.chat.completions.create(**CHAT, stream=True))
        doomed = asyncio.create_task(client.chat.completions.create(**CHAT, stream=True))
        plain = asyncio.create_task(client.chat.completions.create(**CHAT))
        await asyncio.sleep(0.05)
        leader.cancel()
        doomed.cancel()
        late = await client.chat.completions.create(**CHAT, stream=True)  # key still held
        chunks = await chunks_of(await follower)
        assert cache_status(late).outcome == "coalesced"  # type: ignore[union-attr]
        assert dumps(await chunks_of(late)) == dumps(chunks) and chat_text(chunks)
        assert (await plain).choices[0].message.content == chat_text(chunks)
        assert leader.cancelled() and doomed.cancelled() and fp.calls == 1


async def test_a_follower_of_a_stalled_stream_goes_upstream_in_bounded_time(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    fp.stall_seconds = 3.0
    async with Cache.from_url("memory://", retry=FAST_RETRY, follower_timeout=0.3) as cache:
        client = wrap_openai(oai, cache)
        fp.fail_next(1, kind="stall")
        leader = asyncio.create_task(client.chat.completions.create(**CHAT, stream=True))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        stream = await client.chat.completions.create(**CHAT, stream=True)
        assert chat_text(await chunks_of(stream))
        assert time.perf_counter() - t0 < 1.5 and fp.calls == 2
        other = {**CHAT, "messages": [{"role": "user", "content": "Opening hours?"}]}
        fp.fail_next(1, kind="stall")
        leader2 = asyncio.create_task(client.chat.completions.create(**other, stream=True))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        plain = await client.chat.completions.create(**other)  # a plain follower, the same
        assert plain.choices[0].message.content and time.perf_counter() - t0 < 1.5
        for task in (leader, leader2):
            await chunks_of(await task)


async def test_aclose_releases_every_kind_of_waiter_with_cache_closed_error(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    fp.stall_seconds = 5.0
    cache = Cache.from_url("memory://", retry=FAST_RETRY)
    client = wrap_openai(oai, cache)
    fp.fail_next(1, kind="stall")  # stalled before the stream opens
    waiting = [
        asyncio.create_task(client.chat.completions.create(**CHAT, stream=True)),
        asyncio.create_task(client.chat.completions.create(**CHAT, stream=True)),
        asyncio.create_task(client.chat.completions.create(**CHAT)),
    ]
    await asyncio.sleep(0.1)
    t0 = time.perf_counter()
    await cache.aclose(timeout=0.1)
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 2)
    assert [type(r) for r in results] == [CacheClosedError] * 3
    assert time.perf_counter() - t0 < 1.0


async def test_a_plain_follower_of_a_cut_stream_gets_its_error_and_the_next_call_starts_afresh(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    fp.stream_chunk_delay = 0.005
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        client = wrap_openai(oai, cache)
        fp.abort_stream_after(6)
        stream = await client.chat.completions.create(**CHAT, stream=True)
        plain = asyncio.create_task(client.chat.completions.create(**CHAT))
        with pytest.raises(openai.APIConnectionError):
            await chunks_of(stream)
        with pytest.raises(openai.APIConnectionError):
            await plain
        fresh = await client.chat.completions.create(**CHAT)
        assert cache_status(fresh).outcome == "miss" and fp.calls == 2  # type: ignore[union-attr]
        assert cache.stats().stores == 1


async def test_truncated_stream_with_plain_and_stream_followers(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    fp.stream_chunk_delay = 0.005
    fp.finish_reason = "length"
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        client = wrap_openai(oai, cache)
        stream = await client.chat.completions.create(**CHAT, stream=True)
        follower = await client.chat.completions.create(**CHAT, stream=True)
        plain = asyncio.create_task(client.chat.completions.create(**CHAT))
        chunks = await chunks_of(stream)
        assert dumps(await chunks_of(follower)) == dumps(chunks)
        whole = await plain  # as a plain flight would: the same (truncated) answer, unstored
        assert whole.choices[0].finish_reason == "length"
        assert whole.choices[0].message.content == chat_text(chunks)
        fp.finish_reason = None
        again = await client.chat.completions.create(**CHAT, stream=True)
        assert cache_status(again).outcome == "miss" and fp.calls == 2  # type: ignore[union-attr]
        await chunks_of(again)
        assert cache.stats().stores == 1 and cache.stats().store_refused == 1


async def test_plain_leader_then_stream_follower_gets_the_answer_split(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    fp.latency = 0.1
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        client = wrap_openai(oai, cache)
        plain = asyncio.create_task(client.chat.completions.create(**CHAT))
        await asyncio.sleep(0.02)
        stream = await client.chat.completions.create(**CHAT, stream=True)
        assert cache_status(stream).outcome == "coalesced"  # type: ignore[union-attr]
        assert chat_text(await chunks_of(stream)) == (await plain).choices[0].message.content
        fp.fail_next(1, 400)
        other = {**CHAT, "messages": [{"role": "user", "content": "x"}]}
        plain = asyncio.create_task(client.chat.completions.create(**other))
        await asyncio.sleep(0.02)
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(**other, stream=True)
        with pytest.raises(openai.BadRequestError):
            await plain
        assert fp.calls == 2


async def test_tenants_never_share_a_stream_flight(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    fp.latency = 0.05
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        a = wrap_openai(oai, cache, tenant="a")
        b = wrap_openai(oai, cache, tenant="b")
        sa, sb = await asyncio.gather(
            a.chat.completions.create(**CHAT, stream=True),
            b.chat.completions.create(**CHAT, stream=True),
        )
        assert {cache_status(sa).outcome, cache_status(sb).outcome} == {"miss"}  # type: ignore[union-attr]
        await chunks_of(sa)
        await chunks_of(sb)
        assert fp.calls == 2


# --- faithfulness ----------------------------------------------------------------------------

_TOOL_PARAMS = WEATHER["function"]["parameters"]  # type: ignore[index]
_ANTHROPIC_TOOL = {"name": "get_weather", "description": "Weather", "input_schema": _TOOL_PARAMS}
_PARIS = [{"role": "user", "content": "What is the weather in Paris?"}]
_CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "chat": ("openai", "chat", {**CHAT}),
    "chat-usage": ("openai", "chat", {**CHAT, "stream_options": {"include_usage": True}}),
    "chat-tools": ("openai", "chat", {**CHAT, "messages": _PARIS, "tools": [WEATHER]}),
    "chat-n2": ("openai", "chat", {**CHAT, "n": 2}),
    "responses": ("openai", "responses", {"model": "gpt-4.1-mini", "input": "Refunds?"}),
    "responses-fn": (
        "openai",
        "responses",
        {
            "model": "gpt-4.1-mini",
            "input": "What is the weather in Paris?",
            "tools": [{"type": "function", "name": "get_weather", "parameters": _TOOL_PARAMS}],
        },
    ),
    "anthropic": ("anthropic", "messages", {**CLAUDE}),
    "anthropic-tool": (
        "anthropic",
        "messages",
        {**CLAUDE, "messages": _PARIS, "tools": [_ANTHROPIC_TOOL]},
    ),
}


def _endpoint(client: Any, provider: str, name: str) -> Any:
    if provider == "anthropic":
        return client.messages
    return client.chat.completions if name == "chat" else client.responses


@pytest.mark.parametrize("case", sorted(_CASES))
async def test_miss_and_hit_carry_the_chunks_of_a_direct_stream(
    fp: FakeProvider,
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
    redis_url: str,
    case: str,
) -> None:
    provider, name, kwargs = _CASES[case]
    direct_client = claude if provider == "anthropic" else oai
    policy = CachePolicy(cache_sampled=True)  # n=2
    direct = await chunks_of(
        await _endpoint(direct_client, provider, name).create(**kwargs, stream=True)
    )
    async with Cache.from_url(redis_url, retry=FAST_RETRY, policy=policy) as cache:
        wrap = wrap_anthropic if provider == "anthropic" else wrap_openai
        endpoint = _endpoint(wrap(direct_client, cache), provider, name)  # type: ignore[operator]
        miss = await chunks_of(await endpoint.create(**kwargs, stream=True))
    async with Cache.from_url(redis_url, retry=FAST_RETRY, policy=policy) as cache:  # from L2
        endpoint = _endpoint(wrap(direct_client, cache), provider, name)  # type: ignore[operator]
        stream = await endpoint.create(**kwargs, stream=True)
        hit = await chunks_of(stream)
        assert cache_status(stream).outcome == "hit" and fp.calls == 2  # type: ignore[union-attr]
    for view in (lambda c: c.model_dump(), lambda c: c.to_dict(exclude_unset=True)):
        assert [unminted(view(c)) for c in miss] == [unminted(view(c)) for c in direct]
        assert [view(c) for c in hit] == [view(c) for c in miss]
    assert [type(c) for c in hit] == [type(c) for c in direct]


@pytest.mark.parametrize("case", ["chat", "chat-usage", "chat-n2", "responses", "anthropic"])
async def test_stream_hit_from_a_plain_entry_matches_a_direct_stream(
    fp: FakeProvider, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, case: str
) -> None:
    provider, name, kwargs = _CASES[case]
    direct_client = claude if provider == "anthropic" else oai
    direct = await chunks_of(
        await _endpoint(direct_client, provider, name).create(**kwargs, stream=True)
    )
    policy = CachePolicy(cache_sampled=True)
    async with Cache.from_url("memory://", retry=FAST_RETRY, policy=policy) as cache:
        wrap = wrap_anthropic if provider == "anthropic" else wrap_openai
        endpoint = _endpoint(wrap(direct_client, cache), provider, name)  # type: ignore[operator]
        plain_kwargs = {k: v for k, v in kwargs.items() if k != "stream_options"}
        await endpoint.create(**plain_kwargs)
        stream = await endpoint.create(**kwargs, stream=True)
        split = await chunks_of(stream)
    assert cache_status(stream).outcome == "hit"  # type: ignore[union-attr]
    assert [unminted(c.model_dump()) for c in split] == [unminted(c.model_dump()) for c in direct]


async def test_original_pacing_on_an_l2_hit(
    fp: FakeProvider, oai: openai.AsyncOpenAI, redis_url: str
) -> None:
    fp.stream_chunk_delay = 0.01
    async with Cache.from_url(redis_url, retry=FAST_RETRY) as cache:
        miss = await chunks_of(
            await wrap_openai(oai, cache).chat.completions.create(**CHAT, stream=True)
        )
    async with Cache.from_url(redis_url, retry=FAST_RETRY) as cache:
        t0 = time.perf_counter()
        hit = await chunks_of(
            await wrap_openai(oai, cache).chat.completions.create(
                **CHAT, stream=True, cache_options=CacheOptions(stream_pacing="original")
            )
        )
        assert time.perf_counter() - t0 >= 0.01 * (len(miss) - 1) * 0.8
    assert dumps(hit) == dumps(miss)


async def test_events_the_schema_rejects_still_parse_through_the_sdk(
    fp: FakeProvider, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    fp.finish_reason = "brand_new_reason"  # not in the SDKs' Literal types
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        client, other = wrap_openai(oai, cache), wrap_anthropic(claude, cache)
        direct = await chunks_of(await oai.chat.completions.create(**CHAT, stream=True))
        miss = await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
        hit = await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
        assert hit[-1].choices[0].finish_reason == "brand_new_reason"
        view = [unminted(c.to_dict(exclude_unset=True)) for c in direct]
        assert [unminted(c.to_dict(exclude_unset=True)) for c in miss] == view
        assert dumps(hit) == dumps(miss)
        direct_a = await chunks_of(await claude.messages.create(**CLAUDE, stream=True))
        async with other.messages.stream(**CLAUDE) as s:
            final = await s.get_final_message()
        async with other.messages.stream(**CLAUDE) as s:
            again = await s.get_final_message()
            assert cache_status(s).outcome == "hit"  # type: ignore[union-attr]
        assert final.stop_reason == again.stop_reason == "brand_new_reason"
        assert direct_a[-2].delta.stop_reason == "brand_new_reason"  # type: ignore[union-attr]
        assert fp.calls == 4


# --- store failures, sizes, modes ------------------------------------------------------------


async def test_streams_fail_open_when_the_store_is_down(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    async with Cache.from_url(f"redis://127.0.0.1:{free_port()}/0", retry=FAST_RETRY) as cache:
        client = wrap_openai(oai, cache)
        t0 = time.perf_counter()
        stream = await client.chat.completions.create(**CHAT, stream=True)
        assert chat_text(await chunks_of(stream)) and time.perf_counter() - t0 < 2.0
        assert cache.stats().backend_errors >= 1
        again = await client.chat.completions.create(**CHAT, stream=True)  # served from L1
        assert cache_status(again).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]
        await chunks_of(again)


async def test_streams_fail_open_when_redis_freezes_mid_stream(
    fp: FakeProvider, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    fp.stream_chunk_delay = 0.01
    with RedisServer() as server:
        async with Cache.from_url(server.url, retry=FAST_RETRY) as cache:
            client, other = wrap_openai(oai, cache), wrap_anthropic(claude, cache)
            stream = await client.chat.completions.create(**CHAT, stream=True)
            server.pause()
            try:
                t0 = time.perf_counter()
                assert chat_text(await chunks_of(stream))
                async with other.messages.stream(**CLAUDE) as s:  # a lookup, then a write
                    assert (await s.get_final_message()).content
                assert time.perf_counter() - t0 < 3.0
            finally:
                server.resume()


async def test_an_oversized_recording_is_dropped_and_hits_are_split(
    fp: FakeProvider, oai: openai.AsyncOpenAI, redis_url: str
) -> None:
    policy = CachePolicy(max_entry_bytes=2000)  # the answer fits, its recording does not
    async with Cache.from_url(redis_url, retry=FAST_RETRY, policy=policy) as cache:
        client = wrap_openai(oai, cache)
        miss = await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
    assert cache.stats().stores == 1 and cache.stats().store_refused == 0  # after aclose's drain
    async with Cache.from_url(redis_url, retry=FAST_RETRY, policy=policy) as cache:
        stream = await wrap_openai(oai, cache).chat.completions.create(**CHAT, stream=True)
        hit = await chunks_of(stream)
        assert cache_status(stream).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]
    assert chat_text(hit) == chat_text(miss) and hit[-1].choices[0].finish_reason == "stop"


async def test_stream_modes_and_stateful_bypass(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        client = wrap_openai(oai, cache)
        no_store = CacheOptions(mode="no-store")
        await chunks_of(
            await client.chat.completions.create(**CHAT, stream=True, cache_options=no_store)
        )
        with pytest.raises(CacheMissError):
            await client.chat.completions.create(
                **CHAT, stream=True, cache_options=CacheOptions(mode="only")
            )
        await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
        only = await client.chat.completions.create(
            **CHAT, stream=True, cache_options=CacheOptions(mode="only")
        )
        assert cache_status(only).outcome == "hit"  # type: ignore[union-attr]
        await chunks_of(only)
        stateful = await client.responses.create(
            model="gpt-4.1-mini", input="And then?", previous_response_id="resp_1", stream=True
        )
        status = cache_status(stateful)
        assert status is not None and status.outcome == "bypass"
        assert "previous_response_id" in (status.reason or "")
        assert isinstance(stateful, openai.AsyncStream)
        await chunks_of(stateful)
        assert fp.calls == 3


# --- resources -------------------------------------------------------------------------------


async def test_streams_never_read_or_left_early_leak_nothing(
    fp: FakeProvider, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    seen = watch_loop()
    fp.stream_chunk_delay = 0.002
    async with Cache.from_url("memory://", retry=FAST_RETRY) as cache:
        client, other = wrap_openai(oai, cache), wrap_anthropic(claude, cache)
        for _ in range(2):  # a miss, then a hit: never iterated, never closed
            stream = await client.chat.completions.create(**CHAT, stream=True)
            del stream
            gc.collect()
            await asyncio.sleep(0.2)
        second = {**CHAT, "messages": [{"role": "user", "content": "Opening hours?"}]}
        for _ in range(2):  # broken out of without closing
            stream = await client.chat.completions.create(**second, stream=True)
            async for _chunk in stream:
                break
            del stream
            gc.collect()
            await asyncio.sleep(0.2)
        for _ in range(2):
            async with other.messages.stream(**CLAUDE) as helper:
                async for _event in helper:
                    break
        assert fp.calls == 3
    gc.collect()
    await asyncio.sleep(0.05)
    assert not seen, seen
    assert fp.pending_failures == 0


async def test_a_schema_dict_as_output_format_is_refused_as_the_sdk_refuses_it() -> None:
    """The wrapper hands ``output_format`` to the SDK's own helper untouched (it takes a type,
    not a dict); it must never vanish on the way, sending the request without its format."""
    schema = {"type": "json_schema", "schema": {"type": "object", "properties": {}}}

    async def use(client: Any) -> None:
        async with client.messages.stream(**CLAUDE, output_format=schema) as s:
            await s.get_final_message()

    async with FakeProvider() as fp:
        claude = anthropic.AsyncAnthropic(base_url=fp.anthropic_base_url, api_key="sk-ant-test")
        async with claude, Cache.from_url("memory://") as cache:
            with pytest.raises(TypeError, match="output_format"):
                await use(claude)
            with pytest.raises(TypeError, match="output_format"):
                await use(wrap_anthropic(claude, cache))
        assert fp.calls == 0


async def test_a_lone_stream_miss_reads_the_store_once(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    store = HeldStore()
    async with Cache(store, l1_max_entries=0, generation_refresh=3600) as cache:
        client = wrap_openai(oai, cache)
        await chunks_of(await client.chat.completions.create(**CHAT, stream=True))
        reads = store.reads
        miss = await client.chat.completions.create(**{**CHAT, "seed": 2}, stream=True)
        await chunks_of(miss)
        assert cache_status(miss).outcome == "miss" and store.reads - reads == 1  # type: ignore[union-attr]
    assert fp.calls == 2


async def test_a_stream_miss_whose_read_raced_a_local_write_replays_it(
    fp: FakeProvider, oai: openai.AsyncOpenAI
) -> None:
    # As for plain requests (test_engine): B's read is answered before A's stream is stored
    # and reaches B after A's flight ended; B must replay what A stored, not stream anew.
    fp.stream_chunk_delay = 0.005
    store = HeldStore()
    async with Cache(store, l1_max_entries=0, generation_refresh=3600) as cache:
        client = wrap_openai(oai, cache)
        await chunks_of(await client.chat.completions.create(**{**CHAT, "seed": 2}, stream=True))
        a = await client.chat.completions.create(**CHAT, stream=True)
        store.hold = asyncio.Event()
        reads = store.reads
        b = asyncio.create_task(client.chat.completions.create(**CHAT, stream=True))
        for _ in range(1000):
            if store.held:
                break
            await asyncio.sleep(0)
        assert store.held == 1
        first = chat_text(await chunks_of(a))
        await asyncio.sleep(0.01)  # A's flight has stored the stream and ended
        store.hold.set()
        replayed = await b
        assert cache_status(replayed).outcome == "hit"  # type: ignore[union-attr]
        assert chat_text(await chunks_of(replayed)) == first
        assert store.reads - reads == 2  # B's lookup found nothing: A had not stored yet
    assert fp.calls == 2
