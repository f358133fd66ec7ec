"""The I/O edge of partition maintenance: reading partitions, running DDL without pile-ups.

A DDL statement on ``telemetry_traces`` needs the table's metadata lock, which waits behind any
open transaction that touched the table, and every query arriving after it queues behind the
DDL. So :func:`run_ddl` first waits (with backoff) while transactions older than the policy's
threshold are open, then runs the DDL with a short ``lock_wait_timeout`` and retries with
doubling backoff; it returns how long it waited, for the ledger.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.errors import ConfigError, MaintenanceError
from jobs.partitions import CATCH_ALL, CatchAll, Partition
from jobs.retention_policy import PartitionPolicy
from trace_service.db import ER_LOCK_WAIT_TIMEOUT, error_code, is_mysql
from trace_service.layout import TABLE_NAME, Layout

logger = logging.getLogger("jobs.ddl")


def require_mysql(engine: Engine) -> None:
    """Partitions exist on MySQL/MariaDB only; say so plainly elsewhere."""
    if not is_mysql(engine):
        raise ConfigError(
            f"partitions need MySQL or MariaDB; this database is {engine.dialect.name}: "
            "use `flask jobs prune` (batched deletes) instead")


def read_partitions(engine: Engine, layout: Layout) -> list[Partition] | None:
    """The table's partitions in order, or None when it is not partitioned.

    Raises :class:`MaintenanceError` when it is partitioned in a way this module does not manage."""
    require_mysql(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT PARTITION_NAME, PARTITION_METHOD, PARTITION_EXPRESSION, "
            "PARTITION_DESCRIPTION, TABLE_ROWS FROM information_schema.PARTITIONS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table "
            "ORDER BY PARTITION_ORDINAL_POSITION"), {"table": TABLE_NAME}).all()
    if not rows or rows[0][0] is None:
        return None
    method, expression = rows[0][1], (rows[0][2] or "").replace("`", "").replace(" ", "").lower()
    wanted = f"to_days({layout.time_column})"
    if method != "RANGE" or expression != wanted:
        raise MaintenanceError(
            f"{TABLE_NAME} is partitioned by {method} ({rows[0][2]}); maintenance here needs "
            f"RANGE ({wanted}): leave this table to its own maintenance")
    return [Partition(str(name), None if desc == "MAXVALUE" else int(desc), int(count or 0))
            for name, _, _, desc, count in rows]


def read_catch_all(engine: Engine, layout: Layout) -> CatchAll:
    """Count the rows in the catch-all partition and the days they are dated."""
    col = layout.time_column
    with engine.connect() as conn:
        count, first, last = conn.execute(sa.text(
            f"SELECT COUNT(*), MIN({col}), MAX({col}) FROM {TABLE_NAME} PARTITION ({CATCH_ALL})"
        )).one()
    return CatchAll(int(count), _day(first), _day(last))


def _day(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return None


def read_table_size(engine: Engine, layout: Layout) -> tuple[int, date | None]:
    """Row count and the oldest row's day (for the convert plan)."""
    col = layout.time_column
    with engine.connect() as conn:
        count, first = conn.execute(sa.text(f"SELECT COUNT(*), MIN({col}) FROM {TABLE_NAME}")).one()
    return int(count), _day(first)


@dataclass(frozen=True)
class LongTransaction:
    """An open transaction old enough to hold up DDL."""

    thread_id: int
    seconds: int
    user: str | None
    host: str | None


def long_transactions(engine: Engine, older_than: int) -> list[LongTransaction]:
    """Open InnoDB transactions older than ``older_than`` seconds (other than our own)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT t.trx_mysql_thread_id, TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), "
            "p.USER, p.HOST FROM information_schema.INNODB_TRX t "
            "LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
            "WHERE t.trx_started <= NOW() - INTERVAL :age SECOND "
            "AND t.trx_mysql_thread_id <> CONNECTION_ID()"), {"age": older_than}).all()
    return [LongTransaction(int(r[0]), int(r[1]), r[2], r[3]) for r in rows]


def run_ddl(engine: Engine, sql: str, policy: PartitionPolicy,
            stop: threading.Event | None = None) -> float:
    """Run one DDL statement safely (module docstring); return the seconds spent waiting."""
    stop = stop or threading.Event()
    waited = 0.0
    delay = policy.backoff_seconds
    for attempt in range(policy.retries + 1):
        blockers = long_transactions(engine, policy.long_transaction_seconds)
        if not blockers:
            began = time.perf_counter()
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text(
                        f"SET SESSION lock_wait_timeout = {int(policy.lock_wait_timeout)}"))
                    conn.execute(sa.text(sql))
                    conn.commit()
                return waited
            except sa.exc.OperationalError as exc:
                if error_code(exc) != ER_LOCK_WAIT_TIMEOUT:
                    raise
                waited += time.perf_counter() - began
                logger.warning("DDL waited %ss for the metadata lock (attempt %d); backing off",
                               policy.lock_wait_timeout, attempt + 1)
        else:
            logger.warning("DDL held back by %d open transaction(s), oldest %d s (thread %d)",
                           len(blockers), max(b.seconds for b in blockers), blockers[0].thread_id)
        if attempt == policy.retries:
            break
        stop.wait(delay)
        waited += delay
        delay = min(delay * 2, 60.0)
        if stop.is_set():
            raise MaintenanceError("stopped while waiting to run partition DDL")
    raise MaintenanceError(
        f"partition DDL did not get the table's metadata lock after {policy.retries + 1} "
        f"attempts ({waited:.1f} s): find the long transactions in "
        "information_schema.INNODB_TRX, or raise [partitions] retries")
