"""Pruning on real databases: exactly the expired rows go, in batches, resumably."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from governance.errors import ConfigError
from jobs.ledger import read_runs, verify_chain
from jobs.pruning import BatchSizer, Pruner, plan_prune
from jobs.replicas import replica_lag
from jobs.retention import JobOptions, prune_job
from jobs.retention_policy import PrunePolicy
from tests.jobs.conftest import POLICY, insert_rows, stored_times
from tests.support.php_schema import create_php_table
from trace_service import migrate
from trace_service.db import table_layout

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

# (layout, table zone, rows that must go, rows that must stay); the cut-offs are worked out
# by hand in tests/jobs/test_cutoff.py: UTC 2026-10-25 12:00, Cairo 2026-10-25 14:00.
CASES = {
    "A-UTC": ("A", "UTC",
              ["2026-09-01 10:00:00.000000", "2026-10-25 11:59:59.999999"],
              ["2026-10-25 12:00:00.000000", "2026-10-25 12:00:00.000001",
               "2026-11-24 11:59:00.000000"]),
    # PHP-written rows in Cairo wall-clock time; Cairo left summer time on 2026-10-29.
    "B-Cairo": ("B", "Africa/Cairo",
                ["2026-09-01 10:00:00.000000", "2026-10-25 13:59:59.999999"],
                ["2026-10-25 14:00:00.000000",
                 # 720 hours old (11:30 UTC) but not 30 calendar days: kept.
                 "2026-10-25 14:30:00.000000",
                 # The repeated hour of 2026-10-29: kept on either pass.
                 "2026-10-29 23:30:00.000000",
                 "2026-11-24 13:59:00.000000"]),
}


def make_table(engine: Engine, layout: str) -> Engine:
    """telemetry_traces in ``layout`` (PHP's DDL where it has one for this backend)."""
    if layout == "A" and engine.dialect.name == "sqlite":
        migrate.upgrade(engine)  # our migration creates layout A
    else:
        create_php_table(engine, layout)
        migrate.upgrade(engine)
    return engine


def seeded(engine: Engine, case: str, filler: int = 60) -> tuple[str, list[str], list[str]]:
    """Boundary rows plus ``filler`` old and young rows, interleaved in id order."""
    layout, zone, old, young = CASES[case]
    make_table(engine, layout)
    old = old + [f"2026-09-{day:02d} 08:{minute:02d}:00.000000"
                 for day in range(2, 28) for minute in range(filler // 26 + 1)][:filler]
    young = young + [f"2026-11-{day:02d} 09:{minute:02d}:00.000000"
                     for day in range(1, 24) for minute in range(filler // 23 + 1)][:filler]
    rows = old + young
    random.Random(7).shuffle(rows)  # PHP and Python writers interleave; ids follow no time order
    insert_rows(engine, rows)
    return zone, old, young


@pytest.mark.parametrize("case", sorted(CASES))
def test_prune_deletes_exactly_the_rows_older_than_the_window(engine: Engine, case: str) -> None:
    zone, old, young = seeded(engine, case)
    record = prune_job(engine, POLICY, zone, NOW)
    assert record.status == "ok", record.error
    assert sorted(stored_times(engine)) == sorted(young)
    assert record.rows_deleted == len(old)
    assert record.first_time == min(old) and record.last_time == max(old)
    (row,) = read_runs(engine)
    assert row.record.job == "prune" and row.record.rows_deleted == len(old)
    assert row.record.cutoff == CASES[case][2][1][:11] + ("12:00:00.000000" if zone == "UTC"
                                                          else "14:00:00.000000")
    assert verify_chain(read_runs(engine)).ok


def test_dry_run_deletes_nothing_and_records_the_plan(engine: Engine) -> None:
    zone, old, young = seeded(engine, "B-Cairo")
    record = prune_job(engine, POLICY, zone, NOW, JobOptions(dry_run=True))
    assert record.status == "dry_run" and record.rows_deleted == 0
    assert len(stored_times(engine)) == len(old) + len(young)
    assert f'"plan_rows":{len(old)}' in (record.details or "")


def test_an_interrupted_prune_resumed_finishes_exactly(engine: Engine) -> None:
    zone, old, young = seeded(engine, "A-UTC", filler=120)
    stop = threading.Event()
    batches = []

    def after_batch(deleted: int) -> None:
        batches.append(deleted)
        if len(batches) == 3:
            stop.set()  # as SIGTERM does through the CLI

    first = prune_job(engine, POLICY, zone, NOW, JobOptions(stop=stop, on_batch=after_batch))
    assert first.status == "stopped" and first.error == "stop requested"
    assert 0 < first.rows_deleted < len(old)
    second = prune_job(engine, POLICY, zone, NOW)
    assert second.status == "ok"
    assert first.rows_deleted + second.rows_deleted == len(old)
    assert sorted(stored_times(engine)) == sorted(young)
    assert [r.record.status for r in read_runs(engine)] == ["stopped", "ok"]


def test_batches_stay_inside_the_plan_and_adapt(engine: Engine) -> None:
    zone, old, _ = seeded(engine, "A-UTC", filler=300)
    layout = table_layout(engine)
    plan = plan_prune(engine, layout, datetime(2026, 10, 25, 12), POLICY.prune.batch_size)
    assert plan.rows == len(old) and plan.estimated_batches == -(-len(old) // 7)
    # A fake clock: every batch "takes" 0.1 s against a 1 s budget, so sizes grow to the cap.
    ticks = iter(range(10**6))
    pruner = Pruner(engine, POLICY.prune, clock=lambda: next(ticks) * 0.05)
    stats = pruner.run(plan)
    assert stats.rows_deleted == len(old)
    # Well under budget, each batch may grow by half, up to the policy's cap.
    expected = [7]
    while sum(expected) < len(old):
        expected.append(min(POLICY.prune.max_batch_size, int(expected[-1] * 1.5)))
    assert stats.batch_sizes == expected


def test_a_maximum_run_time_stops_between_batches(engine: Engine) -> None:
    zone, old, _ = seeded(engine, "A-UTC")
    plan = plan_prune(engine, table_layout(engine), datetime(2026, 10, 25, 12), 7)
    ticks = iter(range(10**6))
    stats = Pruner(engine, POLICY.prune, clock=lambda: float(next(ticks)),
                   max_run_seconds=10).run(plan)
    assert stats.stopped == "maximum run time of 10 s reached"
    assert 0 < stats.rows_deleted < len(old)


def test_pruning_waits_while_a_replica_lags(engine: Engine) -> None:
    zone, old, _ = seeded(engine, "A-UTC", filler=10)
    lags = iter([30.0, 30.0, float("inf")])  # lagging, then replication stopped, then fine
    policy = PrunePolicy(batch_size=7, min_batch_size=3, max_batch_size=50, budget_ms=1000,
                         max_lag_seconds=5, lag_check_interval=0.01)
    plan = plan_prune(engine, table_layout(engine), datetime(2026, 10, 25, 12), 7)
    stats = Pruner(engine, policy, lag_probe=lambda: next(lags, 0.0)).run(plan)
    assert stats.rows_deleted == len(old)
    assert stats.lag_wait_seconds >= 0.03


@pytest.mark.mariadb
def test_a_server_that_is_not_a_replica_is_a_configuration_error(maria: Engine) -> None:
    with pytest.raises(ConfigError, match="is not a replica"):
        replica_lag(maria)


@pytest.mark.mariadb
def test_a_batch_that_meets_a_row_lock_is_retried_smaller(maria: Engine) -> None:
    zone, old, young = seeded(maria, "A-UTC", filler=20)
    release, locked = threading.Event(), threading.Event()

    def hold() -> None:
        with maria.connect() as conn, conn.begin():
            conn.execute(sa.text("SELECT id FROM telemetry_traces WHERE created_at < "
                                 "'2026-10-01' ORDER BY id LIMIT 1 FOR UPDATE"))
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(5)
    threading.Timer(1.5, release.set).start()  # the other transaction commits after 1.5 s
    policy = PrunePolicy(batch_size=7, min_batch_size=3, max_batch_size=50, budget_ms=1000,
                         lock_wait_timeout=1)
    plan = plan_prune(maria, table_layout(maria), datetime(2026, 10, 25, 12), 7)
    stats = Pruner(maria, policy).run(plan)
    holder.join(10)
    assert stats.retries >= 1
    assert stats.rows_deleted == len(old)
    assert sorted(stored_times(maria)) == sorted(young)


@given(
    initial=st.integers(1, 10_000),
    observations=st.lists(st.tuples(st.integers(1, 10_000), st.floats(0.0001, 5.0)), max_size=30),
)
def test_batch_sizes_stay_in_bounds_and_shrink_after_an_overrun(
        initial: int, observations: list[tuple[int, float]]) -> None:
    sizer = BatchSizer(initial, 20, 5000, budget_seconds=0.05)
    for rows, seconds in observations:
        before = sizer.size
        after = sizer.observe(rows, seconds)
        assert 20 <= after <= 5000
        if seconds > 0.05:
            assert after <= max(20, before // 2 + 1)
        else:
            assert after <= before * 1.5
