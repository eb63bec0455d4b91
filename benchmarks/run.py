"""Side-by-side benchmark of asynccache against what a user could use instead (issue 4).

Why side by side, in one process: absolute figures on a shared VM move from run to run, but
rows measured in the same run on the same Redis with the same values and the same concurrency
can be compared. Ten workloads: key build, L1 hit, a hit through ``wrap_openai``, L2 hit, miss +
store, a 10,000-caller stampede, tasks / shield / wait_for per hit, a mixed Zipf load, loop
stalls while idle with 100,000 entries, and memory (see benchmarks/README.md for each).

Every workload runs first on stock asyncio for asynccache and every peer (this column is the
one the goals judge), then, when uvloop is installed, once more for asynccache alone under
uvloop (its own column). Figures are medians over ``--repeats`` runs; slow workloads use fewer.

Run from the repository root: ``python benchmarks/run.py`` (``make bench``). It starts its own
``redis-server`` on a free loopback port (no persistence) and stops it by PID at the end, and
FakeProviders on 127.0.0.1; nothing else is touched. Results go to stdout and
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from _context import Ctx, Sizes
from _goals import goals, relative_goals
from _hits import key_build, l1_hits, l2_hits, wrap_openai_hit
from _measure import Bench
from _misses import miss_store, stampede, zipf
from _peers import NOT_DRIVEN
from _report import Recorder, Results, environment, pkg, tables
from _runtime import counters, memory, stall

from asynccache.testing import RedisServer

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD_LIMIT = 300.0  # seconds: a workload that takes longer is cut off and reported

Workload = Callable[[Ctx], Awaitable[None]]
#: (number, what, workload). The wrap_openai workload runs first because it fetches the value
#: every other workload stores; tables are printed in workload-number order regardless.
LIGHT: list[tuple[int, str, Workload]] = [
    (3, "wrap_openai hit vs direct SDK call", wrap_openai_hit),
    (1, "key build", key_build),
    (2, "L1 hits", l1_hits),
    (4, "L2 (Redis) hits", l2_hits),
    (5, "miss + store", miss_store),
    (6, "concurrent identical misses", stampede),
    (7, "tasks / shield / wait_for counts", counters),
    (8, "mixed Zipf workload", zipf),
]
#: Workloads that fill 100,000 entries per library. They run after every light workload of
#: both loops: the heap they leave behind (arenas, GC generations) measurably slowed the
#: microsecond workloads that ran after them.
HEAVY: list[tuple[int, str, Workload]] = [
    (9, "loop stall while idle", stall),
    (10, "memory", memory),
]


def step(what: str) -> None:
    print(f"benchmarking: {what} ...", file=sys.stderr, flush=True)


@dataclass
class Plan:
    sizes: Sizes
    repeats: int
    port: int
    only: set[int] | None
    value: Any = None  # the stored value, fetched by workload 3 in the first pass
    redis_version: str = "?"


async def run_pass(rec: Recorder, plan: Plan, workloads: list[tuple[int, str, Workload]]) -> None:
    """One pass over ``workloads`` on the running loop."""
    loop_name = "uvloop" if rec.uvloop else "asyncio"
    ctx = Ctx(
        bench=Bench(plan.repeats),
        sizes=plan.sizes,
        rec=rec,
        redis_url=f"redis://127.0.0.1:{plan.port}/0",
        redis_port=plan.port,
        value=plan.value,
        namespace=f"bench-{loop_name}",
    )
    for number, what, workload in workloads:
        if plan.only is not None and number not in plan.only and number != 3:
            continue  # workload 3 always runs: it provides the stored value
        step(f"{number}. {what} ({loop_name})")
        started = time.perf_counter()
        try:
            await asyncio.wait_for(workload(ctx), WORKLOAD_LIMIT)
        except asyncio.TimeoutError:
            rec.note(f"workload {number} ({loop_name}) cut off after {WORKLOAD_LIMIT:.0f} s.")
        print(f"  {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    plan.value = ctx.value
    client = aioredis.Redis(host="127.0.0.1", port=plan.port)
    try:
        plan.redis_version = str((await client.info("server")).get("redis_version", "?"))
    finally:
        await client.aclose()


NOTES = """\
How to read it: "ratio" is how many times better asynccache is than that peer (peer time ÷
asynccache time, or asynccache rate ÷ peer rate; for counts and bytes, peer ÷ asynccache): above
1 asynccache is better, below 1 it is worse. The asynccache column is stock asyncio (the column
the goals judge); the uvloop column is asynccache alone, run again under uvloop in the same
process. Peers are measured on stock asyncio only.

