"""Stream shapes: provider streams <-> whole answers, for chat, Responses and Anthropic Messages.

Real parts only: streams are fetched over HTTP from FakeProvider and decoded with our SSE
decoder; split events are parsed by the real SDKs (strict validation) over synthetic
responses. Round trips (``assemble(split(v)) == v``) run over generated answers that cover
the hard cases: several tool calls, refusals, logprobs, several choices, thinking blocks.
"""

from __future__ import annotations

import base64
import copy
import itertools
import random
import string
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, cast

import anthropic
import httpx2
import openai
import orjson
import pytest
from anthropic.lib.streaming import AsyncMessageStream
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from asynccache._recording import Event, StreamShape
from asynccache.integrations import _anthropic_stream, _chat_stream, _responses_stream
from asynccache.integrations._sse import Decoder, encode
from asynccache.testing import FakeProvider

GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
PARAMS = {"type": "object", "properties": {"location": {"type": "string"}}}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}
RESP_TOOL = {"type": "function", "name": "get_weather", "parameters": PARAMS}
CLAUDE_TOOL = {"name": "get_weather", "input_schema": PARAMS}
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
#: Values the provider mints per call: equal answers differ only in these.
MINTED = frozenset({"id", "created", "created_at", "completed_at", "call_id", "item_id"})


def normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "*" if k in MINTED else normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
async def fp() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as provider:
        yield provider


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    headers = {"anthropic-version": "2023-06-01", "authorization": "Bearer test"}
    # Plain HTTP to loopback: no TLS context to build (it costs ~0.1 s per client).
    async with httpx2.AsyncClient(headers=headers, timeout=5, verify=False) as client:
        yield client


