"""The scheduler: one leader across processes, runs recorded, misses and errors counted."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.triggers.date import DateTrigger
from sqlalchemy.engine import Engine

from jobs.ledger import read_runs
from jobs.retention_policy import RetentionPolicy
from jobs.scheduler import RetentionScheduler, daily_triggers
from tests.jobs.conftest import POLICY
from trace_service.db import create_engine

pytestmark = pytest.mark.mariadb


def start(scheduler: RetentionScheduler, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    return thread


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    done = threading.Event()
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while datetime.now(UTC) < deadline:
        if condition():
            return True
        done.wait(0.1)
    return condition()


def test_two_schedulers_started_together_run_the_job_once(php_table: Callable[[str], Engine],
                                                           mariadb_url: str) -> None:
    php_table("A")
    engines = [create_engine(mariadb_url, pool_size=5) for _ in range(2)]  # two "hosts"
    when = datetime.now(UTC) + timedelta(seconds=2)
    stop = threading.Event()
    schedulers = [RetentionScheduler(e, POLICY, "UTC", triggers=[DateTrigger(when)],
                                     leader_retry=0.3, leader_check=0.2) for e in engines]
    threads = [start(s, stop) for s in schedulers]
    try:
        assert wait_for(lambda: any(s.is_leader.is_set() for s in schedulers))
        assert wait_for(lambda: len(read_runs(engines[0])) >= 1)
        threading.Event().wait(1.0)  # time for a second run, were there one
        assert sum(s.is_leader.is_set() for s in schedulers) == 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for engine in engines:
            engine.dispose()
    rows = read_runs(create_engine(mariadb_url))
    assert len(rows) == 1, [r.record for r in rows]
    (row,) = rows
    assert row.record.job == "retention" and row.record.status == "ok"
    assert sum(s.counts["ok"] for s in schedulers) == 1


def test_the_standby_takes_over_when_the_leader_stops(php_table: Callable[[str], Engine],
                                                      mariadb_url: str) -> None:
    engine = php_table("A")
    first_stop, second_stop = threading.Event(), threading.Event()
    first = RetentionScheduler(engine, POLICY, "UTC", triggers=[], leader_retry=0.2, leader_check=0.1)
    second_engine = create_engine(mariadb_url, pool_size=5)
    second = RetentionScheduler(second_engine, POLICY, "UTC", triggers=[], leader_retry=0.2,
                                leader_check=0.1)
    threads = [start(first, first_stop)]
    assert wait_for(first.is_leader.is_set)
    threads.append(start(second, second_stop))
    threading.Event().wait(0.5)
    assert not second.is_leader.is_set()
    first_stop.set()
    threads[0].join(10)
    assert wait_for(second.is_leader.is_set)
    second_stop.set()
    threads[1].join(10)
    second_engine.dispose()


def test_a_missed_run_is_counted_and_written_to_the_ledger(php_table: Callable[[str], Engine]) -> None:
    engine = php_table("A")
    policy: RetentionPolicy = dataclasses.replace(POLICY, misfire_grace_seconds=1)
    missed = DateTrigger(datetime.now(UTC) - timedelta(minutes=5))
    stop = threading.Event()
    scheduler = RetentionScheduler(engine, policy, "UTC", triggers=[missed], leader_check=0.1)
    thread = start(scheduler, stop)
    try:
        assert wait_for(lambda: scheduler.counts["missed"] == 1)
    finally:
        stop.set()
        thread.join(10)
    (row,) = read_runs(engine)
    assert row.record.status == "missed" and "missed" in (row.record.error or "")


def test_a_failing_job_is_counted(php_table: Callable[[str], Engine]) -> None:
    engine = php_table("A")

    def broken(*_args: object) -> None:
        raise RuntimeError("boom")

    stop = threading.Event()
    scheduler = RetentionScheduler(engine, POLICY, "UTC", job=broken,  # type: ignore[arg-type]
                                   triggers=[DateTrigger(datetime.now(UTC) + timedelta(seconds=0.5))],
                                   leader_check=0.1)
    thread = start(scheduler, stop)
    try:
        assert wait_for(lambda: scheduler.counts["failed"] == 1)
    finally:
        stop.set()
        thread.join(10)


def test_daily_triggers_follow_the_policy_schedule() -> None:
    policy = dataclasses.replace(POLICY, schedule_times=("03:15", "15:45"),
                                 schedule_timezone="Africa/Cairo")
    (morning, afternoon) = daily_triggers(policy)
    now = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)  # 06:00 in Cairo
    assert morning.get_next_fire_time(None, now).isoformat() == "2026-11-25T03:15:00+02:00"
    assert afternoon.get_next_fire_time(None, now).isoformat() == "2026-11-24T15:45:00+02:00"


def test_the_leader_makes_the_weekly_report(php_table: Callable[[str], Engine]) -> None:
    from governance.masking import Masker
    from governance.masking_policy import load_masking_policy
    from governance.report_store import list_reports
    from jobs.compliance import ReportInputs
    from jobs.report_policy import ReportsPolicy
    from jobs.scheduler import ExtraJob, weekly_report

    engine = php_table("A")
    inputs = ReportInputs(zone="UTC", retention=POLICY, reports=ReportsPolicy(),
                          masker=Masker(load_masking_policy()))
    weekly = weekly_report(engine, inputs)
    now = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)  # a Tuesday: next Monday 06:00 UTC
    assert weekly.trigger.get_next_fire_time(None, now).isoformat() == "2026-11-30T06:00:00+00:00"
    soon = ExtraJob("report", DateTrigger(datetime.now(UTC) + timedelta(seconds=0.5)), weekly.run)
    stop = threading.Event()
    scheduler = RetentionScheduler(engine, POLICY, "UTC", triggers=[], extra_jobs=[soon], leader_check=0.1)
    thread = start(scheduler, stop)
    try:
        assert wait_for(lambda: scheduler.counts["ok"] == 1)
    finally:
        stop.set()
        thread.join(10)
    (stored,) = list_reports(engine)
    assert stored.trigger == "scheduled" and stored.period_to < datetime.now(UTC).date().isoformat()
    assert [r.record.job for r in read_runs(engine)] == ["report"]
