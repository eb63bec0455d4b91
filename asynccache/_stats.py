"""Counters on the hot path, frozen snapshots for everyone else, and what a hit saved in dollars.

Recording is a handful of integer increments on a mutable object the engine owns; ``stats()``
copies them into frozen dataclasses (anyio's statistics style) so a caller can keep, compare
and print a snapshot without it changing underneath.

Savings: a hit (or a coalesced call) avoided a full upstream call, so it saved that call's
tokens at the model's list price. Provider prompt-cache reads were already discounted, so they
are priced at the cached-input rate, not the full rate: "saved" is what the call would really
have cost. Prices are USD per million tokens from the providers' published list prices for the
models named below (newer models are not in the table: their hits are counted as
``unpriced_hits``, never guessed). Pass ``prices=`` to ``Cache`` for your models and contract rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._models import Usage


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens."""

    input: float
    output: float
    cached_input: float
    cache_write: float | None = None  # None: as input
    cache_write_1h: float | None = None  # None: as cache_write


#: Longest matching prefix of the model name wins.
DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "gpt-4o-mini": Price(0.15, 0.60, 0.075),
        "gpt-4o": Price(2.50, 10.00, 1.25),
        "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
        "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
        "gpt-4.1": Price(2.00, 8.00, 0.50),
        "gpt-5-nano": Price(0.05, 0.40, 0.005),
        "gpt-5-mini": Price(0.25, 2.00, 0.025),
        "gpt-5": Price(1.25, 10.00, 0.125),
        "o4-mini": Price(1.10, 4.40, 0.275),
        "text-embedding-3-small": Price(0.02, 0.0, 0.02),
        "text-embedding-3-large": Price(0.13, 0.0, 0.13),
        # Anthropic: cache writes 1.25x input for 5 minutes, 2x for an hour; reads 0.1x.
        "claude-3-5-haiku": Price(0.80, 4.00, 0.08, 1.00, 1.60),
        "claude-haiku-4": Price(1.00, 5.00, 0.10, 1.25, 2.00),
        "claude-sonnet-4": Price(3.00, 15.00, 0.30, 3.75, 6.00),
        "claude-opus-4": Price(15.00, 75.00, 1.50, 18.75, 30.00),
    }
)


def price_of(model: str | None, prices: Mapping[str, Price]) -> Price | None:
    if not model:
        return None
    best: str | None = None
    for prefix in prices:
        if model.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else prices[best]


def cost_of(usage: Usage, price: Price) -> float:
    """What one call with this usage costs, in USD."""
    fresh = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
    write_rate = price.cache_write if price.cache_write is not None else price.input
    hour_rate = price.cache_write_1h if price.cache_write_1h is not None else write_rate
    hour = usage.cache_write_1h_tokens
    return (
        max(fresh, 0) * price.input
        + usage.cached_input_tokens * price.cached_input
        + (usage.cache_write_tokens - hour) * write_rate
        + hour * hour_rate
        + usage.output_tokens * price.output
    ) / 1_000_000


