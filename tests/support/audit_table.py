"""The PHP side's ``audit_logs`` with one row, planted on an unguarded engine, for tests that
prove our code leaves it untouched (the one place outside the guard's own tests that writes it)."""

from __future__ import annotations

import sqlalchemy as sa

AUDIT_ROW = (1, "authoritative")


def plant_audit_logs(database_url: str) -> None:
    """Create ``audit_logs`` holding :data:`AUDIT_ROW` (as the PHP application would)."""
    raw = sa.create_engine(database_url)  # unguarded: creating audit_logs is the point
    try:
        with raw.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE audit_logs (id INTEGER PRIMARY KEY, action VARCHAR(64))")
            conn.execute(sa.text("INSERT INTO audit_logs VALUES (:id, :action)"),
                         {"id": AUDIT_ROW[0], "action": AUDIT_ROW[1]})
    finally:
        raw.dispose()
