"""Ingest: API keys (stored as SHA-256 hashes) and the event ids seen, for idempotency.

Both tables are the service's own (never shared with PHP), so downgrade drops them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL_TABLE_ARGS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "trace_ingest_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_prefix", sa.String(12), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", sa.String(255), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        **MYSQL_TABLE_ARGS,
    )
    op.create_table(
        "trace_ingest_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("seen_at", TIMESTAMP, nullable=False),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("idx_seen_at", "trace_ingest_events", ["seen_at"])


def downgrade() -> None:
    op.drop_table("trace_ingest_events")
    op.drop_table("trace_ingest_keys")
