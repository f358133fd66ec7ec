"""The database layer of the audit_logs defence: grants.

A parser cannot see inside a stored procedure; the database can refuse it. This module:

* :func:`grant_statements` prints the GRANTs for a telemetry user that can write its own tables
  and nothing on ``audit_logs`` (pure);
* :func:`parse_grant` and :func:`audit_write_privileges` read ``SHOW GRANTS`` lines and say which
  privilege, if any, would let the holder write a protected table: directly, through a
  database-wide or wildcard grant (``db.*``, ``app\\_%.*``, ``*.*``), or through a role (pure);
* :func:`check_grants` is the thin edge: it runs ``SHOW GRANTS`` for a user (the current one by
  default), follows granted roles, and returns a :class:`GrantReport`.

Only MySQL and MariaDB have grants; on SQLite :func:`check_grants` says so and reports
``applicable=False``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

# Privileges that let their holder change a table's rows or the table itself.
WRITE_PRIVILEGES = frozenset({
    "ALL", "ALL PRIVILEGES", "INSERT", "UPDATE", "DELETE", "DELETE HISTORY", "DROP", "ALTER",
    "CREATE", "INDEX", "TRIGGER", "REFERENCES",
})
_GRANT = re.compile(r"(?is)^GRANT\s+(?P<privs>.+?)\s+ON\s+(?:TABLE\s+)?(?P<target>\S+)\s+TO\s+(?P<to>.+)$")
_ROLE_GRANT = re.compile(r"(?is)^GRANT\s+(?P<roles>.+?)\s+TO\s+(?P<to>.+)$")
_SECRET_CLAUSE = re.compile(r"(?is)\s+IDENTIFIED\s+(?:BY|VIA|WITH)\b.*?(?=\s+WITH\s+GRANT\s+OPTION|$)")
_IDENT = r"(?:`(?:[^`]|``)*`|\*|[\w$%\\]+)"


@dataclass(frozen=True)
class Grant:
    """One ``GRANT privileges ON db.table`` line."""

    privileges: tuple[str, ...]
    database: str  # "*" for all; may hold % and _ wildcards
    table: str     # "*" for all
    line: str      # the line with any password clause removed


@dataclass(frozen=True)
class Violation:
    """A privilege that lets the user write a protected table, and where it comes from."""

    privilege: str
    table: str
    grant: str
    via_role: str | None = None

    def describe(self) -> str:
        """One line for a person: which privilege, on what, granted how."""
        via = f" through role {self.via_role}" if self.via_role else ""
        return f"{self.privilege} on {self.table}{via}: {self.grant}"


@dataclass
class GrantReport:
    """What a grants check found."""

    user: str
    applicable: bool = True
    violations: list[Violation] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the check ran and found no way to write a protected table."""
        return self.applicable and self.error is None and not self.violations

    def log(self, logger: logging.Logger) -> None:
        """Log what the check found (nothing where grants do not apply, as on SQLite)."""
        if not self.applicable:
            return
        if self.error:
            logger.warning("grants check not done: %s", self.error)
        for violation in self.violations:
            logger.error("the database user could write audit_logs: %s", violation.describe())

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for /readyz and reports."""
        return {
            "user": self.user, "applicable": self.applicable, "ok": self.ok, "error": self.error,
            "violations": [v.describe() for v in self.violations],
        }


def redact(line: str) -> str:
    """A SHOW GRANTS line without its ``IDENTIFIED BY PASSWORD '...'`` clause."""
    return _SECRET_CLAUSE.sub(" IDENTIFIED BY <redacted>", line)


def _unquote(identifier: str) -> str:
    identifier = identifier.strip()
    if identifier.startswith("`") and identifier.endswith("`"):
        return identifier[1:-1].replace("``", "`")
    return identifier


def _split_privileges(text: str) -> tuple[str, ...]:
    """``SELECT, UPDATE (`a`, `b`), INSERT`` -> (SELECT, UPDATE, INSERT): column lists dropped."""
    text = re.sub(r"\([^)]*\)", "", text)
    return tuple(" ".join(p.split()).upper() for p in text.split(",") if p.strip())


def parse_grant(line: str) -> Grant | tuple[str, ...] | None:
    """A privilege grant, the role names of a role grant, or None for other lines."""
    line = redact(line.strip())
    match = _GRANT.match(line)
    if match:
        target = re.fullmatch(rf"({_IDENT})\.({_IDENT})", match.group("target"))
        if target is None:
            return None
        return Grant(_split_privileges(match.group("privs")), _unquote(target.group(1)),
                     _unquote(target.group(2)), line)
    match = _ROLE_GRANT.match(line)
    if match and " ON " not in f" {match.group('roles').upper()} ":
        roles = tuple(_unquote(r.split("@")[0]) for r in match.group("roles").split(","))
        return roles
    return None


def database_matches(pattern: str, database: str) -> bool:
    """MySQL's database wildcards: ``*``, ``%`` (any run) and ``_`` (one), ``\\`` escapes."""
    if pattern == "*":
        return True
    regex = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            regex += re.escape(pattern[index + 1])
            index += 2
            continue
        regex += ".*" if char == "%" else "." if char == "_" else re.escape(char)
        index += 1
    return re.fullmatch(regex, database, re.IGNORECASE) is not None


