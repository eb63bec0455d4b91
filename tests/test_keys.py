"""Canonical keys: everything that changes the answer is in, nothing else is."""

from __future__ import annotations

import base64
import copy
import datetime as dt
from typing import Any

import pytest

from asynccache import Cache, CacheRequest, ConfigurationError, KeyBuildError
from asynccache._keys import KEY_SCHEMA, canonical_bytes, digest


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


def test_remembered_digests_follow_the_body_not_the_object() -> None:
    """A Cache remembers digests per body (``Cache._admit``, by ``_keys.as_given``): a body
    changed in place gets its new key, and every spelling of one request gets the same key in
    any order of first sight, because each is computed from the rules before it is
    remembered."""
    cache = Cache.from_url("memory://")
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "a"}]}
    request = CacheRequest("openai", "chat.completions", body)
    first = cache.key_for(request)
    assert first.endswith(digest(request))
    body["messages"][0]["content"] = "b"
    assert cache.key_for(request) != first
    assert cache.key_for(request).endswith(digest(request))
    body["messages"][0]["content"] = "a"
    assert cache.key_for(request) == first
    spellings = [
        {"temperature": 0.0, "model": "m2", "user": "u1", "messages": []},
        {"messages": [], "model": "m2", "temperature": 0},
        {"model": "m2", "messages": [], "temperature": 0, "stream": False},
    ]
    for order in (spellings, spellings[::-1]):
        fresh = Cache.from_url("memory://")
        keys = {fresh.key_for(CacheRequest("openai", "chat.completions", dict(b))) for b in order}
        assert len(keys) == 1


def test_remembered_fingerprints_never_cross_providers_or_endpoints() -> None:
    """The memo's fingerprint is seeded per provider and endpoint (``_keys.as_given``): one
    Cache that sees one body under each gets each its own key, in any order of first sight."""
    body = {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}
    routes = [
        ("openai", "chat.completions"),
        ("openai", "responses"),
        ("anthropic", "messages"),
        ("anthropic", "chat.completions"),
    ]
    for order in (routes, routes[::-1]):
        cache = Cache.from_url("memory://")
        keys = set()
        for _ in range(2):  # the second round reads the memo
            for provider, endpoint in order:
                request = CacheRequest(provider, endpoint, dict(body))
                key = cache.key_for(request)
                assert key.endswith(digest(request))
                keys.add(key)
        assert len(keys) == len(routes)


@pytest.mark.parametrize(
    ("provider", "endpoint", "named"),
    [
        ("a\0b", "c", "provider"),
        ("a", "b\0c", "endpoint"),
        (1, "c", "provider"),
        ("a", None, "endpoint"),
    ],
)
def test_a_route_that_could_share_a_seed_is_refused(
    provider: Any, endpoint: Any, named: str
) -> None:
    r"""Provider and endpoint seed the digest joined by a NUL: with a NUL inside either (or a
    value that is no string), ("a\0b", "c") and ("a", "b\0c") would share keys."""
    with pytest.raises(ConfigurationError, match=f"{named}="):
        CacheRequest(provider, endpoint, {"model": "m"})


def test_memo_takes_bodies_bare_orjson_refuses() -> None:
    """The memo fingerprints a body bare first and falls back to int keys and SDK objects:
    each spelling gets the key its rules give, whichever path it took and whichever came
    first."""
    by_int = {"model": "m", "messages": [], "logit_bias": {50256: -100}}
    by_str = {"model": "m", "messages": [], "logit_bias": {"50256": -100}}
    other = {"model": "m", "messages": [], "logit_bias": {50256: 100}}
    for order in ((by_int, by_str), (by_str, by_int)):
        cache = Cache.from_url("memory://")
        keys = [cache.key_for(CacheRequest("openai", "chat.completions", dict(b))) for b in order]
        assert keys[0] == keys[1]
        assert cache.key_for(CacheRequest("openai", "chat.completions", other)) != keys[0]


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
    assert (prefix, namespace, schema, gen) == ("ac", "app", f"v{KEY_SCHEMA}", "g0")
    assert "acme" not in a and len(hexdigest) == 32 and tenant != "_"
    assert c.split(":")[4] == "_"


