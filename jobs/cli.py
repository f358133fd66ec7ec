"""``flask jobs ...``: every maintenance job as a command, for DBAs.

* ``flask jobs prune [--dry-run] [--run-time S] [--batch-size N] [--pause-ms N]``
* ``flask jobs retention [--dry-run]``: what the scheduler runs (partitions, then prune)
* ``flask jobs partitions plan | apply [--dry-run] | convert [--execute]``
* ``flask jobs ledger [--job NAME] [--limit N] [--verify]``
* ``flask jobs run-scheduler``: the scheduler process (never inside web workers)

Registered as an entry point of ``trace_service.commands`` (``setup.cfg``), which the
service's app loads only when the command line asks for it, so web workers never import this
package. Jobs use their own engine, with the audit_logs guard like every engine here and an I/O
timeout long enough for DDL. Ctrl-C or SIGTERM stops a prune cleanly between batches.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.engine import Engine

from governance.errors import PolicyError, TelemetryError
from jobs import ddl
from jobs.cutoff import retention_cutoff
from jobs.ledger import RunRecord, read_runs, verify_chain
from jobs.partitions import COPY_ROWS_PER_SECOND, convert_plan
from jobs.pruning import PrunePlan
from jobs.replicas import ReplicaLag
from jobs.retention import JobOptions, partitions_job, plan_for, prune_job, retention_job
from jobs.retention_policy import RetentionPolicy, load_retention_policy
from trace_service.db import create_engine, table_layout
from trace_service.http.config import ServiceConfig

jobs_cli = AppGroup("jobs", help="Retention: pruning, partitions, the job ledger, the scheduler.")
# DDL (a partition split, a conversion) may legitimately run for minutes.
JOB_IO_TIMEOUT = 3600.0


def job_engine(config: ServiceConfig) -> Engine:
    """An engine for maintenance: guarded, with a long I/O timeout.

    Five connections: the scheduler's leader lock, the job's lock, the batches, and short
    reads (plans, lock checks, the ledger) beside them."""
    return create_engine(config.database_url, connect_timeout=config.connect_timeout,
                         io_timeout=JOB_IO_TIMEOUT, pool_size=5)


def cli_config() -> ServiceConfig:
    """The running app's config (commands run inside the app context)."""
    config: ServiceConfig = current_app.extensions["trace_config"]
    return config


