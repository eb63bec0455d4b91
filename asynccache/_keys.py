"""Canonical request keys: what makes two requests "the same" for the cache.

The key must cover everything that can change the answer and nothing that cannot (DESIGN.md,
"Keys"). Canonical form is structured — orjson with sorted keys over the request body — never
string concatenation, so no two different requests can collide by accident of formatting.
The 128-bit xxh3 digest makes accidental collisions negligible (~2^-64 at billions of entries).
Provider and endpoint seed the hash, so the same body sent to Anthropic and OpenAI (an Anthropic
top-level ``system`` and an OpenAI system message, say) never shares a key.

Rules that are not obvious from the code:
- Volatile fields (stream, timeout, metadata, user, ...) are dropped: they cannot change the
  answer, and keeping them would make every request unique.
- Integral floats become ints at the top level and in ``logit_bias`` (``temperature=0`` and
  ``temperature=0.0`` are one request). Nested numbers elsewhere are left as given.
- Content given as a single plain text part equals the same content as a string, wherever a
  provider documents the two as the same input: a message's ``content`` (both SDKs), an
  Anthropic ``tool_result``'s ``content``, and Anthropic's top-level ``system`` (one text block).
- Responses API ``input``: a string is documented as one user message with that text, so
  ``"hi"``, ``[{"role": "user", "content": "hi"}]`` and the same with an ``input_text`` part are
  one request. ``"type": "message"`` is dropped from an input item only when the item is exactly
  ``type`` + ``role`` + ``content`` (then it can only be a message); items that carry more (ids,
  status: output passed back in) are keyed as given.
- Base64 payloads (images, audio, files: OpenAI ``image_url`` / ``input_audio`` / ``file`` parts,
  Responses ``input_image`` / ``input_file``, Anthropic ``image`` / ``document`` base64 sources, also
  inside ``tool_result`` and ``function_call_output``) are keyed by content: the xxh3-128 of the
  base64 text without whitespace and padding, the decoded length and the lower-cased media
  type. The same bytes encoded with other line breaks or padding are one request, different
  bytes are not, and the canonical bytes stay small. URLs are keyed as URLs (never fetched).
- Anthropic ``cache_control`` markers are dropped wherever they appear (top level, tools, system
  blocks, content blocks and blocks nested in them), and so are OpenAI's part-level
  ``prompt_cache_breakpoint`` markers: they steer the provider's prompt cache, not the answer.

- The rules apply to the body as it is sent, its JSON: an SDK object passed back in (a
  ``ChatCompletionMessage``, an Anthropic ``TextBlock``), a tuple or an int key is keyed as the
  dict, list or string it is sent as.

Plain requests (string contents) take none of these paths: each rule first checks for the shape
it rewrites. The rules run for each body the engine does not remember (``Cache`` remembers
digests by :func:`as_given`), so a hit usually pays only for that fingerprint.

Bump ``KEY_SCHEMA`` whenever any of this changes, so old entries are never read under new rules,
and when the stored envelope changes (``_codec``), so old and new processes never read (and
delete as corrupt) each other's entries. 3: the envelope became an array. Not bumped when
the rules began to see inside SDK objects and tuples: that changed only the keys of bodies
holding them, each to the key of a request the rules hold equal to it, so an old entry found
under a new key is still an answer to that request; the rest are misses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import xxhash

from ._exceptions import KeyBuildError
from ._models import CacheRequest

KEY_SCHEMA = 3

#: Fields that can never change the answer. Anything not listed stays in the key.
VOLATILE_FIELDS: frozenset[str] = frozenset(
    {
        "stream",
        "stream_options",
        "timeout",
        "extra_headers",
        "max_retries",
        "metadata",
        "user",
        "safety_identifier",
        "store",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "cache_control",
        "diagnostics",
    }
)

_SORT = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
#: For the digest memo, keys in the order given: sorting costs a fifth of the serialisation, and
#: the same body in another key order only takes one more memo slot (its digest is the same).
_AS_GIVEN = orjson.OPT_NON_STR_KEYS
_CONTENT_FIELDS = frozenset({"messages", "system", "input", "tools"})
_RULED_FIELDS = VOLATILE_FIELDS | _CONTENT_FIELDS | {"logit_bias"}


def canonical_body(body: Mapping[str, Any], endpoint: str = "") -> dict[str, Any]:
    """The request body with the key rules applied (a new dict; ``body`` is not changed).

    ``endpoint`` scopes the Responses API ``input`` rule: embeddings also have an ``input``,
    and a string there is not a user message.

    This runs for every body the engine does not remember, so the common field (a number, a
    string) costs one set lookup and one type check; only the few fields a rule can rewrite
    take the slower branches."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in _RULED_FIELDS:
            if name in VOLATILE_FIELDS:
                continue
            if name == "logit_bias":
                if isinstance(value, Mapping):
                    value = {k: _int_if_integral(v) for k, v in value.items()}
            elif type(value) is list:
                if name == "messages":
                    if _needs_rewrite(value):
                        value = [_message(item) for item in value]
                elif name == "system":
                    value = _content(value)
                elif name == "tools":
                    value = [_strip_cache_control(item) for item in value]
                elif endpoint == "responses":
                    value = _responses_input(value)
        elif type(value) is float:
            value = _int_if_integral(value)
        out[name] = value
    return out