# Key schema 2: per-provider normalisation ------------------------------------------------------

PIXELS = bytes(range(256)) * 10 + b"\x89"  # 2,561 bytes: the base64 text ends in padding
OTHER_PIXELS = PIXELS[:-1] + b"\x88"  # one byte different


def b64_forms(data: bytes) -> list[str]:
    """One payload, base64-encoded the ways real clients do it."""
    plain = base64.b64encode(data).decode()
    assert plain.endswith("=")
    return [
        plain,
        base64.encodebytes(data).decode(),  # MIME: a line break every 76 characters
        plain.rstrip("="),  # padding dropped
        "\r\n".join(plain[i : i + 64] for i in range(0, len(plain), 64)),
        " " + plain + "\n",
    ]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key(provider: str, endpoint: str, **body: Any) -> str:
    return digest(CacheRequest(provider, endpoint, {"model": "m", **body}))


def oa_image(url: str, detail: str = "auto") -> str:
    part = {"type": "image_url", "image_url": {"url": url, "detail": detail}}
    return key("openai", "chat.completions", messages=[{"role": "user", "content": [part]}])


def claude_image(data: Any, media_type: str = "image/png", **extra: Any) -> str:
    block = {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": data},
        **extra,
    }
    return key(
        "anthropic", "messages", messages=[{"role": "user", "content": [block, _text("what?")]}]
    )


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def test_key_schema_was_bumped_for_the_new_envelope() -> None:
    assert KEY_SCHEMA == 3
    key_string = Cache(namespace="app").key_for(chat())
    assert key_string.split(":")[2] == "v3"


def test_openai_data_url_image_is_keyed_by_content() -> None:
    same = {oa_image(f"data:image/png;base64,{form}") for form in b64_forms(PIXELS)}
    same.add(oa_image(f"data:IMAGE/PNG;base64,{b64(PIXELS)}"))  # media types are case-insensitive
    assert len(same) == 1
    different = [
        oa_image(f"data:image/png;base64,{b64(OTHER_PIXELS)}"),
        oa_image(f"data:image/jpeg;base64,{b64(PIXELS)}"),
        oa_image(f"data:image/png;base64,{b64(PIXELS)}", detail="high"),
    ]
    assert len(same | set(different)) == 4


def test_canonical_bytes_of_an_image_request_stay_small_and_hold_no_base64() -> None:
    photo = bytes(range(256)) * 1200  # 300 KB
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(photo)}"}}
    request = chat(messages=[{"role": "user", "content": [part, _text("what is this?")]}])
    canonical = canonical_bytes(request)
    assert len(canonical) < 400
    assert b64(photo)[:40].encode() not in canonical
    assert b'"len":307200' in canonical and b'"media_type":"image/png"' in canonical


def test_payloads_that_are_not_base64_are_still_keyed_by_content() -> None:
    forms = ("not*base64!", "QUJD$", "QUJDR", "wrong-alphabet_-_", "QUJD", "QU*JD")
    assert len({oa_image(f"data:image/png;base64,{bad}") for bad in forms}) == len(forms)
    # Not base64-encoded at all (percent-encoded data URL): as given.
    assert oa_image("data:text/plain,hello") != oa_image("data:text/plain,hello%20")


def test_url_images_are_keyed_by_url_and_never_fetched() -> None:
    a = oa_image("https://example.com/a.png")
    assert a == oa_image("https://example.com/a.png")
    assert a != oa_image("https://example.com/b.png")
    request = chat(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                ],
            }
        ]
    )
    assert b"https://example.com/a.png" in canonical_bytes(request)


