"""Daily RANGE partitions of ``telemetry_traces``: plan, then apply (MySQL/MariaDB only).

A partitioned table here is ``PARTITION BY RANGE (TO_DAYS(<time column>))`` with one partition
per day, named ``pYYYYMMDD`` for the day it holds, and a catch-all ``pmax`` (``MAXVALUE``).

:func:`plan_partitions` is pure: the partitions, today, the cut-off and the catch-all's rows in;
a list of :class:`Operation` (each with its SQL) out:

* **drop** every partition whose upper bound is at or below the cut-off: all its rows are
  expired (one ``DROP PARTITION`` statement for all of them);
* **split** future partitions that span several days (gaps) into daily ones (they are empty,
  so this is cheap); past multi-day partitions are left and noted: they go when their last day
  expires;
* **reorganize** the catch-all into daily partitions up to ``days_ahead`` days after today,
  and, when rows landed in it, over their days too (capped: rows dated far in the future stay
  in the catch-all and are noted).

:func:`convert_plan` describes the explicit, locking ``ALTER`` that partitions a plain table.
The I/O (reading ``information_schema``, running DDL safely) is in :mod:`jobs.ddl`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from trace_service.layout import TABLE_NAME

CATCH_ALL = "pmax"
_CATCH_ALL_DEFINITION = f"PARTITION {CATCH_ALL} VALUES LESS THAN MAXVALUE"
# How far past days_ahead the catch-all is split to hold rows dated in the future.
MAX_FUTURE_DAYS = 366
# Rows/s of the ALTER that partitions a plain table, measured by bench/prune.py on this machine
# (MariaDB 10.11, 1M layout-A rows of ~250 bytes: 9.8 s); used only for `convert`'s estimate.
COPY_ROWS_PER_SECOND = 100_000.0
# TO_DAYS('0001-01-01') is 366 while date(1, 1, 1).toordinal() is 1.
_TO_DAYS_OFFSET = 365


def to_days(day: date) -> int:
    """MySQL's ``TO_DAYS(day)``."""
    return day.toordinal() + _TO_DAYS_OFFSET


def from_days(number: int) -> date:
    """The date whose ``TO_DAYS`` is ``number``."""
    return date.fromordinal(number - _TO_DAYS_OFFSET)


def partition_name(day: date) -> str:
    """The name of the partition holding ``day``'s rows."""
    return f"p{day:%Y%m%d}"


@dataclass(frozen=True)
class Partition:
    """One partition: rows with ``TO_DAYS(time) < upper`` (``upper`` None: MAXVALUE)."""

    name: str
    upper: int | None
    rows: int = 0  # an estimate from information_schema, except for the catch-all

    @property
    def upper_day(self) -> date | None:
        """The first day not in this partition."""
        return None if self.upper is None else from_days(self.upper)


@dataclass(frozen=True)
class CatchAll:
    """What is in the catch-all partition (counted, not estimated)."""

    rows: int = 0
    first_day: date | None = None
    last_day: date | None = None


@dataclass(frozen=True)
class Operation:
    """One DDL statement of a plan."""

    kind: str  # "drop", "split" or "reorganize"
    sql: str
    reason: str
    created: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    moves_rows: int = 0


@dataclass(frozen=True)
class PartitionPlan:
    """Operations in the order they run, and what the plan chose to leave alone."""

    operations: tuple[Operation, ...]
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """The plan for people: each operation with its SQL, then the notes."""
        lines = [f"{len(self.operations)} operation(s)"]
        for number, op in enumerate(self.operations, 1):
            lines.append(f"{number}. {op.kind}: {op.reason}\n   {op.sql};")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def _less_than(day: date) -> str:
    return f"VALUES LESS THAN (TO_DAYS('{day.isoformat()}'))"


def _daily(first: date, end: date) -> list[str]:
    """Definitions of daily partitions for days ``first`` .. ``end - 1``."""
    days = (end - first).days
    return [f"PARTITION {partition_name(first + timedelta(d))} {_less_than(first + timedelta(d + 1))}"
            for d in range(days)]


def _names(first: date, end: date) -> tuple[str, ...]:
    return tuple(partition_name(first + timedelta(d)) for d in range((end - first).days))