def _needs_rewrite(items: list[Any]) -> bool:
    """Most messages are plain ``{"role", "content": str}``: leave such lists as they are."""
    for item in items:
        if (
            type(item) is not dict
            or type(item.get("content")) is not str
            or "cache_control" in item
        ):
            return True
    return False


def _int_if_integral(value: Any) -> Any:
    """``0.0`` as ``0``, within the integers orjson can write (``1e300`` stays a float)."""
    if type(value) is float and value.is_integer() and -(2.0**63) <= value < 2.0**64:
        return int(value)  # JSON as orjson writes it: 64-bit integers, signed or unsigned
    return value


def _message(item: Any) -> Any:
    """A message: drop cache_control, canonicalise its content parts."""
    if type(item) is not dict:
        return item
    item = _strip_cache_control(item)
    content = item.get("content")
    if type(content) is list:
        item = {**item, "content": _content(content)}
    return item


def _content(parts: list[Any], collapse: bool = True) -> Any:
    """Content parts, each canonical; one plain text part becomes its string."""
    out = [_part(p) for p in parts]
    if collapse and len(out) == 1 and _is_plain_text_part(out[0]):
        return out[0]["text"]
    return out


def _part(part: Any) -> Any:
    if type(part) is not dict:
        return part
    part = _strip_cache_control(part)
    kind = part.get("type")
    rewrite = _PART_REWRITES.get(kind) if type(kind) is str else None
    return part if rewrite is None else rewrite(part)


#: Markers that steer a provider's own prompt cache, never the answer: Anthropic's
#: ``cache_control`` and OpenAI's ``prompt_cache_breakpoint`` (on content parts).
_CACHE_MARKERS = ("cache_control", "prompt_cache_breakpoint")


def _strip_cache_control(part: Any) -> Any:
    if type(part) is dict and ("cache_control" in part or "prompt_cache_breakpoint" in part):
        return {k: v for k, v in part.items() if k not in _CACHE_MARKERS}
    return part


def _is_plain_text_part(part: Any) -> bool:
    return (
        type(part) is dict
        and part.keys() == {"type", "text"}
        and part["type"] in ("text", "input_text")
        and type(part["text"]) is str
    )


def _responses_input(items: list[Any]) -> Any:
    """Responses ``input``: a single plain user message is keyed as the string it equals."""
    for item in items:
        if type(item) is dict and ("type" in item or type(item.get("content")) is list):
            items = [_input_item(i) for i in items]
            break
    if len(items) == 1:
        only = items[0]
        if (
            type(only) is dict
            and only.keys() == {"role", "content"}
            and only["role"] == "user"
            and type(only["content"]) is str
        ):
            return only["content"]
    return items


