"""Opted-out subjects: people whose traces are not to be stored.

``trace_opt_outs`` holds one row per admin id (``kind = 'actor_id'``), or per email hash
(``kind = 'email_hash'``): an email is stored only as its PHP-compatible keyed hash, one row
under each key of ``CRYPTO_KEYS``, so traces hashed by PHP or by us, with the active key or a
retired one, are all recognised. Never the email itself. Managed by ``flask governance opt-out``;
read by every writer and endpoint into an in-memory set (``trace_service.opt_outs``).

The service's own table (never shared with PHP), so downgrade drops it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
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
        "trace_opt_outs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),  # actor_id | email_hash
        # The admin id as decimal text, or the email's 64-hex keyed hash.
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),  # the CRYPTO_KEYS id of a hash
        sa.Column("created_at", TIMESTAMP, nullable=False),  # UTC
        sa.UniqueConstraint("kind", "value", name="uq_opt_out"),
        **MYSQL_TABLE_ARGS,
    )


def downgrade() -> None:
    op.drop_table("trace_opt_outs")