def plan_partitions(partitions: Sequence[Partition], today: date, cutoff: datetime,
                    days_ahead: int, catch_all: CatchAll = CatchAll()) -> PartitionPlan:
    """The operations that bring ``partitions`` to policy (see the module docstring)."""
    bounded = [p for p in partitions if p.upper is not None]
    last = partitions[-1] if partitions else None
    if last is None or last.upper is not None:
        raise ValueError(f"{TABLE_NAME} has no MAXVALUE catch-all partition: add one with "
                         f"ALTER TABLE {TABLE_NAME} ADD PARTITION (PARTITION {CATCH_ALL} "
                         "VALUES LESS THAN MAXVALUE)")
    operations: list[Operation] = []
    notes: list[str] = []

    # Rows of a partition are all before midnight of its upper day.
    expired = [p for p in bounded if p.upper is not None and from_days(p.upper) <= cutoff.date()]
    if expired:
        names = tuple(p.name for p in expired)
        operations.append(Operation(
            "drop", f"ALTER TABLE {TABLE_NAME} DROP PARTITION {', '.join(names)}",
            f"{len(names)} partition(s) wholly older than the cut-off {cutoff:%Y-%m-%d %H:%M:%S}",
            dropped=names))

    lower: date | None = None
    for p in bounded:
        upper = p.upper_day
        assert upper is not None
        if lower is not None and (upper - lower).days > 1:
            if lower >= today:
                operations.append(Operation(
                    "split",
                    f"ALTER TABLE {TABLE_NAME} REORGANIZE PARTITION {p.name} INTO "
                    f"({', '.join(_daily(lower, upper))})",
                    f"{p.name} spans {(upper - lower).days} future days: one partition per day",
                    created=_names(lower, upper), dropped=(p.name,)))
            elif p not in expired:
                notes.append(f"{p.name} spans {(upper - lower).days} days ({lower} .. "
                             f"{upper - timedelta(1)}); it is dropped when its last day expires")
        lower = upper

    first = lower if lower is not None else _first_day(today, cutoff, catch_all.first_day)
    end = today + timedelta(days=days_ahead + 1)
    if catch_all.last_day is not None and catch_all.last_day >= end:
        cap = today + timedelta(days=MAX_FUTURE_DAYS)
        if catch_all.last_day >= cap:
            notes.append(f"rows dated up to {catch_all.last_day} are in {CATCH_ALL}; days after "
                         f"{cap - timedelta(1)} stay there (check the writers' clocks)")
        end = min(catch_all.last_day + timedelta(1), cap)
    if end > first:
        # On a first run the first partition also holds every older row (it has no lower bound).
        definitions, created = _daily(first, end), _names(first, end)
        reason = (f"daily partitions {created[0]} .. {created[-1]} ahead of the catch-all"
                  + (f"; moves the {catch_all.rows} row(s) that landed in {CATCH_ALL}"
                     if catch_all.rows else ""))
        operations.append(Operation(
            "reorganize",
            f"ALTER TABLE {TABLE_NAME} REORGANIZE PARTITION {CATCH_ALL} INTO "
            f"({', '.join([*definitions, _CATCH_ALL_DEFINITION])})",
            reason, created=created, dropped=(), moves_rows=catch_all.rows))
    return PartitionPlan(tuple(operations), tuple(notes))


def _first_day(today: date, cutoff: datetime, oldest: date | None) -> date:
    """Where daily partitions start when none exist yet: the oldest row's day, but not before
    the cut-off's (older rows share the first partition) nor after today."""
    return max(min(oldest or today, today), cutoff.date())


@dataclass(frozen=True)
class ConvertPlan:
    """The ALTER that partitions a plain table, and what it will cost."""

    sql: str
    rows: int
    estimated_seconds: float
    warning: str


def convert_plan(time_column: str, rows: int, first_day: date | None, today: date,
                 cutoff: datetime, days_ahead: int, copy_rows_per_second: float) -> ConvertPlan:
    """The explicit ALTER that partitions ``telemetry_traces`` by day, and its cost."""
    first = _first_day(today, cutoff, first_day)
    end = today + timedelta(days=days_ahead + 1)
    definitions = _daily(first, end)
    definitions.append(_CATCH_ALL_DEFINITION)
    sql = (f"ALTER TABLE {TABLE_NAME} DROP PRIMARY KEY, ADD PRIMARY KEY (id, {time_column}) "
           f"PARTITION BY RANGE (TO_DAYS({time_column})) ({', '.join(definitions)})")
    seconds = rows / copy_rows_per_second if copy_rows_per_second > 0 else 0.0
    warning = (
        f"This copies all {rows} rows into a new table (ALGORITHM=COPY): reads go on, but every "
        f"INSERT waits until it ends, about {seconds:.0f} s at {copy_rows_per_second:.0f} rows/s "
        "measured here. The writer drops rows as db_error once its io timeout passes; PHP "
        "requests fail. The primary key becomes (id, "
        f"{time_column}): partitioning needs the partition column in every unique key. Run it "
        "in a maintenance window, or through pt-online-schema-change --alter.")
    return ConvertPlan(sql, rows, seconds, warning)
