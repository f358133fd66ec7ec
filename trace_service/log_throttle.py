"""A logger wrapper that says each kind of message at most once per interval.

A dead database makes every batch fail; without this the writer would write a log line per
batch. Each message key is logged at most once per ``interval`` seconds; the next line that
gets through says how many were suppressed in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class ThrottledLogger:
    """Log through ``logger``, at most once per ``interval`` seconds per key."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged within the interval; True if logged."""
        now = self._clock()
        with self._lock:
            last, suppressed = self._seen.get(key, (float("-inf"), 0))
            if now - last < self.interval:
                self._seen[key] = (last, suppressed + 1)
                return False
            self._seen[key] = (now, 0)
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        self.logger.log(level, message, *args)
        return True
