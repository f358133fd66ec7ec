"""The HTTP service's configuration: the writer's settings plus the service's own.

:class:`ServiceConfig` adds ingest limits, rate limits, trusted proxies, the API-key cache, the
persisted counters, the start-up grant check and the policies the jobs read. The family:
:class:`ServiceConfig` (production defaults), :class:`DevelopmentConfig` and
:class:`TestingConfig` (strict writer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from governance.errors import ConfigError
from trace_service.config import WriterConfig, boolean, existing_file, ranged, setting


def _rate(raw: str) -> str:
    if not re.fullmatch(r"\s*\d+\s*(?:/|per)\s*(?:\d+\s*)?(?:second|minute|hour|day)s?\s*", raw):
        raise ValueError("a rate such as 600/minute or 20 per second is allowed")
    return raw.strip()


def _queue_url(raw: str) -> str:
    if raw and not re.fullmatch(r"(?:redis|rediss|unix)://.+", raw):
        raise ValueError("empty (no queue: the in-process writer) or a redis:// URL is allowed")
    return raw


def _stream_name(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9:_.-]{1,200}", raw):
        raise ValueError("1 to 200 of A-Z a-z 0-9 : _ . - are allowed")
    return raw


def _storage(raw: str) -> str:
    if not re.fullmatch(r"(?:memory|redis|rediss|redis\+sentinel|memcached)://.*", raw):
        raise ValueError("memory:// or a redis:// URI is allowed")
    return raw


@dataclass(frozen=True)
class ServiceConfig(WriterConfig):
    """Settings of the HTTP service and the jobs it runs; production defaults."""

    # Empty: the shipped policies/retention.toml (read by the jobs, not by the web app).
    retention_policy: str = setting("TRACE_RETENTION_POLICY", existing_file, "")
    # Empty: the shipped policies/reports.toml (read by the jobs, not by the web app).
    reports_policy: str = setting("TRACE_REPORTS_POLICY", existing_file, "")
    # How often each process appends its changed loss and guard counters to
    # trace_counter_snapshots, so reports can state a period's losses across restarts (0: never).
    counters_persist_seconds: float = setting("TRACE_COUNTERS_PERSIST_SECONDS",
                                              ranged(float, 0, 86_400), 60.0)
    # Refuse to start when the database user could write audit_logs (checked at start).
    refuse_audit_writer: bool = setting("TRACE_REFUSE_AUDIT_WRITER", boolean, False)
    # HTTP ingest.
    ingest_max_bytes: int = setting("TRACE_INGEST_MAX_BYTES", ranged(int, 1024, 64 * 2**20), 2**20)
    ingest_max_items: int = setting("TRACE_INGEST_MAX_ITEMS", ranged(int, 1, 10_000), 500)
    # On gevent workers (the durable path's): how long a request's body may take to arrive, then
    # 408 and the connection closed (a sync worker is bounded by gunicorn's timeout instead).
    ingest_body_seconds: float = setting("TRACE_INGEST_BODY_SECONDS", ranged(float, 1, 3600), 30.0)
    ingest_rate: str = setting("TRACE_INGEST_RATE", _rate, "1200/minute")
    auth_failure_rate: str = setting("TRACE_AUTH_FAILURE_RATE", _rate, "30/minute")
    ratelimit_storage: str = setting("TRACE_RATELIMIT_STORAGE", _storage, "memory://")
    trusted_proxies: int = setting("TRACE_TRUSTED_PROXIES", ranged(int, 0, 10), 0)
    key_cache_seconds: float = setting("TRACE_KEY_CACHE_SECONDS", ranged(float, 0, 3600), 30.0)
    # POST /api/telemetry/traces answered without Flask's request cycle, as Flask's view would
    # answer it (trace_service.http.ingest_route); false: every request goes through Flask.
    ingest_fast_route: bool = setting("TRACE_INGEST_FAST_ROUTE", boolean, True)
    # The durable path: empty, the endpoint hands traces to the in-process writer; a redis://
    # URL, it appends them to a Redis stream that `flask queue consume` drains (README, "Queue").
    queue_url: str = setting("TRACE_QUEUE_URL", _queue_url, "")
    queue_stream: str = setting("TRACE_QUEUE_STREAM", _stream_name, "telemetry:traces")
    # Entries the stream may hold (unread or unacknowledged); beyond it the endpoint answers 503.
    queue_max_length: int = setting("TRACE_QUEUE_MAX_LENGTH", ranged(int, 1, 10**9), 1_000_000)
    queue_group: str = setting("TRACE_QUEUE_GROUP", _stream_name, "telemetry-writers")
    # An entry unacknowledged this long is claimed by another consumer (its own died).
    queue_claim_seconds: float = setting("TRACE_QUEUE_CLAIM_SECONDS", ranged(float, 1, 86_400), 60.0)
    # Deliveries after which an entry that keeps failing goes to the dead-letter stream.
    queue_max_deliveries: int = setting("TRACE_QUEUE_MAX_DELIVERIES", ranged(int, 1, 1000), 5)

    def check(self) -> None:
        """The writer's checks, and the queue's: its consumers remove redelivered entries by
        their event ids, which only an idempotency window keeps."""
        super().check()
        if self.queue_url and self.idempotency_window <= 0:
            raise ConfigError(
                "TRACE_QUEUE_URL is set but TRACE_IDEMPOTENCY_SECONDS=0: a redelivered entry "
                "would be stored twice; set TRACE_IDEMPOTENCY_SECONDS above the longest outage "
                "the queue should ride out (default 86400)")


@dataclass(frozen=True)
class DevelopmentConfig(ServiceConfig):
    """Local development: same as production, flushed more often."""

    flush_interval: float = setting("TRACE_FLUSH_INTERVAL", ranged(float, 0.001, 60), 0.1)
    name: ClassVar[str] = "development"


@dataclass(frozen=True)
class TestingConfig(ServiceConfig):
    """The test suite: the writer raises instead of swallowing (see ``TraceWriter``)."""

    strict: bool = setting("TRACE_STRICT", boolean, True)
    # Tests that persist counters turn it on; the rest must not leave threads behind.
    counters_persist_seconds: float = setting("TRACE_COUNTERS_PERSIST_SECONDS",
                                              ranged(float, 0, 86_400), 0.0)
    flush_interval: float = setting("TRACE_FLUSH_INTERVAL", ranged(float, 0.001, 60), 0.05)
    name: ClassVar[str] = "testing"
    __test__: ClassVar[bool] = False  # not a pytest test class, despite its name
