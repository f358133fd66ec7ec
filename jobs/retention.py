"""The retention jobs: each run computes its cut-off, plans, applies, and writes one ledger row.

* :func:`prune_job`: batched deletes below the cut-off (any table, SQLite included);
* :func:`partitions_job`: the partition plan applied (MySQL/MariaDB, partitioned table);
* :func:`retention_job`: what the scheduler runs: when the table is partitioned, the partition
  plan (expired partitions dropped, partitions made ahead), then the expired residue of the
  boundary partition pruned; otherwise the prune alone.

Only one of them runs at a time across hosts (a named lock); a run that finds the lock taken
records itself as ``skipped``. A failure is recorded as ``failed`` with its error, then raised.
``now`` is always an argument: the CLI and the scheduler pass the clock, tests pass a value.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from governance.errors import MaintenanceError
from jobs import ddl
from jobs.cutoff import format_wall, retention_cutoff
from jobs.ledger import LedgerRow, RunRecord, details_json, record_run
from jobs.locks import RETENTION_LOCK, NamedLock
from jobs.partitions import PartitionPlan, plan_partitions
from jobs.pruning import PrunePlan, Pruner, PruneStats, plan_prune
from jobs.retention_policy import RetentionPolicy
from trace_service.db import is_mysql, table_layout

logger = logging.getLogger("jobs.retention")


@dataclass
class JobOptions:
    """How one run is driven: dry run, stop signal, progress and plan callbacks, overrides."""

    dry_run: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    on_plan: Callable[[str], None] | None = None
    on_prune_plan: Callable[[PrunePlan], None] | None = None
    on_batch: Callable[[int], None] | None = None
    lag_probe: Callable[[], float] | None = None
    max_run_seconds: float | None = None


def _utc_naive(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(tzinfo=None)


def _run(engine: Engine, job: str, now: datetime, zone: str, cutoff: datetime,
         options: JobOptions, body: Callable[[RunRecord], object]) -> RunRecord:
    """Run ``body`` holding the retention lock, and write the run's ledger row however it ends."""
    record = RunRecord(job=job, status="ok", started_at=_utc_naive(now), finished_at=_utc_naive(now),
                       table_timezone=zone, dry_run=options.dry_run,
                       cutoff=format_wall(cutoff))
    lock = NamedLock(engine, RETENTION_LOCK)
    try:
        if lock.acquire():
            body(record)
            if options.dry_run and record.status == "ok":
                record.status = "dry_run"
        else:
            record.status = "skipped"
            record.error = "another retention run holds the lock"
            logger.warning("%s skipped: another retention run holds the lock", job)
    except Exception as exc:
        record.status = "failed"
        record.error = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        lock.release()
        record.finished_at = datetime.now(UTC).replace(tzinfo=None)
        _record_quietly(engine, record)
    return record


def _record_quietly(engine: Engine, record: RunRecord) -> LedgerRow | None:
    try:
        return record_run(engine, record)
    except Exception:  # the run's own outcome matters more than its ledger row
        logger.exception("could not write the ledger row of %s (%s)", record.job, record.status)
        return None


def _prune(engine: Engine, policy: RetentionPolicy, cutoff: datetime, record: RunRecord,
           options: JobOptions) -> PruneStats | None:
    layout = table_layout(engine)
    plan = plan_prune(engine, layout, cutoff, policy.prune.batch_size)
    if options.on_prune_plan is not None:
        options.on_prune_plan(plan)
    if options.dry_run:
        record.details = details_json({"plan_rows": plan.rows, "policy_sha256": policy.sha256,
                                       "estimated_batches": plan.estimated_batches})
        record.first_id, record.last_id = plan.first_id, plan.last_id
        record.first_time, record.last_time = plan.oldest, plan.newest
        return None
    pruner = Pruner(engine, policy.prune, stop=options.stop, lag_probe=options.lag_probe,
                    on_batch=options.on_batch, max_run_seconds=options.max_run_seconds)
    stats = pruner.run(plan)
    record.rows_deleted += stats.rows_deleted
    record.first_id, record.last_id = stats.first_id, stats.last_id
    record.first_time, record.last_time = stats.first_time, stats.last_time
    if stats.stopped:
        record.status = "stopped"
        record.error = stats.stopped
    record.details = details_json({**stats.summary(), "plan_rows": plan.rows,
                                   "policy_sha256": policy.sha256})
    return stats


