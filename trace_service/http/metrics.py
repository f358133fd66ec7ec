"""Prometheus metrics of the service (prometheus-client), served at ``GET /metrics``.

Counters are per process: under gunicorn each worker serves its own (scrape each worker, or run
one worker per container). The writer's counters and the guard's blocks are read at scrape time
from the objects that own them, so they never disagree with ``/readyz``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from governance.audit_guard import blocked_total


class IngestMetrics:
    """The ingest endpoint's counters, on a registry of their own."""

    def __init__(self, writer_stats: Callable[[], Any]) -> None:
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
        self.registry.register(_WriterCollector(writer_stats))


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
        depth = GaugeMetricFamily("trace_writer_queue_depth", "Records waiting in the writer's queue")
        depth.add_metric([], stats.queue_depth)
        yield depth
        blocked = CounterMetricFamily("trace_guard_blocked", "Writes to protected tables refused",
                                      labels=["table"])
        for table, count in blocked_total().items():
            blocked.add_metric([table], count)
        yield blocked
