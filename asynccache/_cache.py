"""Cache: the engine. Lookup chain, flights, write-back, invalidation and stats.

It *has* a layered store (``_layers``: L1 over a backend, behind a circuit breaker), a policy,
a retry policy, a single-flight and a stats recorder (composition, not mixins), and knows
nothing of SDKs, Redis or SQLite: integrations hand it a :class:`CacheRequest` and a
``sender`` (the real upstream call); backends plug in behind the bytes protocol.

The read path is ordered for speed: L1 is a plain dict lookup with no await, no task and no
timer; L2 is one awaited (auto-batched) read; only a miss pays for a task and a shield.
Every store failure on any path is counted, logged at a bounded rate and swallowed: the cache
is an optimisation and must never be the reason a request fails (DESIGN.md, "Failure").
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import _batch, _codec, _keys, _singleflight, _streaming
from ._answers import AnswerFacts, Landed, inspect_answer
from ._batch import BatchSender
from ._breaker import CircuitBreaker
from ._exceptions import CacheClosedError, CacheMissError, ConfigurationError
from ._footprint import held_by
from ._layers import Layers, Write
from ._models import (
    DEFAULT_OPTIONS,
    CachedResponse,
    CacheOptions,
    CacheRequest,
    CacheStatus,
    Entry,
    Layer,
    answer_of,
    entry_of,
)
from ._policy import ALLOW, CachePolicy, Decision
from ._recording import Recording, StreamShape
from ._retry import NO_RETRY, RetryPolicy
from ._singleflight import FollowerTimeout, SingleFlight
from ._stats import DEFAULT_PRICES, CacheStats, Price, StatsRecorder
from .backends._base import Backend
from .backends._lru import LRU

if TYPE_CHECKING:
    from ._streaming import Opener, StreamAnswer
    from ._tee import Tee

logger = logging.getLogger("asynccache")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Sender = Callable[[], Awaitable[Any]]
#: The policy's decision on a request, and its digest if it may be cached.
Admitted = tuple[Decision, str | None]
#: The fewest digests of admitted requests a generation of the memo holds (two generations:
#: bounded memory, and no big free at once); as many as L1 holds answers when that is more
#: (``Cache._remember``). About 160 B each (tracemalloc).
_ADMITTED = 4096


class Cache:
    """An exact-match LLM answer cache with an in-process L1 over an optional shared L2.

    Build one with :meth:`from_url` and share it across the app; it is safe for any number of
    concurrent tasks on one event loop. ``l1_max_entries=0`` runs without L1 (every read goes to
    the shared store — useful when processes must never serve each other's invalidated answers).
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        namespace: str = "default",
        prefix: str = "ac",
        policy: CachePolicy | None = None,
        retry: RetryPolicy | None = None,
        l1_max_entries: int = 10_000,
        l1_max_bytes: int = 64 << 20,
        l1_ttl: float | None = None,
        follower_timeout: float = 60.0,
        breaker: CircuitBreaker | None = None,
        generation_refresh: float = 1.0,
        prices: Mapping[str, Price] = DEFAULT_PRICES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (("namespace", namespace), ("prefix", prefix)):
            if not isinstance(value, str) or not value or ":" in value:
                raise ConfigurationError(f"{name}={value!r} must be a non-empty string without ':'")
        for name, number in (("l1_max_entries", l1_max_entries), ("l1_max_bytes", l1_max_bytes)):
            if not isinstance(number, int) or isinstance(number, bool) or number < 0:
                raise ConfigurationError(f"{name}={number!r} must be an int >= 0")
        for name, seconds in (
            ("follower_timeout", follower_timeout),
            ("generation_refresh", generation_refresh),
            ("l1_ttl", l1_ttl),
        ):
            if seconds is None and name == "l1_ttl":
                continue
            if (
                not isinstance(seconds, int | float)
                or isinstance(seconds, bool)
                or not 0 <= seconds < float("inf")
            ):
                raise ConfigurationError(
                    f"{name}={seconds!r} must be a finite number of seconds >= 0"
                )
        if backend is None and l1_max_entries == 0:
            raise ConfigurationError(
                "a Cache needs somewhere to store answers: pass a backend or l1_max_entries > 0"
            )
        self.namespace = namespace
        self.prefix = prefix
        self._admitted: dict[bytes, str] = {}  # digests by _keys.as_given; see _admit
        self._admitted_before: dict[bytes, str] = {}
        self.policy = policy if policy is not None else CachePolicy()
        self.retry = retry if retry is not None else RetryPolicy()
        self.backend = backend
        self._l1: LRU[Entry] | None = (
            LRU(max_entries=l1_max_entries, max_bytes=l1_max_bytes, clock=clock)
            if l1_max_entries > 0
            else None
        )
        self._clock = clock
        self._flights: SingleFlight[Landed] = SingleFlight(follower_timeout)
        self._tees: dict[str, Tee] = {}  # key -> the live stream of a stream request's flight
        self._stats = StatsRecorder(prices)
        self._scoped: contextvars.ContextVar[CacheOptions] = contextvars.ContextVar(
            f"asynccache.options.{id(self)}", default=DEFAULT_OPTIONS
        )
        self._layers = Layers(
            backend,
            self._l1,
            base=f"{prefix}:{namespace}",
            l1_ttl=l1_ttl,
            breaker=breaker if breaker is not None else CircuitBreaker(),
            stats=self._stats,
            clock=clock,
            generation_refresh=generation_refresh,
        )
        self._closed = False

    # -- construction and lifecycle ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Cache:
        """``memory://``, ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
        ``redis://host:port/db``, ``rediss://…``, ``redis+cluster://host:port``."""
        from ._factory import backend_from_url

        return cls(backend_from_url(url, kwargs.get("l1_max_entries", 1)), **kwargs)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Let running flights finish (``timeout`` seconds at most; callers still waiting on a
        flight cut short get CacheClosedError), then close the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._flights.drain(timeout=timeout)
        if self.backend is not None:
            await self.backend.aclose()

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- options, stats ------------------------------------------------------------------------

    @contextmanager
    def options(self, options: CacheOptions | None = None, **kwargs: Any) -> Iterator[CacheOptions]:
        """Apply options to every call in this context (task-local, via a contextvar).
        Options passed to a single call win over scoped ones."""
        opts = options if options is not None else CacheOptions(**kwargs)
        token = self._scoped.set(opts)
        try:
            yield opts
        finally:
            self._scoped.reset(token)

    def current_options(self) -> CacheOptions:
        return self._scoped.get()

    def stats(self) -> CacheStats:
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    @property
    def policy(self) -> CachePolicy:
        return self._policy

    @policy.setter
    def policy(self, policy: CachePolicy) -> None:
        self._policy = policy
        self._admitted, self._admitted_before = {}, {}  # admitted by the old policy

    # -- keys ----------------------------------------------------------------------------------

    def key_for(self, request: CacheRequest) -> str:
        """The storage key of a request (for logs, invalidation, debugging). The memo lookup of
        :meth:`_admit` written out, as ``get_or_fetch`` has it: this is the key build the
        benchmark times, and a frame is 5 % of it."""
        seen = _keys.as_given(request)
        digest = self._admitted.get(seen) if seen is not None else None
        if digest is None:
            digest = self._admit_new(request, seen)[1] or _keys.digest(request)
        return self._layers.key(request.tenant, digest)

    def _key(self, request: CacheRequest) -> tuple[str, str]:
        digest = self._digest(request)
        return self._layers.key(request.tenant, digest), digest

    def _digest(self, request: CacheRequest) -> str:
        """The digest of any request: a request the policy refuses still has a key, to
        invalidate or to log."""
        return self._admit(request)[1] or _keys.digest(request)

    def _admit(self, request: CacheRequest) -> Admitted:
        """The policy's decision on ``request`` and, if it may be cached, its digest.

        A hit is a request seen before, so the digests of admitted requests are remembered by
        the fingerprint of the body as given (``_keys.as_given``); a remembered one skips the
        policy check and the key rules (get_or_fetch repeats this lookup inline)."""
        seen = _keys.as_given(request)
        digest = self._admitted.get(seen) if seen is not None else None
        return (ALLOW, digest) if digest is not None else self._admit_new(request, seen)

    def _admit_new(self, request: CacheRequest, seen: bytes | None) -> Admitted:
        if seen is not None:
            digest = self._admitted_before.get(seen)
            if digest is not None:
                self._remember(seen, digest)
                return ALLOW, digest
        decision = self._policy.check_request(request)
        if not decision.ok:
            return decision, None  # not remembered: a bypass costs an upstream call anyway
        digest = _keys.digest(request)
        if seen is not None and self._rememberable(request):
            self._remember(seen, digest)
        return decision, digest

    def _remember(self, seen: bytes, digest: str) -> None:
        """A generation holds as many digests as L1 holds entries (at least ``_ADMITTED``): an
        L1 hit whose digest was forgotten pays for the policy and the key rules, 3-5x the hit
        itself. With a fixed 4,096, hits cycling over 6,000 requests in a 10,000-entry L1 cost
        17 us each instead of 3-5 (a throwaway loop over ``get_or_fetch``, one host)."""
        l1 = self._l1
        if len(self._admitted) >= (_ADMITTED if l1 is None else max(_ADMITTED, len(l1))):
            self._admitted_before, self._admitted = self._admitted, {}
        self._admitted[seen] = digest

    def _rememberable(self, request: CacheRequest) -> bool:
        """Whether an admission may be remembered by the body's fingerprint: it must be what
        the policy and the key rules would give again for any body with those bytes.

        The key rules read the body's JSON (``_keys.digest``), which is those bytes. The
        built-in policy reads top-level fields (and ``extra_body``'s), which equal bytes give
        equal when every top-level name is a str and every value a plain JSON value
        (``_keys.plain_top_level``): no enum (written as its value, compared as itself) and no
        None, because orjson writes NaN and Infinity as null too. A body that then shares a
        fingerprint with a remembered one is that request on the wire; the policy could refuse
        it only where it plays safe with a value it cannot read (an enum, a subclass of a
        number, an enum as a name, an ``extra_body`` that is no dict), which the wire does not
        carry: it gets the remembered request's key and answer. A policy of the user's own may
        read anything (the tenant, the options): it judges every call."""
        return type(self._policy) is CachePolicy and _keys.plain_top_level(request.body)

    async def _keyed(self, tenant: str | None, digest: str) -> str:
        """The key under the current namespace generation (refreshed at most once a second)."""
        if self._clock() >= self._layers.generation_due:
            await self._layers.refresh_generation()
        return self._layers.key(tenant, digest)

    # -- the read/fetch path -------------------------------------------------------------------

    async def get_or_fetch(
        self, request: CacheRequest, sender: Sender, *, retry: RetryPolicy | None = None
    ) -> CachedResponse:
        """Answer ``request`` from the cache, or call ``sender`` (once per key across concurrent
        callers) and store what it returns if the policy allows. ``retry`` overrides the
        cache's retry policy for this call's upstream attempts.

        The answer's ``value`` is the stored object itself, shared with every other caller
        and with L1 (copying it on every hit would cost more than the hit): treat it as
        read-only. The SDK wrappers and ``memoize`` hand each caller objects of its own."""
        if self._closed:
            raise CacheClosedError("this Cache was closed with aclose(); create a new one")
        st = self._stats
        st.requests += 1
        opts = request.options or self._scoped.get()
        mode = opts.mode
        if mode == "skip":
            return await self._bypass(sender, "mode=skip", retry or self.retry)
        seen = _keys.as_given(request)
        digest = self._admitted.get(seen) if seen is not None else None
        if digest is None:
            decision, digest = self._admit_new(request, seen)
            if digest is None:
                if mode == "only":
                    raise CacheMissError(
                        f"mode='only' but the request is not cacheable: {decision.reason}"
                    )
                return await self._bypass(sender, decision.reason, retry or self.retry)
        now = self._clock()
        if now >= self._layers.generation_due:
            await self._layers.refresh_generation()
            now = self._clock()  # that awaited the store: L1 expiry is judged after it
        key = self._layers.key(request.tenant, digest)
        if mode != "refresh":
            l1 = self._l1
            entry = l1.get_at(key, now) if l1 is not None else None
            if entry is not None:
                st.hits_l1 += 1
                st.saved(entry.model, entry.usage, opts.category)
                age = now - entry.created_at
                return answer_of(entry.value, "hit", "l1", key, age if age > 0.0 else 0.0, entry)
            read_after = self._layers.written  # when the store was read (below)
            if self.backend is not None:
                entry = await self._layers.read(key, digest, request.tenant)
                if entry is not None:
                    st.hits_l2 += 1
                    st.saved(entry.model, entry.usage, opts.category)
                    age = self._clock() - entry.created_at
                    return answer_of(entry.value, "hit", "l2", key, age, entry)
            if mode == "only":
                raise CacheMissError(f"mode='only' and no cached answer for key {key}")
        else:
            read_after = -1  # a refresh does not read the store
        return await self._miss(key, digest, request, opts, sender, retry or self.retry, read_after)

    async def _lookup(
        self, key: str, digest: str, tenant: str | None, opts: CacheOptions
    ) -> CachedResponse | None:
        """L1 then L2, counted; for callers off the hot path (``get_or_fetch`` inlines it)."""
        st = self._stats
        entry = self._l1.get(key) if self._l1 is not None else None
        layer: Layer = "l1"
        if entry is None and self.backend is not None:
            entry = await self._layers.read(key, digest, tenant)
            layer = "l2"
        if entry is None:
            return None
        if layer == "l1":
            st.hits_l1 += 1
        else:
            st.hits_l2 += 1
        st.saved(entry.model, entry.usage, opts.category)
        age = max(0.0, self._clock() - entry.created_at)
        return CachedResponse(entry.value, CacheStatus("hit", layer, key, age=age), entry)

    async def _bypass(
        self, sender: Sender, reason: str | None, retry: RetryPolicy
    ) -> CachedResponse:
        self._stats.bypassed += 1
        logger.debug("asynccache bypass: %s", reason)
        value = await self._upstream(sender, retry)
        return CachedResponse(value, CacheStatus("bypass", reason=reason))

    async def _miss(
        self,
        key: str,
        digest: str,
        request: CacheRequest,
        opts: CacheOptions,
        sender: Sender,
        retry: RetryPolicy,
        read_after: int,
    ) -> CachedResponse:
        """``read_after``: how many store writes this Cache had finished when the lookup read
        the store (-1: it did not). A new flight reads the store again only if a write of
        this Cache, of any key, finished since or is still under way (``Layers.raced``): the
        read may have been answered before that write landed. Say a flight for this key ended
        as the read ran: no flight is left to join, and without a second read a second paid
        call would follow. Under load nearly every miss still reads twice; a lone one reads
        once. For another process's write, a re-read on every miss would cost a round trip
        to close a window of microseconds, while the upstream call itself leaves one of
        seconds open."""
        st = self._stats
        flight = self._flights.get(key)
        if flight is not None and opts.mode != "refresh":
            try:
                landed = await self._flights.wait(flight, follower=True)
            except FollowerTimeout:
                if _singleflight.landed(flight):
                    landed = flight.result()
                else:
                    logger.warning("asynccache follower timeout on %s; going upstream", key)
                    landed = Landed(None, None, AnswerFacts(), None, complete=False)
            if not landed.complete:  # gave up waiting, or a stream flight that did not finish
                landed = await self._fly(key, digest, request, opts, sender, retry, recheck=False)
                st.missed(opts.category)
                return CachedResponse(landed.value, CacheStatus("miss", None, key), landed.entry)
            st.coalesced += 1
            st.saved(landed.facts.model, landed.facts.usage, opts.category)
            return answer_of(landed.value, "coalesced", None, key, None, landed.entry)
        if flight is not None:  # refresh while a flight runs: fetch anew, do not replace it
            landed = await self._fly(key, digest, request, opts, sender, retry, recheck=False)
        else:
            flight = self._flights.start(
                key,
                self._fly(
                    key,
                    digest,
                    request,
                    opts,
                    sender,
                    retry,
                    recheck=self._layers.raced(read_after),
                ),
            )
            landed = await self._flights.wait(flight, follower=False)
        if landed.layer == "l2":  # the re-read found it: a write raced the lookup
            st.hits_l2 += 1
            st.saved(landed.facts.model, landed.facts.usage, opts.category)
            return CachedResponse(landed.value, CacheStatus("hit", "l2", key), landed.entry)
        st.missed(opts.category)
        logger.debug("asynccache miss %s stored=%s", key, landed.entry is not None)
        return CachedResponse(landed.value, CacheStatus("miss", None, key), landed.entry)

    async def _fly(
        self,
        key: str,
        digest: str,
        request: CacheRequest,
        opts: CacheOptions,
        sender: Sender,
        retry: RetryPolicy,
        *,
        recheck: bool,
    ) -> Landed:
        if recheck and self.backend is not None:
            entry = await self._layers.read(key, digest, request.tenant)
            if entry is not None:
                return Landed(
                    entry.value, entry, AnswerFacts(model=entry.model, usage=entry.usage), "l2"
                )
        value = await self._upstream(sender, retry)
        write, facts = self._make_entry(digest, request, opts, value)
        if write is not None:
            await self._layers.write([(key, write)])
        return Landed(value, write.entry if write else None, facts, None)

    async def _upstream(self, sender: Sender, retry: RetryPolicy | None = None) -> Any:
        st = self._stats

        async def attempt() -> Any:
            st.upstream_calls += 1
            return await sender()

        def retried(_: BaseException) -> None:
            st.upstream_retries += 1

        policy = retry if retry is not None else self.retry
        try:
            return await policy.call(attempt, on_retry=retried)
        except Exception:
            st.upstream_errors += 1
            raise

    # -- batches and streams -------------------------------------------------------------------

    async def get_or_fetch_many(
        self, requests: Sequence[CacheRequest], fetch: BatchSender
    ) -> list[CachedResponse]:
        """Answer many requests at once; ``fetch(indices)`` returns values for the misses, in
        one upstream call. Used for embeddings: 100 texts with 90 cached make one call for 10."""
        return await _batch.get_or_fetch_many(self, requests, fetch)

    async def get_or_stream(
        self,
        request: CacheRequest,
        opener: Opener,
        shape: StreamShape,
        *,
        bypass: Callable[[], Awaitable[Any]],
        retry: RetryPolicy | None = None,
    ) -> StreamAnswer:
        """Answer a stream request: replay a stored answer, or open the upstream stream (once
        per key across concurrent callers) and hand every caller its events live, storing the
        answer when it finishes. ``bypass`` opens the uncached stream when the cache must stay
        out (mode ``skip``, a request the policy refuses). See ``_streaming``."""
        return await _streaming.get_or_stream(self, request, opener, shape, bypass, retry)

    # -- writing -------------------------------------------------------------------------------

    def _make_entry(
        self,
        digest: str,
        request: CacheRequest,
        opts: CacheOptions,
        value: Any,
        recording: Recording | None = None,
    ) -> tuple[Write | None, AnswerFacts]:
        """The encoded entry to store for this answer, or None (reason logged and counted).
        A stream's recording is kept with it unless that makes the entry too large: then the
        whole answer alone is stored, and stream hits get it split."""
        facts = inspect_answer(request.provider, request.endpoint, value)
        if opts.mode == "no-store":
            return None, facts
        try:
            entry = entry_of(
                value,
                digest,
                request.tenant,
                self._clock(),
                self._policy.ttl_for(opts),
                facts.model,
                facts.usage,
                opts.tags,
                opts.category,
                recording,
            )
            shared = self.backend is not None
            raw, held = _encoded(entry, shared)
            if recording is not None and len(raw) > self._policy.max_entry_bytes:
                entry = dataclasses.replace(entry, stream=None)
                raw, held = _encoded(entry, shared)
        except (TypeError, ValueError, OverflowError) as exc:
            # The upstream call is already paid for: never fail the request over storing it.
            self._stats.store_refused += 1
            logger.warning("asynccache not storing an answer it cannot encode: %s", exc)
            return None, facts
        decision = self.policy.check_answer(facts, len(raw))
        if not decision.ok:
            self._stats.store_refused += 1
            logger.debug("asynccache not storing: %s", decision.reason)
            return None, facts
        return Write(entry, raw, held), facts

    # -- invalidation --------------------------------------------------------------------------

    async def clear(self) -> None:
        """Forget every answer in this namespace, in O(1): bump the namespace generation, so
        every key changes. Old entries are never read again and age out by TTL / eviction.
        Raises BackendError if the shared store cannot record it (L1 is cleared regardless)."""
        await self._layers.bump_generation()

    async def invalidate(self, *targets: CacheRequest | str) -> int:
        """Delete the answers for these requests (or keys). Returns how many the store held."""
        keys = [t if isinstance(t, str) else self._key(t)[0] for t in targets]
        return await self._layers.delete(keys)

    async def invalidate_tags(self, *tags: str) -> int:
        """Delete every answer stored with any of these tags."""
        return await self._layers.delete(await self._layers.keys_for_tags(tags))

    # -- memoize -------------------------------------------------------------------------------

    def memoize(
        self,
        ttl: float | None = None,
        *,
        tags: Sequence[str] = (),
        category: str | None = None,
        name: str | None = None,
        retry: RetryPolicy = NO_RETRY,
    ) -> Callable[[F], F]:
        """Cache any async function whose arguments and result are JSON-serialisable.
        The function is called once per miss (``retry=RetryPolicy(...)`` to retry it)."""
        from ._memoize import memoize

        opts = CacheOptions(ttl=ttl, tags=tuple(tags), category=category)
        return memoize(self, opts, name, retry)


def _encoded(entry: Entry, shared: bool) -> tuple[bytes, int]:
    """The entry's bytes, with the memory its objects hold (for this L1, and stored for other
    processes' when ``shared``), measured once. Measured after a first encoding: orjson leaves
    a UTF-8 copy in every non-ASCII string it encodes (a 1,000-character Cyrillic string grows
    from 2,074 to 4,075 bytes), and those grown strings are what L1 holds. A miss with a shared
    store pays a second encoding, to carry the size."""
    raw = _codec.encode(entry)
    held = held_by(entry)
    return (_codec.encode(entry, held) if shared else raw), held