def prune_job(engine: Engine, policy: RetentionPolicy, zone: str, now: datetime,
              options: JobOptions | None = None) -> RunRecord:
    """Delete the rows older than the window in batches; one ledger row."""
    options = options or JobOptions()
    cutoff = retention_cutoff(now, policy.days, zone)
    return _run(engine, "prune", now, zone, cutoff, options,
                lambda record: _prune(engine, policy, cutoff, record, options))


def _apply_partitions(engine: Engine, policy: RetentionPolicy, plan: PartitionPlan,
                      record: RunRecord, options: JobOptions) -> None:
    created: list[str] = []
    dropped: list[str] = []
    waited = 0.0
    try:
        for op in plan.operations:
            if options.stop.is_set():
                record.status, record.error = "stopped", "stop requested"
                break
            waited += ddl.run_ddl(engine, op.sql, policy.partitions, options.stop)
            created.extend(op.created)
            dropped.extend(name for name in op.dropped if name not in op.created)
    finally:
        record.partitions_created = ",".join(created) or None
        record.partitions_dropped = ",".join(dropped) or None
        record.lock_wait_ms = int(waited * 1000)


def plan_for(engine: Engine, policy: RetentionPolicy, zone: str, now: datetime,
             cutoff: datetime) -> PartitionPlan | None:
    """The partition plan for ``now`` and ``cutoff``, or None when the table is not partitioned."""
    layout = table_layout(engine)
    partitions = ddl.read_partitions(engine, layout)
    if partitions is None:
        return None
    today = now.astimezone(ZoneInfo(zone)).date()
    return plan_partitions(partitions, today, cutoff, policy.partitions.days_ahead,
                           ddl.read_catch_all(engine, layout))


def partitions_job(engine: Engine, policy: RetentionPolicy, zone: str, now: datetime,
                   options: JobOptions | None = None) -> RunRecord:
    """Apply the partition plan (create ahead, split the catch-all, drop expired); one ledger row."""
    options = options or JobOptions()
    ddl.require_mysql(engine)
    cutoff = retention_cutoff(now, policy.days, zone)

    def body(record: RunRecord) -> None:
        plan = plan_for(engine, policy, zone, now, cutoff)
        if plan is None:
            raise MaintenanceError(
                "telemetry_traces is not partitioned: `flask jobs partitions convert` prints "
                "the ALTER that partitions it (a DBA decision), or use `flask jobs prune`")
        _announce(plan, options)
        if not options.dry_run:
            _apply_partitions(engine, policy, plan, record, options)

    return _run(engine, "partitions", now, zone, cutoff, options, body)


def retention_job(engine: Engine, policy: RetentionPolicy, zone: str, now: datetime,
                  options: JobOptions | None = None) -> RunRecord:
    """The scheduled job: partitions (when partitioned), then the residue pruned; one ledger row."""
    options = options or JobOptions()
    cutoff = retention_cutoff(now, policy.days, zone)

    def body(record: RunRecord) -> None:
        plan = plan_for(engine, policy, zone, now, cutoff) if is_mysql(engine) else None
        if plan is not None:
            _announce(plan, options)
            if not options.dry_run:
                _apply_partitions(engine, policy, plan, record, options)
        if record.status == "ok":
            _prune(engine, policy, cutoff, record, options)

    return _run(engine, "retention", now, zone, cutoff, options, body)


def _announce(plan: PartitionPlan, options: JobOptions) -> None:
    text = plan.describe()
    logger.info("partition plan:\n%s", text)
    if options.on_plan is not None:
        options.on_plan(text)
