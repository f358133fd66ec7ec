"""Running the Alembic migrations from code (``flask db``, the tests, the SQLite first run).

The scripts are the checkout's top-level ``migrations/`` folder, installed as the package
``trace_service.migrations`` (setup.cfg maps one to the other), so they are found through
:mod:`importlib.resources` from a wheel and from a checkout alike. No ``alembic.ini`` is needed
here: that file is for DBAs running ``alembic`` by hand in a checkout, and points at the same
folder.
"""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine

from trace_service.db import forget_layout

SCRIPTS_PACKAGE = "trace_service.migrations"


def scripts_location() -> str:
    """The folder of the Alembic scripts, wherever the package is installed (never zipped:
    setuptools installs wheels unpacked)."""
    return str(resources.files(SCRIPTS_PACKAGE))


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """An Alembic config for this project's scripts, bound to ``connection`` when given."""
    config = AlembicConfig()
    config.set_main_option("script_location", scripts_location())
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
