"""The best-effort trace writer that backend apps call on hot paths.

::

    writer = TraceWriter.from_config(WriterConfig.from_env())
    writer.record("auth.login.attempt", severity="info", actor_admin_id=7,
                  metadata={"target_id": 3}, route_name="admins.list")   # -> bool, never raises
    writer.flush(timeout=2.0); writer.close(timeout=2.0); writer.stats()

Promises (``docs/design.md``, "Writer"):

* **Never raises, never blocks.** ``record()`` catches ``Exception`` (``KeyboardInterrupt`` and
  ``SystemExit`` pass). In ``thread`` mode it validates, freezes the metadata and appends to a
  bounded deque; a daemon thread writes multi-row INSERTs on the writer's own engine, so a
  caller's rollback never removes traces. ``inline`` mode writes synchronously (scripts), and
  swallows as well.
* **Loss is data.** Every call is counted once: written, or dropped by reason
  (:class:`~trace_service.queue.DropReason`).
  ``written + dropped + duplicates + discarded + pending == submitted`` at every instant
  (``discarded``: sampled out, switched off or opted out, on purpose), and ``pending`` is 0 after
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
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Engine

from governance.hashing import Keyring
from governance.masking import Masker
from governance.masking_policy import load_masking_policy
from governance.sampling import load_sampling_policy
from trace_service import context
from trace_service.config import DatabaseURL, WriterConfig
from trace_service.controls import Gate, KillSwitch
from trace_service.db import create_engine
from trace_service.errors import TraceInputError, TraceWriteError
from trace_service.log_throttle import ThrottledLogger
from trace_service.opt_outs import OptOutCache
from trace_service.php_json import snapshot
from trace_service.queue import DiscardReason, DropReason, Sink, Tally, TraceItem, TraceQueue
from trace_service.sink import TraceSink
from trace_service.worker import Worker

logger = logging.getLogger("trace_service.writer")


MAX_EVENT_KEY = 255
# Hot path (every record() call): tuple.__new__ builds the NamedTuple in C, where TraceItem(...)
# goes through a Python-level __new__; the caller-cost figures of bench/writer.py include it.
_new_item: Any = tuple.__new__

#: Like ``logging.raiseExceptions``: the default of ``strict`` for writers that do not say.
#: The test suite sets it to True; production leaves it False.
raise_exceptions = False

_writers: weakref.WeakSet[TraceWriter] = weakref.WeakSet()
_hooks_installed = False


@dataclass(frozen=True)
class WriterStats(Tally):
    """A consistent snapshot of a writer's counters: the queue's tally, the breaker and mode."""

    breaker: str
    mode: str
    dropped: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dropped", sum(self.dropped_by_reason.values()))

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON-ready values."""
        return {
            "submitted": self.submitted, "written": self.written, "dropped": self.dropped,
            "dropped_by_reason": dict(self.dropped_by_reason), "duplicates": self.duplicates,
            "discarded_by_reason": dict(self.discarded_by_reason),
            "sampled_out_by_key": dict(self.sampled_out_by_key),
            "pending": self.pending,
            "queue_depth": self.queue_depth, "unknown_severity": self.unknown_severity,
            "breaker": self.breaker, "mode": self.mode, "last_error": self.last_error,
        }


