"""Loading and validating ``policies/retention.toml`` into a frozen :class:`RetentionPolicy`.

Errors are :class:`PolicyError` naming the file, the table, the key, the value and what is
allowed. The file's SHA-256 goes with the policy, for the job ledger and the reports.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from governance.errors import PolicyError
from governance.policy_files import get_positive, get_value, get_zone, parse_policy_toml, read_policy_file

HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def hour_minute(value: str) -> tuple[int, int]:
    """An ``HH:MM`` already checked against :data:`HHMM`, as (hour, minute)."""
    hour, minute = value.split(":")
    return int(hour), int(minute)


@dataclass(frozen=True)
class PrunePolicy:
    """How batched deletes may touch the live table."""

    batch_size: int = 500
    min_batch_size: int = 20
    max_batch_size: int = 5000
    budget_ms: int = 50
    pause_ms: int = 0
    max_run_seconds: int = 0
    lock_wait_timeout: int = 2
    replica_urls: tuple[str, ...] = field(default=(), repr=False)  # may hold passwords
    max_lag_seconds: int = 10
    lag_check_interval: float = 1.0


@dataclass(frozen=True)
class PartitionPolicy:
    """How partition DDL may touch the live table."""

    days_ahead: int = 7
    lock_wait_timeout: int = 2
    retries: int = 5
    backoff_seconds: float = 1.0
    long_transaction_seconds: int = 30


@dataclass(frozen=True)
class RetentionPolicy:
    """The whole retention policy; see ``policies/retention.toml`` for each field."""

    days: int = 30
    prune: PrunePolicy = PrunePolicy()
    partitions: PartitionPolicy = PartitionPolicy()
    schedule_timezone: str = "UTC"
    schedule_times: tuple[str, ...] = ("03:15",)
    misfire_grace_seconds: int = 3600
    sha256: str = ""
    source: str = "<defaults>"


# The one place each default is written: the dataclasses.
DEFAULT, PRUNE, PARTITIONS = RetentionPolicy(), PrunePolicy(), PartitionPolicy()


def _non_negative(table: dict[str, Any], key: str, where: str, default: int) -> int:
    value = get_value(table, key, int, where, default)
    if value < 0:
        raise PolicyError(f"{where}: {key} = {value} is invalid: 0 or a positive integer is required")
    return value


def _seconds(table: dict[str, Any], key: str, where: str, default: float) -> float:
    value = get_value(table, key, float, where, default)
    if not 0 < value <= 3600:
        raise PolicyError(f"{where}: {key} = {value} is invalid: seconds in (0, 3600] are required")
    return value


def _prune(doc: dict[str, Any], source: str) -> PrunePolicy:
    where, table = f"{source} [prune]", get_value(doc, "prune", dict, source, {})
    replicas = get_value(doc, "replicas", dict, source, {})
    rwhere = f"{source} [replicas]"
    policy = PrunePolicy(
        batch_size=get_positive(table, "batch_size", where, PRUNE.batch_size),
        min_batch_size=get_positive(table, "min_batch_size", where, PRUNE.min_batch_size),
        max_batch_size=get_positive(table, "max_batch_size", where, PRUNE.max_batch_size),
        budget_ms=get_positive(table, "budget_ms", where, PRUNE.budget_ms),
        pause_ms=_non_negative(table, "pause_ms", where, PRUNE.pause_ms),
        max_run_seconds=_non_negative(table, "max_run_seconds", where, PRUNE.max_run_seconds),
        lock_wait_timeout=get_positive(table, "lock_wait_timeout", where, PRUNE.lock_wait_timeout),
        replica_urls=tuple(_replica_urls(replicas, rwhere)),
        max_lag_seconds=get_positive(replicas, "max_lag_seconds", rwhere, PRUNE.max_lag_seconds),
        lag_check_interval=_seconds(replicas, "check_interval_seconds", rwhere, PRUNE.lag_check_interval),
    )
    if not policy.min_batch_size <= policy.batch_size <= policy.max_batch_size:
        raise PolicyError(
            f"{where}: batch_size = {policy.batch_size} is outside min_batch_size = "
            f"{policy.min_batch_size} .. max_batch_size = {policy.max_batch_size}: move it inside"
        )
    return policy


def _replica_urls(table: dict[str, Any], where: str) -> list[str]:
    urls = get_value(table, "urls", list, where, [])
    for url in urls:
        if not isinstance(url, str) or not re.match(r"(mysql|mariadb)(\+pymysql)?://", url):
            shown = re.sub(r":[^:@/]*@", ":<hidden>@", url) if isinstance(url, str) else repr(url)
            raise PolicyError(f"{where}: urls holds {shown}: mysql://user:pass@host/db URLs are required")
    return urls


def _partitions(doc: dict[str, Any], source: str) -> PartitionPolicy:
    where, table = f"{source} [partitions]", get_value(doc, "partitions", dict, source, {})
    return PartitionPolicy(
        days_ahead=get_positive(table, "days_ahead", where, PARTITIONS.days_ahead),
        lock_wait_timeout=get_positive(table, "lock_wait_timeout", where, PARTITIONS.lock_wait_timeout),
        retries=_non_negative(table, "retries", where, PARTITIONS.retries),
        backoff_seconds=_seconds(table, "backoff_seconds", where, PARTITIONS.backoff_seconds),
        long_transaction_seconds=get_positive(table, "long_transaction_seconds", where,
                                              PARTITIONS.long_transaction_seconds),
    )


def _schedule(doc: dict[str, Any], source: str) -> tuple[str, tuple[str, ...], int]:
    where, table = f"{source} [schedule]", get_value(doc, "schedule", dict, source, {})
    zone = get_zone(table, "timezone", where, DEFAULT.schedule_timezone)
    times = get_value(table, "retention", list, where, list(DEFAULT.schedule_times))
    for value in times:
        if not isinstance(value, str) or not HHMM.fullmatch(value):
            raise PolicyError(f"{where}: retention holds {value!r}: 24-hour \"HH:MM\" times are required")
    grace = get_positive(table, "misfire_grace_seconds", where, DEFAULT.misfire_grace_seconds)
    return zone, tuple(times), grace


def parse_retention_policy(data: bytes, source: str = "<bytes>") -> RetentionPolicy:
    """Validate the bytes of a retention policy file into a :class:`RetentionPolicy`."""
    doc = parse_policy_toml(data, source)
    retention = get_value(doc, "retention", dict, source, {})
    days = get_positive(retention, "days", f"{source} [retention]", DEFAULT.days)
    zone, times, grace = _schedule(doc, source)
    return RetentionPolicy(
        days=days, prune=_prune(doc, source), partitions=_partitions(doc, source),
        schedule_timezone=zone, schedule_times=times, misfire_grace_seconds=grace,
        sha256=hashlib.sha256(data).hexdigest(), source=source,
    )


def load_retention_policy(path: str | Path | None = None) -> RetentionPolicy:
    """Read and validate a retention policy file (``policies/retention.toml`` by default)."""
    return parse_retention_policy(*read_policy_file(path, "retention.toml"))