def test_openai_audio_and_file_parts_are_keyed_by_content() -> None:
    def audio(data: str, fmt: str = "wav") -> str:
        part = {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}
        return key("openai", "chat.completions", messages=[{"role": "user", "content": [part]}])

    def file(data: str, name: str = "a.pdf") -> str:
        part = {"type": "file", "file": {"file_data": data, "filename": name}}
        return key("openai", "chat.completions", messages=[{"role": "user", "content": [part]}])

    assert len({audio(form) for form in b64_forms(PIXELS)}) == 1
    assert audio(b64(PIXELS)) != audio(b64(OTHER_PIXELS))
    assert audio(b64(PIXELS)) != audio(b64(PIXELS), fmt="mp3")
    files = {file(f"data:application/pdf;base64,{form}") for form in b64_forms(PIXELS)}
    assert len(files) == 1
    assert file(f"data:application/pdf;base64,{b64(OTHER_PIXELS)}") not in files
    assert file(f"data:application/pdf;base64,{b64(PIXELS)}", name="b.pdf") not in files
    # Bare base64 (as the SDK docstring describes file_data) is normalised the same way.
    assert len({file(form) for form in b64_forms(PIXELS)}) == 1


def test_responses_image_and_file_parts_are_keyed_by_content() -> None:
    def image(url: str) -> str:
        part = {"type": "input_image", "image_url": url, "detail": "auto"}
        return key("openai", "responses", input=[{"role": "user", "content": [part]}])

    def file(data: str) -> str:
        part = {"type": "input_file", "file_data": data, "filename": "a.pdf"}
        return key("openai", "responses", input=[{"role": "user", "content": [part]}])

    assert len({image(f"data:image/webp;base64,{form}") for form in b64_forms(PIXELS)}) == 1
    assert image(f"data:image/webp;base64,{b64(PIXELS)}") != image(
        f"data:image/webp;base64,{b64(OTHER_PIXELS)}"
    )
    assert len({file(f"data:application/pdf;base64,{form}") for form in b64_forms(PIXELS)}) == 1
    assert file(b64(PIXELS)) != file(b64(OTHER_PIXELS))


def test_anthropic_base64_sources_are_keyed_by_content() -> None:
    same = {claude_image(form) for form in b64_forms(PIXELS)}
    same.add(claude_image(b64(PIXELS), media_type="Image/PNG"))
    same.add(claude_image(b64(PIXELS), cache_control={"type": "ephemeral"}))
    assert len(same) == 1
    assert claude_image(b64(OTHER_PIXELS)) not in same
    assert claude_image(b64(PIXELS), media_type="image/gif") not in same

    def pdf(data: str, title: str = "Handbook") -> str:
        block = {
            "type": "document",
            "title": title,
            "source": {"type": "base64", "media_type": "application/pdf", "data": data},
        }
        return key("anthropic", "messages", messages=[{"role": "user", "content": [block]}])

    assert len({pdf(form) for form in b64_forms(PIXELS)}) == 1
    assert pdf(b64(PIXELS)) != pdf(b64(OTHER_PIXELS))
    assert pdf(b64(PIXELS)) != pdf(b64(PIXELS), title="Other")


def test_anthropic_plain_text_document_source_is_not_taken_for_base64() -> None:
    def doc(text: str) -> bytes:
        block = {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": text},
        }
        body = {"model": "m", "messages": [{"role": "user", "content": [block]}]}
        return canonical_bytes(CacheRequest("anthropic", "messages", body))

    assert b"QUJD" in doc("QUJD")  # decodes as base64, but it is text: kept verbatim
    assert doc("QUJD") != doc("QUJD\n")


def tool_result(content: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": "toolu_1", "content": content, **extra}


def claude_turns(result: dict[str, Any]) -> str:
    return key(
        "anthropic",
        "messages",
        messages=[
            {"role": "user", "content": "Screenshot the page"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}],
            },
            {"role": "user", "content": [result]},
        ],
    )