def audit_write_privileges(
    lines: Iterable[str], database: str, protected: Iterable[str] = ("audit_logs",),
    via_role: str | None = None,
) -> list[Violation]:
    """The privileges in ``lines`` that would let their holder write a protected table."""
    protected = [p.lower() for p in protected]
    found = []
    for line in lines:
        grant = parse_grant(line)
        if not isinstance(grant, Grant) or not database_matches(grant.database, database):
            continue
        for table in protected:
            if grant.table != "*" and grant.table.lower() != table:
                continue
            for privilege in grant.privileges:
                if privilege in WRITE_PRIVILEGES:
                    found.append(Violation(privilege, f"{database}.{table}", grant.line, via_role))
    return found


def _show_grants(conn: Connection, grantee: str | None) -> list[str]:
    statement = "SHOW GRANTS" if grantee is None else f"SHOW GRANTS FOR {grantee}"
    # no_parameters: the driver must not %-format a host such as `%`.
    rows = conn.execution_options(no_parameters=True).exec_driver_sql(statement)
    return [str(row[0]) for row in rows]


def _quote_account(name: str) -> str:
    """``user@host`` or a role name as a quoted account for SHOW GRANTS FOR."""
    user, _, host = name.partition("@")
    quoted = "`" + user.strip("`'\"").replace("`", "``") + "`"
    return f"{quoted}@`{host.strip('`' + chr(39)).replace('`', '``')}`" if host else quoted


def check_grants(
    engine: Engine, user: str | None = None, protected: Iterable[str] = ("audit_logs",),
    database: str | None = None,
) -> GrantReport:
    """Whether ``user`` (default: the engine's own) could write a protected table."""
    label = user or "CURRENT_USER()"
    if engine.dialect.name not in {"mysql", "mariadb"}:
        return GrantReport(label, applicable=False,
                           error="grants are a MySQL/MariaDB feature; SQLite has no users")
    protected = tuple(protected)
    report = GrantReport(label)
    try:
        with engine.connect() as conn:
            database = database or conn.exec_driver_sql("SELECT DATABASE()").scalar() or ""
            seen: set[str] = set()
            pending: list[tuple[str | None, str | None]] = [
                (None if user is None else _quote_account(user), None)]
            while pending:
                grantee, role = pending.pop()
                lines = _show_grants(conn, grantee)
                report.lines.extend(redact(line) for line in lines)
                report.violations.extend(audit_write_privileges(lines, database, protected, role))
                for line in lines:
                    roles = parse_grant(line)
                    if isinstance(roles, tuple):
                        for name in roles:
                            if name not in seen:
                                seen.add(name)
                                pending.append((_quote_account(name), name))
    except sa.exc.SQLAlchemyError as exc:
        report.error = f"could not read grants: {type(getattr(exc, 'orig', None) or exc).__name__}"
    return report


SERVICE_TABLES = ("telemetry_traces",)
# The tables our migrations create for the service itself (keys, event ids, the job ledger,
# stored reports, counter snapshots, opt-outs). tests/governance/test_grants.py checks this list
# against the migrated schema, so a new table cannot be forgotten here.
WORKING_TABLES = ("trace_ingest_keys", "trace_ingest_events", "trace_job_runs", "trace_reports",
                  "trace_counter_snapshots", "trace_opt_outs")
OWN_TABLES = ("alembic_version", "trace_schema_owned")


def grant_statements(user: str, host: str, database: str, *, ddl: bool = False) -> list[str]:
    """GRANTs for a telemetry user: its own tables only, nothing at all on audit_logs.

    DML on ``telemetry_traces`` (UPDATE for the leak scan's ``--fix``, DELETE for pruning and
    erasure) and on the service's working tables; the migration bookkeeping read-only.
    ``ddl`` adds what migrations and partition maintenance need on the same tables (CREATE,
    ALTER, DROP, INDEX), for a DBA who runs those as this user.
    """
    account = f"'{user}'@'{host}'"
    statements = [f"-- telemetry user {account}: no privilege of any kind on audit_logs"]
    dml = "SELECT, INSERT, UPDATE, DELETE"
    extra = ", CREATE, ALTER, DROP, INDEX" if ddl else ""
    for table in SERVICE_TABLES + WORKING_TABLES:
        statements.append(f"GRANT {dml}{extra} ON `{database}`.`{table}` TO {account};")
    for table in OWN_TABLES:
        privileges = dml + extra if ddl else "SELECT"
        statements.append(f"GRANT {privileges} ON `{database}`.`{table}` TO {account};")
    statements.append(
        f"-- never: GRANT ... ON `{database}`.* or *.* (a database-wide grant covers audit_logs)")
    return statements
