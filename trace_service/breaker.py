"""A circuit breaker that stops the writer hammering a dead database.

Pure: every method that needs the time takes ``now`` (a monotonic reading), so tests drive it
without sleeping. Closed: writes go through. After ``threshold`` consecutive failures it opens
for a delay that doubles on every re-open (``base_delay`` up to ``max_delay``, with jitter so a
fleet of writers does not retry in step). When the delay is over the owner probes once
(half-open): success closes it, failure re-opens it with the next delay.
"""

from __future__ import annotations

import random
from collections.abc import Callable

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure breaker with exponential, jittered backoff."""

    def __init__(
        self,
        threshold: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 5.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.threshold = threshold
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._jitter = jitter
        self.state = CLOSED
        self.failures = 0
        self.opens = 0
        self.retry_at = 0.0

    def record_success(self) -> None:
        """A write or probe succeeded: close and forget the backoff."""
        self.state = CLOSED
        self.failures = 0
        self.opens = 0

    def record_failure(self, now: float) -> bool:
        """A write or probe failed; returns True when this failure opened the breaker."""
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            self.opens += 1
            delay = min(self.max_delay, self.base_delay * 2 ** (self.opens - 1))
            # Between 50% and 100% of the delay: spreads retries, never waits longer than max.
            self.retry_at = now + delay * (0.5 + 0.5 * self._jitter())
            opened = self.state != OPEN
            self.state = OPEN
            return opened
        return False

    def try_half_open(self, now: float) -> bool:
        """If the open delay is over, move to half-open and return True: the owner probes now."""
        if self.state == OPEN and now >= self.retry_at:
            self.state = HALF_OPEN
            return True
        return False
