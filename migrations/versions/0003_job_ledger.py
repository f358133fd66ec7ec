"""The job ledger: one row per maintenance run, each chained to the previous by SHA-256.

The service's own table (never shared with PHP), so downgrade drops it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL_TABLE_ARGS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "trace_job_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),  # UTC
        sa.Column("finished_at", TIMESTAMP, nullable=False),  # UTC
        # The cut-off is a wall-clock time in the table's zone, as the rows are.
        sa.Column("cutoff", sa.String(26), nullable=True),
        sa.Column("table_timezone", sa.String(64), nullable=True),
        sa.Column("rows_deleted", BIGINT, nullable=False),
        sa.Column("first_id", BIGINT, nullable=True),
        sa.Column("last_id", BIGINT, nullable=True),
        sa.Column("first_time", sa.String(26), nullable=True),
        sa.Column("last_time", sa.String(26), nullable=True),
        sa.Column("partitions_created", sa.Text(), nullable=True),
        sa.Column("partitions_dropped", sa.Text(), nullable=True),
        sa.Column("lock_wait_ms", BIGINT, nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("idx_job_started", "trace_job_runs", ["job", "started_at"])


def downgrade() -> None:
    op.drop_table("trace_job_runs")