def test_images_nested_in_tool_results_are_keyed_by_content() -> None:
    def shot(data: str, **block_extra: Any) -> dict[str, Any]:
        source = {"type": "base64", "media_type": "image/png", "data": data}
        return tool_result(
            [_text("Here it is"), {"type": "image", "source": source, **block_extra}]
        )

    same = {claude_turns(shot(form)) for form in b64_forms(PIXELS)}
    same.add(claude_turns(shot(b64(PIXELS), cache_control={"type": "ephemeral", "ttl": "1h"})))
    same.add(claude_turns({**shot(b64(PIXELS)), "cache_control": {"type": "ephemeral"}}))
    assert len(same) == 1
    assert claude_turns(shot(b64(OTHER_PIXELS))) not in same
    assert claude_turns({**shot(b64(PIXELS)), "is_error": True}) not in same


def test_tool_result_with_one_text_block_equals_its_string() -> None:
    as_string = claude_turns(tool_result("15 degrees"))
    assert as_string == claude_turns(tool_result([_text("15 degrees")]))
    assert as_string == claude_turns(
        tool_result([{**_text("15 degrees"), "cache_control": {"type": "ephemeral"}}])
    )
    assert as_string != claude_turns(tool_result("16 degrees"))
    assert as_string != claude_turns(tool_result([_text("15"), _text(" degrees")]))


def test_responses_function_call_output_images_are_keyed_by_content() -> None:
    def output(data: str) -> str:
        item = {
            "type": "function_call_output",
            "call_id": "call_1",
            "output": [{"type": "input_image", "image_url": f"data:image/png;base64,{data}"}],
        }
        return key("openai", "responses", input=[{"role": "user", "content": "look"}, item])

    assert len({output(form) for form in b64_forms(PIXELS)}) == 1
    assert output(b64(PIXELS)) != output(b64(OTHER_PIXELS))


def test_anthropic_system_string_equals_one_plain_text_block() -> None:
    def system(value: Any) -> str:
        return key(
            "anthropic", "messages", system=value, messages=[{"role": "user", "content": "hi"}]
        )

    as_string = system("Be brief.")
    assert as_string == system([_text("Be brief.")])
    assert as_string == system([{**_text("Be brief."), "cache_control": {"type": "ephemeral"}}])
    assert as_string == system(
        [{**_text("Be brief."), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    )
    assert as_string != system("Be brief!")
    assert as_string != system([_text("Be "), _text("brief.")])  # two blocks are not one string
    cited = [{**_text("Be brief."), "citations": [{"type": "char_location"}]}]
    assert as_string != system(cited)  # more than plain text: keyed as given
    # Two blocks whose markers differ are still one request.
    assert system([_text("A"), {**_text("B"), "cache_control": {"type": "ephemeral"}}]) == system(
        [{**_text("A"), "cache_control": {"type": "ephemeral"}}, _text("B")]
    )


RESPONSES_HI = [
    "hi",
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
    [{"type": "message", "role": "user", "content": "hi"}],
    [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
]


def test_responses_string_input_equals_one_user_message() -> None:
    keys = {key("openai", "responses", input=value) for value in RESPONSES_HI}
    assert len(keys) == 1


@pytest.mark.parametrize(
    "value",
    [
        "hi!",
        [{"role": "developer", "content": "hi"}],
        [{"role": "system", "content": "hi"}],
        [{"role": "assistant", "content": "hi"}],
        [{"role": "user", "content": "hi"}, {"role": "user", "content": "hi"}],
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "h"},
                    {"type": "input_text", "text": "i"},
                ],
            }
        ],
        # More than type/role/content (an id, a status): not provably a plain message, kept as given.
        [{"type": "message", "role": "user", "content": "hi", "id": "msg_1"}],
        [{"type": "message", "role": "user", "content": "hi", "status": "completed"}],
    ],
)
def test_responses_inputs_that_are_not_the_same_request(value: Any) -> None:
    assert key("openai", "responses", input=value) != key("openai", "responses", input="hi")


def test_responses_type_message_is_dropped_only_from_plain_messages() -> None:
    turns = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    typed = [{"type": "message", **turn} for turn in turns]
    assert key("openai", "responses", input=turns) == key("openai", "responses", input=typed)
    passed_back = [{**typed[0], "id": "msg_1"}, typed[1]]
    assert key("openai", "responses", input=passed_back) != key("openai", "responses", input=turns)


