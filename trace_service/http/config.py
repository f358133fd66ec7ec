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

from trace_service.config import WriterConfig, boolean, existing_file, ranged, setting


def _rate(raw: str) -> str:
    if not re.fullmatch(r"\s*\d+\s*(?:/|per)\s*(?:\d+\s*)?(?:second|minute|hour|day)s?\s*", raw):
        raise ValueError("a rate such as 600/minute or 20 per second is allowed")
    return raw.strip()


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
    ingest_rate: str = setting("TRACE_INGEST_RATE", _rate, "1200/minute")
    auth_failure_rate: str = setting("TRACE_AUTH_FAILURE_RATE", _rate, "30/minute")
    ratelimit_storage: str = setting("TRACE_RATELIMIT_STORAGE", _storage, "memory://")
    trusted_proxies: int = setting("TRACE_TRUSTED_PROXIES", ranged(int, 0, 10), 0)
    key_cache_seconds: float = setting("TRACE_KEY_CACHE_SECONDS", ranged(float, 0, 3600), 30.0)


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
