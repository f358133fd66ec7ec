"""The writer's queue, what passes through it, and its exact accounting: every submission ends
written or dropped.

Here because every side of the hand-off uses them: the caller's side (``TraceWriter``) makes a
:class:`TraceItem` and puts it in the :class:`TraceQueue`; the background side (``Worker``) takes
batches and hands them to a :class:`Sink`, whose :class:`WriteResult` counts each item as written,
a duplicate, or dropped for one :class:`DropReason`.

:class:`TraceQueue` is shared by the caller side (``TraceWriter``) and the background side
(``Worker``). Callers append without a lock (``deque.append`` is atomic); whoever takes items
out counts them in the same locked step; what never enters the queue is counted as *direct*.
So at every instant::

    submitted = direct + taken + len(queue)
    pending   = submitted - written - dropped - duplicates - discarded   (0 once all settled)

``duplicates`` are items posted with an ``event_id`` that was already stored: neither written
(again) nor lost. ``discarded`` are records deliberately not stored (sampled out, telemetry
switched off; :class:`DiscardReason`), decided before they reach the queue: not lost either.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from trace_service.php_json import EncodedMetadata, Frozen


class DropReason(StrEnum):
    """Why a submitted trace was not written. Every loss is counted under exactly one of these
    (in ``stats()``, ``/metrics``, the persisted counters and the reports), in this order."""

    QUEUE_FULL = "queue_full"  # load: the bounded queue was full
    DB_ERROR = "db_error"  # the database refused the batch or could not be reached
    # The connection was lost after the batch was sent (MySQL client error 2013, e.g. a read
    # timeout while the server committed): the rows may or may not be stored. Never retried.
    UNCONFIRMED = "unconfirmed"
    INVALID = "invalid"  # a record() argument or a value the server refuses
    MASKING_ERROR = "masking_error"  # masking failed: dropped, never stored unmasked
    GUARD_BLOCKED = "guard_blocked"  # the audit_logs guard refused the statement
    CIRCUIT_OPEN = "circuit_open"  # the breaker is open: the database is down
    NO_THREAD = "no_thread"  # the writer thread could not be started (the thread limit)
    SHUTDOWN = "shutdown"  # queued when the writer closed and not written in time
    INTERNAL_ERROR = "internal_error"  # a bug: counted, never left pending

    @property
    def is_error(self) -> bool:
        """A drop that means something is wrong (not load, an outage being ridden out, or a
        shutdown): strict mode raises on these."""
        return self in _ERRORS


_ERRORS = frozenset({DropReason.DB_ERROR, DropReason.UNCONFIRMED, DropReason.INVALID,
                     DropReason.MASKING_ERROR, DropReason.GUARD_BLOCKED, DropReason.NO_THREAD,
                     DropReason.INTERNAL_ERROR})


class DiscardReason(StrEnum):
    """Why a trace was deliberately not stored. Not a loss: counted apart from the drops (in
    ``stats()``, ``/metrics``, the persisted counters and the reports), so nobody mistakes
    sampled volume for real volume, nor a switch turned off for an outage."""

    SAMPLED_OUT = "sampled_out"  # the sampling policy kept another share of this event key
    DISABLED = "disabled"  # telemetry is switched off (TRACE_ENABLED=0 or the kill-switch file)
    OPTED_OUT = "opted_out"  # its actor or an email hash in it opted out (trace_service.opt_outs)


# Distinct event keys counted one by one under ``sampled_out``; the rest share OTHER_KEYS, so
# a caller minting keys cannot grow the counters (or /metrics' label values) without bound.
MAX_SAMPLED_KEYS = 200
OTHER_KEYS = "(other)"


class TraceItem(NamedTuple):
    """One accepted ``record()`` call, as it waits in the queue (immutable, values frozen)."""

    event_key: str
    severity: object
    actor_admin_id: int | None
    ip_address: str | None
    user_agent: str | None
    route_name: str | None
    request_id: str | None
    # A php_json.snapshot(), or (the durable path) the masked, encoded text.
    metadata: bytes | Frozen | EncodedMetadata
    when: int | datetime  # epoch nanoseconds, or the caller's occurred_at
    event_id: str | None = None  # canonical UUID text: stored at most once within the window


@dataclass
class WriteResult:
    """What one :meth:`Sink.write` call did; every item is counted exactly once."""

    written: int = 0
    dropped: Counter[DropReason] = field(default_factory=Counter)
    # Items whose event_id was already stored: neither written nor lost.
    duplicates: int = 0
    # Items kept out on purpose (opted out): neither written nor lost.
    discarded: Counter[DiscardReason] = field(default_factory=Counter)
    unknown_severity: int = 0
    # Set when the database could not take writes at all: the breaker counts a failure.
    unavailable: bool = False
    last_error: str | None = None

    def drop(self, reason: DropReason, count: int, error: str) -> None:
        """Count ``count`` items dropped for ``reason``, remembering the error text."""
        self.dropped[reason] += count
        self.last_error = error


class Sink(Protocol):
    """Where the worker writes batches: :class:`~trace_service.sink.TraceSink` (the live table)
    or :class:`~trace_service.memory_sink.MemorySink` (memory, for tests)."""

    def write(self, items: list[TraceItem]) -> WriteResult:
        """Store ``items``; never raises: every item is counted once in the result, and
        ``unavailable`` tells the circuit breaker that the store cannot take writes."""

    def probe(self) -> None:
        """Return when the store can take writes again; raise
        :class:`~trace_service.errors.SinkUnavailable` (or anything) when it cannot."""


@dataclass(frozen=True)
class Tally:
    """The counters at one instant."""

    submitted: int
    written: int
    dropped_by_reason: dict[str, int]  # every DropReason by its value, in the enum's order
    pending: int
    queue_depth: int
    unknown_severity: int
    last_error: str | None
    duplicates: int
    discarded_by_reason: dict[str, int]  # every DiscardReason by its value: not losses
    sampled_out_by_key: dict[str, int]  # event key (at most MAX_SAMPLED_KEYS, then OTHER_KEYS)


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
        self._dropped: Counter[DropReason] = Counter()
        self._duplicates = 0
        self._discarded: Counter[DiscardReason] = Counter()
        self._sampled_out: Counter[str] = Counter()
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

    def count_direct(self, reason: DropReason | None = None, error: str | None = None) -> None:
        """Count a submission that never entered the queue (dropped for ``reason``, if given)."""
        with self.lock:
            self._direct += 1
            if reason is not None:
                self._dropped[reason] += 1
            if error is not None:
                self.last_error = error

    def count_discarded(self, reason: DiscardReason, event_key: str) -> None:
        """Count a submission deliberately not stored (never queued): not a loss."""
        with self.lock:
            self._direct += 1
            self._discarded[reason] += 1
            if reason is DiscardReason.SAMPLED_OUT:
                sampled = self._sampled_out
                sampled[event_key if event_key in sampled or len(sampled) < MAX_SAMPLED_KEYS
                        else OTHER_KEYS] += 1

    def settle(self, result: WriteResult) -> None:
        """Fold one write's outcome into the counters and wake whoever waits for a drain."""
        with self._settled:
            self._written += result.written
            self._duplicates += result.duplicates
            self._discarded.update(result.discarded)
            # DropReason(...): a sink of someone else's may count under the plain strings.
            self._dropped.update({DropReason(reason): count for reason, count in result.dropped.items()})
            self._unknown_severity += result.unknown_severity
            if result.last_error:
                self.last_error = result.last_error
            self._settled.notify_all()

    def discard(self, reason: DropReason) -> int:
        """Drop everything queued now, counted as ``reason``; returns how many."""
        batch = self.take(len(self._items) + 1)
        if batch:
            self.settle(WriteResult(dropped=Counter({reason: len(batch)})))
        return len(batch)

    def _pending_locked(self) -> int:
        submitted = self._direct + self._taken + len(self._items)
        return (submitted - self._written - self._duplicates - sum(self._dropped.values())
                - sum(self._discarded.values()))

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

    def new_errors(self) -> tuple[int, str | None]:
        """Error drops (:attr:`DropReason.is_error`) since the last call, and the last error text
        (strict mode)."""
        with self.lock:
            lost = sum(count for reason, count in self._dropped.items() if reason.is_error)
            new = lost - self._errors_reported
            self._errors_reported = lost
            return new, self.last_error

    def tally(self) -> Tally:
        """A consistent snapshot, with a count for every :class:`DropReason`."""
        with self.lock:
            return Tally(
                submitted=self._direct + self._taken + len(self._items),
                written=self._written,
                dropped_by_reason={reason.value: self._dropped[reason] for reason in DropReason},
                pending=self._pending_locked(),
                queue_depth=len(self._items),
                unknown_severity=self._unknown_severity,
                last_error=self.last_error,
                duplicates=self._duplicates,
                discarded_by_reason={reason.value: self._discarded[reason] for reason in DiscardReason},
                sampled_out_by_key=dict(self._sampled_out),
            )
