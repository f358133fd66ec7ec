"""The job ledger: one row per run, chained, so edits and deletions show."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from jobs.ledger import GENESIS, RunRecord, read_runs, record_run, row_hash, verify_chain


def run(n: int, status: str = "ok") -> RunRecord:
    return RunRecord(job="prune", status=status, started_at=datetime(2026, 11, 24, 3, 15, n),
                     finished_at=datetime(2026, 11, 24, 3, 16, n, 123456), rows_deleted=100 * n,
                     cutoff="2026-10-25 03:15:00.000000", table_timezone="Africa/Cairo",
                     first_id=n, last_id=n + 99, details='{"batches":3}')


@pytest.fixture
def ledger(migrated_engine: Engine) -> Engine:
    for n in range(1, 5):
        record_run(migrated_engine, run(n, "failed" if n == 3 else "ok"))
    return migrated_engine


def test_rows_are_chained_and_read_back_as_written(ledger: Engine) -> None:
    rows = read_runs(ledger)
    assert [r.record.rows_deleted for r in rows] == [100, 200, 300, 400]
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.row_hash for a, b in zip(rows, rows[1:], strict=False))
    assert rows[1].record == run(2)  # datetimes to the microsecond, booleans, None
    assert verify_chain(rows).ok and verify_chain(rows).rows == 4
    assert [r.record.rows_deleted for r in read_runs(ledger, limit=2)] == [300, 400]


def test_an_edited_row_is_detected(ledger: Engine) -> None:
    with ledger.begin() as conn:
        conn.execute(sa.text("UPDATE trace_job_runs SET rows_deleted = 5 WHERE id = 3"))
    check = verify_chain(read_runs(ledger))
    assert not check.ok and check.broken_at == 3 and "edited" in check.reason


def test_a_deleted_row_is_detected(ledger: Engine) -> None:
    with ledger.begin() as conn:
        conn.execute(sa.text("DELETE FROM trace_job_runs WHERE id = 2"))
    check = verify_chain(read_runs(ledger))
    assert not check.ok and check.broken_at == 3 and "deleted" in check.reason


def test_the_hash_covers_every_field() -> None:
    base = run(1).fields()
    for name, value in base.items():
        changed = dict(base, **{name: "x" if value != "x" else "y"})
        assert row_hash(GENESIS, changed) != row_hash(GENESIS, base), name