def _policy() -> RetentionPolicy:
    try:
        return load_retention_policy(cli_config().retention_policy or None)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def command_engine() -> Iterator[Engine]:
    """The jobs' engine for one command; our errors and the database's become a clean exit 1."""
    engine = job_engine(cli_config())
    try:
        yield engine
    except (TelemetryError, sa.exc.SQLAlchemyError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    finally:
        engine.dispose()


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set an event the jobs check between batches (a clean, resumable stop)."""
    stop = threading.Event()
    handlers: dict[signal.Signals, Any] = {}

    def handle(signum: int, _frame: object) -> None:
        click.echo(f"\nsignal {signum}: stopping after the current batch", err=True)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, handle)
    try:
        yield stop
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _run_job(job: Callable[..., RunRecord], dry_run: bool, progress: bool,
             policy: RetentionPolicy | None = None) -> None:
    config, policy = cli_config(), policy or _policy()
    probe = ReplicaLag(policy.prune.replica_urls) if policy.prune.replica_urls else None
    bar: Any = None

    def on_prune_plan(plan: PrunePlan) -> None:
        nonlocal bar
        click.echo(("would prune " if dry_run else "pruning ") + plan.describe())
        if progress and not dry_run and plan.rows:
            new_bar: Any = click.progressbar(length=plan.rows, label="deleting", show_pos=True,
                                             show_eta=True, file=sys.stderr)
            bar = new_bar.__enter__()

    with command_engine() as engine, _stop_on_signals() as stop:
        options = JobOptions(
            dry_run=dry_run, stop=stop, on_plan=click.echo, on_prune_plan=on_prune_plan,
            on_batch=lambda n: bar.update(n) if bar is not None else None, lag_probe=probe)
        try:
            record = job(engine, policy, config.table_timezone, _now(), options)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
            if probe is not None:
                probe.close()
    _report(record)


def _report(record: RunRecord) -> None:
    click.echo(f"{record.job}: {record.status}; cut-off {record.cutoff} ({record.table_timezone}); "
               f"{record.rows_deleted} rows deleted")
    if record.first_id is not None:
        click.echo(f"ids {record.first_id}..{record.last_id}, times {record.first_time} .. "
                   f"{record.last_time}")
    if record.partitions_created or record.partitions_dropped:
        click.echo(f"partitions created: {record.partitions_created or '-'}; dropped: "
                   f"{record.partitions_dropped or '-'}; waited {record.lock_wait_ms} ms for locks")
    if record.details:
        click.echo(f"statistics: {record.details}")
    if record.status in {"failed", "skipped", "stopped"}:
        click.echo(f"{record.status}: {record.error}", err=True)
    if record.status in {"failed", "skipped"}:
        raise SystemExit(1)


@jobs_cli.command("prune")
@click.option("--dry-run", is_flag=True, help="Print the plan (rows, id and time range); delete nothing.")
@click.option("--run-time", type=click.FloatRange(min=0), default=None,
              help="Stop cleanly after this many seconds (0: until done). Default: the policy's.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="First batch size.")
@click.option("--pause-ms", type=click.IntRange(min=0), default=None, help="Sleep between batches.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="A progress bar.")
def prune(dry_run: bool, run_time: float | None, batch_size: int | None, pause_ms: int | None,
          progress: bool) -> None:
    """Delete rows older than the retention window, in short batches."""
    policy = _policy()
    overrides: dict[str, Any] = {}
    if run_time is not None:
        overrides["max_run_seconds"] = int(run_time)
    if pause_ms is not None:
        overrides["pause_ms"] = pause_ms
    if batch_size is not None:
        overrides.update(batch_size=batch_size,
                         min_batch_size=min(batch_size, policy.prune.min_batch_size),
                         max_batch_size=max(batch_size, policy.prune.max_batch_size))
    policy = dataclasses.replace(policy, prune=dataclasses.replace(policy.prune, **overrides))
    _run_job(prune_job, dry_run, progress, policy)


@jobs_cli.command("retention")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
def retention(dry_run: bool) -> None:
    """The scheduled job: maintain partitions (when partitioned), then prune the residue."""
    _run_job(retention_job, dry_run, progress=True)


partitions_cli = AppGroup("partitions", help="Daily partitions (MySQL/MariaDB).")
jobs_cli.add_command(partitions_cli)


@partitions_cli.command("plan")
def partitions_plan() -> None:
    """Print the partition plan and its SQL; change nothing."""
    policy, zone, now = _policy(), cli_config().table_timezone, _now()
    with command_engine() as engine:
        ddl.require_mysql(engine)
        plan = plan_for(engine, policy, zone, now, retention_cutoff(now, policy.days, zone))
    if plan is None:
        raise click.ClickException(
            "telemetry_traces is not partitioned: `flask jobs partitions convert` prints the "
            "ALTER that would partition it")
    click.echo(plan.describe())


@partitions_cli.command("apply")
@click.option("--dry-run", is_flag=True, help="Print the plan; run nothing.")
def partitions_apply(dry_run: bool) -> None:
    """Print the partition plan, then run it (each DDL with a short lock wait and retries)."""
    _run_job(partitions_job, dry_run, progress=False)


@partitions_cli.command("convert")
@click.option("--execute", is_flag=True,
              help="Run the ALTER. Without it (the default) the ALTER is only printed.")
def partitions_convert(execute: bool) -> None:
    """Print (or with --execute run) the ALTER that partitions a plain table by day."""
    config, policy = cli_config(), _policy()
    with command_engine() as engine:
        layout = table_layout(engine)
        if ddl.read_partitions(engine, layout) is not None:
            raise click.ClickException("telemetry_traces is already partitioned: see "
                                       "`flask jobs partitions plan`")
        rows, first_day = ddl.read_table_size(engine, layout)
        now = _now()
        plan = convert_plan(layout.time_column, rows, first_day,
                            now.astimezone(ZoneInfo(config.table_timezone)).date(),
                            retention_cutoff(now, policy.days, config.table_timezone),
                            policy.partitions.days_ahead, COPY_ROWS_PER_SECOND)
        click.echo(f"{plan.sql};\n\n{plan.warning}")
        if not execute:
            click.echo("\ndry run: nothing changed; run again with --execute to apply")
            return
        waited = ddl.run_ddl(engine, plan.sql, policy.partitions)
        click.echo(f"converted; waited {waited:.1f} s for locks")


@jobs_cli.command("ledger")
@click.option("--job", default=None, help="Only this job's runs (prune, partitions, retention).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--verify", is_flag=True, help="Check the whole hash chain; exit 1 if broken.")
def ledger(job: str | None, limit: int, verify: bool) -> None:
    """List recent runs from the job ledger, or verify its hash chain."""
    with command_engine() as engine:
        if verify:
            check = verify_chain(read_runs(engine))
            if not check.ok:
                raise click.ClickException(
                    f"ledger chain broken at row {check.broken_at} ({check.rows} checked): "
                    f"{check.reason}")
            click.echo(f"ledger chain intact: {check.rows} rows")
            return
        for row in read_runs(engine, job=job, limit=limit):
            r = row.record
            click.echo(f"{row.id}\t{r.job}\t{r.status}\t{r.started_at:%Y-%m-%d %H:%M:%S}Z\t"
                       f"cutoff {r.cutoff}\t{r.rows_deleted} rows\t{r.error or ''}")


@jobs_cli.command("run-scheduler")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus counters of runs by outcome on 127.0.0.1:PORT.")
def run_scheduler(metrics_port: int | None) -> None:
    """Run the scheduler (daily retention, the weekly report) until SIGTERM or Ctrl-C."""
    from jobs.compliance import report_inputs
    from jobs.scheduler import RetentionScheduler, weekly_report  # APScheduler loads only here

    config, policy = cli_config(), _policy()
    try:
        inputs = report_inputs(config)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    with command_engine() as engine, _stop_on_signals() as stop:
        RetentionScheduler(engine, policy, config.table_timezone, metrics_port=metrics_port,
                           extra_jobs=[weekly_report(engine, inputs)]).run(stop)