async def whole(http: httpx2.AsyncClient, url: str, body: dict[str, Any]) -> Any:
    response = await http.post(url, json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def stream(
    http: httpx2.AsyncClient, url: str, body: dict[str, Any]
) -> tuple[list[Event], bool]:
    """The events received, and whether the transport failed before the body ended."""
    decoder, events = Decoder(), []
    try:
        async with http.stream("POST", url, json={**body, "stream": True}) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                events += decoder.feed(chunk)
    except httpx2.TransportError:
        return events, True
    return events, False


# --- generated answers: every shape the round trips must survive -----------------------------

WORDS = ["Paris", "weather", "café", "naïve", "日本語", "x", "42", "🙂", "a\tb", "end."]
SEPARATORS = [" ", "  ", "\n", "\n\n", " \t", ""]
URL_CITATION = dict(url="https://x.test", title="X", start_index=0, end_index=1)


def text(rng: random.Random, allow_empty: bool = True) -> str:
    if allow_empty and rng.random() < 0.1:
        return ""
    out = [rng.choice(SEPARATORS) if rng.random() < 0.2 else ""]
    for _ in range(rng.randint(1, 12)):
        out += [rng.choice(WORDS), rng.choice(SEPARATORS)]
    return "".join(out)


def json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind < 2:
        return rng.choice([0, -(10**6), 10**9, 0.5, -1.25, 1e-7, 3.14159, True, False, None])
    if kind < 4:
        return text(rng)
    if kind == 4:
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = rng.sample(string.ascii_lowercase, rng.randint(0, 3))
    return {key: json_value(rng, depth + 1) for key in keys}


def arguments(rng: random.Random) -> dict[str, Any]:
    value = json_value(rng, 1)
    return value if isinstance(value, dict) else {"value": value}


def logprobs(rng: random.Random, content: str | None) -> list[dict[str, Any]] | None:
    """Entries for tokens that spell ``content`` (or, now and then, do not)."""
    if content is None:
        return None
    cuts = sorted({0, len(content), *(rng.randrange(len(content) + 1) for _ in range(5))})
    tokens = [content[i:j] for i, j in itertools.pairwise(cuts)]
    if rng.random() < 0.1:
        tokens = ["mismatched", " tokens"]
    return [entry(t, -rng.random()) for t in tokens]


def entry(token: str, logprob: float = -0.5) -> dict[str, Any]:
    return dict(token=token, logprob=logprob, bytes=list(token.encode()), top_logprobs=[])


def chat_choice(rng: random.Random, index: int) -> dict[str, Any]:
    kind = rng.choice(["text", "text", "tools", "refusal", "text+tools"])
    content = text(rng) if "text" in kind else None
    refusal = text(rng, allow_empty=False) if kind == "refusal" else None
    annotations = [dict(type="url_citation", url_citation=URL_CITATION)] * (rng.random() < 0.2)
    message = dict(role="assistant", content=content, refusal=refusal, annotations=annotations)
    finish = "content_filter" if refusal else "stop"
    if "tools" in kind:
        finish = "tool_calls"
        message["tool_calls"] = [
            dict(
                id=f"call_{index}_{n}",
                type="function",
                function=dict(
                    name=rng.choice(["get_weather", "lookup"]),
                    arguments=rng.choice(["{}", "", orjson.dumps(arguments(rng)).decode()]),
                ),
            )
            for n in range(rng.randint(1, 3))
        ]
    lp = None
    if rng.random() < 0.4:
        lp = {"content": logprobs(rng, content), "refusal": logprobs(rng, refusal)}
        lp = {"content": [], "refusal": None} if rng.random() < 0.1 else lp
    return dict(index=index, message=message, logprobs=lp, finish_reason=finish)


def chat_answer(rng: random.Random) -> dict[str, Any]:
    return dict(
        id="chatcmpl-1",
        object="chat.completion",
        created=1_700_000_000,
        model=GPT,
        choices=[chat_choice(rng, index) for index in range(rng.choice([1, 1, 2, 3]))],
        usage=rng.choice([None, dict(prompt_tokens=9, completion_tokens=4, total_tokens=13)]),
        service_tier=rng.choice(["default", None]),
        system_fingerprint=rng.choice(["fp_1", None]),
    )


def output_item(rng: random.Random, n: int) -> dict[str, Any]:
    kind = rng.choice(["message", "function_call", "reasoning", "web_search_call"])
    if kind == "message":
        parts: list[dict[str, Any]] = []
        for _ in range(rng.randint(1, 2)):
            if rng.random() < 0.2:
                parts.append(dict(type="refusal", refusal=text(rng, allow_empty=False)))
                continue
            t = text(rng)
            annotations = [dict(type="url_citation", **URL_CITATION)] * (rng.random() < 0.3)
            lp = logprobs(rng, t) if rng.random() < 0.3 else []
            parts.append(dict(type="output_text", text=t, annotations=annotations, logprobs=lp))
        return dict(type=kind, id=f"msg_{n}", status="completed", role="assistant", content=parts)
    if kind == "function_call":
        arguments_ = orjson.dumps(arguments(rng)).decode()
        return dict(
            type=kind,
            id=f"fc_{n}",
            call_id=f"c{n}",
            name="f",
            arguments=arguments_,
            status="completed",
        )
    if kind == "reasoning":
        summary = [dict(type="summary_text", text=text(rng)) for _ in range(rng.randint(0, 2))]
        item = dict(type=kind, id=f"rs_{n}", summary=summary)
        if rng.random() < 0.5:
            item["content"] = [dict(type="reasoning_text", text=text(rng))]
        if rng.random() < 0.5:
            item["encrypted_content"] = "gAAAAB" + "x" * 20
        return item
    action = dict(type="search", query="paris")
    return dict(type=kind, id=f"ws_{n}", status="completed", action=action)


def response_answer(rng: random.Random) -> dict[str, Any]:
    incomplete = rng.random() < 0.2
    usage = dict(
        input_tokens=5,
        input_tokens_details=dict(cached_tokens=0, cache_write_tokens=0),
        output_tokens=7,
        output_tokens_details=dict(reasoning_tokens=2),
        total_tokens=12,
    )
    return dict(
        id="resp_1",
        object="response",
        created_at=1_700_000_000,
        status="incomplete" if incomplete else "completed",
        error=None,
        incomplete_details={"reason": "max_output_tokens"} if incomplete else None,
        instructions=None,
        model=GPT,
        output=[output_item(rng, n) for n in range(rng.randint(1, 4))],
        parallel_tool_calls=True,
        tool_choice="auto",
        tools=[],
        usage=usage,
    )


def content_block(rng: random.Random, n: int) -> dict[str, Any]:
    kind = rng.choice(
        ["text", "text", "thinking", "redacted_thinking", "tool_use", "server_tool_use", "result"]
    )
    if kind == "text":
        citations = [
            dict(
                type="char_location",
                cited_text=text(rng),
                document_index=0,
                document_title=None,
                start_char_index=i,
                end_char_index=i + 3,
                file_id=None,
            )
            for i in range(rng.randint(1, 2))
        ]
        return dict(type=kind, text=text(rng), citations=rng.choice([None, citations]))
    if kind == "thinking":
        return dict(type=kind, thinking=text(rng), signature=f"sig{n}")
    if kind == "redacted_thinking":
        return dict(type=kind, data=f"opaque{n}")
    if kind == "tool_use":
        tool_input = arguments(rng) if rng.random() < 0.8 else {}
        return dict(type=kind, id=f"toolu_{n}", name="get_weather", input=tool_input)
    if kind == "server_tool_use":
        return dict(type=kind, id=f"srvtoolu_{n}", name="web_search", input={"query": text(rng)})
    result = dict(type="web_search_result", title="T", url="https://x.test", encrypted_content="e")
    return dict(type="web_search_tool_result", tool_use_id=f"srvtoolu_{n}", content=[result])


def anthropic_answer(rng: random.Random) -> dict[str, Any]:
    stop_reason = rng.choice(["end_turn", "tool_use", "max_tokens", "stop_sequence"])
    usage = dict(
        input_tokens=rng.randint(1, 99),
        output_tokens=rng.randint(1, 99),
        cache_creation_input_tokens=rng.randint(0, 9),
        cache_read_input_tokens=rng.randint(0, 9),
        cache_creation=dict(ephemeral_5m_input_tokens=0, ephemeral_1h_input_tokens=0),
        server_tool_use=rng.choice([None, dict(web_search_requests=1, web_fetch_requests=0)]),
        service_tier="standard",
    )
    answer = dict(
        id="msg_1",
        type="message",
        role="assistant",
        model=CLAUDE,
        content=[content_block(rng, n) for n in range(rng.randint(0, 5))],
        stop_reason=stop_reason,
        stop_sequence="###" if stop_reason == "stop_sequence" else None,
        usage=usage,
    )
    if rng.random() < 0.3:
        answer["stop_details"] = None
    return answer


# --- whole answer == assembled stream, over HTTP ----------------------------------------------

CHAT_BODIES: dict[str, dict[str, Any]] = {
    "text": {"messages": user("Hello there, how are you?")},
    "tool": {"messages": user("What is the weather in Paris?"), "tools": [CHAT_TOOL]},
    "forced tool": {
        "messages": user("Say hi"),
        "tools": [CHAT_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    },
    "json_schema": {
        "messages": user("Plan a trip to Rome"),
        "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}},
    },
    "n=2": {"messages": user("Two answers please"), "n": 2},
    "length": {"messages": user("A long answer please"), "max_tokens": 3},
}


@pytest.mark.parametrize("name", list(CHAT_BODIES))
@pytest.mark.parametrize("include_usage", [True, False])
async def test_chat_stream_assembles_to_the_whole_answer(
    fp: FakeProvider, http: httpx2.AsyncClient, name: str, include_usage: bool
) -> None:
    fp.cached_tokens, fp.cache_creation_tokens = 7, 3
    url = fp.openai_base_url + "/chat/completions"
    body = {"model": GPT, **CHAT_BODIES[name]}
    expected = await whole(http, url, body)
    body["stream_options"] = {"include_usage": include_usage}
    events, cut = await stream(http, url, body)
    assert not cut
    if not include_usage:
        expected["usage"] = None  # a stream without include_usage carries no usage
    else:
        assert expected["usage"]["prompt_tokens_details"]["cached_tokens"] == 7
    assembled = _chat_stream.assemble(events)
    assert normal(assembled) == normal(expected)
    ChatCompletion.model_validate(assembled)


RESPONSES_BODIES: dict[str, dict[str, Any]] = {
    "text": {"input": "Hello there, how are you?"},
    "function_call": {"input": "What is the weather in Paris?", "tools": [RESP_TOOL]},
    "json_schema": {
        "input": "Plan a trip to Rome",
        "text": {"format": {"type": "json_schema", "name": "t", "schema": SCHEMA}},
    },
    "incomplete": {"input": "A long answer please", "max_output_tokens": 3},
}


@pytest.mark.parametrize("name", list(RESPONSES_BODIES))
async def test_responses_stream_assembles_to_the_whole_answer(
    fp: FakeProvider, http: httpx2.AsyncClient, name: str
) -> None:
    fp.cached_tokens, fp.cache_creation_tokens = 11, 5
    url = fp.openai_base_url + "/responses"
    body = {"model": GPT, **RESPONSES_BODIES[name]}
    expected = await whole(http, url, body)
    events, cut = await stream(http, url, body)
    assert not cut
    assert expected["usage"]["input_tokens_details"]["cached_tokens"] == 11
    assert normal(_responses_stream.assemble(events)) == normal(expected)


ANTHROPIC_BODIES: dict[str, dict[str, Any]] = {
    "text": {"messages": user("Hello there, how are you?")},
    "tool_use": {"messages": user("What is the weather in Paris?"), "tools": [CLAUDE_TOOL]},
    "forced tool": {
        "messages": user("Say hi"),
        "tools": [CLAUDE_TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    },
    "max_tokens": {"messages": user("A long answer please"), "max_tokens": 3},
}


@pytest.mark.parametrize("name", list(ANTHROPIC_BODIES))
async def test_anthropic_stream_assembles_to_the_whole_answer(
    fp: FakeProvider, http: httpx2.AsyncClient, name: str
) -> None:
    fp.cached_tokens, fp.cache_creation_tokens = 13, 17
    url = fp.anthropic_base_url + "/v1/messages"
    body = {"model": CLAUDE, "max_tokens": 256, **ANTHROPIC_BODIES[name]}
    expected = await whole(http, url, body)
    events, cut = await stream(http, url, body)
    assert not cut
    assert ("ping", {"type": "ping"}) in events
    assert expected["usage"]["cache_read_input_tokens"] == 13
    assert expected["usage"]["cache_creation_input_tokens"] == 17
    assert normal(_anthropic_stream.assemble(events)) == normal(expected)


# --- cut and unfinished streams ---------------------------------------------------------------

ENDPOINTS: dict[str, tuple[StreamShape, str, dict[str, Any]]] = {
    "chat": (
        _chat_stream.SHAPE,
        "/v1/chat/completions",
        {"model": GPT, "messages": user("Hi"), "stream_options": {"include_usage": True}},
    ),
    "chat tool": (
        _chat_stream.SHAPE,
        "/v1/chat/completions",
        {"model": GPT, "messages": user("Weather in Oslo?"), "tools": [CHAT_TOOL]},
    ),
    "responses": (_responses_stream.SHAPE, "/v1/responses", {"model": GPT, "input": "Hi"}),
    "anthropic": (
        _anthropic_stream.SHAPE,
        "/v1/messages",
        {"model": CLAUDE, "max_tokens": 256, "messages": user("Weather in Oslo?")},
    ),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_a_stream_cut_midway_assembles_to_none(
    fp: FakeProvider, http: httpx2.AsyncClient, endpoint: str
) -> None:
    shape, path, body = ENDPOINTS[endpoint]
    full, cut = await stream(http, fp.base_url + path, body)
    assert not cut and shape.assemble(full) is not None
    for k in sorted({1, 2, len(full) // 2, len(full) - 1}):
        fp.abort_stream_after(k)
        events, cut = await stream(http, fp.base_url + path, body)
        assert cut and len(events) == k
        assert shape.assemble(events) is None
        # the same prefix without the transport error: still not finished
        assert shape.assemble(full[:k]) is None


async def test_a_stream_without_its_terminal_event_assembles_to_none(
    fp: FakeProvider, http: httpx2.AsyncClient
) -> None:
    chat, _ = await stream(http, fp.base_url + "/v1/chat/completions", ENDPOINTS["chat"][2])
    assert chat[-1] == (None, "[DONE]")
    assert _chat_stream.assemble(chat[:-1]) is None  # every choice finished, but no [DONE]
    responses, _ = await stream(http, fp.base_url + "/v1/responses", ENDPOINTS["responses"][2])
    assert responses[-1][0] == "response.completed"
    assert _responses_stream.assemble(responses[:-1]) is None
    messages, _ = await stream(http, fp.base_url + "/v1/messages", ENDPOINTS["anthropic"][2])
    assert messages[-1][0] == "message_stop"
    assert _anthropic_stream.assemble(messages[:-1]) is None
    without_delta = [e for e in messages if e[0] != "message_delta"]
    assert _anthropic_stream.assemble(without_delta) is None  # no stop_reason


def test_error_and_failure_events_assemble_to_none() -> None:
    chat = _chat_stream.split(chat_answer(random.Random(1)))
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    assert _chat_stream.assemble([*chat[:2], (None, error), *chat[2:]]) is None
    assert _chat_stream.assemble([*chat[:2], ("error", error), *chat[2:]]) is None
    # Azure's filter-only events (object "") carry no content; anything else unknown does
    azure = {"object": "", "id": "", "created": 0, "model": "", "choices": []}
    assert _chat_stream.assemble([(None, azure), *chat]) == _chat_stream.assemble(chat)
    other = {**chat[1][1], "object": "chat.completion.other"}
    assert _chat_stream.assemble([*chat[:2], (None, other), *chat[2:]]) is None
    unknown_field = copy.deepcopy(chat[1])
    unknown_field[1]["choices"][0]["delta"]["reasoning_content"] = "hidden"
    assert _chat_stream.assemble([chat[0], unknown_field, *chat[2:]]) is None

    response = response_answer(random.Random(2))
    events = _responses_stream.split(response)
    error_event = {"type": "error", "message": "boom", "code": None, "param": None}
    assert _responses_stream.assemble([*events[:3], ("error", error_event), *events[3:]]) is None
    failed = {**response, "status": "failed", "error": {"code": "server_error", "message": "x"}}
    assert _responses_stream.split(failed)[-1][0] == "response.failed"
    assert _responses_stream.assemble(_responses_stream.split(failed)) is None

    message = anthropic_answer(random.Random(3))
    events = _anthropic_stream.split(message)
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}
    assert _anthropic_stream.assemble([*events[:3], ("error", overloaded), *events[3:]]) is None
    assert _anthropic_stream.assemble([*events, ("error", overloaded)]) is None


def test_pings_and_unknown_anthropic_events_change_nothing() -> None:
    message = anthropic_answer(random.Random(4))
    events = _anthropic_stream.split(message)
    noisy = [events[0], ("ping", {"type": "ping"}), ("future_thing", {"type": "future_thing"})]
    noisy += [e for e in events[1:] for e in (e, ("ping", {"type": "ping"}))]
    assert _anthropic_stream.assemble(noisy) == message
    unknown_delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "new_delta"}}
    assert _anthropic_stream.assemble([*events[:3], ("content_block_delta", unknown_delta)]) is None


MUTANTS: list[Any] = [None, 0, 1.5, "x", "[DONE]", [], {}, {"type": 5}, {"index": "0"}, [1, 2]]


def mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with one thing somewhere replaced by something odd."""
    if depth > 6 or not isinstance(value, (dict, list)) or not value or rng.random() < 0.25:
        return copy.deepcopy(rng.choice(MUTANTS))
    value = copy.copy(value)
    key = rng.choice(list(value)) if isinstance(value, dict) else rng.randrange(len(value))
    value[key] = mutate(rng, value[key], depth + 1)
    return value


@pytest.mark.parametrize(
    ("shape", "make"),
    [
        (_chat_stream.SHAPE, chat_answer),
        (_responses_stream.SHAPE, response_answer),
        (_anthropic_stream.SHAPE, anthropic_answer),
    ],
)
def test_assemble_never_raises_on_odd_events(shape: StreamShape, make: Any) -> None:
    rng = random.Random(5)
    for _ in range(300):
        events = list(shape.split(make(rng)))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(events))
            choice = rng.random()
            if choice < 0.2:
                del events[at]
            elif choice < 0.3:
                events.insert(at, events[rng.randrange(len(events))])
            elif choice < 0.4:
                events[at] = (rng.choice([None, "error", "ping", "zzz"]), events[at][1])
            else:
                events[at] = (events[at][0], mutate(rng, events[at][1]))
        result = shape.assemble(events)
        assert result is None or isinstance(result, dict)


# --- split(whole) parsed by the SDKs ----------------------------------------------------------


def sse_response(events: Iterable[Event], url: str) -> httpx2.Response:
    async def body() -> AsyncIterator[bytes]:
        for event in events:
            yield encode(event)

    return httpx2.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=body(),
        request=httpx2.Request("POST", url),
    )


def strip(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: strip(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [strip(v, key) for v in value]
    return value


@pytest.fixture
async def claude() -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        api_key="test",
        base_url="http://fake.invalid",
        http_client=httpx2.AsyncClient(verify=False),
        _strict_response_validation=True,
    ) as client:
        yield client


@pytest.fixture
async def oai() -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        api_key="test",
        base_url="http://fake.invalid/v1",
        http_client=httpx2.AsyncClient(verify=False),
        _strict_response_validation=True,
    ) as client:
        yield client


async def anthropic_final(client: anthropic.AsyncAnthropic, value: dict[str, Any]) -> Message:
    raw: anthropic.AsyncStream[RawMessageStreamEvent] = anthropic.AsyncStream(
        cast_to=cast(Any, RawMessageStreamEvent),  # a union: what the SDK itself passes
        response=sse_response(_anthropic_stream.split(value), "http://fake.invalid/v1/messages"),
        client=client,
    )
    stream = AsyncMessageStream(raw, output_format=anthropic.NOT_GIVEN)
    return await stream.get_final_message()


async def test_split_anthropic_answers_parse_into_the_same_message(
    fp: FakeProvider, http: httpx2.AsyncClient, claude: anthropic.AsyncAnthropic
) -> None:
    url = fp.anthropic_base_url + "/v1/messages"
    values = [
        await whole(http, url, {"model": CLAUDE, "max_tokens": 256, **body})
        for body in ANTHROPIC_BODIES.values()
    ]
    rng = random.Random(6)
    values += [anthropic_answer(rng) for _ in range(30)]
    for value in values:
        final = await anthropic_final(claude, value)
        got = strip(final.model_dump(), "parsed_output")
        assert got == Message.model_validate(value).model_dump()


async def openai_chunks(
    client: openai.AsyncOpenAI, events: Sequence[Event], cast_to: Any, path: str
) -> list[Any]:
    response = sse_response(events, f"http://fake.invalid/v1/{path}")
    return [c async for c in openai.AsyncStream(cast_to=cast_to, response=response, client=client)]


async def test_split_chat_answers_parse_chunk_by_chunk(
    fp: FakeProvider, http: httpx2.AsyncClient, oai: openai.AsyncOpenAI
) -> None:
    url = fp.openai_base_url + "/chat/completions"
    values = [await whole(http, url, {"model": GPT, **body}) for body in CHAT_BODIES.values()]
    rng = random.Random(7)
    values += [chat_answer(rng) for _ in range(30)]
    for value in values:
        for include_usage in (True, False):
            events = _chat_stream.present(_chat_stream.split(value), include_usage)
            chunks = await openai_chunks(oai, events, ChatCompletionChunk, "chat/completions")
            assert len(chunks) == len(events) - 1  # all but [DONE]
            assert (chunks[-1].usage is not None) == (include_usage and value["usage"] is not None)
            for choice in value["choices"]:
                mine = [c for chunk in chunks for c in chunk.choices if c.index == choice["index"]]
                message = choice["message"]
                for field in ("content", "refusal"):
                    parts = [getattr(c.delta, field) for c in mine]
                    if message[field] is None:
                        assert set(parts) == {None}
                    else:
                        assert "".join(p for p in parts if p) == message[field]
                calls: dict[int, str] = {}
                for c in mine:
                    for delta in c.delta.tool_calls or []:
                        piece = delta.function.arguments if delta.function else None
                        calls[delta.index] = calls.get(delta.index, "") + (piece or "")
                expected = [tc["function"]["arguments"] for tc in message.get("tool_calls", [])]
                assert [calls[i] for i in sorted(calls)] == expected
                assert mine[-1].finish_reason == choice["finish_reason"]


async def test_split_responses_parse_event_by_event(
    fp: FakeProvider, http: httpx2.AsyncClient, oai: openai.AsyncOpenAI
) -> None:
    url = fp.openai_base_url + "/responses"
    values = [await whole(http, url, {"model": GPT, **body}) for body in RESPONSES_BODIES.values()]
    rng = random.Random(8)
    values += [response_answer(rng) for _ in range(10)]  # strict parsing of a 60-type union is slow
    for value in values:
        events = _responses_stream.split(value)
        parsed = await openai_chunks(oai, events, ResponseStreamEvent, "responses")
        assert [e.sequence_number for e in parsed] == list(range(len(events)))
        assert [e.type for e in parsed] == [name for name, _ in events]
        assert parsed[-1].response.model_dump() == Response.model_validate(value).model_dump()


# --- assemble(split(v)) == v ------------------------------------------------------------------


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return dict(id=call_id, type="function", function=dict(name=name, arguments=arguments))


def message(content: str | None = None, refusal: str | None = None, **more: Any) -> Any:
    return dict(role="assistant", content=content, refusal=refusal, annotations=[], **more)


HARD_CHAT: dict[str, Any] = dict(
    id="chatcmpl-hard",
    object="chat.completion",
    created=1,
    model=GPT,
    choices=[
        dict(
            index=0,
            message=message(
                tool_calls=[call("call_a", "a", '{"x": "1 2 3"}'), call("call_b", "b", "{}")]
            ),
            logprobs=None,
            finish_reason="tool_calls",
        ),
        dict(
            index=1,
            message=message(refusal="I can't help with that."),
            logprobs={"content": None, "refusal": [entry("I")]},
            finish_reason="stop",
        ),
        dict(
            index=2,
            message=message("Hi  there\n"),
            logprobs={"content": [entry(t) for t in ["Hi", "  ", "there", "\n"]], "refusal": None},
            finish_reason="stop",
        ),
    ],
    usage=dict(prompt_tokens=1, completion_tokens=2, total_tokens=3),
    service_tier="default",
    system_fingerprint="fp_x",
)


def test_chat_round_trip_hard_cases() -> None:
    events = _chat_stream.split(HARD_CHAT)
    assert _chat_stream.assemble(events) == HARD_CHAT
    choice_0 = [
        c for _, e in events if isinstance(e, dict) for c in e["choices"] if c["index"] == 0
    ]
    deltas = [call for c in choice_0 for call in c["delta"].get("tool_calls", [])]
    assert {d["index"] for d in deltas} == {0, 1}  # two calls, by index
    ids = [d["id"] for d in deltas if "id" in d]
    assert ids == ["call_a", "call_b"]  # an id in the first delta of each call only
    ChatCompletion.model_validate(HARD_CHAT)


@pytest.mark.parametrize(
    ("split", "assemble", "make"),
    [
        (_chat_stream.split, _chat_stream.assemble, chat_answer),
        (_responses_stream.split, _responses_stream.assemble, response_answer),
        (_anthropic_stream.split, _anthropic_stream.assemble, anthropic_answer),
    ],
)
def test_assemble_of_split_gives_the_answer_back(split: Any, assemble: Any, make: Any) -> None:
    rng = random.Random(9)
    for _ in range(300):
        value = make(rng)
        events = split(value)
        assert assemble(events) == value
        names = {name for name, _ in events}
        assert (None in names) == (split is _chat_stream.split)  # chat events carry no name


def test_anthropic_round_trip_hard_cases() -> None:
    weather = dict(type="tool_use", id="toolu_1", name="get_weather", input={"days": [1, 2]})
    value = dict(
        id="msg_hard",
        type="message",
        role="assistant",
        model=CLAUDE,
        content=[
            dict(type="thinking", thinking="Let me think.\nOK.", signature="EqQBCgIYAh"),
            dict(type="redacted_thinking", data="EmwKAhgBEgy3va3pzix"),
            dict(type="text", text="Checking the weather.", citations=None),
            weather,
            dict(type="tool_use", id="toolu_2", name="now", input={}),
        ],
        stop_reason="tool_use",
        stop_sequence=None,
        usage=dict(input_tokens=10, output_tokens=20, cache_read_input_tokens=5),
    )
    events = _anthropic_stream.split(value)
    assert _anthropic_stream.assemble(events) == value
    kinds = [e["delta"]["type"] for n, e in events if n == "content_block_delta"]
    assert kinds.count("signature_delta") == 1 and "thinking_delta" in kinds
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1


def test_anthropic_usage_on_message_delta_overwrites_only_what_it_carries() -> None:
    value = anthropic_answer(random.Random(10))
    events = _anthropic_stream.split(value)
    start = copy.deepcopy(events[0])
    start[1]["message"]["usage"].update(input_tokens=0, cache_read_input_tokens=0)
    delta = copy.deepcopy(next(e for e in events if e[0] == "message_delta"))
    delta[1]["usage"] = {"output_tokens": 55, "input_tokens": 44, "cache_read_input_tokens": None}
    rebuilt = [
        start if e[0] == "message_start" else delta if e[0] == "message_delta" else e
        for e in events
    ]
    usage = _anthropic_stream.assemble(rebuilt)["usage"]  # type: ignore[index]
    assert usage["output_tokens"] == 55 and usage["input_tokens"] == 44
    assert usage["cache_read_input_tokens"] == 0  # null in the delta: the start's value stays


def test_responses_split_is_a_faithful_event_sequence() -> None:
    value = response_answer(random.Random(11))
    text_part = dict(type="output_text", text="Hi there", annotations=[], logprobs=[])
    value["output"] = [
        dict(type="reasoning", id="rs_1", summary=[dict(type="summary_text", text="Think.")]),
        dict(
            type="message",
            id="msg_1",
            status="completed",
            role="assistant",
            content=[text_part, dict(type="refusal", refusal="No.")],
        ),
        dict(type="function_call", id="fc_1", call_id="c1", name="f", arguments='{"a": 1}'),
    ]
    value["status"], value["incomplete_details"] = "completed", None
    events = _responses_stream.split(value)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(name == data["type"] for name, data in events)
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-1] == "response.completed"
    assert events[0][1]["response"]["output"] == [] and events[0][1]["response"]["usage"] is None
    for kind in (
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.refusal.delta",
        "response.refusal.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ):
        assert kind in names
    deltas = [d["delta"] for n, d in events if n == "response.output_text.delta"]
    assert deltas == ["Hi ", "there"]
    assert (
        names.count("response.output_item.added") == names.count("response.output_item.done") == 3
    )
    # a terminal response without its output: the items' done events still give the answer
    emptied = [
        *events[:-1],
        (events[-1][0], {**events[-1][1], "response": {**value, "output": []}}),
    ]
    assert _responses_stream.assemble(emptied) == value


def test_present_strips_usage_for_a_caller_who_did_not_ask() -> None:
    value = chat_answer(random.Random(12))
    value["usage"] = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    events = _chat_stream.split(value)
    assert events[-2][1]["choices"] == [] and events[-2][1]["usage"] == value["usage"]
    assert all("usage" in data for _, data in events[:-1])
    assert _chat_stream.present(events, include_usage=True) == events
    shown = _chat_stream.present(events, include_usage=False)
    assert len(shown) == len(events) - 1
    assert shown[-1] == (None, "[DONE]")
    assert not any(isinstance(data, dict) and "usage" in data for _, data in shown)
    assert _chat_stream.assemble(shown) == {**value, "usage": None}


async def test_present_works_on_events_as_they_arrive() -> None:
    events = _chat_stream.split(chat_answer(random.Random(13)))
    closed = []

    async def source() -> AsyncIterator[Event]:
        try:
            for event in events:
                yield event
        finally:
            closed.append(True)

    shown = [e async for e in _chat_stream.present(source(), include_usage=False)]
    assert shown == _chat_stream.present(events, include_usage=False)
    live = _chat_stream.present(source(), include_usage=False)
    await live.__anext__()
    await live.aclose()  # type: ignore[attr-defined]
    assert closed == [True, True]  # closing what present hands out closes its source


def test_chat_round_trip_of_audio_legacy_function_call_and_custom_tool_calls() -> None:
    audio = dict(id="audio_1", data="AAECAwQFBgcICQ==", expires_at=1_700_003_600, transcript="Hi.")
    value = copy.deepcopy(HARD_CHAT)
    value["choices"] = value["choices"][:1]
    message = value["choices"][0]["message"]
    message["audio"] = audio
    message["function_call"] = {"name": "legacy", "arguments": '{"q": "a b"}'}
    message["tool_calls"].append(
        {"id": "call_c", "type": "custom", "custom": {"name": "grep", "input": "needle in  hay"}}
    )
    assert _chat_stream.assemble(_chat_stream.split(value)) == value
    ChatCompletion.model_validate(value)


def test_chat_audio_in_pieces_is_joined_as_bytes() -> None:
    value = copy.deepcopy(HARD_CHAT)
    value["choices"] = value["choices"][2:3]
    value["choices"][0]["index"] = 0
    events = _chat_stream.split(value)
    head = events[0][1]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> Event:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return (None, {**head, "choices": [choice]})

    pieces = [b"\x00\x01", b"\x02\x03\x04", b"\x05"]  # each encoded on its own, padded
    transcripts = [" th", "ere", ""]
    audio_events = [
        chunk({"role": "assistant", "audio": {"id": "a1", "transcript": "Hi"}}),
        *(
            chunk({"audio": {"data": base64.b64encode(p).decode(), "transcript": t}})
            for p, t in zip(pieces, transcripts, strict=True)
        ),
        chunk({}, "stop"),
        chunk({"audio": {"expires_at": 99}}),  # the last audio update: its expiry alone
        (None, "[DONE]"),
    ]
    answer = _chat_stream.assemble(audio_events)
    assert answer is not None
    assert answer["choices"][0]["message"]["audio"] == {
        "id": "a1",
        "data": base64.b64encode(b"".join(pieces)).decode(),
        "transcript": "Hi there",
        "expires_at": 99,
    }
