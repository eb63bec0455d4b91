"""CachePolicy: every "may we read / may we store / for how long" decision, with no I/O.

Decisions return a :class:`Decision` that says *why* not, so a bypass is explainable in logs,
stats and ``cache_status(r).reason`` instead of being a silent miss. Keeping this pure (as
hishel separates its freshness rules from its transports) makes every rule testable in
microseconds and keeps the async engine free of policy branches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._answers import AnswerFacts
from ._exceptions import ConfigurationError
from ._models import CacheOptions, CacheRequest, check_ttl

DAY = 86_400.0

#: The classic support-bot table: stable answers live long, news does not.
DEFAULT_CATEGORY_TTLS: Mapping[str, float] = MappingProxyType(
    {"faq": 7 * DAY, "product_info": 1 * DAY, "news": 3600.0, "greeting": 30 * DAY}
)

#: Request fields that make the provider answer from server-side state we cannot see.
STATEFUL_FIELDS: tuple[str, ...] = (
    "previous_response_id",
    "conversation",
    "background",
    "container",
)

_STATEFUL = frozenset(STATEFUL_FIELDS)
_NUMBERS = (int, float)


@dataclass(frozen=True, slots=True)
class Decision:
    ok: bool
    reason: str | None = None


ALLOW = Decision(True)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """What may be cached and for how long.

    Defaults follow DESIGN.md: cache deterministic, complete, non-empty answers; refuse requests
    that ask for variety (temperature > 0, n > 1) and answers cut short (finish_reason ``length``
    / ``content_filter``) unless opted in. An unset temperature is cacheable: current Anthropic
    models and OpenAI reasoning models expose none. ``require_zero_temperature`` is the strict
    variant for teams that want only explicitly deterministic requests cached.
    """

    default_ttl: float | None = DAY
    category_ttls: Mapping[str, float] = field(default_factory=lambda: DEFAULT_CATEGORY_TTLS)
    max_entry_bytes: int = 1 << 20
    cache_sampled: bool = False
    require_zero_temperature: bool = False
    cache_truncated: bool = False
    cache_filtered: bool = False
    cache_stateful: bool = False

    def __post_init__(self) -> None:
        if self.default_ttl is not None:
            check_ttl("CachePolicy.default_ttl", self.default_ttl)
        for name, ttl in self.category_ttls.items():
            check_ttl(f"CachePolicy.category_ttls[{name!r}]", ttl)
        if self.max_entry_bytes <= 0:
            raise ConfigurationError("CachePolicy.max_entry_bytes must be > 0")

    def check_request(self, request: CacheRequest) -> Decision:
        """May this request be served from / stored in the cache at all? Reads top-level
        fields only, and those of ``extra_body``, which the SDKs send at the top level."""
        body = request.body
        extra = body.get("extra_body")
        if isinstance(extra, Mapping) and extra:
            body = {**body, **extra}
        # isdisjoint first: one C-level pass per request, the loop only when a field is there.
        if not self.cache_stateful and not body.keys().isdisjoint(_STATEFUL):
            for name in STATEFUL_FIELDS:
                if body.get(name) not in (None, False):
                    return Decision(False, f"stateful request ({name} is set)")
        temperature = body.get("temperature")
        if temperature is None:
            if self.require_zero_temperature and request.provider != "memoize":
                return Decision(False, "temperature unset and policy requires temperature=0")
        elif not self.cache_sampled and (
            temperature > 0 if type(temperature) in _NUMBERS else _positive(temperature)
        ):
            return Decision(False, f"sampling requested (temperature={temperature})")
        n = body.get("n")
        if not self.cache_sampled and n is not None and _more_than_one(n):
            return Decision(False, f"several choices requested (n={n})")
        return ALLOW

    def check_answer(self, facts: AnswerFacts, size: int) -> Decision:
        """May this answer be stored? ``size`` is its encoded size in bytes."""
        for reason in facts.finish_reasons:
            if reason == "length" and not self.cache_truncated:
                return Decision(False, "answer truncated (finish_reason=length)")
            if reason == "content_filter" and not self.cache_filtered:
                return Decision(False, "answer filtered (finish_reason=content_filter)")
            if reason == "malformed":
                return Decision(False, "answer not understood (a field has the wrong type)")
            if reason in ("failed", "incomplete", "cancelled", "in_progress", "queued"):
                return Decision(False, f"answer not complete (status={reason})")
        if facts.empty:
            return Decision(False, "empty answer (no text, no tool calls)")
        if size > self.max_entry_bytes:
            return Decision(False, f"answer too large ({size} > {self.max_entry_bytes} bytes)")
        return ALLOW

    def ttl_for(self, options: CacheOptions) -> float | None:
        """Explicit per-call TTL, else the category's, else the default (None: no expiry)."""
        if options.ttl is not None:
            return float(options.ttl)
        if options.category is not None:
            ttl = self.category_ttls.get(options.category)
            if ttl is not None:
                return float(ttl)
        return self.default_ttl


def _positive(value: Any) -> bool:
    try:
        return bool(value > 0)
    except TypeError:
        return True  # not a number: be safe, do not cache


def _more_than_one(value: Any) -> bool:
    try:
        return bool(value > 1)
    except TypeError:
        return True  # not a number: be safe, do not cache
