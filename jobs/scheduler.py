"""The retention scheduler: APScheduler 3, built in one place, run as its own process.

``flask jobs run-scheduler`` runs :meth:`RetentionScheduler.run`. Every host may run one; only
the holder of the MySQL named lock ``<database>.telemetry_traces.scheduler`` schedules (the
others wait on standby and take over within ``leader_retry`` seconds when the leader's
connection ends).
The leader checks every ``leader_check`` seconds that the lock is still its own, and stops
scheduling at once when it is not.

Jobs run with ``max_instances=1``, ``coalesce=True`` and the policy's misfire grace time. A
job's errors are written to the ledger by the job itself (``jobs.retention``); missed runs are
written here. Both are logged and counted (:attr:`RetentionScheduler.counts`, and Prometheus
counters when ``metrics_port`` is given). At start the database user's grants are checked:
a user that could write audit_logs is logged as an error.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import Engine

from governance.grants import check_grants
from jobs.compliance import ReportInputs, generate, previous_week
from jobs.ledger import RunRecord, record_run
from jobs.locks import LEADER_LOCK, NamedLock
from jobs.retention import JobOptions, retention_job
from jobs.retention_policy import RetentionPolicy, hour_minute

logger = logging.getLogger("jobs.scheduler")
RetentionJob = Callable[[Engine, RetentionPolicy, str, datetime, JobOptions], RunRecord]


@dataclass(frozen=True)
class ExtraJob:
    """Another job the leader schedules beside retention (the weekly compliance report)."""

    name: str
    trigger: BaseTrigger
    run: Callable[[], object]
    misfire_grace_seconds: int = 3600


def daily_triggers(policy: RetentionPolicy) -> list[BaseTrigger]:
    """One cron trigger per ``HH:MM`` of the policy's schedule, in its zone."""
    triggers: list[BaseTrigger] = []
    for value in policy.schedule_times:
        hour, minute = hour_minute(value)
        triggers.append(CronTrigger(hour=hour, minute=minute, timezone=policy.schedule_timezone))
    return triggers


def weekly_report(engine: Engine, inputs: ReportInputs) -> ExtraJob:
    """The weekly compliance report of the previous week, at the reports policy's day and time."""
    policy = inputs.reports
    hour, minute = hour_minute(policy.time)
    trigger = CronTrigger(day_of_week=policy.weekday, hour=hour, minute=minute, timezone=policy.timezone)

    def run() -> None:
        now = datetime.now(UTC)
        generate(engine, previous_week(now, inputs.zone), inputs, now, trigger="scheduled")

    return ExtraJob("report", trigger, run, policy.misfire_grace_seconds)


class RetentionScheduler:
    """Leader election plus an APScheduler ``BackgroundScheduler`` running the retention job."""

    def __init__(self, engine: Engine, policy: RetentionPolicy, zone: str, *,
                 triggers: Sequence[BaseTrigger] | None = None,
                 job: RetentionJob = retention_job,
                 leader_retry: float = 15.0, leader_check: float = 5.0,
                 metrics_port: int | None = None, extra_jobs: Sequence[ExtraJob] = ()) -> None:
        self.engine, self.policy, self.zone, self.job = engine, policy, zone, job
        self.triggers = list(triggers) if triggers is not None else daily_triggers(policy)
        self.extra_jobs = list(extra_jobs)
        self.leader_retry, self.leader_check = leader_retry, leader_check
        self.counts: Counter[str] = Counter()
        self.is_leader = threading.Event()
        self._job_stop = threading.Event()  # set when leadership ends: a prune stops between batches
        self._metrics = _metrics(metrics_port)

    def build(self) -> BackgroundScheduler:
        """The APScheduler instance with the retention job on each trigger."""
        scheduler = BackgroundScheduler(
            timezone=self.policy.schedule_timezone,
            job_defaults={"max_instances": 1, "coalesce": True,
                          "misfire_grace_time": self.policy.misfire_grace_seconds},
        )
        for number, trigger in enumerate(self.triggers):
            scheduler.add_job(self._run_job, trigger, id=f"retention-{number}", name="retention")
        for extra in self.extra_jobs:
            scheduler.add_job(extra.run, extra.trigger, id=extra.name, name=extra.name,
                              misfire_grace_time=extra.misfire_grace_seconds)
        scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_EXECUTED)
        return scheduler

    def run(self, stop: threading.Event) -> None:
        """Be leader or standby until ``stop`` is set."""
        check_grants(self.engine).log(logger)
        while not stop.is_set():
            lock = NamedLock(self.engine, LEADER_LOCK)
            try:
                if not lock.acquire():
                    logger.info("standby: another scheduler leads; retrying in %ss", self.leader_retry)
                    stop.wait(self.leader_retry)
                    continue
                self._lead(lock, stop)
            except Exception:  # a lost database must not end the process
                logger.exception("scheduler: database error; retrying in %ss", self.leader_retry)
                stop.wait(self.leader_retry)
            finally:
                lock.release()

    def _lead(self, lock: NamedLock, stop: threading.Event) -> None:
        logger.info("leader: scheduling retention at %s (%s)",
                    ", ".join(self.policy.schedule_times), self.policy.schedule_timezone)
        scheduler = self.build()
        self._job_stop.clear()
        scheduler.start()
        self.is_leader.set()
        try:
            while not stop.wait(self.leader_check):
                if not lock.still_held():
                    logger.error("leader lock lost (database connection ended): standing down")
                    break
        finally:
            self.is_leader.clear()
            self._job_stop.set()
            # APScheduler 3's shutdown() flags the scheduler stopped before it takes the job-store
            # lock, so a pass in progress that removes a finished (date-trigger) job then finds no
            # such job and raises JobLookupError in the scheduler's thread. remove_all_jobs()
            # waits for that pass under the same lock and leaves later passes nothing to remove;
            # running jobs are not interrupted, and shutdown still waits for them.
            scheduler.remove_all_jobs()
            scheduler.shutdown(wait=True)

    def _run_job(self) -> None:
        # The job writes its own ledger row, failures included, then raises for the listener.
        self.job(self.engine, self.policy, self.zone, datetime.now(UTC), JobOptions(stop=self._job_stop))

    def _on_event(self, event: JobExecutionEvent) -> None:
        kind = {EVENT_JOB_ERROR: "failed", EVENT_JOB_MISSED: "missed"}.get(event.code, "ok")
        self.counts[kind] += 1
        if self._metrics is not None:
            self._metrics.labels(outcome=kind).inc()
        if kind == "failed":
            logger.error("job %s failed: %s: %s", event.job_id, type(event.exception).__name__,
                         event.exception)
        elif kind == "missed":
            logger.error("%s run of %s was missed (past the misfire grace time)",
                         event.job_id, event.scheduled_run_time)
            scheduled = event.scheduled_run_time.astimezone(UTC).replace(tzinfo=None)
            job = "retention" if event.job_id.startswith("retention-") else event.job_id
            try:
                record_run(self.engine, RunRecord(
                    job=job, status="missed", started_at=scheduled, finished_at=scheduled,
                    error="the scheduler missed this run (process down or busy past the grace time)"))
            except Exception:  # logged above; the ledger may be what is down
                logger.exception("could not record the missed run in the ledger")



def _metrics(port: int | None) -> Any:
    if port is None:
        return None
    from prometheus_client import Counter as PromCounter
    from prometheus_client import start_http_server

    counter = PromCounter("trace_retention_runs_total", "Retention runs by outcome", ["outcome"])
    start_http_server(port, addr="127.0.0.1")
    return counter
