"""``asynccache demo``: a support-bot workload through the real stack, and what the cache measured.

Why the real stack: a demo that times a dict lookup says nothing about an LLM cache. This one
starts :class:`~asynccache.testing.FakeProvider` (an OpenAI-compatible HTTP server on loopback
with provider-like latency), wraps a real ``openai.AsyncOpenAI`` with :func:`wrap_openai`, and
sends a Zipf-skewed workload with bursts (see ``_demo_workload``), many requests in flight. The
table it prints is built only from this run: counts and savings from ``cache.stats()``,
latencies from ``time.perf_counter()`` around each call, classified by ``cache_status()``.

Why two passes: the first starts cold and shows single-flight and L1; the second opens a *new*
Cache on the same store, as a restarted process or a second replica would, so L1 is cold but the
shared store (L2) is warm, and every answer comes from L2 first, then L1.

Nothing here logs or prints prompts, apart from a sample question or two in the header.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio

from ._cache import Cache
from ._demo_workload import SYSTEM_PROMPT, Question, Workload, build_workload, support_answer
from ._models import CacheOptions
from ._policy import DEFAULT_CATEGORY_TTLS, CachePolicy
from ._stats import CacheStats
from .integrations import wrap_openai
from .integrations._common import cache_status

__all__ = ["DemoConfig", "PassResult", "run_demo"]

MODEL = "gpt-4o-mini"
#: Answers written to a store the user named (``--url``) expire after this; the temporary SQLite
#: file is deleted anyway.
USER_STORE_TTL = 900.0


@dataclass(frozen=True, slots=True)
class DemoConfig:
    requests: int = 3000
    concurrency: int = 200
    latency_min: float = 0.3
    latency_max: float = 0.8
    seed: int = 42
    url: str | None = None
    quiet: bool = False
    loop_name: str = "asyncio"


@dataclass(slots=True)
class PassResult:
    """One pass: the cache's own counters plus what the driver measured around each call."""

    title: str
    stats: CacheStats
    wall: float
    provider_calls: int
    latencies: dict[str, list[float]] = field(default_factory=dict)  # class -> seconds
    errors: dict[str, int] = field(default_factory=dict)  # exception type -> count


# --- progress -----------------------------------------------------------------------------------


class _Progress:
    """A one-line ``\\r`` bar on a terminal, a few milestone lines elsewhere, nothing if quiet."""

    def __init__(self, label: str, total: int, stream: TextIO | None) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self.tty = stream is not None and stream.isatty()
        self.started = time.perf_counter()
        self._next_draw = 0.0
        self._milestone = 0

    def update(self, done: int, upstream: Callable[[], int]) -> None:
        if self.stream is None:
            return
        now = time.perf_counter()
        if self.tty:
            if now >= self._next_draw or done == self.total:
                self._next_draw = now + 0.1
                width = 30
                filled = width * done // self.total
                bar = "#" * filled + "-" * (width - filled)
                self.stream.write(
                    f"\r{self.label} [{bar}] {done:>6,}/{self.total:,} "
                    f"upstream {upstream():>5,}  {now - self.started:5.1f} s"
                )
                if done == self.total:
                    self.stream.write("\n")
                self.stream.flush()
            return
        quarter = 4 * done // self.total
        if quarter > self._milestone:
            self._milestone = quarter
            self.stream.write(
                f"{self.label}: {done:,}/{self.total:,} requests ({25 * quarter}%), "
                f"{upstream():,} upstream calls, {now - self.started:.1f} s\n"
            )
            self.stream.flush()


# --- one pass -----------------------------------------------------------------------------------


