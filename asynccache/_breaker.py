"""A circuit breaker for the shared store, so a dead Redis costs one timeout, not one per request.

Pure state over an injectable clock. Closed: every call goes through. After ``threshold``
consecutive failures it opens: calls are refused for ``cooldown`` seconds (the request goes
upstream at once). Then one probe is let through (half-open); its success closes the breaker,
its failure re-opens it for another cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    __slots__ = ("_clock", "_failures", "_open_until", "cooldown", "opened", "threshold")

    def __init__(
        self, threshold: int = 3, cooldown: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self.opened = 0  # how many times it has opened, for stats

    @property
    def is_open(self) -> bool:
        return self._failures >= self.threshold

    def allow(self) -> bool:
        if self._failures < self.threshold:
            return True
        now = self._clock()
        if now < self._open_until:
            return False
        # Half-open: let this one probe through and hold the others back for another cooldown,
        # so a probe that never reports back (its caller was cancelled) cannot wedge the breaker.
        self._open_until = now + self.cooldown
        return True

    def success(self) -> None:
        self._failures = 0

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self.threshold:
            if self._failures == self.threshold:
                self.opened += 1
            self._open_until = self._clock() + self.cooldown
