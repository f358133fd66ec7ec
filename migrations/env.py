"""Alembic environment: the URL comes from TRACE_DATABASE_URL, never from alembic.ini.

Programmatic callers (``trace_service.migrate``) pass an open connection in
``config.attributes["connection"]``; the command line builds an engine from the environment
through ``trace_service.db.create_engine``, the one place engines are made.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from trace_service.config import WriterConfig
from trace_service.db import create_engine

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# No MetaData for autogenerate: the tables we share with PHP are described by hand in each
# revision, because their layout is a contract with another codebase, not a model of ours.
target_metadata = None


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) for a DBA to read or run."""
    url = WriterConfig.from_env().database_url
    context.configure(
        url=url.render(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against a live database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(WriterConfig.from_env().database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
