"""Configuration read from ``TRACE_*`` environment variables, with casts and defaults.

Every setting is a field of :class:`Config` whose metadata names its variable and its cast.
A bad value fails at start with :class:`ConfigError` naming the variable, the value and what is
allowed. The database URL is held as a :class:`DatabaseURL`, whose repr and str hide the password.

The family: :class:`Config` (production defaults), :class:`DevelopmentConfig` and
:class:`TestingConfig` (strict writer). ``Config.from_env()`` reads a mapping, ``os.environ`` by
default, so tests pass their own dict instead of patching the process environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from trace_service.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///instance/telemetry.sqlite3"

T = TypeVar("T")


class DatabaseURL:
    """A database URL that never shows its password in a repr, a str or a log line."""

    __slots__ = ("_url",)

    def __init__(self, value: str | URL) -> None:
        try:
            self._url = make_url(value)
        except ArgumentError as exc:
            # make_url's own message would echo the whole string, password included.
            raise ValueError("not a URL of the form dialect+driver://user:pass@host/db") from exc

    @property
    def url(self) -> URL:
        """The SQLAlchemy URL object (it hides the password in its own repr too)."""
        return self._url

    @property
    def backend(self) -> str:
        """``mysql``, ``mariadb`` or ``sqlite``."""
        return self._url.get_backend_name()

    def render(self) -> str:
        """The full URL including the password, for handing to a driver only."""
        return self._url.render_as_string(hide_password=False)

    def __str__(self) -> str:
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"DatabaseURL({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatabaseURL) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)


def _database_url(raw: str) -> DatabaseURL:
    url = DatabaseURL(raw)
    if url.backend not in {"mysql", "mariadb", "sqlite"}:
        raise ValueError("the backend must be mysql, mariadb or sqlite")
    return url


def _timezone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("an IANA zone name such as UTC or Africa/Cairo is allowed") from exc
    return raw


def _existing_file(raw: str) -> str:
    if raw and not os.path.isfile(raw):
        raise ValueError("the path of a readable policy file is required")
    return raw


def _rate(raw: str) -> str:
    if not re.fullmatch(r"\s*\d+\s*(?:/|per)\s*(?:\d+\s*)?(?:second|minute|hour|day)s?\s*", raw):
        raise ValueError("a rate such as 600/minute or 20 per second is allowed")
    return raw.strip()


def _storage(raw: str) -> str:
    if not re.fullmatch(r"(?:memory|redis|rediss|redis\+sentinel|memcached)://.*", raw):
        raise ValueError("memory:// or a redis:// URI is allowed")
    return raw


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("one of 1/0, true/false, yes/no, on/off is allowed")


def _ranged(cast: Callable[[str], T], low: float, high: float) -> Callable[[str], T]:
    kind = "an integer" if cast is int else "a number"

    def parse(raw: str) -> T:
        try:
            value = cast(raw)
        except ValueError as exc:
            raise ValueError(f"{kind} between {low:g} and {high:g} is allowed") from exc
        if not low <= value <= high:  # type: ignore[operator]
            raise ValueError(f"{kind} between {low:g} and {high:g} is allowed")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"one of {', '.join(allowed)} is allowed")
        return value

    return parse


def setting(env: str, cast: Callable[[str], Any], default: Any) -> Any:
    """Declare a config field read from ``env`` through ``cast`` (which raises ValueError)."""
    return field(default=default, metadata={"env": env, "cast": cast})


@dataclass(frozen=True)
class Config:
    """Settings of the writer and the service; production defaults."""

    database_url: DatabaseURL = setting(
        "TRACE_DATABASE_URL", _database_url, DatabaseURL(DEFAULT_DATABASE_URL)
    )
    # Zone of the wall-clock timestamps in the table: PHP's APP_TIMEZONE when sharing with PHP.
    table_timezone: str = setting("TRACE_TABLE_TIMEZONE", _timezone, "UTC")
    writer_mode: str = setting("TRACE_WRITER_MODE", _choice("thread", "inline"), "thread")
    queue_size: int = setting("TRACE_QUEUE_SIZE", _ranged(int, 1, 10_000_000), 10_000)
    batch_size: int = setting("TRACE_BATCH_SIZE", _ranged(int, 1, 10_000), 500)
    flush_interval: float = setting("TRACE_FLUSH_INTERVAL", _ranged(float, 0.001, 60), 0.5)
    shutdown_timeout: float = setting("TRACE_SHUTDOWN_TIMEOUT", _ranged(float, 0, 300), 2.0)
    connect_timeout: float = setting("TRACE_CONNECT_TIMEOUT", _ranged(float, 0.1, 60), 2.0)
    io_timeout: float = setting("TRACE_IO_TIMEOUT", _ranged(float, 0.1, 600), 5.0)
    breaker_threshold: int = setting("TRACE_BREAKER_THRESHOLD", _ranged(int, 1, 1000), 3)
    breaker_base_delay: float = setting("TRACE_BREAKER_BASE_DELAY", _ranged(float, 0.01, 60), 0.5)
    breaker_max_delay: float = setting("TRACE_BREAKER_MAX_DELAY", _ranged(float, 0.01, 3600), 5.0)
    log_interval: float = setting("TRACE_LOG_INTERVAL", _ranged(float, 0, 86_400), 60.0)
    # Empty: the shipped policies/masking.toml.
    masking_policy: str = setting("TRACE_MASKING_POLICY", _existing_file, "")
    # Empty: the shipped policies/retention.toml (read by the jobs, not by the web app).
    retention_policy: str = setting("TRACE_RETENTION_POLICY", _existing_file, "")
    # Empty: the shipped policies/reports.toml (read by the jobs, not by the web app).
    reports_policy: str = setting("TRACE_REPORTS_POLICY", _existing_file, "")
    # How often each process appends its changed loss and guard counters to
    # trace_counter_snapshots, so reports can state a period's losses across restarts (0: never).
    counters_persist_seconds: float = setting("TRACE_COUNTERS_PERSIST_SECONDS",
                                              _ranged(float, 0, 86_400), 60.0)
    strict: bool = setting("TRACE_STRICT", _bool, False)
    # Refuse to start when the database user could write audit_logs (checked at start).
    refuse_audit_writer: bool = setting("TRACE_REFUSE_AUDIT_WRITER", _bool, False)
    # HTTP ingest.
    ingest_max_bytes: int = setting("TRACE_INGEST_MAX_BYTES", _ranged(int, 1024, 64 * 2**20), 2**20)
    ingest_max_items: int = setting("TRACE_INGEST_MAX_ITEMS", _ranged(int, 1, 10_000), 500)
    ingest_rate: str = setting("TRACE_INGEST_RATE", _rate, "1200/minute")
    auth_failure_rate: str = setting("TRACE_AUTH_FAILURE_RATE", _rate, "30/minute")
    ratelimit_storage: str = setting("TRACE_RATELIMIT_STORAGE", _storage, "memory://")
    trusted_proxies: int = setting("TRACE_TRUSTED_PROXIES", _ranged(int, 0, 10), 0)
    idempotency_window: float = setting("TRACE_IDEMPOTENCY_SECONDS", _ranged(float, 0, 30 * 86_400),
                                        86_400.0)
    key_cache_seconds: float = setting("TRACE_KEY_CACHE_SECONDS", _ranged(float, 0, 3600), 30.0)

    name: ClassVar[str] = "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a config from ``environ`` (default ``os.environ``), then apply ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            env = f.metadata["env"]
            if env not in environ:
                continue
            raw = environ[env]
            try:
                values[f.name] = f.metadata["cast"](raw)
            except ValueError as exc:
                shown = "<hidden>" if f.name == "database_url" else repr(raw)
                raise ConfigError(f"{env}={shown} is invalid: {exc}") from None
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuse combinations that each value alone cannot show (run on every instance)."""
        if self.breaker_base_delay > self.breaker_max_delay:
            raise ConfigError(
                f"TRACE_BREAKER_BASE_DELAY={self.breaker_base_delay} is above "
                f"TRACE_BREAKER_MAX_DELAY={self.breaker_max_delay}: lower the first or raise the second"
            )
        if self.batch_size > self.queue_size:
            raise ConfigError(
                f"TRACE_BATCH_SIZE={self.batch_size} is above TRACE_QUEUE_SIZE={self.queue_size}: "
                "a batch can never fill; lower the batch size or raise the queue size"
            )


@dataclass(frozen=True)
class DevelopmentConfig(Config):
    """Local development: same as production, flushed more often."""

    flush_interval: float = setting("TRACE_FLUSH_INTERVAL", _ranged(float, 0.001, 60), 0.1)
    name: ClassVar[str] = "development"


@dataclass(frozen=True)
class TestingConfig(Config):
    """The test suite: the writer raises instead of swallowing (see ``TraceWriter``)."""

    strict: bool = setting("TRACE_STRICT", _bool, True)
    # Tests that persist counters turn it on; the rest must not leave threads behind.
    counters_persist_seconds: float = setting("TRACE_COUNTERS_PERSIST_SECONDS",
                                              _ranged(float, 0, 86_400), 0.0)
    flush_interval: float = setting("TRACE_FLUSH_INTERVAL", _ranged(float, 0.001, 60), 0.05)
    name: ClassVar[str] = "testing"
    __test__: ClassVar[bool] = False  # not a pytest test class, despite its name
