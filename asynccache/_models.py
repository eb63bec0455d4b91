"""Frozen value types that cross module boundaries.

They are plain frozen dataclasses, with slots but for CacheRequest (see "Hot-path constructors"),
so they are cheap on the hit path, hashable where it helps, and impossible to mutate behind
another caller's back once shared by single-flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ._exceptions import ConfigurationError
from ._recording import Recording

Mode = Literal["use", "refresh", "skip", "only", "no-store"]
Pacing = Literal["immediate", "original"]
Outcome = Literal["hit", "miss", "coalesced", "stale", "bypass"]
Layer = Literal["l1", "l2", "semantic"]

_MODES: frozenset[str] = frozenset(get_args(Mode))
_PACINGS: frozenset[str] = frozenset(get_args(Pacing))


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """Per-call (or per-scope, via ``cache.options()``) cache behaviour.

    ``mode``: ``use`` read and write; ``refresh`` skip the read, write the answer; ``skip`` neither;
    ``only`` read, and raise :class:`CacheMissError` on a miss without calling upstream;
    ``no-store`` read, never write. ``ttl`` overrides the policy's TTL (seconds); ``category``
    selects a per-category TTL and groups stats; ``tags`` allow ``invalidate_tags``.
    ``stream_pacing``: a stream served from the cache arrives ``immediate``-ly (default), or
    with the ``original`` gaps between its events as the provider sent them.
    """

    mode: Mode = "use"
    ttl: float | None = None
    tags: tuple[str, ...] = ()
    category: str | None = None
    stream_pacing: Pacing = "immediate"

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigurationError(
                f"CacheOptions.mode={self.mode!r} is not one of {sorted(_MODES)}"
            )
        if self.ttl is not None:
            check_ttl("CacheOptions.ttl", self.ttl)
        if isinstance(self.tags, str) or not all(isinstance(t, str) and t for t in self.tags):
            raise ConfigurationError(
                f"CacheOptions.tags={self.tags!r} must be a tuple of non-empty strings, "
                "e.g. tags=('faq',)"
            )
        if not isinstance(self.tags, tuple):
            object.__setattr__(self, "tags", tuple(self.tags))
        if self.category is not None and (not isinstance(self.category, str) or not self.category):
            raise ConfigurationError(
                f"CacheOptions.category={self.category!r} must be a non-empty string or None"
            )
        if self.stream_pacing not in _PACINGS:
            raise ConfigurationError(
                f"CacheOptions.stream_pacing={self.stream_pacing!r} is not one of {sorted(_PACINGS)}"
            )


#: Longest TTL any store can hold exactly (Redis takes milliseconds as a signed 64-bit integer;
#: a century is plenty and far from that limit).
MAX_TTL = 100 * 365 * 86_400.0


def check_ttl(name: str, ttl: object) -> None:
    """A TTL is a finite number of seconds in (0, MAX_TTL]; ``None`` (no expiry) is checked by
    the caller. Rejected up front, before any upstream call, rather than failing at write time."""
    ok = isinstance(ttl, int | float) and not isinstance(ttl, bool)
    try:
        ok = ok and 0 < float(ttl) <= MAX_TTL  # type: ignore[arg-type]
    except OverflowError:
        ok = False
    if not ok:
        raise ConfigurationError(
            f"{name}={ttl!r:.40} must be a positive, finite number of seconds "
            f"(at most {MAX_TTL:.0f}) or None for no expiry"
        )


DEFAULT_OPTIONS = CacheOptions()


@dataclass(frozen=True)
class CacheRequest:
    """What the engine needs to know about one upstream call.

    ``body`` is the provider request as JSON-like data: exactly the parameters that are sent,
    before the key rules drop the ones that cannot change the answer.
    """

    provider: str
    endpoint: str
    body: Mapping[str, Any]
    tenant: str | None = None
    options: CacheOptions | None = None

    def __post_init__(self) -> None:
        # Provider and endpoint seed the digest as "provider NUL endpoint": a NUL in either
        # would let two routes share a seed, hence keys ("a\0b", "c") and ("a", "b\0c").
        for name, value in (("provider", self.provider), ("endpoint", self.endpoint)):
            if not isinstance(value, str) or "\0" in value:
                raise ConfigurationError(
                    f"{name}={value!r} must be a string without NUL characters, "
                    "e.g. provider='openai', endpoint='chat.completions'"
                )
        _check_request(self.tenant, self.options)


def _check_request(tenant: object, options: object) -> None:
    if tenant is not None and not isinstance(tenant, str):
        raise ConfigurationError(
            f"tenant={tenant!r} must be a string or None (e.g. the tenant's id as str)"
        )
    if options is not None and not isinstance(options, CacheOptions):
        raise ConfigurationError(
            f"cache_options={options!r} must be a CacheOptions, e.g. CacheOptions(ttl=60)"
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one stored answer, as the provider reported them.

    ``cached_input_tokens`` are input tokens the provider itself served from its prompt cache
    (OpenAI's ``prompt_tokens_details.cached_tokens``, a subset of ``input_tokens``; Anthropic's
    ``cache_read_input_tokens``); they were cheaper, so they save less when we skip the call.
    ``cache_write_tokens`` were written to the provider's prompt cache (dearer than plain
    input); ``cache_write_1h_tokens`` is the part written for an hour (Anthropic's 1-hour
    cache, priced apart from its 5-minute one).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0


NO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored answer and what the engine needs to trust and account for it.

    ``value`` is always the whole answer; ``stream`` is the recording of the stream it came
    from, when it came from one (so a stream hit replays the provider's own deltas).
    """

    value: Any
    digest: str
    tenant: str | None
    created_at: float
    ttl: float | None
    model: str | None = None
    usage: Usage = NO_USAGE
    tags: tuple[str, ...] = ()
    category: str | None = None
    stream: Recording | None = field(default=None, repr=False)

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)


