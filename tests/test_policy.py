"""CachePolicy decisions are pure: no cache, no I/O, just inputs and reasons."""

from __future__ import annotations

from typing import Any

import pytest

from asynccache import CacheOptions, CachePolicy, CacheRequest, ConfigurationError
from asynccache._answers import inspect_answer


def req(provider: str = "openai", endpoint: str = "chat.completions", **body: Any) -> CacheRequest:
    return CacheRequest(provider, endpoint, {"model": "m", "messages": [], **body})


def chat_answer(
    finish: str = "stop", content: Any = "hi", tool_calls: Any = None
) -> dict[str, Any]:
    msg = {"role": "assistant", "content": content, "tool_calls": tool_calls}
    return {"model": "m", "choices": [{"finish_reason": finish, "message": msg}], "usage": {}}


def test_request_rules() -> None:
    p = CachePolicy()
    assert p.check_request(req(temperature=0)).ok
    assert p.check_request(req()).ok  # unset temperature: cacheable
    sampled = p.check_request(req(temperature=0.7))
    assert not sampled.ok and "temperature=0.7" in (sampled.reason or "")
    assert not p.check_request(req(n=3)).ok
    assert not p.check_request(req(n=2.0)).ok
    assert CachePolicy(cache_sampled=True).check_request(req(temperature=0.7, n=3)).ok
    strict = CachePolicy(require_zero_temperature=True)
    assert not strict.check_request(req()).ok and strict.check_request(req(temperature=0)).ok


@pytest.mark.parametrize(
    "field", ["previous_response_id", "conversation", "background", "container"]
)
def test_stateful_requests_bypass_with_reason(field: str) -> None:
    d = CachePolicy().check_request(req(endpoint="responses", **{field: "x"}))
    assert not d.ok and field in (d.reason or "")
    assert CachePolicy(cache_stateful=True).check_request(req(**{field: "x"})).ok


def test_answer_rules() -> None:
    p = CachePolicy()

    def check(value: Any, size: int = 10, policy: CachePolicy = p) -> bool:
        return policy.check_answer(inspect_answer("openai", "chat.completions", value), size).ok

    assert check(chat_answer())
    assert not check(chat_answer("length"))
    assert check(chat_answer("length"), policy=CachePolicy(cache_truncated=True))
    assert not check(chat_answer("content_filter"))
    assert not check(chat_answer(content=""))
    assert check(chat_answer("tool_calls", content=None, tool_calls=[{"id": "1"}]))
    assert not check(chat_answer(), size=(1 << 20) + 1)


def test_anthropic_and_responses_answers() -> None:
    p = CachePolicy()
    msg = {"model": "c", "stop_reason": "end_turn", "content": [{"type": "text", "text": "hi"}]}
    assert p.check_answer(inspect_answer("anthropic", "messages", msg), 1).ok
    cut = {**msg, "stop_reason": "max_tokens"}
    assert not p.check_answer(inspect_answer("anthropic", "messages", cut), 1).ok
    resp = {
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [],
    }
    assert not p.check_answer(inspect_answer("openai", "responses", resp), 1).ok


def test_usage_accounting_reads_provider_cache_fields() -> None:
    openai = inspect_answer(
        "openai",
        "chat.completions",
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 1000,
                "completion_tokens": 50,
                "prompt_tokens_details": {"cached_tokens": 800},
            },
        },
    ).usage
    assert (openai.input_tokens, openai.cached_input_tokens, openai.output_tokens) == (
        1000,
        800,
        50,
    )
    anthropic = inspect_answer(
        "anthropic",
        "messages",
        {
            "content": [],
            "usage": {
                "input_tokens": 20,
                "output_tokens": 5,
                "cache_read_input_tokens": 900,
                "cache_creation_input_tokens": 100,
            },
        },
    ).usage
    # Anthropic reports cache reads/writes apart from input_tokens; we fold them in.
    assert anthropic.input_tokens == 1020 and anthropic.cached_input_tokens == 900
    assert anthropic.cache_write_tokens == 100


def test_ttls() -> None:
    p = CachePolicy(default_ttl=100)
    assert p.ttl_for(CacheOptions()) == 100
    assert p.ttl_for(CacheOptions(category="news")) == 3600
    assert p.ttl_for(CacheOptions(category="faq")) == 7 * 86400
    assert p.ttl_for(CacheOptions(category="greeting")) == 30 * 86400
    assert p.ttl_for(CacheOptions(category="unknown")) == 100
    assert p.ttl_for(CacheOptions(category="news", ttl=5)) == 5


def test_invalid_options_name_the_field() -> None:
    with pytest.raises(ConfigurationError, match="mode"):
        CacheOptions(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ttl"):
        CacheOptions(ttl=-1)
    with pytest.raises(ConfigurationError, match="tags"):
        CacheOptions(tags="faq")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="default_ttl"):
        CachePolicy(default_ttl=0)


