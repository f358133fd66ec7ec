"""Compliance reports' I/O edge: gather the facts from the database, build, store, record.

:func:`gather` reads what a report states from the live table (any layout), the job ledger,
the persisted counters, a leak scan of the period's rows and a live grants check, into a
``governance.reports.ReportFacts``; whatever it cannot read becomes a ``not_gathered`` reason,
never a silent zero. :func:`generate` builds the report, stores it with its SHA-256
(``trace_reports``) and records the run in the job ledger (``report``).

The period is whole days on the table's wall clock (``TRACE_TABLE_TIMEZONE``), both ends
included; ledger and counter times are UTC and are compared with the period's UTC bounds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.grants import check_grants
from governance.masking import Masker
from governance.report_store import StoredReport, save_report
from governance.reports import (
    FINDINGS_LISTED,
    CounterSample,
    Period,
    ReportFacts,
    RetentionFacts,
    build_report,
    wall_to_utc,
)
from governance.sampling import SamplingPolicy, load_sampling_policy
from jobs.cutoff import format_wall, retention_cutoff, wall_text
from jobs.leak_scan import run_scan
from jobs.ledger import LedgerRow, RunRecord, details_json, read_runs, record_run, verify_chain
from jobs.report_policy import ReportsPolicy, load_reports_policy
from jobs.retention_policy import RetentionPolicy, hour_minute, load_retention_policy
from trace_service.db import is_mysql, table_layout
from trace_service.http.config import ServiceConfig
from trace_service.http.counters import read_samples
from trace_service.layout import TABLE_NAME
from trace_service.opt_outs import load_opt_outs
from trace_service.writer import masker_from_config

logger = logging.getLogger("jobs.compliance")
RETENTION_JOBS = ("retention", "prune", "partitions")
_RUN_FIELDS = ("job", "status", "dry_run", "started_at", "finished_at", "cutoff", "rows_deleted",
               "partitions_dropped", "error")


@dataclass(frozen=True)
class ReportInputs:
    """The policies and settings a report is made with."""

    zone: str
    retention: RetentionPolicy
    reports: ReportsPolicy
    masker: Masker
    counters_persist_seconds: float = 60.0
    sampling: SamplingPolicy | None = None


def report_inputs(config: ServiceConfig) -> ReportInputs:
    """The policies and masker named by ``config`` (the shipped policy files by default)."""
    return ReportInputs(
        zone=config.table_timezone,
        retention=load_retention_policy(config.retention_policy or None),
        reports=load_reports_policy(config.reports_policy or None),
        masker=masker_from_config(config),
        counters_persist_seconds=config.counters_persist_seconds,
        sampling=load_sampling_policy(config.sampling_policy or None),
    )


def previous_week(now: datetime, zone: str) -> Period:
    """Monday to Sunday of the week before the one ``now`` (aware) falls in, on ``zone``'s clock."""
    today = now.astimezone(ZoneInfo(zone)).date()
    monday = today - timedelta(days=today.weekday() + 7)
    return Period(monday, monday + timedelta(days=6))


def expected_runs(times: tuple[str, ...], zone: str, start_utc: datetime, end_utc: datetime) -> int:
    """How many daily ``HH:MM`` runs in ``zone`` fall within ``[start_utc, end_utc)`` (naive UTC)."""
    tz = ZoneInfo(zone)
    first = start_utc.replace(tzinfo=UTC).astimezone(tz).date() - timedelta(days=1)
    last = end_utc.replace(tzinfo=UTC).astimezone(tz).date() + timedelta(days=1)
    count = 0
    day = first
    while day <= last:
        for value in times:
            hour, minute = hour_minute(value)
            at = datetime.combine(day, time(hour, minute), tz).astimezone(UTC).replace(tzinfo=None)
            count += start_utc <= at < end_utc
        day += timedelta(days=1)
    return count


def _grouped(engine: Engine, expression: str, time_column: str, start: str, end: str) -> dict[str, int]:
    query = sa.text(f"SELECT {expression} AS k, COUNT(*) FROM {TABLE_NAME} "
                    f"WHERE {time_column} >= :start AND {time_column} < :end GROUP BY {expression}")
    with engine.connect() as conn:
        return {str(k): int(n) for k, n in conn.execute(query, {"start": start, "end": end}).all()}


def _run_dict(row: LedgerRow) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.id, **{f: getattr(row.record, f) for f in _RUN_FIELDS}}
    if row.record.job in ("erase", "export", "opt_out"):
        # The subject as the run described it (``email_hash 1a2b3c…``): the ledger has no email.
        details = json.loads(row.record.details or "{}")
        out["subject"] = details.get("subject")
        if row.record.job == "opt_out":
            out["action"] = details.get("action")  # add or remove
        if row.record.job == "export":
            out["rows_exported"] = details.get("count")
            out["format"] = details.get("format")
    return out


def _retention(engine: Engine, inputs: ReportInputs, now: datetime, time_column: str,
               runs: list[dict[str, Any]], start_utc: datetime, end_utc: datetime) -> RetentionFacts:
    """The table's oldest and expired rows now, the period's retention runs, the ledger's chain."""
    days, grace = inputs.retention.days, inputs.reports.grace_hours
    cutoff = format_wall(retention_cutoff(now, days, inputs.zone))
    grace_cutoff = format_wall(retention_cutoff(now - timedelta(hours=grace), days, inputs.zone))
    query = sa.text(f"SELECT MIN({time_column}), SUM({time_column} < :cutoff), "
                    f"SUM({time_column} < :grace) FROM {TABLE_NAME}")
    with engine.connect() as conn:
        oldest, older, beyond = conn.execute(query, {"cutoff": cutoff, "grace": grace_cutoff}).one()
    chain = verify_chain(read_runs(engine))
    # Runs of the period still to come are not expected yet.
    until = min(end_utc, now.astimezone(UTC).replace(tzinfo=None))
    return RetentionFacts(
        window_days=days, cutoff=cutoff, grace_hours=grace, grace_cutoff=grace_cutoff,
        oldest_row=wall_text(oldest),
        rows_older_than_window=int(older or 0), rows_older_than_grace=int(beyond or 0),
        runs=[r for r in runs if r["job"] in RETENTION_JOBS],
        expected_runs=expected_runs(inputs.retention.schedule_times,
                                    inputs.retention.schedule_timezone, start_utc, until),
        chain={"ok": chain.ok, "rows": chain.rows, "broken_at": chain.broken_at, "reason": chain.reason},
    )