@dataclass(frozen=True, slots=True)
class CacheStatus:
    """Where an answer came from. ``reason`` says why a request bypassed the cache."""

    outcome: Outcome
    layer: Layer | None = None
    key: str | None = None
    similarity: float | None = None
    age: float | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """The engine's answer: the JSON-like value plus its provenance. ``value`` is shared with
    the cache and other callers: read it, do not change it."""

    value: Any
    status: CacheStatus
    entry: Entry | None = field(default=None, repr=False)


# Hot-path constructors --------------------------------------------------------------------------
#
# A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (so that its
# own ``__setattr__`` can refuse assignment): 0.8 us for a CacheStatus, 0.4 us for a
# CachedResponse — more than the L1 lookup they report. Every hit builds both, and every L2 hit
# decodes an Entry, so the engine fills the fields directly instead, through a twin class of
# the same slots (``_draft``). The objects are the same frozen dataclasses (equal, hashable,
# immutable from outside); these functions are only for values the engine already validated.
# CacheRequest has no slots: the SDK wrappers fill its instance dict (``request_of``), which
# costs less than a slot setter per field did. Measured with benchmarks/instructions.py, against
# the same objects filled through their slots' setters (Entry, Usage) or their instance dicts
# (CacheStatus, CachedResponse): an L2 hit 96,130 -> 90,520 instructions, an L1 hit 25,891 -> 24,884.

_new = object.__new__


def _draft(cls: type) -> Any:
    """A class with ``cls``'s slots and no ``__setattr__`` of its own.

    A frozen dataclass with slots refuses plain attribute stores, so filling one costs a call
    of a slot's setter per field (~690 instructions each; an L2 hit decodes an ``Entry`` of
    ten). An instance of this twin takes the same stores at the interpreter's own speed; its
    ``__class__`` is then set to ``cls``, which CPython allows because the memory layouts
    match (same slots, no dict). What the caller gets is an ordinary frozen ``cls``.

    Two costs elsewhere: a ``__class__`` assignment raises the ``object.__setattr__`` audit
    event (two or three per hit, for programs with an audit hook), and on free-threaded
    CPython it pauses every thread (gh-120198), which would cost there what it saves here."""
    return type(f"_{cls.__name__}Draft", (), {"__slots__": vars(cls)["__slots__"]})


_EntryDraft = _draft(Entry)
_UsageDraft = _draft(Usage)
_StatusDraft = _draft(CacheStatus)
_ResponseDraft = _draft(CachedResponse)


def answer_of(
    value: Any,
    outcome: Outcome,
    layer: Layer | None,
    key: str,
    age: float | None,
    entry: Entry | None,
) -> CachedResponse:
    """``CachedResponse(value, CacheStatus(outcome, layer, key, age=age), entry)``, at a third
    of the cost: every hit and every follower builds one."""
    status = _StatusDraft()
    status.outcome = outcome
    status.layer = layer
    status.key = key
    status.similarity = None
    status.age = age
    status.reason = None
    status.__class__ = CacheStatus
    response = _ResponseDraft()
    response.value = value
    response.status = status
    response.entry = entry
    response.__class__ = CachedResponse
    built: CachedResponse = response  # no cast(): a call per hit
    return built


def request_of(
    provider: str,
    endpoint: str,
    body: Mapping[str, Any],
    tenant: str | None,
    options: CacheOptions | None,
) -> CacheRequest:
    """``CacheRequest(provider, endpoint, body, tenant, options)`` at half the cost: the SDK
    wrappers build one on every call. Tenant and options are checked the same way; provider
    and endpoint are not, being the wrappers' own constants."""
    if tenant is not None or options is not None:
        _check_request(tenant, options)
    request = _new(CacheRequest)
    d = request.__dict__
    d["provider"] = provider
    d["endpoint"] = endpoint
    d["body"] = body
    d["tenant"] = tenant
    d["options"] = options
    return request


def usage_of(
    input_tokens: int, output_tokens: int, cached: int, write: int, write_1h: int
) -> Usage:
    """``Usage(...)`` for counts the caller checked are ints (an L2 read decodes one per hit)."""
    usage = _UsageDraft()
    usage.input_tokens = input_tokens
    usage.output_tokens = output_tokens
    usage.cached_input_tokens = cached
    usage.cache_write_tokens = write
    usage.cache_write_1h_tokens = write_1h
    usage.__class__ = Usage
    built: Usage = usage
    return built


def entry_of(
    value: Any,
    digest: str,
    tenant: str | None,
    created_at: float,
    ttl: float | None,
    model: str | None,
    usage: Usage,
    tags: tuple[str, ...],
    category: str | None,
    stream: Recording | None,
) -> Entry:
    """``Entry(...)`` for fields the caller checked (an L2 read decodes one per hit)."""
    entry = _EntryDraft()
    entry.value = value
    entry.digest = digest
    entry.tenant = tenant
    entry.created_at = created_at
    entry.ttl = ttl
    entry.model = model
    entry.usage = usage
    entry.tags = tags
    entry.category = category
    entry.stream = stream
    entry.__class__ = Entry
    built: Entry = entry
    return built
