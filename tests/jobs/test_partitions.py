"""Daily partitions: pure plans (gaps, catch-all rows, first run), then applied on MariaDB."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.errors import ConfigError, MaintenanceError
from jobs import ddl
from jobs.ledger import read_runs
from jobs.partitions import CATCH_ALL, CatchAll, Partition, convert_plan, from_days, plan_partitions, to_days
from jobs.retention import partitions_job, retention_job
from tests.jobs.conftest import POLICY, insert_rows, stored_times
from trace_service.db import table_layout

TODAY = date(2026, 11, 24)
CUTOFF = datetime(2026, 10, 25, 12)


def daily(first: date, last: date) -> list[Partition]:
    """Partitions p<first>..p<last>, one a day, then the catch-all."""
    days = (last - first).days + 1
    return [Partition(f"p{first + timedelta(d):%Y%m%d}", to_days(first + timedelta(d + 1)))
            for d in range(days)] + [Partition(CATCH_ALL, None)]


def test_to_days_matches_mysql(maria: Engine) -> None:
    with maria.connect() as conn:
        value = conn.execute(sa.text("SELECT TO_DAYS('2026-11-24')")).scalar()
    assert value == to_days(TODAY) and from_days(int(value)) == TODAY


def test_a_table_at_policy_needs_nothing() -> None:
    plan = plan_partitions(daily(date(2026, 10, 25), TODAY + timedelta(3)), TODAY, CUTOFF, 3)
    assert plan.operations == ()


def test_expired_partitions_are_dropped_in_one_statement() -> None:
    plan = plan_partitions(daily(date(2026, 10, 20), TODAY + timedelta(3)), TODAY, CUTOFF, 3)
    (op,) = plan.operations
    # p20261024 holds rows before 2026-10-25 00:00, all older than the cut-off (12:00);
    # p20261025 holds 00:00..24:00 of the 25th: some rows are younger, so it stays.
    assert op.kind == "drop"
    assert op.dropped == ("p20261020", "p20261021", "p20261022", "p20261023", "p20261024")
    assert op.sql == ("ALTER TABLE telemetry_traces DROP PARTITION p20261020, p20261021, "
                      "p20261022, p20261023, p20261024")


def test_partitions_are_made_ahead_from_the_catch_all() -> None:
    plan = plan_partitions(daily(date(2026, 11, 1), TODAY), TODAY, CUTOFF, 3)
    (op,) = plan.operations
    assert op.kind == "reorganize" and op.created == ("p20261125", "p20261126", "p20261127")
    assert op.sql == (
        "ALTER TABLE telemetry_traces REORGANIZE PARTITION pmax INTO ("
        "PARTITION p20261125 VALUES LESS THAN (TO_DAYS('2026-11-26')), "
        "PARTITION p20261126 VALUES LESS THAN (TO_DAYS('2026-11-27')), "
        "PARTITION p20261127 VALUES LESS THAN (TO_DAYS('2026-11-28')), "
        "PARTITION pmax VALUES LESS THAN MAXVALUE)")


def test_gaps_future_ones_split_past_ones_noted() -> None:
    parts = [Partition("p20261101", to_days(date(2026, 11, 2))),
             Partition("p20261110", to_days(date(2026, 11, 11))),   # 11-02 .. 11-10: past gap
             Partition("p20261124", to_days(date(2026, 11, 25))),   # 11-11 .. 11-24: includes today
             Partition("p20261127", to_days(date(2026, 11, 28))),   # 11-25 .. 11-27: future gap
             Partition(CATCH_ALL, None)]
    plan = plan_partitions(parts, TODAY, CUTOFF, 3)
    (split,) = plan.operations
    assert split.kind == "split" and split.created == ("p20261125", "p20261126", "p20261127")
    assert split.dropped == ("p20261127",)
    assert any("p20261110 spans 9 days" in note for note in plan.notes)
    assert any("p20261124 spans 14 days" in note for note in plan.notes)


def test_rows_in_the_catch_all_get_daily_partitions_over_their_days() -> None:
    rows = CatchAll(rows=500, first_day=date(2026, 11, 21), last_day=date(2026, 12, 10))
    plan = plan_partitions(daily(date(2026, 11, 1), date(2026, 11, 20)), TODAY, CUTOFF, 3, rows)
    (op,) = plan.operations
    assert op.created[0] == "p20261121" and op.created[-1] == "p20261210"
    assert op.moves_rows == 500 and "moves the 500 row(s)" in op.reason


def test_rows_dated_far_ahead_stay_in_the_catch_all_and_are_noted() -> None:
    rows = CatchAll(rows=3, first_day=TODAY, last_day=date(2099, 1, 1))
    plan = plan_partitions(daily(date(2026, 11, 1), date(2026, 11, 23)), TODAY, CUTOFF, 3, rows)
    (op,) = plan.operations
    assert len(op.created) == 366 + 1 - 1  # today .. today + 365
    assert any("2099-01-01" in note for note in plan.notes)


def test_first_run_on_a_lone_catch_all_starts_at_the_oldest_unexpired_day() -> None:
    rows = CatchAll(rows=90, first_day=date(2026, 9, 1), last_day=TODAY)
    plan = plan_partitions([Partition(CATCH_ALL, None)], TODAY, CUTOFF, 3, rows)
    (op,) = plan.operations
    # Older rows share the first partition (it has no lower bound); it expires as a whole.
    assert op.created[0] == "p20261025" and op.created[-1] == "p20261127"
    assert len(op.created) == 34


def test_a_table_without_a_catch_all_is_refused() -> None:
    with pytest.raises(ValueError, match="no MAXVALUE catch-all"):
        plan_partitions(daily(TODAY, TODAY)[:-1], TODAY, CUTOFF, 3)


# --- On MariaDB -------------------------------------------------------------------------

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def convert(engine: Engine) -> None:
    layout = table_layout(engine)
    rows, first = ddl.read_table_size(engine, layout)
    plan = convert_plan(layout.time_column, rows, first, TODAY, CUTOFF, 3, 50_000)
    ddl.run_ddl(engine, plan.sql, POLICY.partitions)


@pytest.mark.mariadb
@pytest.mark.parametrize("layout", ["A", "B"])
def test_convert_then_retention_drops_partitions_and_prunes_the_boundary(
        php_table: Callable[[str], Engine], layout: str) -> None:
    engine = php_table(layout)
    old = [f"2026-10-{day:02d} 10:00:00.000000" for day in range(1, 25)]
    boundary_old, boundary_young = "2026-10-25 11:00:00.000000", "2026-10-25 13:00:00.000000"
    young = [boundary_young, "2026-11-24 09:00:00.000000", "2026-11-26 09:00:00.000000"]
    insert_rows(engine, [*old, boundary_old, *young])
    # The convert plan starts at the cut-off's day: older rows share its first partition.
    convert(engine)
    parts = ddl.read_partitions(engine, table_layout(engine))
    assert parts is not None and parts[0].name == "p20261025" and parts[-1].name == CATCH_ALL
    insert_rows(engine, ["2026-12-05 08:00:00.000000"])  # lands in the catch-all
    young.append("2026-12-05 08:00:00.000000")

    # Ten days on, the first partitions are wholly expired and the catch-all holds a row.
    later = NOW + timedelta(days=10)
    record = retention_job(engine, POLICY, "UTC", later)
    assert record.status == "ok", record.error
    assert sorted(stored_times(engine)) == sorted(
        t for t in young if t >= "2026-11-04 12:00:00")
    dropped = (record.partitions_dropped or "").split(",")
    assert dropped[0] == "p20261025" and dropped[-1] == "p20261103"
    created = (record.partitions_created or "").split(",")
    assert "p20261205" in created and created[-1] == "p20261207"
    (row,) = read_runs(engine)
    assert row.record.job == "retention" and row.record.rows_deleted == record.rows_deleted


@pytest.mark.mariadb
def test_partitions_job_on_a_plain_table_says_how_to_convert(php_table: Callable[[str], Engine]) -> None:
    engine = php_table("A")
    with pytest.raises(MaintenanceError, match="flask jobs partitions convert"):
        partitions_job(engine, POLICY, "UTC", NOW)
    (row,) = read_runs(engine)
    assert row.record.status == "failed" and "not partitioned" in (row.record.error or "")


def test_partitions_on_sqlite_say_they_need_mysql(sqlite_url: str) -> None:
    from trace_service.db import create_engine
    engine = create_engine(sqlite_url)
    with pytest.raises(ConfigError, match="need MySQL or MariaDB"):
        partitions_job(engine, POLICY, "UTC", NOW)
    engine.dispose()


@pytest.mark.mariadb
def test_ddl_waits_for_a_long_transaction_and_records_the_wait(
        php_table: Callable[[str], Engine]) -> None:
    engine = php_table("A")
    insert_rows(engine, ["2026-11-20 10:00:00.000000"])
    convert(engine)
    release, started, met = threading.Event(), threading.Event(), threading.Event()

    def long_transaction() -> None:
        with engine.connect() as conn, conn.begin():
            conn.execute(sa.text("SELECT COUNT(*) FROM telemetry_traces"))  # holds the MDL
            started.set()
            release.wait(10)

    class ReleaseOnFirstWait(logging.Handler):
        # The job has met the transaction (a lock wait that timed out, or the transaction seen
        # as too old to wait behind; which one depends on the sub-second phase of the server's
        # whole-second trx_started): end it then, so the next attempt succeeds. A fixed timer
        # raced the retry budget.
        def emit(self, record: logging.LogRecord) -> None:
            met.set()
            release.set()

    holder = threading.Thread(target=long_transaction)
    holder.start()
    assert started.wait(5)
    handler = ReleaseOnFirstWait(logging.WARNING)
    ddl_logger = logging.getLogger(ddl.__name__)
    ddl_logger.addHandler(handler)
    try:
        record = partitions_job(engine, POLICY, "UTC", NOW + timedelta(days=2))
    finally:
        ddl_logger.removeHandler(handler)
        release.set()
    holder.join(10)
    assert record.status == "ok", record.error
    assert met.is_set() and record.lock_wait_ms >= POLICY.partitions.backoff_seconds * 1000
    assert record.partitions_created == "p20261128,p20261129"
