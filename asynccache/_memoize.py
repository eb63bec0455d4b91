"""``@cache.memoize``: the engine for any async function, not just SDK calls.

Batch jobs often cache their own steps (summaries, classifications). The arguments become the
key (bound to the signature, defaults applied, so ``f(1)`` and ``f(x=1)`` are one call), and the
result is stored as JSON. The result is normalised through JSON on the miss too, so a caller
sees the same types on a miss and on a hit (a tuple comes back as a list both times) — no
"works until it is cached" surprises. ``None`` is a valid, cached result, distinct from a miss.
Every caller gets its own copy of a container result, so mutating it is harmless.
The function is not retried unless ``retry=`` says so: the cache's retry policy is written for
LLM calls, and re-running an arbitrary function with side effects is not ours to decide.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import orjson

from ._exceptions import ConfigurationError, KeyBuildError
from ._models import CacheOptions, CacheRequest
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._cache import Cache

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def memoize(
    cache: Cache, options: CacheOptions, name: str | None, retry: RetryPolicy
) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"@memoize needs an async function; {fn!r} is not (wrap it with anyio.to_thread)"
            )
        qualname = name or f"{fn.__module__}.{fn.__qualname__}"
        signature = inspect.signature(fn)

        def request_for(args: tuple[Any, ...], kwargs: dict[str, Any]) -> CacheRequest:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            scoped = cache.current_options()
            opts = options if scoped.mode == "use" else _with_mode(options, scoped)
            return CacheRequest("memoize", qualname, {"args": bound.arguments}, options=opts)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = request_for(args, kwargs)

            async def call() -> Any:
                result = await fn(*args, **kwargs)
                try:
                    return orjson.loads(orjson.dumps(result))
                except TypeError as exc:
                    raise KeyBuildError(
                        f"{qualname} returned a {type(result).__name__}, which is not "
                        f"JSON-serialisable ({exc}); return plain JSON data to memoize it"
                    ) from exc

            return _fresh((await cache.get_or_fetch(request, call, retry=retry)).value)

        async def invalidate(*args: Any, **kwargs: Any) -> int:
            return await cache.invalidate(request_for(args, kwargs))

        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate


def _with_mode(options: CacheOptions, scoped: CacheOptions) -> CacheOptions:
    return CacheOptions(
        mode=scoped.mode, ttl=options.ttl, tags=options.tags, category=options.category
    )


def _fresh(value: Any) -> Any:
    """A private copy for this caller: the stored value is shared (L1, single-flight), and a
    caller appending to a returned list must not change what the next caller is served."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    return orjson.loads(orjson.dumps(value))
