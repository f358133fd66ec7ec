"""Grants: the database layer of the audit_logs defence, on real MariaDB users and roles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.grants import (
    OWN_TABLES,
    SERVICE_TABLES,
    WORKING_TABLES,
    Grant,
    audit_write_privileges,
    check_grants,
    database_matches,
    grant_statements,
    parse_grant,
    redact,
)
from jobs.erasure import Subject, erase
from jobs.leak_scan import run_scan
from jobs.retention import prune_job
from jobs.retention_policy import load_retention_policy
from trace_service import migrate
from trace_service.config import DatabaseURL
from trace_service.db import create_engine
from trace_service.errors import ConfigError
from trace_service.http.app import create_app
from trace_service.http.config import TestingConfig
from trace_service.reader import read_traces
from trace_service.writer import masker_from_config


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("GRANT USAGE ON *.* TO `u`@`%`", Grant(("USAGE",), "*", "*", "GRANT USAGE ON *.* TO `u`@`%`")),
        ("GRANT SELECT, INSERT ON `test`.* TO `r`", Grant(("SELECT", "INSERT"), "test", "*",
                                                        "GRANT SELECT, INSERT ON `test`.* TO `r`")),
        ("GRANT UPDATE (`action`, `note`), SELECT ON `app`.`audit_logs` TO `u`@`%`",
         Grant(("UPDATE", "SELECT"), "app", "audit_logs",
               "GRANT UPDATE (`action`, `note`), SELECT ON `app`.`audit_logs` TO `u`@`%`")),
        ("GRANT `telemetry_role` TO `u`@`%`", ("telemetry_role",)),
        ("GRANT `r1`@`%`,`r2`@`%` TO `u`@`%`", ("r1", "r2")),
        ("SET DEFAULT ROLE `r` FOR `u`@`%`", None),
    ],
)
def test_show_grants_lines_parse(line: str, parsed: object) -> None:
    assert parse_grant(line) == parsed


def test_password_hashes_are_redacted() -> None:
    line = "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9'"
    assert "6BB4" not in redact(line) and "<redacted>" in redact(line)


@pytest.mark.parametrize(
    ("pattern", "database", "matches"),
    [("*", "app", True), ("app", "APP", True), ("app%", "app_prod", True), ("app\\_%", "app_x", True),
     ("app\\_%", "appx", False), ("a_p", "abp", True), ("other", "app", False)],
)
def test_database_wildcards(pattern: str, database: str, matches: bool) -> None:
    assert database_matches(pattern, database) is matches


@pytest.mark.parametrize(
    ("line", "privileges"),
    [
        ("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION", ["ALL PRIVILEGES"]),
        ("GRANT SELECT, INSERT ON `app`.* TO `u`@`%`", ["INSERT"]),
        ("GRANT SELECT, DELETE ON `ap%`.* TO `u`@`%`", ["DELETE"]),
        ("GRANT UPDATE (`action`) ON `app`.`audit_logs` TO `u`@`%`", ["UPDATE"]),
        ("GRANT DROP, ALTER ON `app`.`audit_logs` TO `u`@`%`", ["DROP", "ALTER"]),
        ("GRANT SELECT ON `app`.`audit_logs` TO `u`@`%`", []),
        ("GRANT SELECT, INSERT, DELETE ON `app`.`telemetry_traces` TO `u`@`%`", []),
        ("GRANT INSERT ON `other`.* TO `u`@`%`", []),
        ("GRANT USAGE ON *.* TO `u`@`%`", []),
    ],
)
def test_write_privileges_on_audit_logs_are_found(line: str, privileges: list[str]) -> None:
    assert [v.privilege for v in audit_write_privileges([line], "app")] == privileges


def test_printed_grants_never_touch_audit_logs_or_whole_databases() -> None:
    statements = grant_statements("telemetry", "%", "app", ddl=True)
    grants = [s for s in statements if s.startswith("GRANT")]
    assert grants and all("audit_logs" not in s and ".*" not in s for s in grants)
    assert audit_write_privileges([g.rstrip(";") for g in grants], "app") == []


# ---------------------------------------------------------------- live MariaDB


@pytest.fixture
def account(mariadb_url: str, mariadb_server: Engine) -> Iterator[tuple[str, str, Engine]]:
    """A fresh MariaDB user (and role name) for one test, dropped after it."""
    engine = create_engine(mariadb_url)
    migrate.upgrade(engine)
    tag = uuid.uuid4().hex[:8]
    user, role = f"ts_user_{tag}", f"ts_role_{tag}"
    with mariadb_server.begin() as conn:
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%%'")
    yield user, role, engine
    with mariadb_server.begin() as conn:
        conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        # CREATE ROLE gives its creator (root) the role WITH ADMIN OPTION; DROP ROLE removes it.
    engine.dispose()


def run_as_root(engine: Engine, statements: list[str]) -> None:
    raw = sa.create_engine(engine.url)  # GRANT is not ours to send through the guarded engine
    with raw.begin() as conn:
        for statement in statements:
            conn.execution_options(no_parameters=True).exec_driver_sql(statement)
    raw.dispose()


def test_the_printed_grants_pass_the_check_on_a_real_user(account: tuple[str, str, Engine]) -> None:
    user, _, engine = account
    database = engine.url.database or ""
    printed = [s.rstrip(";") for s in grant_statements(user, "%", database) if s.startswith("GRANT")]
    run_as_root(engine, printed)
    report = check_grants(engine, f"{user}@%")
    assert report.ok, report.violations
    assert any("telemetry_traces" in line for line in report.lines)


def test_a_database_wide_grant_fails_naming_the_privilege(account: tuple[str, str, Engine]) -> None:
    user, _, engine = account
    run_as_root(engine, [f"GRANT SELECT, INSERT ON `{engine.url.database}`.* TO '{user}'@'%'"])
    report = check_grants(engine, f"{user}@%")
    assert not report.ok
    assert [v.privilege for v in report.violations] == ["INSERT"]
    assert "audit_logs" in report.violations[0].describe()


def test_a_privilege_through_a_role_is_found(account: tuple[str, str, Engine]) -> None:
    user, role, engine = account
    run_as_root(engine, [
        f"CREATE ROLE {role}",
        f"GRANT DELETE ON `{engine.url.database}`.* TO {role}",
        f"GRANT {role} TO '{user}'@'%'",
    ])
    report = check_grants(engine, f"{user}@%")
    assert [(v.privilege, v.via_role) for v in report.violations] == [("DELETE", role)]


def test_root_is_reported_and_the_cli_exits_1(mariadb_url: str) -> None:
    app = create_app(TestingConfig(database_url=DatabaseURL(mariadb_url)))
    try:
        runner = app.test_cli_runner()
        result = runner.invoke(args=["guard", "check-grants"])
        assert result.exit_code == 1
        assert "ALL PRIVILEGES on" in result.output and "REVOKE them" in result.output
        grants = app.extensions["trace_grants"]
        assert not grants.ok
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        app.extensions["trace_writer"].close(1)
        app.extensions["trace_engine"].dispose()


def test_refuse_switch_stops_the_start(mariadb_url: str) -> None:
    with pytest.raises(ConfigError, match="could write audit_logs .*TRACE_REFUSE_AUDIT_WRITER"):
        create_app(TestingConfig(database_url=DatabaseURL(mariadb_url), refuse_audit_writer=True))


def test_cli_prints_grants_and_rejects_bad_names(sqlite_url: str) -> None:
    app = create_app(TestingConfig(database_url=DatabaseURL(sqlite_url)))
    try:
        runner = app.test_cli_runner()
        result = runner.invoke(args=["guard", "grants", "--user", "telemetry", "--database", "app"])
        assert result.exit_code == 0
        assert "GRANT SELECT, INSERT, UPDATE, DELETE ON `app`.`telemetry_traces`" in result.output
        bad = runner.invoke(args=["guard", "grants", "--user", "x'; DROP", "--database", "app"])
        assert bad.exit_code == 2 and "--user" in bad.output and "letters, digits" in bad.output
        na = runner.invoke(args=["guard", "check-grants"])
        assert na.exit_code == 0 and "not applicable" in na.output and "SQLite" in na.output
    finally:
        app.extensions["trace_writer"].close(1)
        app.extensions["trace_engine"].dispose()


def test_the_printed_grants_cover_every_table_the_migrations_create(
        account: tuple[str, str, Engine]) -> None:
    _, _, engine = account
    granted = set(SERVICE_TABLES + WORKING_TABLES + OWN_TABLES)
    assert set(sa.inspect(engine).get_table_names()) == granted


def test_the_service_does_its_work_with_only_the_printed_grants(
        account: tuple[str, str, Engine]) -> None:
    # A user set up by the printed GRANTs must be able to run the service: ingest (keys, event
    # ids, the writer), the leak scan's --fix, pruning with its ledger row, and erasure.
    user, _, engine = account
    database = engine.url.database or ""
    run_as_root(engine, [s.rstrip(";") for s in grant_statements(user, "%", database)
                         if s.startswith("GRANT")])
    url = engine.url.set(username=user, password=None).render_as_string(hide_password=False)
    app = create_app(TestingConfig(database_url=DatabaseURL(url), key_cache_seconds=0))
    try:
        _, key = app.extensions["trace_keys"].create("grants-test", ["ingest"])
        event = {"event_key": "granted", "event_id": str(uuid.uuid4()),
                 "metadata": {"note": "Authorization: Bearer abcdEFGH1234ijkl5678mnop"}}
        client = app.test_client()
        erased = {"event_key": "erased", "actor_admin_id": 99}
        assert client.post("/api/telemetry/traces", json=erased,
                           headers={"Authorization": f"Bearer {key}"}).status_code == 202
        for expected in ("accepted", "duplicate"):
            response = client.post("/api/telemetry/traces", json=event,
                                   headers={"Authorization": f"Bearer {key}"})
            assert response.json is not None and response.json["status"] == expected, response.json
            assert app.extensions["trace_writer"].flush(10)
        user_engine = app.extensions["trace_engine"]
        run_scan(user_engine, masker_from_config(TestingConfig()), fix=True)
        now = datetime.now(UTC)
        record = prune_job(user_engine, load_retention_policy(), "UTC", now)
        assert record.status == "ok", record.error
        assert erase(user_engine, Subject(actor_id=99), None, dry_run=False).deleted == 1
        assert [t.event_key for t in read_traces(user_engine)] == ["granted"]
    finally:
        app.extensions["trace_writer"].close(2)
        app.extensions["trace_engine"].dispose()
