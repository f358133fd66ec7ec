"""Create telemetry_traces in the governance layout A, or adopt an existing A/B table.

``docs/php-compat.md`` §1: a PHP deployment may already have the table, in either layout, full of
rows. Then this revision changes nothing in it; it only notes in ``trace_schema_owned`` whether we
created the table, so that downgrade drops only a table that is ours.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from trace_service.layout import TABLE_NAME, detect_layout

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNED = "trace_schema_owned"
MYSQL_TABLE_ARGS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in {"mysql", "mariadb"}


def _create_traces() -> None:
    is_mysql = _is_mysql()
    # SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
    id_type = sa.BigInteger().with_variant(mysql.BIGINT(unsigned=True), "mysql", "mariadb")
    id_type = id_type.with_variant(sa.Integer(), "sqlite")
    op.create_table(
        TABLE_NAME,
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("event_key", sa.String(255), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False, server_default="info"),
        sa.Column("actor_admin_id", sa.Integer(), nullable=True),
        sa.Column("ip_address", sa.String(45), nullable=True),
        sa.Column("user_agent", sa.String(255), nullable=True),
        sa.Column("route_name", sa.String(255), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"),
            nullable=False,
            # As the PHP migration has it. Writers always send the time in the table's zone.
            server_default=sa.text("CURRENT_TIMESTAMP(6)") if is_mysql else None,
        ),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("idx_created_at", TABLE_NAME, ["created_at"])
    op.create_index("idx_event_key", TABLE_NAME, ["event_key"])
    op.create_index("idx_actor", TABLE_NAME, ["actor_admin_id"])
    op.create_index("idx_request", TABLE_NAME, ["request_id"])


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    adopt = inspector.has_table(TABLE_NAME)
    if adopt:
        # Refuse, before any DDL (MySQL DDL does not roll back), a table we could not read.
        detect_layout(column["name"] for column in inspector.get_columns(TABLE_NAME))
    op.create_table(
        OWNED,
        sa.Column("table_name", sa.String(64), primary_key=True),
        sa.Column("created_by_revision", sa.String(32), nullable=False),
        **MYSQL_TABLE_ARGS,
    )
    if adopt:
        return  # an existing A or B table: leave it exactly as it is
    _create_traces()
    op.bulk_insert(
        sa.table(OWNED, sa.column("table_name"), sa.column("created_by_revision")),
        [{"table_name": TABLE_NAME, "created_by_revision": revision}],
    )


def downgrade() -> None:
    bind = op.get_bind()
    owned = bind.execute(
        sa.text(f"SELECT 1 FROM {OWNED} WHERE table_name = :name"), {"name": TABLE_NAME}
    ).first()
    if owned is not None:
        op.drop_table(TABLE_NAME)
    op.drop_table(OWNED)
