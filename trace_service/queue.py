"""The writer's queue and its exact accounting: every submission ends written or dropped.

:class:`TraceQueue` is shared by the caller side (``TraceWriter``) and the background side
(``Worker``). Callers append without a lock (``deque.append`` is atomic); whoever takes items
out counts them in the same locked step; what never enters the queue is counted as *direct*.
So at every instant::

    submitted = direct + taken + len(queue)
    pending   = submitted - written - dropped - duplicates   (0 once everything settled)

``duplicates`` are items posted with an ``event_id`` that was already stored: neither written
(again) nor lost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from trace_service.sink import TraceItem, WriteResult


@dataclass(frozen=True)
class Tally:
    """The counters at one instant."""

    submitted: int
    written: int
    dropped_by_reason: dict[str, int]
    pending: int
    queue_depth: int
    unknown_severity: int
    last_error: str | None
    duplicates: int


class TraceQueue:
    """A bounded queue of trace items with exact, thread-safe outcome counting."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self._settled = threading.Condition(self.lock)
        self._items: deque[TraceItem] = deque()
        self._direct = 0
        self._taken = 0
        self._written = 0
        self._dropped: Counter[str] = Counter()
        self._duplicates = 0
        self._unknown_severity = 0
        self._errors_reported = 0
        self.last_error: str | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: TraceItem) -> bool:
        """Append without a lock; False when full (the caller counts the drop).

        The bound may be overshot by as many items as threads racing past the check at once.
        """
        items = self._items
        if len(items) >= self.size:
            return False
        items.append(item)
        return True

    def take(self, limit: int) -> list[TraceItem]:
        """Pop up to ``limit`` items, counted as taken in the same locked step."""
        items = self._items
        batch: list[TraceItem] = []
        with self.lock:
            while items and len(batch) < limit:
                batch.append(items.popleft())
            self._taken += len(batch)
        return batch

    def count_direct(self, reason: str | None = None, error: str | None = None) -> None:
        """Count a submission that never entered the queue (dropped for ``reason``, if given)."""
        with self.lock:
            self._direct += 1
            if reason is not None:
                self._dropped[reason] += 1
            if error is not None:
                self.last_error = error

    def settle(self, result: WriteResult) -> None:
        """Fold one write's outcome into the counters and wake whoever waits for a drain."""
        with self._settled:
            self._written += result.written
            self._duplicates += result.duplicates
            self._dropped.update(result.dropped)
            self._unknown_severity += result.unknown_severity
            if result.last_error:
                self.last_error = result.last_error
            self._settled.notify_all()

    def discard(self, reason: str) -> int:
        """Drop everything queued now, counted as ``reason``; returns how many."""
        batch = self.take(len(self._items) + 1)
        if batch:
            self.settle(WriteResult(dropped=Counter({reason: len(batch)})))
        return len(batch)

    def _pending_locked(self) -> int:
        submitted = self._direct + self._taken + len(self._items)
        return submitted - self._written - self._duplicates - sum(self._dropped.values())

    def wait_settled(self, timeout: float, poke: Callable[[], Any], poll: float) -> bool:
        """Wait until nothing is pending, calling ``poke`` (wake the worker) as it goes."""
        deadline = time.monotonic() + timeout
        poke()
        with self._settled:
            while self._pending_locked() > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(min(remaining, poll))
                poke()
        return True

    def new_errors(self, reasons: Iterable[str]) -> tuple[int, str | None]:
        """Drops for ``reasons`` since the last call, and the last error text (strict mode)."""
        with self.lock:
            lost = sum(self._dropped[r] for r in reasons)
            new = lost - self._errors_reported
            self._errors_reported = lost
            return new, self.last_error

    def tally(self, reasons: Iterable[str]) -> Tally:
        """A consistent snapshot, with a count for every one of ``reasons``."""
        with self.lock:
            return Tally(
                submitted=self._direct + self._taken + len(self._items),
                written=self._written,
                dropped_by_reason={reason: self._dropped[reason] for reason in reasons},
                pending=self._pending_locked(),
                queue_depth=len(self._items),
                unknown_severity=self._unknown_severity,
                last_error=self.last_error,
                duplicates=self._duplicates,
            )
