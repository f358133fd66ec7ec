"""The best-effort trace writer that backend apps call on hot paths.

::

    writer = TraceWriter.from_config(Config.from_env())
    writer.record("auth.login.attempt", severity="info", actor_admin_id=7,
                  metadata={"target_id": 3}, route_name="admins.list")   # -> bool, never raises
    writer.flush(timeout=2.0); writer.close(timeout=2.0); writer.stats()

Promises (``design.md``, "Writer library"):

* **Never raises, never blocks.** ``record()`` catches ``Exception`` (``KeyboardInterrupt`` and
  ``SystemExit`` pass). In ``thread`` mode it validates, freezes the metadata and appends to a
  bounded deque; a daemon thread writes multi-row INSERTs on the writer's own engine, so a
  caller's rollback never removes traces. ``inline`` mode writes synchronously (scripts), and
  swallows as well.
* **Loss is data.** Every call is counted once: written, or dropped by reason (:data:`REASONS`).
  ``written + dropped + pending == submitted`` at every instant, and ``pending`` is 0 after
  ``flush()`` returns True. ``unconfirmed`` rows were sent but their commit was never
  acknowledged: they may be stored (stored rows lie between ``written`` and
  ``written + unconfirmed``); they are not retried, so nothing is stored twice.
* **A dead database is cheap.** A circuit breaker opens after consecutive failures; while open,
  ``record()`` drops at once (``circuit_open``) and the thread probes with backoff, then resumes
  by itself. Log lines go to ``trace_service.writer`` at most once a minute per kind.
* **Fork-safe, exit-safe.** A child of ``fork()`` (gunicorn ``--preload``) starts with an empty
  queue, fresh counters and its own thread and connections; at interpreter exit every writer
  is closed with its ``shutdown_timeout`` deadline.
* **Strict in tests.** With ``strict`` (``TRACE_STRICT``, or the module switch
  :data:`raise_exceptions` that the test suite turns on), ``record()`` raises
  :class:`TraceInputError` on bad arguments and ``flush()``/``close()`` raise
  :class:`TraceWriteError` when rows were lost to errors, so a writer that fails on every
  insert cannot pass a test silently.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from governance.hashing import Keyring
from governance.masking import Masker
from governance.policy import load_masking_policy
from trace_service import context
from trace_service.breaker import OPEN, CircuitBreaker
from trace_service.config import Config, DatabaseURL
from trace_service.db import create_engine
from trace_service.errors import TraceInputError, TraceWriteError
from trace_service.lograte import RateLimitedLogger
from trace_service.php_json import snapshot
from trace_service.sink import (
    DB_ERROR,
    GUARD_BLOCKED,
    INVALID,
    MASKING_ERROR,
    UNCONFIRMED,
    TraceItem,
    TraceSink,
    WriteResult,
)

logger = logging.getLogger("trace_service.writer")

QUEUE_FULL = "queue_full"
CIRCUIT_OPEN = "circuit_open"
SHUTDOWN = "shutdown"
INTERNAL_ERROR = "internal_error"
REASONS = (QUEUE_FULL, DB_ERROR, UNCONFIRMED, INVALID, MASKING_ERROR, GUARD_BLOCKED, CIRCUIT_OPEN,
           SHUTDOWN, INTERNAL_ERROR)
# Drops that mean something is wrong (as opposed to load or shutdown): strict mode raises on them.
ERROR_REASONS = frozenset({DB_ERROR, UNCONFIRMED, INVALID, MASKING_ERROR, GUARD_BLOCKED,
                           INTERNAL_ERROR})

MAX_EVENT_KEY = 255
# tuple.__new__ builds the NamedTuple in C; TraceItem(...) goes through a Python-level __new__.
_new_item: Any = tuple.__new__

#: Like ``logging.raiseExceptions``: the default of ``strict`` for writers that do not say.
#: The test suite sets it to True; production leaves it False.
raise_exceptions = False

_writers: weakref.WeakSet[TraceWriter] = weakref.WeakSet()
_hooks_installed = False


@dataclass(frozen=True)
class WriterStats:
    """A consistent snapshot of a writer's counters."""

    submitted: int
    written: int
    dropped_by_reason: dict[str, int]
    pending: int
    queue_depth: int
    unknown_severity: int
    breaker: str
    mode: str
    last_error: str | None = None
    dropped: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dropped", sum(self.dropped_by_reason.values()))

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON-ready values."""
        return {
            "submitted": self.submitted, "written": self.written, "dropped": self.dropped,
            "dropped_by_reason": dict(self.dropped_by_reason), "pending": self.pending,
            "queue_depth": self.queue_depth, "unknown_severity": self.unknown_severity,
            "breaker": self.breaker, "mode": self.mode, "last_error": self.last_error,
        }


class TraceWriter:
    """Records traces into ``telemetry_traces`` without ever hurting its caller."""

    def __init__(
        self,
        engine: Engine,
        config: Config | None = None,
        *,
        strict: bool | None = None,
        owns_engine: bool = False,
        masker: Masker | None = None,
    ) -> None:
        self.config = config or Config()
        self.engine = engine
        self.strict = (raise_exceptions or self.config.strict) if strict is None else strict
        self.mode = self.config.writer_mode
        self._owns_engine = owns_engine
        # Every record is masked in the writer thread (the caller pays only for the snapshot).
        self.masker = masker if masker is not None else masker_from_config(self.config)
        self._sink = TraceSink(engine, self.config.table_timezone, self.masker)
        self._log = RateLimitedLogger(logger, self.config.log_interval)
        self._queue_size = self.config.queue_size
        self._batch_size = self.config.batch_size
        self._reset_state()
        _register(self)

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> TraceWriter:
        """A writer on its own engine (one connection) built from ``config``."""
        engine = create_engine(
            config.database_url,
            connect_timeout=config.connect_timeout,
            io_timeout=config.io_timeout,
            pool_size=1,
        )
        return cls(engine, config, owns_engine=True, **kwargs)

    @classmethod
    def from_url(cls, url: str | DatabaseURL, **settings: Any) -> TraceWriter:
        """A writer for ``url``; ``settings`` are :class:`Config` fields."""
        strict = settings.pop("strict", None)
        url = url if isinstance(url, DatabaseURL) else DatabaseURL(url)
        return cls.from_config(Config(database_url=url, **settings), strict=strict)

    def _reset_state(self) -> None:
        """Fresh queue, counters, locks and breaker (at start and in a forked child)."""
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._queue: deque[TraceItem] = deque()
        # submitted = _direct + _taken + len(_queue): callers append without a lock; what leaves
        # the queue is counted by whoever takes it (under the lock), what never enters it here.
        self._direct = 0
        self._taken = 0
        self._written = 0
        self._dropped: Counter[str] = Counter()
        self._unknown_severity = 0
        self._error_drops_seen = 0
        self._last_error: str | None = None
        self._breaker = CircuitBreaker(
            self.config.breaker_threshold,
            self.config.breaker_base_delay,
            self.config.breaker_max_delay,
        )
        self._accepting = True  # False while the breaker is open: record() drops at once
        self._closed = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the caller's side

    def record(
        self,
        event_key: str,
        *,
        severity: str | int = "info",
        actor_admin_id: int | None = None,
        metadata: Any = None,
        route_name: str | None = None,
        request_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        occurred_at: datetime | None = None,
    ) -> bool:
        """Queue (or, inline, write) one trace; True if accepted. Never raises unless strict.

        Fields not given are taken from the current request context (``trace_service.context``).
        ``occurred_at`` defaults to now; a naive datetime is taken as the table's zone.
        """
        try:
            if self._closed:
                return self._drop(SHUTDOWN)
            if not self._accepting:
                return self._drop(CIRCUIT_OPEN)
            item = _make_item(
                event_key, severity, actor_admin_id, metadata, route_name, request_id,
                ip_address, user_agent, occurred_at,
            )
        except TraceInputError as exc:
            return self._reject(str(exc))
        except Exception as exc:  # noqa: BLE001 - the contract is to swallow, counted
            return self._drop(INTERNAL_ERROR, exc)
        if self.mode == "inline":
            return self._write_inline(item)
        return self._enqueue(item)

    def _enqueue(self, item: TraceItem) -> bool:
        queue = self._queue
        # Lock-free on purpose (deque.append is atomic): the bound may be overshot by as many
        # items as there are threads racing past this check at once.
        if len(queue) >= self._queue_size:
            return self._drop(QUEUE_FULL)
        queue.append(item)
        if self._thread is None:
            self._start()
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        if self._closed:  # close() ran between our check in record() and the append
            self._discard_queued(SHUTDOWN)
        return True

    def _drop(self, reason: str, exc: BaseException | None = None) -> bool:
        with self._lock:
            self._direct += 1
            self._dropped[reason] += 1
            if exc is not None:
                self._last_error = f"{type(exc).__name__}: {exc}"[:300]
        if exc is not None:
            self._log.log(logging.ERROR, reason, "trace dropped (%s): %s", reason,
                          self._last_error)
            if self.strict:
                raise TraceWriteError(f"trace dropped ({reason}): {self._last_error}") from exc
        return False

    def _reject(self, message: str) -> bool:
        self._drop(INVALID)
        self._log.log(logging.WARNING, INVALID, "trace rejected: %s", message)
        if self.strict:
            raise TraceInputError(message)
        return False

    # ------------------------------------------------------------------ the writing side

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="trace-writer", daemon=True
            )
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any bug
                self._log.log(logging.ERROR, "worker", "trace writer loop error: %r", exc)
                self._wake.wait(self.config.flush_interval)

    def _step(self) -> bool:
        """One turn of the writer thread; False when it should stop."""
        if self._breaker.state == OPEN:
            self._discard_queued(CIRCUIT_OPEN)
            if self._closed:
                return False
            delay = self._breaker.retry_at - time.monotonic()
            if delay > 0:
                self._wake.wait(delay)
                self._wake.clear()
                return True
            self._probe()
            return True
        batch = self._take(self._batch_size)
        if not batch:
            if self._closed:
                return False
            self._wake.wait(self.config.flush_interval)
            self._wake.clear()
            return True
        self._account(self._sink.write(batch))
        return True

    def _take(self, limit: int) -> list[TraceItem]:
        """Pop up to ``limit`` items, counted as taken in the same locked step."""
        queue = self._queue
        batch: list[TraceItem] = []
        with self._lock:
            while queue and len(batch) < limit:
                batch.append(queue.popleft())
            self._taken += len(batch)
        return batch

    def _probe(self) -> None:
        if not self._breaker.try_half_open(time.monotonic()):
            return
        try:
            self._sink.probe()
        except Exception as exc:  # noqa: BLE001 - any failure keeps the breaker open
            self._breaker.record_failure(time.monotonic())
            self._log.log(logging.WARNING, "probe", "trace database still unavailable: %s", exc)
            return
        self._breaker.record_success()
        self._accepting = True
        logger.info("trace database reachable again; writing resumed")

    def _account(self, result: WriteResult) -> None:
        """Fold one write's outcome into the counters and the breaker."""
        now = time.monotonic()
        if result.unavailable:
            if self._breaker.record_failure(now):
                # Thread mode: record() drops at once until the thread's probe succeeds.
                # Inline mode keeps accepting: each call checks the breaker itself.
                self._accepting = self.mode == "inline"
                self._log.log(logging.ERROR, "breaker",
                              "trace database unavailable, dropping traces until it recovers: %s",
                              result.last_error)
        else:
            self._breaker.record_success()
        with self._done:
            self._written += result.written
            self._dropped.update(result.dropped)
            self._unknown_severity += result.unknown_severity
            if result.last_error:
                self._last_error = result.last_error
            self._done.notify_all()
        for reason, count in result.dropped.items():
            self._log.log(logging.ERROR, reason, "%d trace(s) dropped (%s): %s", count, reason,
                          result.last_error)

    def _discard_queued(self, reason: str) -> int:
        batch = self._take(len(self._queue) + 1)
        if batch:
            with self._done:
                self._dropped[reason] += len(batch)
                self._done.notify_all()
        return len(batch)

    def _write_inline(self, item: TraceItem) -> bool:
        with self._lock:
            self._direct += 1
        if self._breaker.state == OPEN:
            self._probe()
            if self._breaker.state == OPEN:
                self._account(WriteResult(dropped=Counter({CIRCUIT_OPEN: 1})))
                return False
        result = self._sink.write([item])
        self._account(result)
        if self.strict:
            self._raise_if_lost()
        return result.written == 1

    # ------------------------------------------------------------------ control

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything queued so far is written or dropped; True if it was in time."""
        return self._control(lambda: self._wait_until_drained(timeout))

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting, flush within ``timeout``, drop (as ``shutdown``) what is left.

        True when nothing was left behind. Records after ``close()`` are dropped as ``shutdown``.
        """
        return self._control(
            lambda: self._shutdown(self.config.shutdown_timeout if timeout is None else timeout)
        )

    def _control(self, action: Callable[[], bool]) -> bool:
        """Run ``action`` swallowing its errors, unless strict: then raise, and report lost rows."""
        try:
            result = action()
        except Exception:  # noqa: BLE001 - never raises unless strict
            if self.strict:
                raise
            return False
        if self.strict:
            self._raise_if_lost()
        return result

    def _shutdown(self, timeout: float) -> bool:
        self._closed = True
        drained = self._wait_until_drained(timeout)
        left = self._discard_queued(SHUTDOWN)
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, min(timeout, 1.0)))
        if self._owns_engine:
            self.engine.dispose()
        return drained and left == 0

    def _wait_until_drained(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._done:
            while self._pending_locked() > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._done.wait(min(remaining, self.config.flush_interval))
                self._wake.set()
        return True

    def _pending_locked(self) -> int:
        return self._submitted_locked() - self._written - sum(self._dropped.values())

    def _submitted_locked(self) -> int:
        return self._direct + self._taken + len(self._queue)

    def _raise_if_lost(self) -> None:
        with self._lock:
            lost = sum(self._dropped[r] for r in ERROR_REASONS)
            new = lost - self._error_drops_seen
            self._error_drops_seen = lost
            last = self._last_error
        if new > 0:
            raise TraceWriteError(f"{new} trace(s) lost to errors; last error: {last}")

    def stats(self) -> WriterStats:
        """A consistent snapshot of the counters (never raises)."""
        with self._lock:
            return WriterStats(
                submitted=self._submitted_locked(),
                written=self._written,
                dropped_by_reason={reason: self._dropped[reason] for reason in REASONS},
                pending=self._pending_locked(),
                queue_depth=len(self._queue),
                unknown_severity=self._unknown_severity,
                breaker=self._breaker.state,
                mode=self.mode,
                last_error=self._last_error,
            )

    def _after_fork_in_child(self) -> None:
        # The parent's queue belongs to the parent (it writes and counts it); the child's pool
        # must not reuse the parent's sockets.
        self._reset_state()
        self.engine.dispose(close=False)

    def __repr__(self) -> str:
        return f"<TraceWriter mode={self.mode} url={self.config.database_url} strict={self.strict}>"


def _make_item(
    event_key: str,
    severity: object,
    actor_admin_id: object,
    metadata: Any,
    route_name: str | None,
    request_id: str | None,
    ip_address: str | None,
    user_agent: str | None,
    occurred_at: datetime | None,
) -> TraceItem:
    """Validate ``record()``'s arguments and freeze them into a queue item.

    Raises :class:`TraceInputError` naming the argument; fills the fields the caller left out
    from the current request context.
    """
    if type(event_key) is not str or not 0 < len(event_key) <= MAX_EVENT_KEY:
        raise TraceInputError(
            f"event_key={str(event_key)[:40]!r} is invalid: a string of 1 to {MAX_EVENT_KEY} "
            "characters is required"
        )
    if actor_admin_id is not None and type(actor_admin_id) is not int:
        actor_admin_id = _as_actor_id(actor_admin_id)
        if actor_admin_id is None:
            raise TraceInputError("actor_admin_id is invalid: an integer or None is required")
    if occurred_at is not None and not isinstance(occurred_at, datetime):
        raise TraceInputError("occurred_at is invalid: a datetime or None is required")
    info = context.current()
    item: TraceItem = _new_item(TraceItem, (
        event_key,
        severity,
        actor_admin_id,
        ip_address if ip_address is not None else info.ip_address,
        user_agent if user_agent is not None else info.user_agent,
        route_name if route_name is not None else info.route_name,
        request_id if request_id is not None else info.request_id,
        None if metadata is None else snapshot(metadata),
        occurred_at if occurred_at is not None else time.time_ns(),
    ))
    return item


def masker_from_config(config: Config) -> Masker:
    """The masker for ``config``: its policy file (the shipped one by default) and, for email
    hashes, PHP's ``CRYPTO_KEYS``/``CRYPTO_ACTIVE_KEY_ID`` from the environment."""
    return Masker(load_masking_policy(config.masking_policy or None), Keyring.from_env())


def _as_actor_id(value: object) -> int | None:
    """PHP sends ids as strings (``'2'``); accept digits, refuse anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _register(writer: TraceWriter) -> None:
    global _hooks_installed
    _writers.add(writer)
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_close_all)
        os.register_at_fork(after_in_child=_after_fork)


def _close_all() -> None:
    for writer in list(_writers):
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - a strict writer must not break interpreter exit
            logger.exception("trace writer failed to close at exit")


def _after_fork() -> None:
    for writer in list(_writers):
        writer._after_fork_in_child()
