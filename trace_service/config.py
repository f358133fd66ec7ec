"""The writer's configuration, read from ``TRACE_*`` environment variables with casts and defaults.

Every setting is a field of a :class:`Settings` dataclass whose metadata names its variable and
its cast. A bad value fails at start with :class:`ConfigError` naming the variable, the value and
what is allowed. The database URL is held as a :class:`DatabaseURL`, whose repr and str hide the
password.

:class:`WriterConfig` is what a backend app needs to build a ``TraceWriter``: it reads and checks
the writer's settings only, so an app never fails on the HTTP service's settings it does not use.
The service extends it (``trace_service.http.config.ServiceConfig``). ``from_env()`` reads a
mapping, ``os.environ`` by default, so tests pass their own dict instead of patching the process
environment.
"""

from __future__ import annotations

import dataclasses
import os
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


def existing_file(raw: str) -> str:
    if raw and not os.path.isfile(raw):
        raise ValueError("the path of a readable policy file is required")
    return raw


def _absolute_path(raw: str) -> str:
    if raw and not os.path.isabs(raw):
        raise ValueError("an absolute path is required (the switch must not depend on the "
                         "working directory)")
    return raw


def boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("one of 1/0, true/false, yes/no, on/off is allowed")


def ranged(cast: Callable[[str], T], low: float, high: float) -> Callable[[str], T]:
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


def one_of(*allowed: str) -> Callable[[str], str]:
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
class Settings:
    """Base of the config dataclasses: fields declared with :func:`setting`, read by :meth:`from_env`."""

    name: ClassVar[str] = "production"

    @classmethod
    def from_env(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
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


S = TypeVar("S", bound=Settings)


@dataclass(frozen=True)
class WriterConfig(Settings):
    """Settings of the trace writer (what a backend app sets); production defaults."""

    database_url: DatabaseURL = setting(
        "TRACE_DATABASE_URL", _database_url, DatabaseURL(DEFAULT_DATABASE_URL)
    )
    # Zone of the wall-clock timestamps in the table: PHP's APP_TIMEZONE when sharing with PHP.
    table_timezone: str = setting("TRACE_TABLE_TIMEZONE", _timezone, "UTC")
    writer_mode: str = setting("TRACE_WRITER_MODE", one_of("thread", "inline"), "thread")
    queue_size: int = setting("TRACE_QUEUE_SIZE", ranged(int, 1, 10_000_000), 10_000)
    batch_size: int = setting("TRACE_BATCH_SIZE", ranged(int, 1, 10_000), 500)
    flush_interval: float = setting("TRACE_FLUSH_INTERVAL", ranged(float, 0.001, 60), 0.5)
    shutdown_timeout: float = setting("TRACE_SHUTDOWN_TIMEOUT", ranged(float, 0, 300), 2.0)
    connect_timeout: float = setting("TRACE_CONNECT_TIMEOUT", ranged(float, 0.1, 60), 2.0)
    io_timeout: float = setting("TRACE_IO_TIMEOUT", ranged(float, 0.1, 600), 5.0)
    breaker_threshold: int = setting("TRACE_BREAKER_THRESHOLD", ranged(int, 1, 1000), 3)
    breaker_base_delay: float = setting("TRACE_BREAKER_BASE_DELAY", ranged(float, 0.01, 60), 0.5)
    breaker_max_delay: float = setting("TRACE_BREAKER_MAX_DELAY", ranged(float, 0.01, 3600), 5.0)
    log_interval: float = setting("TRACE_LOG_INTERVAL", ranged(float, 0, 86_400), 60.0)
    # Empty: the shipped policies/masking.toml.
    masking_policy: str = setting("TRACE_MASKING_POLICY", existing_file, "")
    strict: bool = setting("TRACE_STRICT", boolean, False)
    # How long a stored event_id makes a repeat a duplicate (the sink claims ids with their rows).
    idempotency_window: float = setting("TRACE_IDEMPOTENCY_SECONDS", ranged(float, 0, 30 * 86_400),
                                        86_400.0)

    # Volume and consent controls (trace_service.controls): off for good, off while a file
    # exists (looked at once per refresh), and sampling by event key (empty: the shipped
    # policies/sampling.toml, which keeps everything).
    enabled: bool = setting("TRACE_ENABLED", boolean, True)
    kill_switch_file: str = setting("TRACE_KILL_SWITCH_FILE", _absolute_path, "")
    controls_refresh: float = setting("TRACE_CONTROLS_REFRESH_SECONDS", ranged(float, 0.1, 3600), 5.0)
    sampling_policy: str = setting("TRACE_SAMPLING_POLICY", existing_file, "")
    # How often the opted-out subjects are re-read (trace_service.opt_outs): the longest a new
    # opt-out takes to apply in every process.
    opt_out_refresh: float = setting("TRACE_OPT_OUT_REFRESH_SECONDS", ranged(float, 0.1, 86_400), 30.0)

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