_PLAIN_MESSAGE_KEYS = frozenset({"type", "role", "content"})


def _input_item(item: Any) -> Any:
    if type(item) is not dict:
        return item
    kind = item.get("type")
    if kind == "message" and item.keys() <= _PLAIN_MESSAGE_KEYS:
        item = {k: v for k, v in item.items() if k != "type"}
    elif kind == "function_call_output" and type(item.get("output")) is list:
        return {**item, "output": _content(item["output"], collapse=False)}
    return _message(item)


# Base64 payloads -----------------------------------------------------------------------------


_ASCII_WHITESPACE = (" ", "\n", "\r", "\t", "\f", "\v")
_DROP_WHITESPACE = dict.fromkeys(map(ord, _ASCII_WHITESPACE))


def _b64_digest(text: str) -> dict[str, Any]:
    """``{"len", "xxh3"}`` of a base64 payload: its decoded length and the xxh3-128 of its text
    with whitespace (MIME line breaks) and padding removed, which decoders ignore.

    The text, not the decoded bytes: the same bytes always encode to the same standard base64,
    and hashing 136 KB of text costs 31 us where decoding it first cost 740-900 us (timeit on
    the dev machine, a 100 KB image) — on every key built for an image request. Text that is not
    base64 at all is keyed by its content all the same."""
    if any(ws in text for ws in _ASCII_WHITESPACE):
        text = text.translate(_DROP_WHITESPACE)
    compact = text.rstrip("=")
    return {"len": len(compact) * 3 // 4, "xxh3": xxhash.xxh3_128_hexdigest(compact.encode())}


def _data_url(url: Any) -> Any:
    """A base64 ``data:`` URL as its digest and media type; anything else as given."""
    if type(url) is not str or url[:5].lower() != "data:":
        return url
    head, comma, payload = url[5:].partition(",")
    params = head.split(";")
    if not comma or len(params) < 2 or params[-1].strip().lower() != "base64":
        return url
    found = _b64_digest(payload)
    # RFC 2045: type and subtype are case-insensitive; parameter values may not be.
    found["media_type"] = ";".join([params[0].strip().lower(), *params[1:-1]])
    return found


def _file_data(data: Any) -> Any:
    """``file_data`` is a data URL in practice, bare base64 by the SDKs' docstrings: take both."""
    if type(data) is not str:
        return data
    if data[:5].lower() == "data:":
        return _data_url(data)
    return _b64_digest(data)


def _image_url_part(part: dict[str, Any]) -> Any:  # chat: {"image_url": {"url": ...}}
    inner = part.get("image_url")
    if type(inner) is dict and "url" in inner:
        url = _data_url(inner["url"])
        if url is not inner["url"]:
            return {**part, "image_url": {**inner, "url": url}}
    return part


def _input_image_part(part: dict[str, Any]) -> Any:  # responses: {"image_url": "data:..."}
    url = _data_url(part.get("image_url"))
    return part if url is part.get("image_url") else {**part, "image_url": url}


def _input_audio_part(part: dict[str, Any]) -> Any:  # {"input_audio": {"data": b64, ...}}
    inner = part.get("input_audio")
    if type(inner) is dict and type(inner.get("data")) is str:
        return {**part, "input_audio": {**inner, "data": _b64_digest(inner["data"])}}
    return part


def _file_part(part: dict[str, Any]) -> Any:  # chat: {"file": {"file_data": ...}}
    inner = part.get("file")
    if type(inner) is dict and "file_data" in inner:
        data = _file_data(inner["file_data"])
        if data is not inner["file_data"]:
            return {**part, "file": {**inner, "file_data": data}}
    return part


def _input_file_part(part: dict[str, Any]) -> Any:  # responses: {"file_data": ...}
    data = _file_data(part.get("file_data"))
    return part if data is part.get("file_data") else {**part, "file_data": data}


def _source_part(part: dict[str, Any]) -> Any:
    """Anthropic image/document: a base64 source by digest; a content source part by part."""
    source = part.get("source")
    if type(source) is not dict:
        return part
    kind = source.get("type")
    if kind == "base64" and type(source.get("data")) is str:
        found = _b64_digest(source["data"])
        media = source.get("media_type")
        lowered = media.lower() if type(media) is str else media
        return {**part, "source": {**source, "media_type": lowered, "data": found}}
    if kind == "content" and type(source.get("content")) is list:
        return {**part, "source": {**source, "content": _content(source["content"], False)}}
    return part


def _nested_part(part: dict[str, Any]) -> Any:
    """tool_result (one text block is documented as its string) and search_result."""
    content = part.get("content")
    if type(content) is not list:
        return part
    return {**part, "content": _content(content, collapse=part.get("type") == "tool_result")}


_PART_REWRITES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "image_url": _image_url_part,
    "input_image": _input_image_part,
    "input_audio": _input_audio_part,
    "file": _file_part,
    "input_file": _input_file_part,
    "image": _source_part,
    "document": _source_part,
    "tool_result": _nested_part,
    "search_result": _nested_part,
}


