"""Loading and validating ``policies/reports.toml`` into a frozen :class:`ReportsPolicy`.

Errors are :class:`PolicyError` naming the file, the table, the key, the value and the fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from governance.errors import PolicyError
from governance.policy_files import get_positive, get_value, get_zone, parse_policy_toml, read_policy_file
from jobs.retention_policy import HHMM

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ReportsPolicy:
    """When the weekly report is made and how; see ``policies/reports.toml``."""

    weekday: str = "mon"
    time: str = "06:00"
    timezone: str = "UTC"
    misfire_grace_seconds: int = 21_600
    grace_hours: int = 26
    scan_batch_size: int = 2000
    sha256: str = ""
    source: str = "<defaults>"


DEFAULT = ReportsPolicy()  # the one place each default is written: the dataclass


def parse_reports_policy(data: bytes, source: str = "<bytes>") -> ReportsPolicy:
    """Validate the bytes of a reports policy file into a :class:`ReportsPolicy`."""
    doc = parse_policy_toml(data, source)
    where = f"{source} [schedule]"
    schedule = get_value(doc, "schedule", dict, source, {})
    weekday = get_value(schedule, "weekday", str, where, DEFAULT.weekday)
    if weekday not in WEEKDAYS:
        raise PolicyError(f"{where}: weekday = {weekday!r} is invalid: one of {', '.join(WEEKDAYS)}")
    time = get_value(schedule, "time", str, where, DEFAULT.time)
    if not HHMM.fullmatch(time):
        raise PolicyError(f'{where}: time = {time!r} is invalid: a 24-hour "HH:MM" is required')
    zone = get_zone(schedule, "timezone", where, DEFAULT.timezone)
    retention = get_value(doc, "retention", dict, source, {})
    scan = get_value(doc, "scan", dict, source, {})
    return ReportsPolicy(
        weekday=weekday, time=time, timezone=zone,
        misfire_grace_seconds=get_positive(schedule, "misfire_grace_seconds", where,
                                           DEFAULT.misfire_grace_seconds),
        grace_hours=get_positive(retention, "grace_hours", f"{source} [retention]",
                                 DEFAULT.grace_hours),
        scan_batch_size=get_positive(scan, "batch_size", f"{source} [scan]", DEFAULT.scan_batch_size),
        sha256=hashlib.sha256(data).hexdigest(), source=source,
    )


def load_reports_policy(path: str | Path | None = None) -> ReportsPolicy:
    """Read and validate a reports policy file (``policies/reports.toml`` by default)."""
    return parse_reports_policy(*read_policy_file(path, "reports.toml"))