def test_saved_cost_matches_a_hand_computed_figure() -> None:
    from asynccache._stats import DEFAULT_PRICES, cost_of, price_of

    usage = inspect_answer(
        "openai",
        "chat.completions",
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 10_000,
                "completion_tokens": 1_000,
                "prompt_tokens_details": {"cached_tokens": 8_000},
            },
        },
    ).usage
    price = price_of("gpt-4o-mini-2024-07-18", DEFAULT_PRICES)
    assert price is not None
    # 2,000 fresh input at $0.15/M + 8,000 cached at $0.075/M + 1,000 output at $0.60/M
    assert cost_of(usage, price) == pytest.approx(
        (2_000 * 0.15 + 8_000 * 0.075 + 1_000 * 0.60) / 1e6
    )
    assert price_of("some-future-model", DEFAULT_PRICES) is None


def test_a_malformed_answer_is_returned_but_never_stored() -> None:
    answer = {"choices": [{"finish_reason": "stop", "message": {"content": "x"}}], "usage": "n/a"}
    facts = inspect_answer("openai", "chat.completions", answer)
    decision = CachePolicy().check_answer(facts, 100)
    assert not decision.ok and "wrong type" in (decision.reason or "")


def test_savings_tallied_per_answer_add_up_like_hits_one_by_one() -> None:
    """Hits are tallied per stored answer and priced when the totals are read (``_stats``): the
    totals match pricing every hit, across a snapshot taken midway, an answer's usage met
    under a second model, more answers than the tallies hold, and a reset. A snapshot changes
    nothing (a metrics exporter may take one from another thread)."""
    from asynccache._stats import _MAX_TALLIES, DEFAULT_PRICES, StatsRecorder, cost_of, price_of

    def usage(n: int) -> Any:
        answer = {"choices": [], "usage": {"prompt_tokens": n, "completion_tokens": 1}}
        return inspect_answer("openai", "chat.completions", answer).usage

    hot, cold = usage(1000), usage(7)
    hits = [("gpt-4o-mini", hot)] * 5 + [("gpt-4o", hot)] * 3 + [("no-such-model", cold)] * 2
    hits += [("gpt-4o-mini", usage(i + 1)) for i in range(_MAX_TALLIES + 10)]
    hits += [("gpt-4o-mini", hot)] * 4
    recorder = StatsRecorder()
    for i, (model, used) in enumerate(hits):
        recorder.saved(model, used, "faq" if i % 2 else None)
        if i == 6:
            midway = recorder.snapshot()
            assert midway.input_tokens_saved == 7 * 1000
    live = [list(tally) for tally in recorder._tallies.values()]
    totals = recorder.snapshot()
    assert [list(t) for t in recorder._tallies.values()] == live  # read-only: safe off the loop
    assert totals.input_tokens_saved == sum(u.input_tokens for _, u in hits)
    assert totals.output_tokens_saved == len(hits)
    priced = [(price_of(m, DEFAULT_PRICES), u) for m, u in hits]
    assert totals.usd_saved == pytest.approx(sum(cost_of(u, p) for p, u in priced if p), rel=1e-9)
    assert totals.unpriced_hits == 2
    assert totals.by_category["faq"].hits == len(hits) // 2
    recorder.saved("gpt-4o-mini", hot, None)
    recorder.reset()
    recorder.saved("gpt-4o-mini", hot, None)
    assert recorder.snapshot().input_tokens_saved == 1000
    # A usage met under a second model just as the tallies are full: retired once.
    recorder = StatsRecorder()
    full = [("gpt-4o-mini", hot)] + [("gpt-4o-mini", usage(2)) for _ in range(_MAX_TALLIES - 1)]
    for model, used in [*full, ("gpt-4o", hot)]:
        recorder.saved(model, used, None)
    assert recorder.snapshot().input_tokens_saved == 2 * 1000 + 2 * (_MAX_TALLIES - 1)


def test_dollars_saved_never_drop_when_tallies_regroup() -> None:
    """Retiring a tally moves its dollars into the totals; summed as floats in another order,
    that could lower ``usd_saved`` by a rounding (a counter reset to a metrics exporter)."""
    import random

    from asynccache._models import Usage
    from asynccache._stats import StatsRecorder

    for seed in range(300):
        rnd = random.Random(seed)
        recorder = StatsRecorder()
        usages = [Usage(rnd.randint(1, 9999), rnd.randint(1, 999)) for _ in range(4)]
        for used in usages:
            for _ in range(rnd.randint(1, 7)):
                recorder.saved(rnd.choice(["gpt-4o", "gpt-4.1-mini", "o4-mini"]), used, None)
        before = recorder.snapshot().usd_saved
        recorder.saved("no-such-model", usages[rnd.randrange(1, 4)], None)  # adds no dollars
        assert recorder.snapshot().usd_saved >= before