def _plain(value: Any) -> Any:
    """orjson's fallback for what it cannot encode itself: pydantic objects (the SDKs' own
    message types, passed back in a tool-calling loop) become the JSON the SDK would send.
    Only reached for such values, so plain-dict requests pay nothing for it."""
    dump = getattr(value, "model_dump", None)
    if dump is None or isinstance(value, type):
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
    return dump(mode="json", exclude_unset=True)


def canonical_bytes(request: CacheRequest) -> bytes:
    """Canonical serialisation of the request body (provider and endpoint go into the seed):
    the key rules applied to the body's JSON (:func:`_json_body`), so that the digest depends
    on that JSON alone. SDK objects, tuples and int keys inside a body are then ruled like the
    dicts, lists and strings they are sent as."""
    body = canonical_body(_json_body(request), request.endpoint)
    try:
        return orjson.dumps(body, None, _SORT)
    except TypeError as exc:  # not expected of JSON just read; named like any other failure
        raise _unserialisable(body, exc) from exc


def _json_body(request: CacheRequest) -> dict[str, Any]:
    """The body as the JSON it is sent as (SDK objects dumped, int keys as strings, tuples as
    lists), read back, without the volatile fields: no rule reads them, and a value there need
    not be JSON (openai's ``timeout=`` takes a Timeout object). KeyBuildError, naming the field,
    for a value JSON cannot carry; a top-level NaN or Infinity is one (orjson would write it
    as null, the key of None)."""
    body = {k: v for k, v in request.body.items() if k not in VOLATILE_FIELDS}
    for name, value in body.items():
        if type(value) is float and not math.isfinite(value) and type(name) is str:
            raise KeyBuildError(
                f"request parameter {name} is {value}, not a finite number: JSON has no NaN "
                "or Infinity"
            )
    try:
        raw = orjson.dumps(body)
    except TypeError:
        try:
            raw = orjson.dumps(body, _plain, _AS_GIVEN)
        except TypeError as exc:
            raise _unserialisable(body, exc) from exc
    sent: dict[str, Any] = orjson.loads(raw)
    return sent


def plain_top_level(body: Mapping[str, Any]) -> bool:
    """Whether every top-level name is a str and every value the key reads a plain JSON value:
    a bool, int, finite float, str, list or dict, not None; inside ``extra_body`` too, which
    the SDKs send at the top level. ``Cache`` remembers only such bodies by :func:`as_given`
    (``Cache._rememberable`` says why). Deeper values may be anything: a NaN there is keyed as
    the null orjson writes for it (finding one would walk every body), which is how a body
    with a None there is keyed too."""
    for name, value in body.items():
        if type(name) is not str:
            return False
        if name in VOLATILE_FIELDS:
            continue
        if not _plain_value(value):
            return False
        if name == "extra_body" and type(value) is dict and not _all_plain(value):
            return False
    return True


