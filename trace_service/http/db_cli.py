"""``flask db``: the Alembic migrations of telemetry_traces and the service's tables."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from trace_service import migrate
from trace_service.db import table_layout
from trace_service.errors import TelemetryError
from trace_service.http.app import get_engine

# AppGroup runs each command inside the app context (plain click groups do not).
db_cli = AppGroup("db", help="Database migrations of telemetry_traces and the service's tables.")


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Create or adopt the tables (an existing PHP table is never altered)."""
    migrate.upgrade(get_engine(), revision)
    click.echo(f"database at revision {migrate.current_revision(get_engine())}")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Downgrade to REVISION (``base``: drop only the tables this service created)."""
    migrate.downgrade(get_engine(), revision)
    click.echo(f"database at revision {migrate.current_revision(get_engine())}")


@db_cli.command("current")
def db_current() -> None:
    """Print the current revision and the detected layout."""
    engine = get_engine()
    click.echo(f"revision: {migrate.current_revision(engine)}")
    try:
        click.echo(f"layout: {table_layout(engine).name}")
    except TelemetryError as exc:
        click.echo(f"layout: unknown ({exc})")
