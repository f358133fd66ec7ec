"""A connection opened while another holds a new SQLite file in a transaction succeeds: switching
the file to WAL then waits out the busy timeout and fails with "database is locked", which once
failed an app's first requests now and then (its threads opening the file during a migration).
The connection goes on in the file's mode, and a later one switches the file to WAL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from trace_service.db import create_engine


def test_a_connection_opened_during_anothers_transaction_goes_on_and_wal_comes_later(
        tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE t (x INTEGER)")
    other.execute("BEGIN")
    other.execute("SELECT * FROM t").fetchall()  # a read transaction on a file in rollback mode
    engine = create_engine(f"sqlite:///{path}", io_timeout=0.2)
    try:
        with engine.connect() as conn:  # raised "database is locked" before
            assert conn.execute(sa.text("SELECT COUNT(*) FROM t")).scalar() == 0
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
        other.execute("COMMIT")
        engine.dispose()
        with engine.connect() as conn:  # a new connection, the file to itself: WAL now
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        other.close()
        engine.dispose()
