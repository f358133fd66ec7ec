"""Running the Alembic migrations from code (the CLI, the tests, the SQLite first run).

The scripts live in the repository's ``migrations/`` folder next to ``alembic.ini``; the service
is installed from a checkout (``pip install -e .``), which is how both are found.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine

from trace_service.db import forget_layout

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """An Alembic config for this project's scripts, bound to ``connection`` when given."""
    config = AlembicConfig(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision``."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    forget_layout(engine)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the database behind ``engine`` to ``revision`` (``base`` for nothing)."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
    forget_layout(engine)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
