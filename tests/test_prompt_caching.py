"""Provider prompt caching: request layout, Anthropic breakpoints, and what a hit really saved."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import orjson
import pytest

from asynccache import (
    Cache,
    CacheRequest,
    ConfigurationError,
    cache_status,
    wrap_anthropic,
    wrap_openai,
)
from asynccache._keys import digest
from asynccache.prompt_caching import (
    ANTHROPIC_MAX_BREAKPOINTS,
    add_cache_breakpoints,
    count_breakpoints,
    static_first,
)
from asynccache.testing import FakeProvider

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
POLICY = "You are the support assistant of ACME. Answer from the handbook only."
HANDBOOK = "Handbook. " + "Returns are accepted within 30 days. " * 40
TOOL = {"name": "lookup_order", "description": "Find an order", "input_schema": {"type": "object"}}
HISTORY = [
    {"role": "user", "content": "Where is my order?"},
    {"role": "assistant", "content": "Which order number?"},
]


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def anthropic_key(params: dict[str, Any]) -> str:
    return digest(CacheRequest("anthropic", "messages", params))


# static_first ---------------------------------------------------------------------------------


def test_openai_layout_puts_static_first_and_the_per_request_part_last() -> None:
    def build(today: str, question: str) -> dict[str, Any]:
        return static_first(
            "openai",
            instructions=POLICY,
            context=[HANDBOOK],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            history=HISTORY,
            dynamic=[f"Today is {today}."],
            user=question,
            model="gpt-4o-mini",
            temperature=0,
        )

    monday = build("Monday", "Order 42")
    assert monday["model"] == "gpt-4o-mini" and monday["temperature"] == 0
    assert monday["messages"][0] == {"role": "system", "content": f"{POLICY}\n\n{HANDBOOK}"}
    assert monday["messages"][1:3] == HISTORY
    assert monday["messages"][-1] == {
        "role": "user",
        "content": [text("Today is Monday."), text("Order 42")],
    }
    assert "cache_control" not in orjson.dumps(monday).decode()  # OpenAI caches on its own
    # The per-request part changes only the tail: everything before it is byte-identical.
    tuesday = build("Tuesday", "Order 43")
    assert orjson.dumps(monday["tools"]) == orjson.dumps(tuesday["tools"])
    assert orjson.dumps(monday["messages"][:-1]) == orjson.dumps(tuesday["messages"][:-1])
    assert monday["messages"][-1] != tuesday["messages"][-1]


def test_plain_question_without_dynamic_content_stays_a_string() -> None:
    params = static_first("openai", instructions="Be brief.", user="hi", model="m")
    assert params == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    }


def test_anthropic_layout_and_its_breakpoints() -> None:
    params = static_first(
        "anthropic",
        instructions=POLICY,
        context=[HANDBOOK],
        tools=[TOOL],
        history=HISTORY,
        dynamic=["Customer: Ada (gold tier)."],
        user="Order 42",
        model="claude-sonnet-4-20250514",
        max_tokens=256,
    )
    assert params["system"] == [text(POLICY), text(HANDBOOK, cache_control=EPHEMERAL)]
    assert params["tools"] == [{**TOOL, "cache_control": EPHEMERAL}]
    assert params["messages"][0]["content"] == [text("Where is my order?", cache_control=EPHEMERAL)]
    assert params["messages"][1] == HISTORY[1]
    assert params["messages"][-1] == {
        "role": "user",
        "content": [text("Customer: Ada (gold tier)."), text("Order 42", cache_control=EPHEMERAL)],
    }
    assert count_breakpoints(params) == ANTHROPIC_MAX_BREAKPOINTS
    plain = static_first(
        "anthropic", instructions=POLICY, user="Order 42", breakpoints=False, model="m"
    )
    assert count_breakpoints(plain) == 0
    assert plain["system"] == [text(POLICY)] and plain["messages"][-1]["content"] == "Order 42"


def test_a_conversation_fed_back_turn_after_turn_never_exceeds_the_limit() -> None:
    """Callers keep the messages they sent as history; their old markers must not pile up."""
    history: list[dict[str, Any]] = []
    for turn in range(5):
        params = static_first(
            "anthropic",
            instructions=POLICY,
            tools=[TOOL],
            history=history,
            user=f"question {turn}",
            model="m",
            max_tokens=10,
        )
        assert count_breakpoints(params) <= ANTHROPIC_MAX_BREAKPOINTS
        history = [*params["messages"], {"role": "assistant", "content": f"answer {turn}"}]
    # The last request re-marks the previous user turn: the point the one before cached.
    assert params["messages"][-3]["content"] == [text("question 3", cache_control=EPHEMERAL)]
    assert params["messages"][-1]["content"] == [text("question 4", cache_control=EPHEMERAL)]
    assert params["messages"][0]["content"] == [text("question 0")]


def test_static_first_never_changes_the_callers_values() -> None:
    history = [
        *copy.deepcopy(HISTORY),
        {"role": "user", "content": [text("old", cache_control=EPHEMERAL)]},
        {"role": "assistant", "content": "ok"},
    ]
    tools = [dict(TOOL)]
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    user = [image, text("what is this?")]
    before = copy.deepcopy((history, tools, user))
    params = static_first(
        "anthropic", instructions=POLICY, tools=tools, history=history, user=user, model="m"
    )
    assert (history, tools, user) == before
    assert params["messages"][-1]["content"] == [
        image,
        text("what is this?", cache_control=EPHEMERAL),
    ]


@pytest.mark.parametrize("clash", ["messages", "system", "input"])
def test_static_first_refuses_parts_it_builds_itself(clash: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"builds {clash} itself.*history="):
        static_first("openai", instructions="x", user="hi", model="m", **{clash: []})


def test_static_first_refuses_an_unknown_provider() -> None:
    with pytest.raises(ConfigurationError, match="'openai' or 'anthropic', got 'gemini'"):
        static_first("gemini", instructions="x", user="hi")  # type: ignore[arg-type]


# add_cache_breakpoints ----------------------------------------------------------------------------


def conversation(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 100,
        "system": POLICY,
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "one"},
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "third"},
        ],
        **extra,
    }


def test_strings_become_one_block_lists_carrying_the_marker() -> None:
    params = conversation()
    before = copy.deepcopy(params)
    marked = add_cache_breakpoints(params)
    assert params == before  # the caller's dict is untouched
    assert marked["system"] == [text(POLICY, cache_control=EPHEMERAL)]
    assert marked["messages"][4]["content"] == [text("third", cache_control=EPHEMERAL)]
    assert marked["messages"][2]["content"] == [text("second", cache_control=EPHEMERAL)]
    assert marked["messages"][0]["content"] == "first"
    assert marked["messages"][1]["content"] == "one"
    assert count_breakpoints(marked) == 3
    unmarked_previous = add_cache_breakpoints(params, previous_turn=False)
    assert unmarked_previous["messages"][2]["content"] == "second"
    assert count_breakpoints(unmarked_previous) == 2


def test_tools_are_marked_last_and_stand_in_for_a_missing_system() -> None:
    no_system = {k: v for k, v in conversation(tools=[TOOL, TOOL]).items() if k != "system"}
    marked = add_cache_breakpoints(no_system)
    assert marked["tools"] == [TOOL, {**TOOL, "cache_control": EPHEMERAL}]
    with_system = add_cache_breakpoints(conversation(tools=[TOOL, TOOL]))
    assert count_breakpoints(with_system) == 4
    assert with_system["tools"][-1]["cache_control"] == EPHEMERAL  # lowest priority, budget left


def test_existing_breakpoints_use_up_the_budget_in_priority_order() -> None:
    messages = conversation()["messages"]
    three = conversation(
        tools=[{**TOOL, "cache_control": EPHEMERAL}],
        messages=[
            {"role": "user", "content": [text("first", cache_control=EPHEMERAL)]},
            {"role": "assistant", "content": [text("one", cache_control=EPHEMERAL)]},
            *messages[2:],
        ],
    )
    marked = add_cache_breakpoints(three)
    assert count_breakpoints(marked) == 4
    assert marked["system"] == [text(POLICY, cache_control=EPHEMERAL)]  # first in priority
    assert marked["messages"][4]["content"] == "third"  # no budget left for it
    full = conversation(tools=[{**TOOL, "cache_control": EPHEMERAL}] * 4)
    assert add_cache_breakpoints(full) == full
    with pytest.raises(ConfigurationError, match=r"already has 5 .*at most 4.*remove some"):
        add_cache_breakpoints(conversation(tools=[{**TOOL, "cache_control": EPHEMERAL}] * 5))


def test_top_level_cache_control_counts_and_already_marks_the_end() -> None:
    params = conversation(cache_control=EPHEMERAL)
    assert count_breakpoints(params) == 1
    marked = add_cache_breakpoints(params)
    assert count_breakpoints(marked) == 3  # top level + system + previous user turn
    assert marked["messages"][4]["content"] == "third"
    assert marked["messages"][2]["content"] == [text("second", cache_control=EPHEMERAL)]


def test_blocks_that_cannot_carry_a_marker_are_skipped() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    redacted = {"type": "redacted_thinking", "data": "xyz"}
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "lookup_order", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "shipped"}
    params = {
        "model": "m",
        "max_tokens": 10,
        "system": [text("Be brief."), text("   ")],
        "messages": [
            {"role": "user", "content": "Where is order 42?"},
            {"role": "assistant", "content": [tool_use, thinking, redacted]},
            {"role": "user", "content": [result, text("")]},
        ],
    }
    marked = add_cache_breakpoints(params)
    assert marked["system"] == [text("Be brief.", cache_control=EPHEMERAL), text("   ")]
    assert marked["messages"][2]["content"] == [{**result, "cache_control": EPHEMERAL}, text("")]
    assert marked["messages"][1]["content"] == [tool_use, thinking, redacted]
    only_thinking = {
        "model": "m",
        "system": "",
        "messages": [{"role": "assistant", "content": [thinking]}],
    }
    assert count_breakpoints(add_cache_breakpoints(only_thinking)) == 0


def test_one_hour_ttl_and_its_ordering_rule() -> None:
    hour = add_cache_breakpoints(conversation(), ttl="1h")
    assert hour["system"][0]["cache_control"] == HOUR
    assert hour["messages"][4]["content"][0]["cache_control"] == HOUR
    mixed = add_cache_breakpoints(conversation(), static_ttl="1h")
    assert mixed["system"][0]["cache_control"] == HOUR
    assert mixed["messages"][4]["content"][0]["cache_control"] == EPHEMERAL
    with pytest.raises(ConfigurationError, match="static_ttl='1h'"):
        add_cache_breakpoints(conversation(), ttl="1h", static_ttl="5m")
    # A caller's 5m system breakpoint cannot be followed by 1h ones.
    short_system = conversation(system=[text(POLICY, cache_control=EPHEMERAL)])
    with pytest.raises(
        ConfigurationError,
        match=r"1h breakpoint at messages\[2\]\.content\[0\] after a 5m one at system\[0\]",
    ):
        add_cache_breakpoints(short_system, ttl="1h")
    # Nor may the caller's own markers be out of order.
    wrong = conversation(
        system=[text(POLICY, cache_control=EPHEMERAL)],
        messages=[{"role": "user", "content": [text("q", cache_control=HOUR)]}],
    )
    with pytest.raises(ConfigurationError, match="request's own"):
        add_cache_breakpoints(wrong)


@pytest.mark.parametrize("bad", ["10m", "1H", "", None, 300])
def test_invalid_ttl_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"ttl must be '5m' or '1h'"):
        add_cache_breakpoints(conversation(), ttl=bad)
    with pytest.raises(ConfigurationError, match=r"static_ttl must be '5m' or '1h'"):
        add_cache_breakpoints(conversation(), static_ttl=bad or "2h")


def test_count_breakpoints_counts_every_place_a_marker_can_be() -> None:
    nested = {
        "type": "tool_result",
        "tool_use_id": "t",
        "content": [text("a", cache_control=EPHEMERAL), text("b")],
        "cache_control": EPHEMERAL,
    }
    params = {
        "tools": [{**TOOL, "cache_control": EPHEMERAL}, TOOL],
        "system": [text("s", cache_control=HOUR)],
        "messages": [
            {"role": "user", "content": [nested]},
            {"role": "user", "content": "plain"},
            {"role": "user", "content": [text("c", cache_control=None)]},  # None: no marker
        ],
        "cache_control": EPHEMERAL,
    }
    assert count_breakpoints(params) == 5
    assert count_breakpoints({"model": "m", "messages": [{"role": "user", "content": "q"}]}) == 0


def test_marking_never_changes_the_asynccache_key() -> None:
    params = conversation(tools=[TOOL])
    for marked in (
        add_cache_breakpoints(params),
        add_cache_breakpoints(params, ttl="1h"),
        add_cache_breakpoints(params, previous_turn=False),
        {**add_cache_breakpoints(params), "cache_control": EPHEMERAL},
    ):
        assert marked != params
        assert anthropic_key(marked) == anthropic_key(params)
    built = {
        "instructions": POLICY,
        "context": [HANDBOOK],
        "tools": [TOOL],
        "history": HISTORY,
        "dynamic": ["Today is Monday."],
        "user": "Order 42",
        "model": "m",
        "max_tokens": 10,
    }
    with_marks = static_first("anthropic", **built)
    without = static_first("anthropic", breakpoints=False, **built)
    assert count_breakpoints(with_marks) == 4
    assert anthropic_key(with_marks) == anthropic_key(without)


# Through the real SDKs: marked requests are accepted, and keyed like unmarked ones -------------


@pytest.fixture
async def cache() -> AsyncIterator[Cache]:
    async with Cache.from_url("memory://") as c:
        yield c


async def test_marked_anthropic_request_is_sent_and_its_unmarked_twin_is_a_hit(
    cache: Cache,
) -> None:
    async with (
        FakeProvider() as fp,
        anthropic.AsyncAnthropic(base_url=fp.anthropic_base_url, api_key="sk-ant-test") as sdk,
    ):
        client = wrap_anthropic(sdk, cache)
        built = {
            "instructions": POLICY,
            "context": [HANDBOOK],
            "tools": [TOOL],
            "history": HISTORY,
            "user": "Order 42",
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 256,
        }
        first = await client.messages.create(**static_first("anthropic", **built))
        again = await client.messages.create(
            **static_first("anthropic", breakpoints=False, **built)
        )
        assert cache_status(first).outcome == "miss"  # type: ignore[union-attr]
        assert cache_status(again).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]
        assert count_breakpoints(fp.requests[-1]) == 4  # what went over the wire


# What a hit saved, from the providers' published prices -------------------------------------


async def test_openai_cached_tokens_are_a_subset_of_prompt_tokens(cache: Cache) -> None:
    async with (
        FakeProvider(prompt_tokens=2000, cached_tokens=1536, completion_tokens=100) as fp,
        openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="sk-test") as sdk,
    ):
        client = wrap_openai(sdk, cache)
        params = static_first("openai", instructions=POLICY, user="Order 42", model="gpt-4o-mini")
        miss = await client.chat.completions.create(**params, temperature=0)
        hit = await client.chat.completions.create(**params, temperature=0)
    assert miss.usage.prompt_tokens == 2000
    assert miss.usage.prompt_tokens_details.cached_tokens == 1536
    assert cache_status(hit).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]
    stats = cache.stats()
    # gpt-4o-mini, USD per 1M tokens: input 0.15, cached input 0.075, output 0.60.
    # The hit skipped a call of 2000 prompt tokens, 1536 of them read from OpenAI's cache:
    #   (2000 - 1536) * 0.15 = 69.6;  1536 * 0.075 = 115.2;  100 * 0.60 = 60.0
    #   (69.6 + 115.2 + 60.0) / 1e6 = 0.0002448
    assert stats.usd_saved == pytest.approx(0.0002448, rel=1e-12)
    assert (stats.input_tokens_saved, stats.output_tokens_saved) == (2000, 100)


async def test_openai_responses_cached_tokens_are_a_subset_of_input_tokens(cache: Cache) -> None:
    async with (
        FakeProvider(prompt_tokens=4000, cached_tokens=3072, completion_tokens=50) as fp,
        openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="sk-test") as sdk,
    ):
        client = wrap_openai(sdk, cache)
        miss = await client.responses.create(model="gpt-4.1", input="Order 42", temperature=0)
        await client.responses.create(
            model="gpt-4.1", input=[{"role": "user", "content": "Order 42"}], temperature=0
        )
    assert miss.usage.input_tokens_details.cached_tokens == 3072  # type: ignore[union-attr]
    assert fp.calls == 1  # the string and the one-message list are one request
    # gpt-4.1, USD per 1M tokens: input 2.00, cached input 0.50, output 8.00.
    #   (4000 - 3072) * 2.00 = 1856;  3072 * 0.50 = 1536;  50 * 8.00 = 400
    #   (1856 + 1536 + 400) / 1e6 = 0.003792
    assert cache.stats().usd_saved == pytest.approx(0.003792, rel=1e-12)


async def test_anthropic_cache_reads_and_writes_are_separate_from_input_tokens(
    cache: Cache,
) -> None:
    async with (
        FakeProvider(
            prompt_tokens=500, cached_tokens=3000, cache_creation_tokens=1000, completion_tokens=200
        ) as fp,
        anthropic.AsyncAnthropic(base_url=fp.anthropic_base_url, api_key="sk-ant-test") as sdk,
    ):
        client = wrap_anthropic(sdk, cache)
        params = static_first(
            "anthropic",
            instructions=POLICY,
            context=[HANDBOOK],
            user="Order 42",
            model="claude-sonnet-4-20250514",
            max_tokens=256,
        )
        miss = await client.messages.create(**params)
        hit = await client.messages.create(**params)
    u = miss.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (
        500,
        3000,
        1000,
    )
    assert cache_status(hit).outcome == "hit" and fp.calls == 1  # type: ignore[union-attr]
    stats = cache.stats()
    # claude-sonnet-4, USD per 1M tokens: input 3.00, cache read 0.30, 5-minute cache write
    # 3.75, output 15.00. input_tokens (500) excludes the 3000 read and the 1000 written:
    #   500 * 3.00 = 1500;  3000 * 0.30 = 900;  1000 * 3.75 = 3750;  200 * 15.00 = 3000
    #   (1500 + 900 + 3750 + 3000) / 1e6 = 0.00915
    assert stats.usd_saved == pytest.approx(0.00915, rel=1e-12)
    assert (stats.input_tokens_saved, stats.output_tokens_saved) == (4500, 200)


async def test_anthropic_one_hour_cache_writes_are_priced_at_their_own_rate(
    cache: Cache,
) -> None:
    async with (
        FakeProvider(
            prompt_tokens=500,
            cache_creation_tokens=1000,
            cache_creation_1h_tokens=500,
            completion_tokens=200,
        ) as fp,
        anthropic.AsyncAnthropic(base_url=fp.anthropic_base_url, api_key="sk-ant-test") as sdk,
    ):
        client = wrap_anthropic(sdk, cache)
        params = static_first(
            "anthropic",
            instructions=POLICY,
            context=[HANDBOOK],
            user="Order 43",
            model="claude-sonnet-4-20250514",
            max_tokens=256,
        )
        miss = await client.messages.create(**params)
        await client.messages.create(**params)
    assert miss.usage.cache_creation.ephemeral_1h_input_tokens == 500  # type: ignore[union-attr]
    # claude-sonnet-4, USD per 1M tokens: input 3.00, 5-minute write 3.75, 1-hour write 6.00,
    # output 15.00. Of the 1000 tokens written, 500 for 5 minutes and 500 for an hour:
    #   500 * 3.00 = 1500;  500 * 3.75 = 1875;  500 * 6.00 = 3000;  200 * 15.00 = 3000
    #   (1500 + 1875 + 3000 + 3000) / 1e6 = 0.009375  (all at the 5-minute rate: 0.00915)
    assert cache.stats().usd_saved == pytest.approx(0.009375, rel=1e-12)