async def _run_pass(
    title: str,
    cache: Cache,
    openai_client: Any,
    workload: Workload,
    config: DemoConfig,
    provider_calls: Callable[[], int],
) -> PassResult:
    client = wrap_openai(openai_client, cache)
    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    slots = anyio.Semaphore(config.concurrency)
    label = title.split(":", 1)[0]
    progress = _Progress(label, workload.requests, None if config.quiet else sys.stderr)
    calls_before = provider_calls()
    done = 0

    def upstream() -> int:
        return cache.stats().upstream_calls

    async def ask(question: Question, holds_slot: bool) -> None:
        nonlocal done
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": question.text},
        ]
        options = CacheOptions(category=question.category, tags=question.tags)
        started = time.perf_counter()
        try:
            response = await client.chat.completions.create(
                model=MODEL,
                messages=messages,
                temperature=0,
                max_tokens=400,
                cache_options=options,
            )
        except Exception as exc:  # counted and shown, never hidden: the table must add up
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        else:
            elapsed = time.perf_counter() - started
            status = cache_status(response)
            if status is None:
                kind = "untagged"
            elif status.outcome == "hit":
                kind = f"hit {status.layer}"
            else:
                kind = status.outcome
            latencies.setdefault(kind, []).append(elapsed)
        finally:
            if holds_slot:
                slots.release()
            done += 1
            progress.update(done, upstream)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for group in workload.groups:
            # A burst takes as many slots as it has users (at most all of them), all at once,
            # so its requests start in the same loop iteration: they really are simultaneous.
            held = min(len(group), config.concurrency)
            for _ in range(held):
                await slots.acquire()
            for i, question in enumerate(group):
                tg.start_soon(ask, question, i < held)
    wall = time.perf_counter() - started
    return PassResult(
        title=title,
        stats=cache.stats(),
        wall=wall,
        provider_calls=provider_calls() - calls_before,
        latencies=latencies,
        errors=errors,
    )


# --- the table ----------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every number shown was measured)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.0f} ms"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def format_pass(result: PassResult) -> str:
    s = result.stats
    cacheable = s.hits + s.coalesced + s.misses
    rows: list[tuple[str, str]] = [
        ("requests", f"{s.requests:,}"),
        (
            "upstream calls",
            f"{s.upstream_calls:,}  ({_share(s.upstream_calls, s.requests)} of requests; "
            f"FakeProvider received {result.provider_calls:,})",
        ),
        ("hit rate", f"{100 * s.hit_rate:.1f}%  (answered without an upstream call of their own)"),
        ("  l1 hits (memory)", f"{s.hits_l1:,}  ({_share(s.hits_l1, cacheable)})"),
        ("  l2 hits (shared store)", f"{s.hits_l2:,}  ({_share(s.hits_l2, cacheable)})"),
        ("  coalesced (single-flight)", f"{s.coalesced:,}  ({_share(s.coalesced, cacheable)})"),
        ("  misses", f"{s.misses:,}  ({_share(s.misses, cacheable)})"),
    ]
    if s.bypassed:
        rows.append(("  bypassed", f"{s.bypassed:,}"))
    if s.by_category:
        cats = ", ".join(
            f"{name} {100 * c.hit_rate:.0f}%" for name, c in sorted(s.by_category.items())
        )
        rows.append(("hit rate by category", cats))
    rows.append(("latency p50 / p95", "(measured under load: queueing on one event loop included)"))
    for kind, label in (
        ("hit l1", "l1 hits"),
        ("hit l2", "l2 hits"),
        ("coalesced", "coalesced"),
        ("miss", "misses"),
        ("bypass", "bypassed"),
        ("untagged", "untagged"),
    ):
        values = result.latencies.get(kind)
        if values:
            rows.append(
                (
                    f"  {label}",
                    f"{_ms(_pct(values, 50))} / {_ms(_pct(values, 95))}  (n={len(values):,})",
                )
            )
    rows += [
        (
            "tokens saved",
            f"{s.tokens_saved:,}  (input {s.input_tokens_saved:,}, output {s.output_tokens_saved:,})",
        ),
        ("dollars saved", f"${s.usd_saved:,.4f}  ({MODEL} list prices)"),
        ("wall time", f"{result.wall:.2f} s"),
    ]

    if s.backend_errors or s.integrity_errors or s.store_refused:
        rows.append(
            (
                "store problems",
                f"backend errors {s.backend_errors}, integrity errors {s.integrity_errors}, "
                f"answers not stored {s.store_refused}",
            )
        )
    if result.errors:
        rows.append(
            ("request errors", ", ".join(f"{k} x{v}" for k, v in sorted(result.errors.items())))
        )
    width = max(len(label) for label, _ in rows) + 2
    lines = [result.title, "-" * len(result.title)]
    lines += [f"  {label:<{width}}{value}".rstrip() for label, value in rows]
    return "\n".join(lines)


