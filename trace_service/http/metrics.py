"""Prometheus metrics of the service (prometheus-client), served at ``GET /metrics``.

One scrape sees the whole service. Under gunicorn, ``gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR``, so prometheus-client's multiprocess mode keeps every worker's
counters in files there and any worker's ``/metrics`` sums them (a dead worker's counts stay in
the sum). The writer's own counters live in its queue; in multiprocess mode each worker
publishes them to multiprocess counters at each scrape it serves and at each tick of its counter
persister (``TRACE_COUNTERS_PERSIST_SECONDS``), so the sum lags by at most that interval. Without
the variable (``flask run``, tests) every figure is this process's, read at scrape time.

The durable path's figures (stream length, pending, lag, the oldest unacknowledged entry's age,
dead letters) are read from Redis at scrape time: one view, whichever worker answers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from governance.audit_guard import blocked_total


class IngestMetrics:
    """The ingest endpoint's counters, on a registry of their own."""

    def __init__(self, writer_stats: Callable[[], Any],
                 queue_status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._writer_stats = writer_stats
        self._queue = _QueueCollector(queue_status) if queue_status is not None else None
        self.registry = CollectorRegistry()
        self.received = Counter("trace_ingest_received", "Traces received by the ingest endpoint",
                                registry=self.registry)
        self.accepted = Counter("trace_ingest_accepted", "Traces accepted (queued for writing)",
                                registry=self.registry)
        self.rejected = Counter("trace_ingest_rejected", "Traces or requests refused, by reason",
                                ["reason"], registry=self.registry)
        self.auth_failures = Counter("trace_ingest_auth_failures", "Requests with no or a bad key",
                                     registry=self.registry)
        self.latency = Histogram("trace_ingest_request_seconds", "Ingest request duration",
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        if self.multiprocess:
            self._published: dict[str, float] = {}
            self._publish_lock = threading.Lock()
            self._writer_written = Counter("trace_writer_written", "Rows the writer stored",
                                           registry=self.registry)
            self._writer_dropped = Counter("trace_writer_dropped", "Rows the writer dropped, by reason",
                                           ["reason"], registry=self.registry)
            self._writer_discarded = Counter(
                "trace_writer_discarded", "Records kept out on purpose (not losses), by reason",
                ["reason"], registry=self.registry)
            self._writer_sampled_out = Counter(
                "trace_writer_sampled_out", "Records the sampling policy kept out, by event key",
                ["event_key"], registry=self.registry)
            self._writer_depth = Gauge("trace_writer_queue_depth", "Records waiting in the writers' queues",
                                       registry=self.registry, multiprocess_mode="livesum")
            self._guard_blocked = Counter("trace_guard_blocked", "Writes to protected tables refused",
                                          ["table"], registry=self.registry)
        else:
            self.registry.register(_WriterCollector(writer_stats))
            if self._queue is not None:
                self.registry.register(self._queue)

    def publish(self) -> None:
        """Multiprocess mode: add this worker's writer and guard counts since the last call to
        the shared counters (a no-op otherwise, where they are read at scrape time)."""
        if not self.multiprocess:
            return
        stats = self._writer_stats()
        with self._publish_lock:
            self._advance("written", stats.written, self._writer_written)
            for reason, count in stats.dropped_by_reason.items():
                self._advance(f"dropped.{reason}", count, self._writer_dropped.labels(reason=reason))
            for reason, count in stats.discarded_by_reason.items():
                self._advance(f"discarded.{reason}", count, self._writer_discarded.labels(reason=reason))
            for key, count in stats.sampled_out_by_key.items():
                self._advance(f"sampled_out.{key}", count,
                              self._writer_sampled_out.labels(event_key=key))
            for table, count in blocked_total().items():
                self._advance(f"guard.{table}", count, self._guard_blocked.labels(table=table))
            self._writer_depth.set(stats.queue_depth)

    def _advance(self, name: str, value: float, counter: Any) -> None:
        delta = value - self._published.get(name, 0)
        if delta > 0:
            counter.inc(delta)
            self._published[name] = value

    def exposition(self) -> bytes:
        """The text ``GET /metrics`` serves: every worker's counters in multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        self.publish()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in the package
        if self._queue is not None:
            registry.register(self._queue)
        return generate_latest(registry)


class _QueueCollector:
    """The durable path's stream, read from Redis at scrape time."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("trace_queue_up", "1 when Redis answered this scrape")
        try:
            status = self._status()
        except Exception:  # Redis down: said by trace_queue_up, the scrape goes on
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, key, help_text in (
                ("trace_queue_length", "length", "Entries in the stream: unread or unacknowledged"),
                ("trace_queue_pending", "pending", "Entries read by a consumer and not acknowledged"),
                ("trace_queue_lag", "lag", "Entries no consumer has read yet"),
                ("trace_queue_oldest_pending_seconds", "oldest_pending_seconds",
                 "Age of the oldest unacknowledged entry"),
                ("trace_queue_dead_letters", "dead_letters", "Entries parked in the dead-letter stream")):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], float(status.get(key) or 0))
            yield gauge


class _WriterCollector:
    """Writer stats and guard blocks, read at scrape time."""

    def __init__(self, writer_stats: Callable[[], Any]) -> None:
        self._stats = writer_stats

    def collect(self) -> Iterator[Any]:
        stats = self._stats()
        written = CounterMetricFamily("trace_writer_written", "Rows the writer stored")
        written.add_metric([], stats.written)
        yield written
        dropped = CounterMetricFamily("trace_writer_dropped", "Rows the writer dropped, by reason",
                                      labels=["reason"])
        for reason, count in stats.dropped_by_reason.items():
            dropped.add_metric([reason], count)
        yield dropped
        discarded = CounterMetricFamily("trace_writer_discarded", "Records kept out on purpose "
                                        "(not losses), by reason", labels=["reason"])
        for reason, count in stats.discarded_by_reason.items():
            discarded.add_metric([reason], count)
        yield discarded
        sampled = CounterMetricFamily("trace_writer_sampled_out", "Records the sampling policy "
                                      "kept out, by event key", labels=["event_key"])
        for key, count in stats.sampled_out_by_key.items():
            sampled.add_metric([key], count)
        yield sampled
        depth = GaugeMetricFamily("trace_writer_queue_depth", "Records waiting in the writer's queue")
        depth.add_metric([], stats.queue_depth)
        yield depth
        blocked = CounterMetricFamily("trace_guard_blocked", "Writes to protected tables refused",
                                      labels=["table"])
        for table, count in blocked_total().items():
            blocked.add_metric([table], count)
        yield blocked