@dataclass(frozen=True, slots=True)
class CategoryStats:
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot. ``hits`` counts l1 + l2 + semantic hits; coalesced callers are counted apart
    (they did not find an answer stored, but still made no upstream call)."""

    requests: int = 0
    hits_l1: int = 0
    hits_l2: int = 0
    hits_semantic: int = 0
    misses: int = 0
    coalesced: int = 0
    bypassed: int = 0
    upstream_calls: int = 0
    upstream_errors: int = 0
    upstream_retries: int = 0
    stores: int = 0
    store_refused: int = 0
    integrity_errors: int = 0
    backend_errors: int = 0
    breaker_open_skips: int = 0
    input_tokens_saved: int = 0
    output_tokens_saved: int = 0
    usd_saved: float = 0.0
    unpriced_hits: int = 0
    by_category: Mapping[str, CategoryStats] = field(default_factory=dict)

    @property
    def hits(self) -> int:
        return self.hits_l1 + self.hits_l2 + self.hits_semantic

    @property
    def hit_rate(self) -> float:
        """Share of cacheable requests answered without an upstream call of their own."""
        served = self.hits + self.coalesced
        total = served + self.misses
        return served / total if total else 0.0

    @property
    def tokens_saved(self) -> int:
        return self.input_tokens_saved + self.output_tokens_saved


#: Hits of one stored answer not yet added to the totals: [usage, model, hits]
_Tally = list[Any]
_MAX_TALLIES = 4096
#: What tallies saved: input tokens, output tokens, dollars in units of 1e-18 (an int, so that
#: totals regrouped as tallies retire never drop by a float rounding), unpriced hits.
_Saved = tuple[int, int, int, int]
_NOTHING: _Saved = (0, 0, 0, 0)
_ATTO = 10**18


def _plus(a: _Saved, b: _Saved) -> _Saved:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]


_UNKNOWN: Any = object()  # a model not priced yet (None is a model without a price)


class StatsRecorder:
    """The engine's mutable counters. Not thread-safe by design: one event loop owns a Cache."""

    def __init__(self, prices: Mapping[str, Price] = DEFAULT_PRICES) -> None:
        self.prices = prices
        self._price_cache: dict[str | None, Price | None] = {}  # model -> price, resolved once
        # id(usage) -> its hits; always the dict in _book, kept apart for the hit path's lookup
        self._tallies: dict[int, _Tally] = {}
        self._book: tuple[_Saved, dict[int, _Tally]] = (_NOTHING, self._tallies)
        self.reset()

    def reset(self) -> None:
        self.requests = self.hits_l1 = self.hits_l2 = self.hits_semantic = 0
        self.misses = self.coalesced = self.bypassed = 0
        self.upstream_calls = self.upstream_errors = self.upstream_retries = 0
        self.stores = self.store_refused = self.integrity_errors = 0
        self.backend_errors = self.breaker_open_skips = 0
        self._tallies = {}
        self._book = (_NOTHING, self._tallies)
        self.cat_hits: dict[str, int] = {}
        self.cat_misses: dict[str, int] = {}

    def saved(self, model: str | None, usage: Usage, category: str | None) -> None:
        """Account one call that did not go upstream.

        Every hit comes here, and most hits repeat an answer already counted: a hit only adds
        one to its answer's tally (found by the identity of its immutable ``Usage``), and the
        tokens and dollars are added up when the totals are read, once per answer instead of
        once per hit."""
        tally = self._tallies.get(id(usage))
        if tally is None or tally[0] is not usage or tally[1] != model:
            tally = self._tally(model, usage)
        tally[2] += 1
        if category is not None:
            self.cat_hits[category] = self.cat_hits.get(category, 0) + 1

    def _tally(self, model: str | None, usage: Usage) -> _Tally:
        """A new tally for ``usage``. Tallies leave by a new book: the retired hits added to
        the totals and the dict without them, in one assignment, so a snapshot from another
        thread (a metrics exporter) sees them in one place or the other, never in both or
        neither, and every total it reads only grows."""
        totals, tallies = self._book
        old = tallies.get(id(usage))
        if old is not None:  # the same usage under another model, or an id reused
            totals = _plus(totals, self._worth(old))
            tallies = {k: t for k, t in tallies.items() if t is not old}
            self._tallies, self._book = tallies, (totals, tallies)
        if len(tallies) >= _MAX_TALLIES:  # bounded, whatever the traffic
            for each in tallies.values():
                totals = _plus(totals, self._worth(each))
            self._tallies = tallies = {}
            self._book = (totals, tallies)
        # Keyed by id() and holding the Usage itself, so the id cannot be reused while it is here.
        tally = tallies[id(usage)] = [usage, model, 0]
        return tally

    def _worth(self, tally: _Tally) -> _Saved:
        """What a tally's hits saved: tokens, dollars (priced once for all of them), and the
        hits of a model without a price that used tokens."""
        usage, model, hits = tally
        price = self._price_cache.get(model, _UNKNOWN)
        if price is _UNKNOWN:
            price = self._price_cache[model] = price_of(model, self.prices)
        inp, out = hits * usage.input_tokens, hits * usage.output_tokens
        if price is not None:
            return inp, out, round(hits * cost_of(usage, price) * _ATTO), 0
        return inp, out, 0, hits if inp or out else 0

    def missed(self, category: str | None) -> None:
        self.misses += 1
        if category is not None:
            self.cat_misses[category] = self.cat_misses.get(category, 0) + 1

    def snapshot(self) -> CacheStats:
        """Only reads (a metrics exporter may call it from another thread): the live tallies
        are added to the totals of the retired ones here, and stay as they are."""
        totals, tallies = self._book
        for tally in list(tallies.values()):  # a copy: the loop may add one meanwhile
            totals = _plus(totals, self._worth(tally))
        inp, out, atto_usd, unpriced = totals
        usd = atto_usd / _ATTO
        cats = {
            name: CategoryStats(self.cat_hits.get(name, 0), self.cat_misses.get(name, 0))
            for name in sorted(self.cat_hits.keys() | self.cat_misses.keys())
        }
        return CacheStats(
            requests=self.requests,
            hits_l1=self.hits_l1,
            hits_l2=self.hits_l2,
            hits_semantic=self.hits_semantic,
            misses=self.misses,
            coalesced=self.coalesced,
            bypassed=self.bypassed,
            upstream_calls=self.upstream_calls,
            upstream_errors=self.upstream_errors,
            upstream_retries=self.upstream_retries,
            stores=self.stores,
            store_refused=self.store_refused,
            integrity_errors=self.integrity_errors,
            backend_errors=self.backend_errors,
            breaker_open_skips=self.breaker_open_skips,
            input_tokens_saved=inp,
            output_tokens_saved=out,
            usd_saved=usd,
            unpriced_hits=unpriced,
            by_category=MappingProxyType(cats),
        )
