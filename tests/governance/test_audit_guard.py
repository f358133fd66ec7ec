"""The audit_logs guard on real engines: writes refused before the database, reads pass."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance import audit_guard
from governance.audit_guard import blocked_total, engine_guard
from governance.errors import AuditWriteForbidden
from trace_service import migrate
from trace_service.config import DatabaseURL
from trace_service.db import create_engine
from trace_service.http.config import TestingConfig
from trace_service.sink import TraceSink
from trace_service.writer import TraceWriter, masker_from_config

AUDIT_DDL = "CREATE TABLE audit_logs (id INTEGER PRIMARY KEY, action VARCHAR(64))"


def audit_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM audit_logs")).scalar_one())


@pytest.fixture
def guarded(database_url: str) -> Iterator[Engine]:
    """A project engine on a database that has an audit_logs table with one row."""
    engine = create_engine(database_url)
    raw = sa.create_engine(engine.url)  # unguarded, to set the scene
    with raw.begin() as conn:
        conn.exec_driver_sql(AUDIT_DDL)
        conn.exec_driver_sql("INSERT INTO audit_logs VALUES (1, 'authoritative')")
    raw.dispose()
    yield engine
    engine.dispose()


def test_every_project_engine_has_the_guard(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert engine_guard(engine) is not None
        assert audit_guard.install(engine) is engine_guard(engine)  # idempotent
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "statement",
    ["INSERT INTO audit_logs VALUES (2, 'x')", "UPDATE audit_logs SET action = 'x'",
     "DELETE FROM audit_logs", "DROP TABLE audit_logs"],
)
def test_writes_are_refused_before_the_database_and_nothing_changes(
    guarded: Engine, statement: str
) -> None:
    before = blocked_total().get("audit_logs", 0)
    with pytest.raises(AuditWriteForbidden, match="refused a write to audit_logs"), \
            guarded.begin() as conn:
        conn.exec_driver_sql(statement)
    assert audit_rows(guarded) == 1
    assert blocked_total()["audit_logs"] == before + 1


def test_reads_pass(guarded: Engine) -> None:
    with guarded.connect() as conn:
        (row,) = conn.execute(sa.text("SELECT id, action FROM audit_logs")).all()
    assert tuple(row) == (1, "authoritative")


def test_orm_style_core_writes_are_refused_too(guarded: Engine) -> None:
    table = sa.Table("audit_logs", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("action", sa.String))
    with pytest.raises(AuditWriteForbidden), guarded.begin() as conn:
        conn.execute(table.insert(), [{"id": 5, "action": "a"}, {"id": 6, "action": "b"}])
    assert audit_rows(guarded) == 1


def test_the_log_names_the_table_never_the_statement(
    guarded: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="governance.audit_guard"), \
            pytest.raises(AuditWriteForbidden), guarded.begin() as conn:
        conn.exec_driver_sql("INSERT INTO audit_logs VALUES (9, 'hunter2-secret')")
    assert "audit_logs" in caplog.text and "hunter2" not in caplog.text


def test_on_mariadb_the_same_statement_succeeds_without_the_guard(mariadb_url: str) -> None:
    engine = create_engine(mariadb_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT 1"))
        raw = sa.create_engine(engine.url)
        with raw.begin() as conn:
            conn.exec_driver_sql(AUDIT_DDL)
        raw.dispose()
        statement = "INSERT INTO audit_logs VALUES (1, 'x')"
        with pytest.raises(AuditWriteForbidden), engine.begin() as conn:
            conn.exec_driver_sql(statement)
        assert audit_rows(engine) == 0
        # The same statement through a plain PyMySQL connection reaches the server and lands:
        # the guard, not the database, is what refused it above.
        url = engine.url
        direct = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                                 database=url.database, autocommit=True)
        with direct.cursor() as cursor:
            cursor.execute(statement)
        direct.close()
        assert audit_rows(engine) == 1
    finally:
        engine.dispose()


def _writer_aimed_at_audit_logs(engine: Engine, strict: bool) -> TraceWriter:
    """A writer whose sink names audit_logs, as a misconfiguration or a bug would."""
    config = TestingConfig(database_url=DatabaseURL(str(engine.url.render_as_string(hide_password=False))))
    sink = TraceSink(engine, config.table_timezone, masker_from_config(config), table="audit_logs")
    return TraceWriter(engine, config, sink=sink, strict=strict)


def test_a_write_under_the_writers_swallow_all_is_counted(guarded: Engine) -> None:
    migrate.upgrade(guarded)
    writer = _writer_aimed_at_audit_logs(guarded, strict=False)
    try:
        assert writer.record("x.polluting") is True
        writer.flush(5)
        stats = writer.stats()
        assert stats.dropped_by_reason["guard_blocked"] == 1
        assert "refused a write to audit_logs" in (stats.last_error or "")
        assert audit_rows(guarded) == 1
    finally:
        writer.close(2)


def test_a_strict_writer_raises_on_a_blocked_write(guarded: Engine) -> None:
    from trace_service.errors import TraceWriteError

    migrate.upgrade(guarded)
    writer = _writer_aimed_at_audit_logs(guarded, strict=True)
    try:
        writer.record("x.polluting")
        with pytest.raises(TraceWriteError, match="refused a write to audit_logs"):
            writer.flush(5)
    finally:
        writer.strict = False
        writer.close(2)


def test_parameterised_reads_pass_and_parameterised_writes_do_not(guarded: Engine) -> None:
    with guarded.connect() as conn:  # the driver sees %(id)s (PyMySQL) or ? (sqlite3)
        rows = conn.execute(sa.text("SELECT action FROM audit_logs WHERE id = :id"), {"id": 1}).all()
    assert [tuple(r) for r in rows] == [("authoritative",)]
    with pytest.raises(AuditWriteForbidden), guarded.begin() as conn:
        conn.execute(sa.text("UPDATE audit_logs SET action = :a WHERE id = :id"), {"a": "x", "id": 1})
    assert audit_rows(guarded) == 1