def test_responses_input_rule_is_scoped_to_the_responses_endpoint() -> None:
    as_list = [{"role": "user", "content": "hi"}]
    assert key("openai", "embeddings", input=as_list) != key("openai", "embeddings", input="hi")
    assert key("openai", "responses", input=as_list) == key("openai", "responses", input="hi")


def test_anthropic_system_and_openai_system_message_are_different_requests() -> None:
    user = {"role": "user", "content": "hi"}
    anthropic_body = {"model": "m", "system": "X", "messages": [user]}
    openai_body = {"model": "m", "messages": [{"role": "system", "content": "X"}, user]}
    assert key("anthropic", "messages", **anthropic_body) != key(
        "openai", "chat.completions", **openai_body
    )
    # Even byte-identical canonical bodies do not meet: provider and endpoint seed the hash.
    for body in (anthropic_body, openai_body):
        a = CacheRequest("anthropic", "messages", body)
        o = CacheRequest("openai", "chat.completions", body)
        assert canonical_bytes(a) == canonical_bytes(o)
        assert digest(a) != digest(o)


def test_anthropic_system_differs_from_the_same_text_in_the_first_user_message() -> None:
    with_system = key(
        "anthropic", "messages", system="X", messages=[{"role": "user", "content": "hi"}]
    )
    as_first_block = key(
        "anthropic",
        "messages",
        messages=[{"role": "user", "content": [_text("X"), _text("hi")]}],
    )
    as_first_message = key(
        "anthropic",
        "messages",
        messages=[{"role": "user", "content": "X"}, {"role": "user", "content": "hi"}],
    )
    joined = key("anthropic", "messages", messages=[{"role": "user", "content": "X\n\nhi"}])
    assert len({with_system, as_first_block, as_first_message, joined}) == 4


def test_canonicalisation_never_changes_the_callers_params() -> None:
    source = {
        "type": "base64",
        "media_type": "Image/PNG",
        "data": base64.encodebytes(PIXELS).decode(),
    }
    body: dict[str, Any] = {
        "model": "m",
        "system": [{**_text("S"), "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [tool_result([{"type": "image", "source": source}])]}
        ],
    }
    before = copy.deepcopy(body)
    canonical_bytes(CacheRequest("anthropic", "messages", body))
    assert body == before


def test_cache_control_in_a_tool_schema_is_part_of_the_tool() -> None:
    """Only the tool's own marker is dropped: a schema property of that name is content."""

    def tools(schema: dict[str, Any]) -> str:
        tool = {"name": "t", "input_schema": schema, "cache_control": {"type": "ephemeral"}}
        return key(
            "anthropic", "messages", tools=[tool], messages=[{"role": "user", "content": "hi"}]
        )

    with_property = {"type": "object", "properties": {"cache_control": {"type": "string"}}}
    assert tools(with_property) != tools({"type": "object", "properties": {}})


def test_bad_value_nested_in_a_tool_result_names_its_field() -> None:
    source = {"type": "base64", "media_type": "image/png", "data": PIXELS}  # bytes, not base64
    messages = [
        {"role": "user", "content": "Screenshot"},
        {
            "role": "user",
            "content": [tool_result([_text("ok"), {"type": "image", "source": source}])],
        },
    ]
    request = CacheRequest("anthropic", "messages", {"model": "m", "messages": messages})
    with pytest.raises(
        KeyBuildError, match=r"messages\[1\]\.content\[0\]\.content\[1\]\.source\.data \(bytes\)"
    ):
        digest(request)


def test_openai_prompt_cache_breakpoints_do_not_change_the_key() -> None:
    text = {"type": "text", "text": "A long static preamble."}
    marked = {**text, "prompt_cache_breakpoint": {"ttl": "1h"}}
    question = {"type": "text", "text": "What is new?"}

    def chat_key(*parts: Any) -> str:
        return key(
            "openai", "chat.completions", messages=[{"role": "user", "content": list(parts)}]
        )

    assert chat_key(marked, question) == chat_key(text, question)
    assert chat_key(marked) == key(
        "openai", "chat.completions", messages=[{"role": "user", "content": text["text"]}]
    )
    item = {"type": "input_text", "text": "A long static preamble."}
    responses = [{"role": "user", "content": [{**item, "prompt_cache_breakpoint": {}}, question]}]
    assert key("openai", "responses", input=responses) == key(
        "openai", "responses", input=[{"role": "user", "content": [item, question]}]
    )


def test_sdk_objects_tuples_and_int_keys_are_keyed_as_the_json_they_are_sent_as() -> None:
    """The rules see the body as sent: an SDK block passed back in, a tuple of messages and a
    dict of int keys get the keys of the plain JSON they become, so a tool-calling loop that
    appends the SDK's own objects hits what the plain spelling stored."""
    from anthropic.types import TextBlock

    def anthropic(content: Any) -> CacheRequest:
        body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}
        return CacheRequest("anthropic", "messages", body)

    cache = Cache.from_url("memory://")
    as_sdk = anthropic([TextBlock(type="text", text="hello")])
    as_dict = anthropic([{"type": "text", "text": "hello"}])
    assert digest(as_sdk) == digest(as_dict) == digest(anthropic("hello"))
    assert cache.key_for(as_sdk) == cache.key_for(as_dict)
    listed = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    tupled = chat(messages=({"role": "user", "content": ({"type": "text", "text": "hi"},)},))
    assert digest(tupled) == digest(listed) == digest(chat())
    assert digest(chat(logit_bias={50256: -100.0})) == digest(chat(logit_bias={"50256": -100}))


