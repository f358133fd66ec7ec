"""``flask guard ...``: the database layer of the audit_logs defence, for DBAs.

* ``flask guard grants --user telemetry --host % --database app [--ddl]`` prints the GRANTs for
  a telemetry user with no privilege on audit_logs;
* ``flask guard check-grants [--user name@host]`` reads a live user's grants (the service's own
  by default), follows roles, and exits 1 naming each privilege that could write audit_logs.

The only place ``governance`` reaches into the app: through ``current_app``.
"""

from __future__ import annotations

import re

import click
from flask import current_app
from flask.cli import AppGroup

from governance.audit_guard import DEFAULT_PROTECTED
from governance.grants import check_grants, grant_statements

guard_cli = AppGroup("guard", help="The audit_logs guard: database grants for the telemetry user.")
_NAME = re.compile(r"[\w$%.\-]+")


def _name(field: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise click.BadParameter(
            f"{value!r} has characters a MySQL name here cannot have: use letters, digits, "
            "_ $ % . - only", param_hint=field)
    return value


@guard_cli.command("grants")
@click.option("--user", required=True, help="The telemetry database user.")
@click.option("--host", default="%", show_default=True, help="The user's host part.")
@click.option("--database", required=True, help="The database that holds telemetry_traces.")
@click.option("--ddl", is_flag=True, help="Also CREATE/ALTER/DROP/INDEX for migrations and partitions.")
def grants(user: str, host: str, database: str, ddl: bool) -> None:
    """Print the GRANT statements for a telemetry user (nothing on audit_logs)."""
    for statement in grant_statements(_name("--user", user), _name("--host", host),
                                      _name("--database", database), ddl=ddl):
        click.echo(statement)


@guard_cli.command("check-grants")
@click.option("--user", default=None, help="Account as name@host; default: the service's own.")
@click.option("--database", default=None, help="Database to check; default: the connection's.")
def check(user: str | None, database: str | None) -> None:
    """Fail (exit 1) if the user could write audit_logs, naming each privilege."""
    if user is not None:
        name, _, host = user.partition("@")
        _name("--user", name)
        if host:
            _name("--user (host part)", host)
    report = check_grants(current_app.extensions["trace_engine"], user, DEFAULT_PROTECTED,
                          database and _name("--database", database))
    if not report.applicable:
        click.echo(f"not applicable: {report.error}")
        return
    if report.error:
        raise click.ClickException(f"{report.user}: {report.error}")
    if report.violations:
        for violation in report.violations:
            click.echo(f"FORBIDDEN {violation.describe()}", err=True)
        raise click.ClickException(
            f"{report.user} could write audit_logs ({len(report.violations)} privilege(s) above): "
            "REVOKE them; `flask guard grants` prints what the user needs instead")
    click.echo(f"ok: {report.user} has no privilege that writes audit_logs")
