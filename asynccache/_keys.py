"""Canonical request keys: what makes two requests "the same" for the cache.

The key must cover everything that can change the answer and nothing that cannot (DESIGN.md,
"Keys"). Canonical form is structured — orjson with sorted keys over the request body — never
string concatenation, so no two different requests can collide by accident of formatting.
The 128-bit xxh3 digest makes accidental collisions negligible (~2^-64 at billions of entries).

Rules that are not obvious from the code:
- Volatile fields (stream, timeout, metadata, user, ...) are dropped: they cannot change the
  answer, and keeping them would make every request unique.
- Integral floats become ints at the top level and in ``logit_bias`` (``temperature=0`` and
  ``temperature=0.0`` are one request). Nested numbers elsewhere are left as given.
- A message whose content is a single text part equals the same message with a plain string:
  both SDKs document the two as the same input.
- Anthropic ``cache_control`` markers are dropped wherever they appear: they steer the
  provider's prompt cache, not the answer.

Bump ``KEY_SCHEMA`` whenever any of this changes, so old entries are never read under new rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import xxhash

from ._exceptions import KeyBuildError
from ._models import CacheRequest

KEY_SCHEMA = 1

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
_CONTENT_FIELDS = ("messages", "system", "input", "tools")


def canonical_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request body with the key rules applied (a new dict; ``body`` is not changed)."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in VOLATILE_FIELDS:
            continue
        if type(value) is float and value.is_integer():
            value = int(value)
        elif name == "logit_bias" and isinstance(value, Mapping):
            value = {k: _int_if_integral(v) for k, v in value.items()}
        elif name in _CONTENT_FIELDS and type(value) is list and _needs_rewrite(value):
            value = [_canonical_item(item) for item in value]
        out[name] = value
    return out


def _needs_rewrite(items: list[Any]) -> bool:
    """Most messages are plain ``{"role", "content": str}``: leave such lists as they are."""
    for item in items:
        if type(item) is dict and ("cache_control" in item or type(item.get("content")) is list):
            return True
    return False


def _int_if_integral(value: Any) -> Any:
    return int(value) if type(value) is float and value.is_integer() else value


def _canonical_item(item: Any) -> Any:
    """A message, system block or tool: drop cache_control, collapse one text part to a string."""
    if type(item) is not dict:
        return item
    if "cache_control" in item:
        item = {k: v for k, v in item.items() if k != "cache_control"}
    content = item.get("content")
    if type(content) is list:
        parts = [_strip_cache_control(p) for p in content]
        if len(parts) == 1 and _is_plain_text_part(parts[0]):
            parts = parts[0]["text"]
        item = {**item, "content": parts}
    return item


def _strip_cache_control(part: Any) -> Any:
    if type(part) is dict and "cache_control" in part:
        return {k: v for k, v in part.items() if k != "cache_control"}
    return part


def _is_plain_text_part(part: Any) -> bool:
    return (
        type(part) is dict
        and part.keys() == {"type", "text"}
        and part["type"] in ("text", "input_text")
        and type(part["text"]) is str
    )


def _plain(value: Any) -> Any:
    """orjson's fallback for what it cannot encode itself: pydantic objects (the SDKs' own
    message types, passed back in a tool-calling loop) become the JSON the SDK would send.
    Only reached for such values, so plain-dict requests pay nothing for it."""
    dump = getattr(value, "model_dump", None)
    if dump is None or isinstance(value, type):
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
    return dump(mode="json", exclude_unset=True)


def canonical_bytes(request: CacheRequest) -> bytes:
    """Canonical serialisation of the request body (provider and endpoint go into the seed)."""
    try:
        return orjson.dumps(canonical_body(request.body), default=_plain, option=_SORT)
    except TypeError as exc:
        path = find_unserialisable(request.body)
        raise KeyBuildError(
            f"request parameter {path or '<body>'} is not JSON-serialisable ({exc}); "
            "pass plain str/int/float/bool/None/list/dict values"
        ) from exc


_seeds: dict[tuple[str, str], int] = {}


def _seed(provider: str, endpoint: str) -> int:
    """A hash seed per (provider, endpoint): the same body sent to two endpoints never
    shares a digest, without concatenating or wrapping the body on every call."""
    seed = _seeds.get((provider, endpoint))
    if seed is None:
        seed = _seeds[(provider, endpoint)] = xxhash.xxh3_64_intdigest(
            f"{provider}\0{endpoint}".encode()
        )
    return seed


def digest(request: CacheRequest) -> str:
    """The full 128-bit xxh3 digest (32 hex chars) of the canonical request."""
    return xxhash.xxh3_128_hexdigest(
        canonical_bytes(request), _seed(request.provider, request.endpoint)
    )


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
