"""FakeProvider, driven by the real openai and anthropic SDKs over real HTTP.

Clients use ``_strict_response_validation=True`` wherever the SDK allows it, so every answer
must parse into the SDK's own types, not merely be accepted leniently.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import openai
import pydantic
import pytest

from asynccache import testing
from asynccache.testing import FakeProvider

MODEL = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["location"],
        },
    },
}


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture
async def fp() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as provider:
        yield provider


@pytest.fixture
async def oai(fp: FakeProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=fp.openai_base_url,
        api_key="sk-test-secret",
        max_retries=0,
        _strict_response_validation=True,
    ) as client:
        yield client


@pytest.fixture
async def ant(fp: FakeProvider) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=fp.anthropic_base_url,
        api_key="sk-ant-test-secret",
        max_retries=0,
        _strict_response_validation=True,
    ) as client:
        yield client


# --- OpenAI chat ------------------------------------------------------------------------------


async def test_chat_plain(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    prompt = "What is the capital of France? Answer briefly."
    first = await oai.chat.completions.create(model=MODEL, messages=user(prompt), temperature=0)
    second = await oai.chat.completions.create(model=MODEL, messages=user(prompt), temperature=0)

    choice = first.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert choice.message.content.startswith(f"Answer to: {prompt}")
    assert choice.finish_reason == "stop"
    assert first.model == MODEL and first.object == "chat.completion"
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens == math.ceil(len(prompt) / 4)
    assert first.usage.completion_tokens == math.ceil(len(choice.message.content) / 4)
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    # deterministic text, fresh ids
    assert second.choices[0].message.content == choice.message.content
    assert second.id != first.id

    assert fp.calls == 2
    assert fp.calls_by_endpoint == {"/v1/chat/completions": 2}
    assert fp.requests[-1]["messages"] == user(prompt)
    assert fp.requests[-1]["temperature"] == 0
    assert fp.last_headers["x-stainless-retry-count"] == "0"
    assert "authorization" not in fp.last_headers
    assert "sk-test-secret" not in repr(vars(fp))


async def test_chat_tools(oai: openai.AsyncOpenAI) -> None:
    messages = user("What's the weather in Paris?")
    asked = await oai.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])

    choice = asked.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "c"}

    # once the tool result comes back, the model answers in words
    follow_up: list[Any] = [
        *messages,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    answered = await oai.chat.completions.create(
        model=MODEL, messages=follow_up, tools=[WEATHER_TOOL]
    )
    assert answered.choices[0].finish_reason == "stop"
    assert answered.choices[0].message.tool_calls is None

    forced = await oai.chat.completions.create(
        model=MODEL,
        messages=user("Tell me something."),
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert forced.choices[0].finish_reason == "tool_calls"
    refused = await oai.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert refused.choices[0].finish_reason == "stop"


async def test_chat_n_choices(oai: openai.AsyncOpenAI) -> None:
    result = await oai.chat.completions.create(model=MODEL, messages=user("Name a colour"), n=2)
    assert [c.index for c in result.choices] == [0, 1]
    texts = [c.message.content for c in result.choices]
    assert texts[0] != texts[1]
    assert result.usage is not None
    assert result.usage.completion_tokens == sum(math.ceil(len(t or "") / 4) for t in texts)


async def test_chat_structured_output(oai: openai.AsyncOpenAI) -> None:
    class City(pydantic.BaseModel):
        name: str
        population: int
        coastal: bool

    parsed = await oai.chat.completions.parse(
        model=MODEL, messages=user("Describe Lisbon"), response_format=City
    )
    city = parsed.choices[0].message.parsed
    assert city == City(name="Lisbon", population=1, coastal=True)


async def test_chat_stream_with_usage(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    messages = user("Stream a short answer, please.")
    whole = await oai.chat.completions.create(model=MODEL, messages=messages)
    stream = await oai.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    text, finish, usage, chunks = [], None, None, 0
    async for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(text) == whole.choices[0].message.content
    assert finish == "stop"
    assert usage is not None and whole.usage is not None
    assert usage.total_tokens == whole.usage.total_tokens
    assert chunks > 5
    assert fp.requests[-1]["stream"] is True


async def test_chat_stream_tool_call(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model=MODEL, messages=user("weather in Oslo?"), tools=[WEATHER_TOOL], stream=True
    )
    arguments, finish = "", None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                arguments += call.function.arguments or "" if call.function else ""
            finish = choice.finish_reason or finish
    assert json.loads(arguments) == {"location": "Oslo", "unit": "c"}
    assert finish == "tool_calls"


# --- OpenAI embeddings and responses ----------------------------------------------------------


async def test_embeddings_batch_deterministic(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    # The SDK asks for base64 by default and decodes it itself after validation, which
    # strict validation rejects: use a lenient client for the default path.
    async with openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="t", max_retries=0) as c:
        default = await c.embeddings.create(model="text-embedding-3-small", input=texts)
    assert fp.requests[-1]["encoding_format"] == "base64"
    floats = await oai.embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="float"
    )
    again = await oai.embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="float"
    )

    assert [d.index for d in floats.data] == [0, 1, 2]
    vectors = [d.embedding for d in floats.data]
    assert all(len(v) == 8 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors == [d.embedding for d in again.data] == [d.embedding for d in default.data]
    assert len({tuple(v) for v in vectors}) == 3
    assert floats.usage.prompt_tokens == sum(math.ceil(len(t) / 4) for t in texts)

    single = await oai.embeddings.create(
        model="text-embedding-3-small", input="gamma", dimensions=16, encoding_format="float"
    )
    assert len(single.data[0].embedding) == 16


async def test_embeddings_similar_texts_are_close(oai: openai.AsyncOpenAI) -> None:
    texts = [
        "what is the capital of france",
        "what is the capital of france please",
        "recipe for a lemon cake",
    ]
    result = await oai.embeddings.create(
        model="text-embedding-3-small", input=texts, dimensions=256, encoding_format="float"
    )
    a, b, c = (d.embedding for d in result.data)

    def cosine(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert cosine(a, b) > 0.85
    assert cosine(a, c) < 0.5


async def test_responses_create(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    fp.cached_tokens, fp.reasoning_tokens = 2, 3
    response = await oai.responses.create(model=MODEL, input="Write a haiku about caches")
    assert response.status == "completed"
    assert response.output_text.startswith("Answer to: Write a haiku about caches")
    message = response.output[0]
    assert message.type == "message"
    assert response.usage is not None
    assert response.usage.input_tokens == math.ceil(len("Write a haiku about caches") / 4)
    assert response.usage.output_tokens == math.ceil(len(response.output_text) / 4)
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert response.usage.output_tokens_details.reasoning_tokens == 3
    assert fp.calls_by_endpoint["/v1/responses"] == 1


async def test_responses_stream(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.responses.create(model=MODEL, input="Stream it", stream=True)
    kinds, deltas = [], []
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
    final = event
    assert kinds[0] == "response.created" and final.type == "response.completed"
    assert "".join(deltas) == final.response.output_text


async def test_responses_function_call(oai: openai.AsyncOpenAI) -> None:
    tool: Any = {
        "type": "function",
        "name": "get_weather",
        "parameters": WEATHER_TOOL["function"]["parameters"],
        "strict": True,
    }
    response = await oai.responses.create(model=MODEL, input="weather in Rome?", tools=[tool])
    item = response.output[0]
    assert item.type == "function_call"
    assert item.name == "get_weather"
    assert json.loads(item.arguments)["location"] == "Rome"


# --- Anthropic --------------------------------------------------------------------------------


async def test_anthropic_messages(fp: FakeProvider, ant: anthropic.AsyncAnthropic) -> None:
    fp.cached_tokens, fp.cache_creation_tokens = 5, 7
    message = await ant.messages.create(
        model=CLAUDE,
        max_tokens=256,
        system="Be brief.",
        messages=user("Hello, Claude"),
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == CLAUDE
    block = message.content[0]
    assert block.type == "text"
    assert block.text.startswith("Answer to: Hello, Claude")
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == math.ceil(len("Be brief.Hello, Claude") / 4)
    assert message.usage.output_tokens == math.ceil(len(block.text) / 4)
    assert message.usage.cache_read_input_tokens == 5
    assert message.usage.cache_creation_input_tokens == 7
    assert fp.calls_by_endpoint == {"/v1/messages": 1}
    assert fp.last_headers["anthropic-version"]
    assert "x-api-key" not in fp.last_headers
    assert "sk-ant-test-secret" not in repr(vars(fp))


async def test_anthropic_tool_use(ant: anthropic.AsyncAnthropic) -> None:
    tool: Any = {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    message = await ant.messages.create(
        model=CLAUDE, max_tokens=256, messages=user("What's the weather in Rome?"), tools=[tool]
    )
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use"
    assert block.name == "get_weather" and block.input == {"location": "Rome", "unit": "c"}


async def test_anthropic_stream(ant: anthropic.AsyncAnthropic) -> None:
    messages = user("Stream to me")
    whole = await ant.messages.create(model=CLAUDE, max_tokens=256, messages=messages)
    stream = await ant.messages.create(model=CLAUDE, max_tokens=256, messages=messages, stream=True)
    kinds, text, stop_reason, output_tokens = [], [], None, 0
    async for event in stream:
        kinds.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text.append(event.delta.text)
        elif event.type == "message_delta":
            stop_reason, output_tokens = event.delta.stop_reason, event.usage.output_tokens
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-4:] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert whole.content[0].type == "text"
    assert "".join(text) == whole.content[0].text
    assert stop_reason == "end_turn"
    assert output_tokens == whole.usage.output_tokens

    async with ant.messages.stream(model=CLAUDE, max_tokens=256, messages=messages) as helper:
        final = await helper.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == whole.content[0].text  # the helper yields ParsedTextBlock


async def test_anthropic_count_tokens_and_models(
    ant: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI
) -> None:
    counted = await ant.messages.count_tokens(model=CLAUDE, messages=user("12345678"))
    assert counted.input_tokens == 2
    claude_ids = [m.id async for m in ant.models.list()]
    assert claude_ids and all(i.startswith("claude") for i in claude_ids)
    assert "gpt-4o-mini" in [m.id async for m in oai.models.list()]


# --- answers the cache must refuse to store ---------------------------------------------------


async def test_finish_reason_override_and_empty_answer(
    fp: FakeProvider, oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic
) -> None:
    fp.finish_reason = "length"
    chat = await oai.chat.completions.create(model=MODEL, messages=user("hi"))
    assert chat.choices[0].finish_reason == "length"
    message = await ant.messages.create(model=CLAUDE, max_tokens=100, messages=user("hi"))
    assert message.stop_reason == "max_tokens"
    response = await oai.responses.create(model=MODEL, input="hi")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"

    fp.finish_reason = "content_filter"
    chat = await oai.chat.completions.create(model=MODEL, messages=user("hi"))
    assert chat.choices[0].finish_reason == "content_filter"

    fp.finish_reason, fp.empty_answer = None, True
    chat = await oai.chat.completions.create(model=MODEL, messages=user("hi"))
    assert chat.choices[0].message.content == ""
    assert chat.choices[0].finish_reason == "stop"
    message = await ant.messages.create(model=CLAUDE, max_tokens=100, messages=user("hi"))
    assert message.content == []


async def test_max_tokens_truncates(ant: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI) -> None:
    message = await ant.messages.create(model=CLAUDE, max_tokens=5, messages=user("hello"))
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens <= 5
    chat = await oai.chat.completions.create(
        model=MODEL, messages=user("hello"), max_completion_tokens=3
    )
    assert chat.choices[0].finish_reason == "length"


async def test_answer_and_usage_overrides(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    fp.answer = lambda body: "echo:" + body["messages"][-1]["content"]
    fp.prompt_tokens, fp.completion_tokens = 1000, 50
    chat = await oai.chat.completions.create(model=MODEL, messages=user("ping"))
    assert chat.choices[0].message.content == "echo:ping"
    assert chat.usage is not None
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (1000, 50)


# --- failure injection ------------------------------------------------------------------------


async def test_fail_next_500(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    fp.fail_next(1, 500)
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(model=MODEL, messages=user("hi"))
    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"
    await oai.chat.completions.create(model=MODEL, messages=user("hi"))  # one failure only
    assert fp.calls == 2
    assert fp.pending_failures == 0


async def test_fail_next_429_with_retry_after(
    fp: FakeProvider, oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic
) -> None:
    fp.fail_next(1, 429, retry_after=0.01)
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(model=MODEL, messages=user("hi"))
    assert caught.value.response.headers["retry-after"] == "0.01"
    assert caught.value.code == "rate_limit_exceeded"

    fp.fail_next(1, 429, retry_after=2)
    with pytest.raises(anthropic.RateLimitError) as ant_caught:
        await ant.messages.create(model=CLAUDE, max_tokens=100, messages=user("hi"))
    assert ant_caught.value.response.headers["retry-after"] == "2"
    assert isinstance(ant_caught.value.body, dict)
    assert ant_caught.value.body["error"]["type"] == "rate_limit_error"


async def test_sdk_retries_are_visible(fp: FakeProvider) -> None:
    fp.fail_next(2, 503, retry_after=0.01, headers={"x-should-retry": "true"})
    async with openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="t", max_retries=2) as c:
        result = await c.chat.completions.create(model=MODEL, messages=user("hi"))
    assert result.choices[0].finish_reason == "stop"
    assert fp.calls == 3
    assert fp.last_headers["x-stainless-retry-count"] == "2"


async def test_custom_error_body(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    fp.fail_next(
        1,
        400,
        body={
            "error": {
                "message": "bad model",
                "type": "invalid_request_error",
                "code": "model_not_found",
            }
        },
    )
    with pytest.raises(openai.BadRequestError, match="bad model"):
        await oai.chat.completions.create(model=MODEL, messages=user("hi"))


async def test_disconnect(
    fp: FakeProvider, oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic
) -> None:
    fp.fail_next(2, kind="disconnect")
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model=MODEL, messages=user("hi"))
    with pytest.raises(anthropic.APIConnectionError):
        await ant.messages.create(model=CLAUDE, max_tokens=100, messages=user("hi"))
    assert fp.calls == 2


async def test_stall_times_out(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    fp.fail_next(1, kind="stall")
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await oai.chat.completions.create(model=MODEL, messages=user("hi"), timeout=0.2)
    assert time.monotonic() - started < 2


async def test_abort_stream_after(
    fp: FakeProvider, oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic
) -> None:
    fp.abort_stream_after(3)
    stream = await oai.chat.completions.create(model=MODEL, messages=user("hi"), stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 3
    assert all(c.choices[0].finish_reason is None for c in received)

    # anthropic does not wrap transport errors raised while iterating a stream
    fp.abort_stream_after(4)  # message_start, ping (skipped by the SDK), block start, one delta
    stream_a = await ant.messages.create(
        model=CLAUDE, max_tokens=100, messages=user("hi"), stream=True
    )
    kinds = []
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        async for event in stream_a:
            kinds.append(event.type)
    assert kinds == ["message_start", "content_block_start", "content_block_delta"]

    # the abort was for one stream only
    stream = await oai.chat.completions.create(model=MODEL, messages=user("hi"), stream=True)
    assert [c async for c in stream][-1].choices[0].finish_reason == "stop"


# --- latency, concurrency, lifecycle ----------------------------------------------------------


async def test_latency_is_concurrent(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    fp.latency = 0.2
    started = time.monotonic()
    results = await asyncio.gather(
        *(oai.chat.completions.create(model=MODEL, messages=user(f"q{i}")) for i in range(20))
    )
    elapsed = time.monotonic() - started
    assert len(results) == 20
    assert 0.2 <= elapsed < 2.0  # serial would take 4 s
    assert fp.concurrent_max >= 10


async def test_latency_range_is_seeded(fp: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    assert FakeProvider(seed=7).rng.random() == random.Random(7).random()
    fp.latency = (0.05, 0.06)
    started = time.monotonic()
    await oai.chat.completions.create(model=MODEL, messages=user("slow"))
    assert time.monotonic() - started >= 0.05


async def test_aclose_drops_open_connections_promptly() -> None:
    fp = await FakeProvider(stall_seconds=30).start()
    async with openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="t", max_retries=0) as c:
        fp.fail_next(1, kind="stall")
        pending = asyncio.ensure_future(c.chat.completions.create(model=MODEL, messages=user("x")))
        for _ in range(500):
            if fp.calls:
                break
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await fp.aclose()
        assert time.monotonic() - started < 1
        with pytest.raises(openai.APIConnectionError):
            await pending
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "FakeProvider connection"]
    await fp.aclose()  # idempotent


async def test_not_started_and_bad_arguments() -> None:
    fp = FakeProvider()
    with pytest.raises(RuntimeError, match="not started"):
        _ = fp.base_url
    with pytest.raises(ValueError, match="status"):
        fp.fail_next(1, 200)
    with pytest.raises(ValueError, match="kind"):
        fp.fail_next(1, kind="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must"):
        fp.abort_stream_after(-1)


async def test_requests_are_bounded(
    fp: FakeProvider, oai: openai.AsyncOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(testing, "MAX_RECORDED_REQUESTS", 3)
    for i in range(5):
        await oai.chat.completions.create(model=MODEL, messages=user(str(i)))
    assert [r["messages"][0]["content"] for r in fp.requests] == ["2", "3", "4"]
    assert fp.calls == 5
    fp.reset()
    assert (fp.calls, fp.requests, fp.calls_by_endpoint) == (0, [], {})


async def test_raw_http(fp: FakeProvider) -> None:
    """Keep-alive, unknown paths, bad JSON and chunked request bodies, below the SDKs."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fp.port)

    async def exchange(raw: bytes) -> tuple[int, dict[str, str], bytes]:
        writer.write(raw)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(head[0].split()[1]), headers, body

    def post(path: str, body: bytes, extra: str = "") -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
        ).encode() + body

    status, _, body = await exchange(post("/v1/nope", b"{}"))
    assert status == 404 and "unknown path" in json.loads(body)["error"]["message"]
    status, _, body = await exchange(post("/v1/messages", b"{not json"))
    assert status == 400 and json.loads(body)["type"] == "error"  # Anthropic-shaped
    status, headers, body = await exchange(post("/v1/embeddings", b'{"input": "a"}'))
    assert status == 200 and headers["connection"] == "keep-alive"
    status, headers, _ = await exchange(
        b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    assert status == 501 and headers["connection"] == "close"
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    assert fp.calls == 3