def test_integral_floats_beyond_64_bits_stay_floats() -> None:
    """``0.0`` is keyed as ``0``, but ``1e300`` has no 64-bit integer: it is keyed as given,
    not refused as unserialisable."""
    assert digest(chat(max_tokens=1e300)) != digest(chat(max_tokens=1e299))
    for whole in (2**62, 2**63, 2**64 - 2048):  # orjson writes unsigned 64-bit integers too
        assert digest(chat(max_tokens=float(whole))) == digest(chat(max_tokens=whole))


def test_nan_and_infinity_are_refused_naming_the_field() -> None:
    """JSON has neither: at the top level, where request numbers live, they are refused
    (orjson would write null, the key of a None there). Nested, they are keyed as that null:
    finding them would walk every body."""
    for value in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(KeyBuildError, match=f"top_p is {value}, not a finite number"):
            digest(chat(top_p=value))
    assert digest(chat(top_p=None)) != digest(chat())
    nested = chat(logit_bias={"50256": float("nan")})
    assert digest(nested) == digest(chat(logit_bias={"50256": None}))


def test_top_level_nulls_keep_a_body_out_of_the_memo() -> None:
    """``Cache._rememberable``: a top-level None (a NaN is written alike) keeps a body out of
    the memo; nested nulls (a tool call's ``content: null``), a None in a field the key drops
    and the word null in a prompt do not."""
    cache = Cache.from_url("memory://")
    tool_call = {"role": "assistant", "content": None, "tool_calls": []}
    for remembered in (
        chat(messages=[{"role": "user", "content": "return null if empty"}]),
        chat(messages=[{"role": "user", "content": "x"}, tool_call]),
        chat(user=None),
        chat(stop=[None]),
    ):
        cache.key_for(remembered)
    assert len(cache._admitted) == 4
    cache.key_for(chat(seed=None))
    assert len(cache._admitted) == 4


def test_an_extra_body_that_is_not_a_dict_still_has_a_key() -> None:
    """The memo's gate reads ``extra_body``'s fields only when it is a dict, as the policy
    does; anything else is keyed like any other value."""
    cache = Cache.from_url("memory://")
    keys = {cache.key_for(chat(extra_body=value)) for value in (["x"], "x", 1, {"seed": 1})}
    assert len(keys) == 4
