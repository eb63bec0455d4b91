"""The ``asynccache`` command: a self-contained demo, and the two maintenance verbs operators need.

Why a CLI at all: the quickest honest answer to "what would this cache do for my traffic?" is to
run it against a realistic workload and print what it measured, with nothing to configure
(``asynccache demo``). ``clear`` and ``invalidate-tags`` exist because after a bad answer or a
product change someone has to purge the shared store from a shell, without writing Python.

Exit codes: 0 success, 2 usage error (argparse's own), 1 for a cache error (bad URL, store down),
reported as one line on stderr with no traceback: a traceback is for bugs, not for a typo in a URL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from importlib.metadata import version
from typing import Any

from ._cache import Cache
from ._exceptions import CacheError

__all__ = ["main"]

_LOOPS = ("auto", "uvloop", "asyncio")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asynccache",
        description="asyncio-native cache for LLM API calls: demo and maintenance commands.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run a support-bot workload through the cache against a local fake provider",
        description=(
            "Start a local OpenAI-compatible fake provider, send a Zipf-distributed support-bot "
            "workload through wrap_openai, and print what the cache measured; then repeat with a "
            "new Cache on the same store (cold L1, warm L2). Nothing leaves this machine."
        ),
    )
    demo.add_argument("--requests", type=_positive_int, default=3000, help="requests per pass")
    demo.add_argument("--concurrency", type=_positive_int, default=200, help="requests in flight")
    demo.add_argument("--latency-min", type=_non_negative_float, default=0.3, metavar="SECONDS")
    demo.add_argument("--latency-max", type=_non_negative_float, default=0.8, metavar="SECONDS")
    demo.add_argument("--seed", type=int, default=42, help="seed of the workload's randomness")
    demo.add_argument(
        "--url",
        default=None,
        help="cache URL to use instead of a temporary SQLite file (e.g. redis://127.0.0.1:6379/0)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress output, only the tables")
    demo.add_argument(
        "--loop", choices=_LOOPS, default="auto", help="event loop (auto: uvloop if installed)"
    )

    for name, help_text in (
        ("clear", "forget every cached answer in a namespace"),
        ("invalidate-tags", "delete every cached answer stored with any of the given tags"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--url", required=True, help="cache URL, e.g. redis://127.0.0.1:6379/0")
        cmd.add_argument(
            "--namespace", default="default", help="cache namespace (default: %(default)s)"
        )
        if name == "invalidate-tags":
            cmd.add_argument("tags", nargs="+", metavar="TAG")
    return parser


def _runner(choice: str) -> tuple[Callable[[Coroutine[Any, Any, Any]], Any], str]:
    """The function that runs a coroutine to completion, and a name for the report."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise CacheError(
                    "--loop uvloop: uvloop is not installed (pip install 'asynccache[uvloop]')"
                ) from None
        else:
            return uvloop.run, f"uvloop {version('uvloop')}"
    return asyncio.run, "asyncio (stdlib)"


async def _clear(url: str, namespace: str) -> str:
    cache = Cache.from_url(url, namespace=namespace)
    try:
        await cache.clear()
    finally:
        await cache.aclose()
    return f"cleared namespace {namespace!r}"


async def _invalidate(url: str, namespace: str, tags: Sequence[str]) -> str:
    cache = Cache.from_url(url, namespace=namespace)
    try:
        n = await cache.invalidate_tags(*tags)
    finally:
        await cache.aclose()
    return f"invalidated {n} entr{'y' if n == 1 else 'ies'} tagged {', '.join(tags)} in namespace {namespace!r}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``asynccache`` script; returns the process exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # usage error (2) or --help (0): return it, as main() promises
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "demo":
            from ._demo import DemoConfig, run_demo

            run, loop_name = _runner(args.loop)
            config = DemoConfig(
                requests=args.requests,
                concurrency=args.concurrency,
                latency_min=min(args.latency_min, args.latency_max),
                latency_max=max(args.latency_min, args.latency_max),
                seed=args.seed,
                url=args.url,
                quiet=args.quiet,
                loop_name=loop_name,
            )
            run(run_demo(config))
        elif args.command == "clear":
            print(asyncio.run(_clear(args.url, args.namespace)))
        elif args.command == "invalidate-tags":
            print(asyncio.run(_invalidate(args.url, args.namespace, args.tags)))
    except CacheError as exc:
        print(f"asynccache: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("asynccache: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