def _header(config: DemoConfig, workload: Workload, store: str, port: int) -> str:
    latency = (
        f"{config.latency_min:.2f} s"
        if config.latency_min == config.latency_max
        else f"{config.latency_min:.2f}-{config.latency_max:.2f} s (uniform)"
    )
    texts = [q.text for g in workload.groups for q in g]
    top = max(set(texts), key=texts.count)
    burst = next((g[0].text for g in workload.groups if len(g) > 1), None)
    rows = [
        (
            "workload",
            f"{workload.requests:,} support-bot questions, {workload.distinct} distinct "
            f"(Zipf s={workload.zipf_s}, seed {config.seed}), "
            f"{workload.bursts} burst{'' if workload.bursts == 1 else 's'} of "
            f"{workload.burst_size} users asking at once",
        ),
        ("request", f"{MODEL}, temperature=0, system prompt + one user question"),
        ("upstream", f"FakeProvider on 127.0.0.1:{port}, latency {latency}"),
        ("cache", store),
        ("in flight", f"up to {config.concurrency} requests"),
        ("event loop", config.loop_name),
        ("most asked", f"{top!r} ({texts.count(top):,} times)"),
    ]
    if burst is not None:
        rows.append(("burst example", repr(burst)))
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(["asynccache demo", *(f"  {k:<{width}}{v}" for k, v in rows)])


# --- driver -------------------------------------------------------------------------------------


def _open(url: str, namespace: str, policy: CachePolicy) -> Cache:
    return Cache.from_url(url, namespace=namespace, policy=policy)


async def run_demo(config: DemoConfig) -> list[PassResult]:
    """Run both passes and print their tables to stdout; returns the results."""
    import openai

    from .testing import FakeProvider

    workload = build_workload(config.requests, seed=config.seed)
    with tempfile.TemporaryDirectory(prefix="asynccache-demo-") as tmp:
        if config.url is None:
            path = os.path.join(tmp, "demo.db")
            url, namespace, policy = f"sqlite:///{path}", "demo", CachePolicy()
            store = f"L1 (in-process memory) + SQLite file {path} (temporary)"
        elif config.url.startswith("memory://"):
            url, namespace, policy = config.url, "demo", CachePolicy()
            store = "memory:// (L1 only, in this process)"
        else:
            # A store the user named may already hold answers: a fresh namespace keeps the run
            # honest (pass 1 really starts cold), and short TTLs let our entries age out.
            url, namespace = config.url, f"demo-{secrets.token_hex(4)}"
            ttls = {name: USER_STORE_TTL for name in DEFAULT_CATEGORY_TTLS}
            policy = CachePolicy(default_ttl=USER_STORE_TTL, category_ttls=ttls)
            store = f"{url}, namespace {namespace!r} (entries expire after {USER_STORE_TTL:.0f} s)"
        first = _open(url, namespace, policy)  # before the server: a bad URL fails fast
        latency: float | tuple[float, float] = (
            config.latency_min
            if config.latency_min == config.latency_max
            else (config.latency_min, config.latency_max)
        )
        results: list[PassResult] = []
        try:
            async with FakeProvider(latency=latency, seed=config.seed, answer=support_answer) as fp:
                oai = openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="demo")
                try:
                    print(_header(config, workload, store, fp.port), flush=True)
                    results.append(
                        await _run_pass(
                            "pass 1: cold cache",
                            first,
                            oai,
                            workload,
                            config,
                            lambda: fp.calls,
                        )
                    )
                    await first.aclose()
                    print("\n" + format_pass(results[0]), flush=True)
                    if first.backend is None:
                        print(
                            "\npass 2 skipped: memory:// keeps answers inside one Cache object; "
                            "use a SQLite or Redis URL to see a warm shared store.",
                            flush=True,
                        )
                        return results
                    second = _open(url, namespace, policy)
                    try:
                        results.append(
                            await _run_pass(
                                "pass 2: new Cache on the same store (cold L1, warm L2)",
                                second,
                                oai,
                                workload,
                                config,
                                lambda: fp.calls,
                            )
                        )
                    finally:
                        await second.aclose()
                    print("\n" + format_pass(results[1]), flush=True)
                finally:
                    await oai.close()
        finally:
            await first.aclose()
    return results