def gather(engine: Engine, period: Period, inputs: ReportInputs, now: datetime,
           trigger: str = "manual") -> ReportFacts:
    """Every fact a report for ``period`` states, read now (``now`` aware)."""
    layout = table_layout(engine)
    column = layout.time_column
    start, end = format_wall(period.start), format_wall(period.end)
    start_utc, end_utc = wall_to_utc(period.start, inputs.zone), wall_to_utc(period.end, inputs.zone)
    day = f"DATE({column})" if is_mysql(engine) else f"substr({column}, 1, 10)"
    not_gathered: dict[str, str] = {}

    retention: RetentionFacts | None = None
    erasures: list[dict[str, Any]] = []
    exports: list[dict[str, Any]] = []
    opt_out_changes: list[dict[str, Any]] = []
    try:
        runs = [_run_dict(row) for row in read_runs(engine, since=start_utc, until=end_utc)]
        retention = _retention(engine, inputs, now, column, runs, start_utc, end_utc)
        erasures = [{k: r[k] for k in ("id", "started_at", "status", "dry_run", "rows_deleted", "subject")}
                    for r in runs if r["job"] == "erase"]
        exports = [{k: r[k] for k in ("id", "started_at", "status", "rows_exported", "format", "subject")}
                   for r in runs if r["job"] == "export"]
        opt_out_changes = [{k: r[k] for k in ("id", "started_at", "action", "subject")}
                           for r in runs if r["job"] == "opt_out"]
    except sa.exc.SQLAlchemyError as exc:
        not_gathered["retention"] = f"the job ledger could not be read ({type(exc).__name__}: run " \
                                    "`flask db upgrade`)"

    scan = run_scan(engine, inputs.masker, time_from=start, time_to=end,
                    batch_size=inputs.reports.scan_batch_size, keep=FINDINGS_LISTED)
    counters = _counters(engine, end_utc, not_gathered)
    not_gathered["loss (limits)"] = (
        f"each service process persists its counters every {inputs.counters_persist_seconds:g} s: "
        "the counts of a process's last interval before it was killed, and of writers outside the "
        "service app (library use, the jobs process), are not included")
    return ReportFacts(
        period=period, timezone=inputs.zone, layout=layout.name, generated_at=now.astimezone(UTC),
        trigger=trigger, retention=retention,
        volume_by_day=_grouped(engine, day, column, start, end),
        volume_by_event_key=_grouped(engine, "event_key", column, start, end),
        volume_by_severity=_grouped(engine, "severity", column, start, end),
        scan=scan.tally.as_dict(), findings=[f.as_dict() for f in scan.findings],
        masking_policy={"sha256": inputs.masker.policy.sha256,
                        "source": Path(inputs.masker.policy.source).name},
        grants=check_grants(engine).as_dict(), counters=counters, erasures=erasures,
        exports=exports, sampling=None if inputs.sampling is None else inputs.sampling.as_report(),
        opt_outs=_opt_outs_in_force(engine, not_gathered), opt_out_changes=opt_out_changes,
        not_gathered=not_gathered,
    )


def _opt_outs_in_force(engine: Engine, not_gathered: dict[str, str]) -> dict[str, int] | None:
    try:
        current = load_opt_outs(engine)
    except sa.exc.SQLAlchemyError as exc:
        not_gathered["opt-outs"] = f"trace_opt_outs could not be read ({type(exc).__name__}: run " \
                                   "`flask db upgrade`)"
        return None
    return {"actors": len(current.actor_ids), "email_hashes": len(current.email_hashes)}


def _counters(engine: Engine, end_utc: datetime, not_gathered: dict[str, str]) -> list[CounterSample] | None:
    try:
        samples = read_samples(engine, end_utc)
    except sa.exc.SQLAlchemyError as exc:
        not_gathered["loss"] = f"trace_counter_snapshots could not be read ({type(exc).__name__}: " \
                               "run `flask db upgrade`)"
        return None
    if not samples:
        not_gathered["loss"] = ("no service process persisted counters before the period ended "
                                "(TRACE_COUNTERS_PERSIST_SECONDS=0, or no service ran)")
        return None
    return samples


def generate(engine: Engine, period: Period, inputs: ReportInputs, now: datetime,
             trigger: str = "manual") -> StoredReport:
    """Gather, build, store (with SHA-256) and record in the ledger one report."""
    facts = gather(engine, period, inputs, now, trigger)
    report = build_report(facts)
    stored = save_report(engine, report)
    record_run(engine, RunRecord(
        job="report", status="ok", started_at=now.astimezone(UTC).replace(tzinfo=None),
        finished_at=datetime.now(UTC).replace(tzinfo=None),
        details=details_json({"report_id": stored.id, "sha256": stored.sha256,
                              "period": f"{period.first_day}..{period.last_day}",
                              "status": stored.status, "trigger": trigger})))
    logger.info("report %d for %s..%s: %s (sha256 %s)", stored.id, period.first_day,
                period.last_day, stored.status, stored.sha256)
    return stored