class TraceWriter:
    """Records traces into ``telemetry_traces`` without ever hurting its caller."""

    def __init__(
        self,
        engine: Engine | None,
        config: WriterConfig | None = None,
        *,
        strict: bool | None = None,
        owns_engine: bool = False,
        masker: Masker | None = None,
        sink: Sink | None = None,
    ) -> None:
        """A writer on ``engine``. ``sink`` replaces the database sink built on it (a
        :class:`~trace_service.memory_sink.MemorySink` in tests, where ``engine`` may be None,
        or a ``TraceSink`` made differently); ``masker`` replaces the one the config's masking
        policy makes."""
        self.config = config or WriterConfig()
        self.engine = engine
        self.strict = (raise_exceptions or self.config.strict) if strict is None else strict
        self.mode = self.config.writer_mode
        self._owns_engine = owns_engine
        # Every record is masked in the writer thread (the caller pays only for the snapshot).
        self.masker = masker if masker is not None else masker_from_config(self.config)
        self.gate = gate_from_config(self.config)  # a bad policy raises here, before any thread
        # Switched off for good, nothing reads the opt-outs (no connection is touched).
        self.opt_outs: OptOutCache | None = None
        if sink is None:
            if engine is None:
                raise TypeError("TraceWriter needs an engine, or a sink to write to")
            if self.config.enabled:  # started lazily, by the first write of each process
                self.opt_outs = OptOutCache(engine, self.config.opt_out_refresh,
                                            self.config.log_interval)
            sink = TraceSink(engine, self.config.table_timezone, self.masker,
                             self.config.idempotency_window, opt_outs=self.opt_outs)
        self.sink: Sink = sink
        self._log = ThrottledLogger(logger, self.config.log_interval)
        self._reset_state()
        _register(self)

    @classmethod
    def from_config(cls, config: WriterConfig, **kwargs: Any) -> TraceWriter:
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
        """A writer for ``url``; ``settings`` are :class:`WriterConfig` fields."""
        strict = settings.pop("strict", None)
        url = url if isinstance(url, DatabaseURL) else DatabaseURL(url)
        return cls.from_config(WriterConfig(database_url=url, **settings), strict=strict)

    def _reset_state(self) -> None:
        """Fresh queue, counters and worker (at start and in a forked child)."""
        self._queue = TraceQueue(self.config.queue_size)
        self._worker = Worker(self._queue, self.sink, self.config, self._log)
        self._closed = False

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
        event_id: UUID | str | None = None,
    ) -> bool:
        """Queue (or, inline, write) one trace; True if accepted. Never raises unless strict.

        Fields not given are taken from the current request context (``trace_service.context``).
        ``occurred_at`` defaults to now; a naive datetime is taken as the table's zone.
        ``event_id`` (a UUID) makes the record idempotent: a trace with an id already stored
        within ``TRACE_IDEMPOTENCY_SECONDS`` is counted in ``duplicates`` and not stored again.
        """
        try:
            if self._closed:
                return self._drop(DropReason.SHUTDOWN)
            gate = self.gate
            if gate.switch.off():  # before any work: switched off, a record costs nothing
                self._queue.count_discarded(DiscardReason.DISABLED, event_key)
                return False
            # Decided before the item is made: a sampled-out record skips the metadata snapshot,
            # so it costs its caller less than a kept one (bench/writer.py, part 3). Only for a
            # valid key and request id: anything else is make_item's to reject as invalid. An
            # empty request id means the context's, as the endpoint decides it.
            if gate.sampling is not None and type(event_key) is str and 0 < len(event_key) <= MAX_EVENT_KEY:
                decided_by = request_id or context.current().request_id
                if (decided_by is None or type(decided_by) is str) and gate.sampled_out(
                        event_key, severity, decided_by):
                    self._queue.count_discarded(DiscardReason.SAMPLED_OUT, event_key)
                    return False
            if not self._worker.accepting:
                return self._drop(DropReason.CIRCUIT_OPEN)
            item = make_item(
                event_key, severity, actor_admin_id, metadata, route_name, request_id,
                ip_address, user_agent, occurred_at, event_id,
            )
        except TraceInputError as exc:
            return self._reject(str(exc))
        except Exception as exc:  # the contract is to swallow, counted
            return self._drop(DropReason.INTERNAL_ERROR, exc)
        return self.submit(item)

    def count_discarded(self, reason: DiscardReason, event_key: str) -> None:
        """Count a trace the endpoint kept out itself (``gate.reason()``, or an opted-out
        subject), once its request is answered."""
        self._queue.count_discarded(reason, event_key)

    def submit(self, item: TraceItem) -> bool:
        """Queue (or, inline, write) an item made by :func:`make_item`; True if accepted."""
        if self.mode == "inline":
            written = self._worker.write_now(item)
            if self.strict:
                self._raise_if_lost()
            return written
        return self._enqueue(item)

    def _enqueue(self, item: TraceItem) -> bool:
        queue, worker = self._queue, self._worker
        if not queue.put(item):
            return self._drop(DropReason.QUEUE_FULL)
        try:
            # Nothing would ever write what is queued without the thread: count it all as lost
            # now, so flush() does not wait for it; a later record tries the thread again.
            if worker.thread is None and not worker.start() and worker.discard_unless_started():
                return False
            if len(queue) >= self.config.batch_size and not worker.wake.is_set():
                worker.wake.set()
            if self._closed:  # close() ran between our check in record() and the append
                queue.discard(DropReason.SHUTDOWN)
        except Exception as exc:  # the item is queued: it is counted when taken
            self._log.log(logging.ERROR, DropReason.INTERNAL_ERROR,
                          "trace writer error after queueing: %r", exc)
        return True

    def _drop(self, reason: DropReason, exc: BaseException | None = None) -> bool:
        error = None if exc is None else f"{type(exc).__name__}: {exc}"[:300]
        self._queue.count_direct(reason, error)
        if exc is not None:
            self._log.log(logging.ERROR, reason, "trace dropped (%s): %s", reason, error)
            if self.strict:
                raise TraceWriteError(f"trace dropped ({reason}): {error}") from exc
        return False

    def _reject(self, message: str) -> bool:
        self._drop(DropReason.INVALID)
        self._log.log(logging.WARNING, DropReason.INVALID, "trace rejected: %s", message)
        if self.strict:
            raise TraceInputError(message)
        return False

    # ------------------------------------------------------------------ for HTTP ingest

    @property
    def accepting(self) -> bool:
        """False while closed or while the breaker is open: records would be dropped now."""
        return not self._closed and self._worker.accepting

    def room(self) -> int:
        """How many more records the queue takes now (approximate under concurrency)."""
        return max(0, self.config.queue_size - len(self._queue))

    def retry_after(self) -> float:
        """Seconds until the breaker probes the database again (0 when it is closed)."""
        return max(0.0, self._worker.breaker.retry_at - time.monotonic())

    # ------------------------------------------------------------------ control

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything queued so far is written or dropped; True if it was in time."""
        return self._control(lambda: self._wait_settled(timeout))

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
        except Exception:  # never raises unless strict
            if self.strict:
                raise
            return False
        if self.strict:
            self._raise_if_lost()
        return result

    def _wait_settled(self, timeout: float) -> bool:
        return self._queue.wait_settled(timeout, self._worker.wake.set, self.config.flush_interval)

    def _shutdown(self, timeout: float) -> bool:
        self._closed = True
        if self.opt_outs is not None:
            self.opt_outs.stop()
        drained = self._wait_settled(timeout)
        left = self._queue.discard(DropReason.SHUTDOWN)
        self._worker.stop(min(timeout, 1.0))
        if self._owns_engine and self.engine is not None:
            self.engine.dispose()
        return drained and left == 0

    def _raise_if_lost(self) -> None:
        new, last = self._queue.new_errors()
        if new > 0:
            raise TraceWriteError(f"{new} trace(s) lost to errors; last error: {last}")

    def stats(self) -> WriterStats:
        """A consistent snapshot of the counters (never raises)."""
        tally = self._queue.tally()
        return WriterStats(**vars(tally), breaker=self._worker.breaker.state, mode=self.mode)

    def _after_fork_in_child(self) -> None:
        # The parent's queue belongs to the parent (it writes and counts it); the child's pool
        # must not reuse the parent's sockets.
        self._reset_state()
        if self.engine is not None:
            self.engine.dispose(close=False)

    def __repr__(self) -> str:
        return f"<TraceWriter mode={self.mode} url={self.config.database_url} strict={self.strict}>"


def make_item(
    event_key: str,
    severity: object,
    actor_admin_id: object,
    metadata: Any,
    route_name: str | None,
    request_id: str | None,
    ip_address: str | None,
    user_agent: str | None,
    occurred_at: datetime | None,
    event_id: UUID | str | None = None,
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
        None if event_id is None else _as_event_id(event_id),
    ))
    return item


def masker_from_config(config: WriterConfig) -> Masker:
    """The masker for ``config``: its policy file (the shipped one by default) and, for email
    hashes, PHP's ``CRYPTO_KEYS``/``CRYPTO_ACTIVE_KEY_ID`` from the environment."""
    return Masker(load_masking_policy(config.masking_policy or None), Keyring.from_env())


def gate_from_config(config: WriterConfig) -> Gate:
    """The kill switch and the sampling policy of ``config`` (the shipped policy by default).
    A policy file that is not valid raises :class:`~governance.errors.PolicyError` here, at
    start, naming the file, the key and the fix, rather than sampling by a guess."""
    return Gate(KillSwitch(config.enabled, config.kill_switch_file, config.controls_refresh),
                load_sampling_policy(config.sampling_policy or None))


def _as_event_id(value: object) -> str:
    """The canonical text of a UUID given as a UUID or a string; TraceInputError otherwise."""
    if isinstance(value, UUID):
        return str(value)
    try:
        return str(UUID(str(value)))
    except ValueError:
        raise TraceInputError(
            f"event_id={str(value)[:40]!r} is invalid: a UUID (e.g. str(uuid.uuid4())) or None "
            "is required") from None


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
        except Exception:  # a strict writer must not break interpreter exit
            logger.exception("trace writer failed to close at exit")


def _after_fork() -> None:
    for writer in list(_writers):
        writer._after_fork_in_child()
