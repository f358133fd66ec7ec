"""Compliance reports and persisted loss counters.

* ``trace_reports``: one row per generated report, its canonical JSON content and the SHA-256
  of exactly those bytes (what compliance staff can re-check).
* ``trace_counter_snapshots``: the service's cumulative counters (writer drops by reason, ingest
  refusals, audit_logs guard blocks), appended by each process when a value changes, so the
  losses of a period survive restarts and can be reported.

Both are the service's own tables (never shared with PHP), so downgrade drops them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL_TABLE_ARGS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LONGTEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "trace_reports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        # The period is inclusive days on the table's wall clock (YYYY-MM-DD).
        sa.Column("period_from", sa.String(10), nullable=False),
        sa.Column("period_to", sa.String(10), nullable=False),
        sa.Column("generated_at", TIMESTAMP, nullable=False),  # UTC
        sa.Column("trigger", sa.String(16), nullable=False),  # scheduled | manual
        sa.Column("status", sa.String(16), nullable=False),  # pass | fail | incomplete
        sa.Column("content", LONGTEXT, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("idx_report_period", "trace_reports", ["period_from", "period_to"])
    op.create_table(
        "trace_counter_snapshots",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
        # host:pid:start, one per process lifetime; counters are cumulative within it.
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", BIGINT, nullable=False),
        sa.Column("taken_at", TIMESTAMP, nullable=False),  # UTC
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("idx_counter_taken", "trace_counter_snapshots", ["taken_at"])


def downgrade() -> None:
    op.drop_table("trace_counter_snapshots")
    op.drop_table("trace_reports")