def _plain_value(value: Any) -> bool:
    kind = type(value)
    return kind in _PLAIN_JSON and (kind is not float or math.isfinite(value))


def _all_plain(fields: dict[str, Any]) -> bool:
    return all(type(name) is str and _plain_value(value) for name, value in fields.items())


_PLAIN_JSON = frozenset({bool, int, float, str, list, dict})


def _unserialisable(body: Mapping[str, Any], exc: TypeError) -> KeyBuildError:
    path = find_unserialisable(body)
    return KeyBuildError(
        f"request parameter {path or '<body>'} is not JSON-serialisable ({exc}); "
        "pass plain str/int/float/bool/None/list/dict values"
    )


#: A hash seed per provider and endpoint: the same body sent to two endpoints never shares a
#: digest, without concatenating or wrapping the body on every call. Nested rather than keyed by
#: a (provider, endpoint) tuple: two lookups by str (whose hashes are cached) cost half of one
#: by a tuple built and hashed on every call (48 vs 97 ns, timeit), and every key build pays it.
_seeds: dict[str, dict[str, int]] = {}


def _new_seed(provider: str, endpoint: str) -> int:
    seed = _seeds.setdefault(provider, {})[endpoint] = xxhash.xxh3_64_intdigest(
        f"{provider}\0{endpoint}".encode()
    )
    return seed


def as_given(request: CacheRequest) -> bytes | None:
    """A fingerprint of the request exactly as given: the xxh3 of its body's plain orjson
    serialisation, seeded per provider and endpoint; None if orjson cannot take the body.

    ``Cache`` remembers the digests of the requests it admits by this fingerprint
    (``Cache._rememberable`` says when that is exact). A hit is a request seen before, and this
    costs the one serialisation a key needs anyway, where the key rules and the policy cost as
    much again."""
    try:
        seed = _seeds[request.provider][request.endpoint]
    except KeyError:
        seed = _new_seed(request.provider, request.endpoint)
    try:
        # Bare orjson first: its options cost half as much again as the serialisation itself
        # (non-str keys alone 0.3 µs of 0.6, timeit), and nearly no request needs them.
        return xxhash.xxh3_128_digest(orjson.dumps(request.body), seed)
    except TypeError:
        try:  # int keys (logit_bias), SDK objects: same bytes wherever both can encode
            return xxhash.xxh3_128_digest(orjson.dumps(request.body, _plain, _AS_GIVEN), seed)
        except TypeError:
            return None


def digest(request: CacheRequest) -> str:
    """The full 128-bit xxh3 digest (32 hex chars) of the canonical request: the key rules
    applied every time (``Cache`` remembers digests by :func:`as_given`)."""
    try:
        seed = _seeds[request.provider][request.endpoint]
    except KeyError:
        seed = _new_seed(request.provider, request.endpoint)
    return xxhash.xxh3_128_hexdigest(canonical_bytes(request), seed)


def tenant_hash(tenant: str | None) -> str:
    """A short, stable tag for the tenant: tenants never share keys, and names never leak."""
    if tenant is None:
        return "_"
    return xxhash.xxh3_64_hexdigest(tenant.encode())


def find_unserialisable(value: Any, path: str = "") -> str | None:
    """Path of the first value orjson cannot encode, e.g. ``messages[1].content``; only on error."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str | int | float | bool) and k is not None:
                return f"{path}[{k!r}]" if path else repr(k)
            found = find_unserialisable(v, f"{path}.{k}" if path else str(k))
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = find_unserialisable(v, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    try:
        orjson.dumps(value, default=_plain)
    except TypeError:
        return f"{path} ({type(value).__name__})" if path else type(value).__name__
    return None
