"""Upstream retries: tenacity, transient errors only, backoff with jitter, Retry-After honoured.

The cache owns retries (DESIGN.md, "Failure"): wrapped clients make their calls with the SDK's
own ``max_retries=0`` so attempts never multiply (3 SDK retries x 3 cache retries = 9 calls
hitting a provider that is already rate-limiting us).

Classification is duck-typed so the core imports no SDK: an error with a ``status_code`` of
408, 409, 429 or >= 500 is transient (the set both official SDKs retry), as are timeouts and
connection errors. 4xx client errors are not: retrying them cannot help.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ._exceptions import ConfigurationError

T = TypeVar("T")

_TRANSIENT_STATUS = frozenset({408, 409, 429})
_TRANSIENT_NAMES = frozenset(
    {
        "APIConnectionError",
        "APITimeoutError",
        "TimeoutException",
        "NetworkError",
        "RemoteProtocolError",
    }
)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: rate limits, server errors, timeouts, dropped connections."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in _TRANSIENT_STATUS or status >= 500
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def retry_after(exc: BaseException | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the provider asked us to wait (``retry-after-ms`` / ``retry-after``), if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded, jittered retries of the upstream call.

    ``attempts`` counts the first call. Waits grow exponentially from ``initial`` up to
    ``maximum`` with full jitter (AWS architecture blog, "Exponential Backoff And Jitter"),
    except when the provider sends Retry-After, which wins up to ``max_retry_after``.
    """

    attempts: int = 3
    initial: float = 0.5
    maximum: float = 8.0
    max_retry_after: float = 30.0
    classify: Callable[[BaseException], bool] = is_transient

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigurationError("RetryPolicy.attempts must be >= 1 (1 means no retry)")
        for name in ("initial", "maximum", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ConfigurationError(
                    f"RetryPolicy.{name}={value!r} must be a finite number >= 0"
                )

    def backoff(self, failures: int, exc: BaseException | None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt: the provider's Retry-After
        if it sent one, else full jitter over ``initial * 2**(failures - 1)``, capped."""
        asked = retry_after(exc)
        if asked is not None:
            return min(asked, self.max_retry_after)
        doubling = 2.0 ** min(failures - 1, 64)  # capped: past ~1,000 it overflows a float
        return random.uniform(0, min(self.maximum, self.initial * doubling))

    async def call(
        self, fn: Callable[[], Awaitable[T]], on_retry: Callable[[BaseException], Any] | None = None
    ) -> T:
        """Run ``fn`` with retries; the last error propagates unchanged.

        The first attempt runs bare: nearly every call succeeds at once, and building
        tenacity's retry state for it cost more than the rest of a miss (about 20 us). Only a
        transient failure hands the remaining attempts to tenacity."""
        try:
            return await fn()
        except Exception as exc:
            if self.attempts == 1 or not self.classify(exc):
                raise
            first = exc
        if on_retry is not None:
            on_retry(first)
        await asyncio.sleep(self.backoff(1, first))

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    on_retry(exc)

        def wait(state: RetryCallState) -> float:  # tenacity's attempt k is our attempt k + 1
            exc = state.outcome.exception() if state.outcome is not None else None
            return self.backoff(state.attempt_number + 1, exc)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts - 1),
            wait=wait,
            retry=retry_if_exception(self.classify),
            reraise=True,
            before_sleep=before_sleep,
        )
        return await retrying(fn)


NO_RETRY = RetryPolicy(attempts=1)
