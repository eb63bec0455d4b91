"""Canonical keys: everything that changes the answer is in, nothing else is."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from asynccache import Cache, CacheRequest, KeyBuildError
from asynccache._keys import canonical_bytes, digest


def chat(**body: Any) -> CacheRequest:
    base: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0,
    }
    base.update(body)
    return CacheRequest("openai", "chat.completions", base)


def test_volatile_fields_do_not_change_the_key() -> None:
    plain = digest(chat())
    for name, value in {
        "stream": False,
        "stream_options": {"include_usage": True},
        "timeout": 30,
        "extra_headers": {"x-trace": "1"},
        "metadata": {"run": "a"},
        "user": "u1",
        "safety_identifier": "s",
        "store": True,
        "prompt_cache_key": "k",
        "prompt_cache_retention": "24h",
        "max_retries": 2,
    }.items():
        assert digest(chat(**{name: value})) == plain, name


@pytest.mark.parametrize(
    "field,value",
    [
        ("temperature", 0.5),
        ("top_p", 0.9),
        ("seed", 7),
        ("max_tokens", 10),
        ("stop", ["\n"]),
        ("n", 2),
        ("logit_bias", {"50256": -100}),
        ("tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        ("tool_choice", "required"),
        ("response_format", {"type": "json_object"}),
        ("reasoning_effort", "high"),
        ("extra_body", {"x": 1}),
        ("model", "gpt-4o"),
    ],
)
def test_answer_changing_fields_change_the_key(field: str, value: Any) -> None:
    assert digest(chat(**{field: value})) != digest(chat())


def test_message_order_role_and_content_matter() -> None:
    a = chat(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    b = chat(messages=[{"role": "user", "content": "b"}, {"role": "user", "content": "a"}])
    c = chat(messages=[{"role": "system", "content": "a"}, {"role": "user", "content": "b"}])
    assert len({digest(a), digest(b), digest(c)}) == 3


def test_numeric_representation_does_not_matter() -> None:
    assert digest(chat(temperature=0)) == digest(chat(temperature=0.0))
    assert digest(chat(logit_bias={"1": 1})) == digest(chat(logit_bias={"1": 1.0}))
    assert digest(chat(temperature=0.5)) != digest(chat(temperature=0))


def test_dict_order_does_not_matter() -> None:
    a = CacheRequest("openai", "chat.completions", {"model": "m", "temperature": 0, "messages": []})
    b = CacheRequest("openai", "chat.completions", {"messages": [], "temperature": 0, "model": "m"})
    assert digest(a) == digest(b)


def test_single_text_part_equals_plain_string_and_cache_control_is_dropped() -> None:
    as_text = [{"role": "user", "content": "hello"}]
    as_part = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    marked = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}],
        }
    ]
    keys = {
        digest(CacheRequest("anthropic", "messages", {"model": "c", "messages": m}))
        for m in (as_text, as_part, marked)
    }
    assert len(keys) == 1
    two_parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}],
        }
    ]
    assert (
        digest(CacheRequest("anthropic", "messages", {"model": "c", "messages": two_parts}))
        not in keys
    )


def test_provider_endpoint_and_system_placement_matter() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert digest(CacheRequest("openai", "chat.completions", body)) != digest(
        CacheRequest("anthropic", "messages", body)
    )
    top_system = {
        "model": "m",
        "system": "be brief",
        "messages": [{"role": "user", "content": "hi"}],
    }
    msg_system = {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    }
    assert digest(CacheRequest("anthropic", "messages", top_system)) != digest(
        CacheRequest("anthropic", "messages", msg_system)
    )


def test_unserialisable_parameter_names_the_field() -> None:
    bad = chat(messages=[{"role": "user", "content": "ok"}, {"role": "user", "content": object()}])
    with pytest.raises(KeyBuildError, match=r"messages\[1\]\.content") as info:
        canonical_bytes(bad)
    assert isinstance(info.value, TypeError)
    with pytest.raises(TypeError, match="when"):
        canonical_bytes(chat(extra_body={"when": dt.datetime.now}))


def test_key_format_and_tenants() -> None:
    cache = Cache(namespace="app")
    a = cache.key_for(CacheRequest("openai", "chat.completions", {"m": 1}, tenant="acme"))
    b = cache.key_for(CacheRequest("openai", "chat.completions", {"m": 1}, tenant="globex"))
    c = cache.key_for(CacheRequest("openai", "chat.completions", {"m": 1}))
    assert a != b != c
    prefix, namespace, schema, gen, tenant, hexdigest = a.split(":")
    assert (prefix, namespace, schema, gen) == ("ac", "app", "v1", "g0")
    assert "acme" not in a and len(hexdigest) == 32 and tenant != "_"
    assert c.split(":")[4] == "_"