Fairness: every library stores the same value (the FakeProvider's ChatCompletion JSON for the
~1.5 KB benchmark request; 2 KB answers in the memory workload), runs at the same concurrency
(asyncio tasks on one loop, each asking its own key unless the workload says otherwise) against
the same Redis. Peer calls include building their key from the request with
`json.dumps(sort_keys=True)` + SHA-256, as a generic cache needs some key for a chat request;
asynccache's include its own key build, lookup, integrity check and provenance. Its key build
in the hit workloads is for requests it has seen: the xxh3 of the body's orjson finds the
digest it remembered; workload 1 also times a first sight, which adds the policy check and
the key rules. Raw redis-py GET (precomputed key, no decoding) is the floor of a Redis round
trip, not a like-for-like cache; nor are issue 4's anchors (the orjson + xxh3 key alone, a dict
behind an `async def`, one hand-packed MGET per loop tick), which build the floor's key and keep
no rules: they are what the goals were set against. Peers are configured as their docs show (default serializers
and timeouts); cashews `mem://` gets the same capacity as asynccache's L1 (its default is 1,000
entries). Each figure is the median over the repeats (the stampede and Zipf workloads use at
most 3; the stall, the median of 3 idle windows; the memory workload runs once).
"""

#: Over the relative goal lines (why they exist: ``_goals.relative_goals``).
RELATIVE_HEAD = """\
Relative to the issue's anchors, measured in this run: each goal above that the issue set
against an anchor, as the issue's own ratio (goal ÷ anchor) to that anchor here. The lines
above stay the goals; these judge the code apart from this machine's speed."""


def render(
    results: Results, args: argparse.Namespace, env: list[str], with_uvloop: bool, sizes: Sizes
) -> str:
    lines = [*env, "", "## Goals (stock asyncio)", "", "```"]
    lines += [g.text() for g in goals(results, sizes)]
    lines += ["", *RELATIVE_HEAD.splitlines(), ""]
    lines += [g.text() for g in relative_goals(results)]
    lines += ["```", "", "## Workloads", ""]
    lines += tables(results, with_uvloop)
    notes = [*results.notes, *(f"{name}: {why}" for name, why in NOT_DRIVEN.items())]
    if pkg("langchain-core") == "not installed":
        notes.append("LangChain InMemoryCache: not installed (pip install langchain-core).")
    lines += ["## Notes", "", *(f"- {note}" for note in notes), "", NOTES]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement (median)")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio"),
        default="auto",
        help="auto: add a uvloop column when uvloop is installed; asyncio: stock asyncio only",
    )
    parser.add_argument(
        "--output",
        default=str(ROOT / "docs" / "benchmarks.md"),
        help="markdown file to write ('-' for stdout only)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--only", default="", help="comma-separated workload numbers to run (default: all)"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    only = {int(x) for x in args.only.split(",") if x.strip()} or None
    sizes = Sizes().quick() if args.quick else Sizes()

    uv_run: Callable[[Coroutine[Any, Any, None]], None] | None = None
    if args.loop == "auto":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uv_run = uvloop.run
    loops = [f"asyncio (stdlib, {sys.version.split()[0]})"]
    if uv_run is not None:
        loops.append(f"uvloop {pkg('uvloop')} (asynccache only, second column)")

    started = time.perf_counter()
    results = Results()
    with RedisServer() as server:
        plan = Plan(sizes, args.repeats, server.port, only)
        for workloads in (LIGHT, HEAVY):
            asyncio.run(run_pass(Recorder(results), plan, workloads))
            if uv_run is not None:
                uv_run(run_pass(Recorder(results, uvloop=True), plan, workloads))
    elapsed = time.perf_counter() - started

    env = environment(plan.redis_version, loops)
    env.append(
        f"- medians over {args.repeats} repeats{' (--quick counts)' if args.quick else ''}; "
        f"the run took {elapsed:.0f} s"
    )
    report = render(results, args, env, uv_run is not None, sizes)
    print(report)
    if args.output != "-":
        command = "python benchmarks/run.py" + "".join(f" {a}" for a in sys.argv[1:])
        doc = (
            "# Benchmarks\n\n"
            f"Generated by `{command}` on {dt.date.today().isoformat()}; rerun it (or "
            "`make bench`) to check on your machine. Loopback round trips on a shared 2-CPU VM "
            "are noisy: compare rows within one run, not across runs. What each workload "
            "does and why: [benchmarks/README.md](../benchmarks/README.md).\n\n"
            f"{report}"
        )
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(doc)
        print(f"written to {os.path.relpath(args.output)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
