"""Persisting the service's loss and guard counters, so a report can state a period's losses.

In-process counters die with the process. Every ``TRACE_COUNTERS_PERSIST_SECONDS`` a
:class:`CounterPersister` appends the counters whose value changed since its last write to
``trace_counter_snapshots`` (migration 0004), as cumulative values of this process lifetime
(``instance`` = host:pid:start:random). ``governance.reports.counter_deltas`` turns them into a
period's growth. It also writes once at interpreter exit, after the writer's final flush.

Names: ``writer.submitted``, ``writer.written``, ``writer.dropped.<reason>``, and what is not a
loss: ``writer.discarded.<reason>`` (sampled out, switched off), ``writer.sampled_out.<event key>``,
``ingest.received``, ``ingest.accepted``, ``ingest.rejected.<reason>``,
``guard.blocked.<table>``.

Best effort like the writer: a failed write is logged (rate-limited) and retried at the next
tick with the then-current values, so nothing is lost but the last interval of a process that
is killed. After ``fork`` the child is a new instance whose counts start from what it inherited.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.audit_guard import blocked_total
from governance.reports import CounterSample
from trace_service.http.metrics import IngestMetrics
from trace_service.log_throttle import ThrottledLogger
from trace_service.queue import OTHER_KEYS
from trace_service.writer import TraceWriter

logger = logging.getLogger("trace_service.http.counters")
SNAPSHOTS_TABLE = "trace_counter_snapshots"
NAME_CHARS = 128  # trace_counter_snapshots.name (migration 0004)
snapshots = sa.table(SNAPSHOTS_TABLE, sa.column("instance", sa.String()), sa.column("name", sa.String()),
                     sa.column("value", sa.BigInteger()), sa.column("taken_at", sa.DateTime()))
_persisters: weakref.WeakSet[CounterPersister] = weakref.WeakSet()


def service_counters(writer: TraceWriter, ingest: IngestMetrics | None = None) -> dict[str, int]:
    """The current cumulative counters of a writer, the ingest endpoint and the guard."""
    stats = writer.stats()
    if ingest is not None:
        ingest.publish()  # the persister's tick doubles as the metrics' (multiprocess mode)
    values = {"writer.submitted": stats.submitted, "writer.written": stats.written}
    values.update({f"writer.dropped.{reason}": count for reason, count in stats.dropped_by_reason.items()})
    values.update({f"writer.discarded.{reason}": count
                   for reason, count in stats.discarded_by_reason.items()})
    for key, count in stats.sampled_out_by_key.items():
        # A key too long for the name column is counted with the other keys, never cut (two
        # cut keys would share one name and overwrite each other's cumulative value).
        name = f"writer.sampled_out.{key}"
        name = name if len(name) <= NAME_CHARS else f"writer.sampled_out.{OTHER_KEYS}"
        values[name] = values.get(name, 0) + count
    if ingest is not None:
        for counter, name in ((ingest.received, "ingest.received"), (ingest.accepted, "ingest.accepted")):
            values[name] = sum(int(s.value) for m in counter.collect() for s in m.samples
                               if s.name.endswith("_total"))
        for metric in ingest.rejected.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    values[f"ingest.rejected.{sample.labels['reason']}"] = int(sample.value)
    values.update({f"guard.blocked.{table}": count for table, count in blocked_total().items()})
    return values


def read_samples(engine: Engine, until: datetime | None = None) -> list[CounterSample]:
    """Every persisted counter value (taken before ``until``, naive UTC, when given)."""
    query = sa.select(snapshots.c.instance, snapshots.c.name, snapshots.c.value, snapshots.c.taken_at)
    if until is not None:
        query = query.where(snapshots.c.taken_at < until)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    # taken_at is typed DateTime, so SQLite's text comes back as datetime too.
    return [CounterSample(str(i), str(n), int(v), t) for i, n, v, t in rows]


def _instance() -> str:
    # The random part tells apart two persisters of one process (two apps, a test suite).
    started = f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{started}:{uuid.uuid4().hex[:8]}"


class CounterPersister:
    """Appends changed counter values to ``trace_counter_snapshots`` on a daemon thread."""

    def __init__(self, engine: Engine, read: Callable[[], Mapping[str, int]], interval: float,
                 log_interval: float = 60.0, before_exit: Callable[[], object] | None = None) -> None:
        self.engine, self.read, self.interval = engine, read, interval
        # At exit this runs first (the writer's close: its shutdown drops belong in the last write).
        self.before_exit = before_exit
        self.instance = _instance()
        # Counts from before this persister (the guard's are per process) are not its own.
        self._baseline: dict[str, int] = _read_safely(read)
        self._written: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = ThrottledLogger(logger, log_interval)
        self.failures = 0

    def start(self) -> CounterPersister:
        """Start the periodic thread (idempotent); also persist at interpreter exit."""
        if self.interval > 0 and (self._thread is None or not self._thread.is_alive()):
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="trace-counters", daemon=True)
            self._thread.start()
            _persisters.add(self)
            _register_hooks()
        return self

    def stop(self, persist: bool = True) -> None:
        """Stop the thread; by default write the final values first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if persist:
            self.persist()

    def persist(self, now: datetime | None = None) -> int:
        """Append every counter that changed since the last write; returns rows written (never raises)."""
        try:
            with self._lock:
                current = {name: value - self._baseline.get(name, 0) for name, value in self.read().items()}
                changed = {n: v for n, v in current.items() if v != self._written.get(n, 0)}
                if not changed:
                    return 0
                taken = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
                with self.engine.begin() as conn:
                    conn.execute(snapshots.insert(), [
                        {"instance": self.instance, "name": n, "value": v, "taken_at": taken}
                        for n, v in sorted(changed.items())])
                self._written.update(changed)
                return len(changed)
        except Exception as exc:  # best effort: retried with newer values next tick
            self.failures += 1
            self._log.log(logging.WARNING, "persist", "could not persist counters: %s (retried in %ss)",
                          type(exc).__name__, self.interval)
            return 0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.persist()

    def _after_fork_in_child(self) -> None:
        # The child inherits the parent's in-memory counts; it reports only its own growth.
        self._lock = threading.Lock()
        self.instance = _instance()
        self._baseline = _read_safely(self.read)
        self._written = {}
        self._thread = None
        self.start()


def _read_safely(read: Callable[[], Mapping[str, int]]) -> dict[str, int]:
    try:
        return dict(read())
    except Exception:  # a baseline of zeros only over-reports, never hides
        logger.exception("could not read the counters' starting values")
        return {}


_hooks_registered = False


def _register_hooks() -> None:
    global _hooks_registered
    if _hooks_registered:
        return
    _hooks_registered = True
    atexit.register(_persist_all)
    os.register_at_fork(after_in_child=_after_fork)


def _persist_all() -> None:
    for persister in list(_persisters):
        try:
            if persister.before_exit is not None:
                persister.before_exit()
        except Exception:  # exit goes on; the counters are still written
            logger.exception("before-exit hook failed")
        persister.stop(persist=True)


def _after_fork() -> None:
    for persister in list(_persisters):
        persister._after_fork_in_child()
