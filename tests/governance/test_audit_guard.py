"""The audit_logs guard on real engines: writes refused before the database, reads pass."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance import audit_guard
from governance.audit_guard import AuditWriteForbidden, blocked_total, engine_guard
from trace_service import migrate
from trace_service.db import create_engine
from trace_service.writer import TraceWriter

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


def test_a_write_under_the_writers_swallow_all_is_counted(
    guarded: Engine, make_writer: Callable[..., TraceWriter]
) -> None:
    migrate.upgrade(guarded)
    writer = make_writer(strict=False)
    writer.record("x.warmup")
    writer.flush(5)
    # Point the writer's statement at audit_logs, as a misconfiguration or a bug would.
    sink = writer._sink
    sink._prefix = sink._prefix.replace("telemetry_traces", "audit_logs")
    sink._sql = sink._sql.replace("telemetry_traces", "audit_logs")
    writer.record("x.polluting")
    writer.flush(5)
    stats = writer.stats()
    assert stats.dropped_by_reason["guard_blocked"] == 1
    assert "refused a write to audit_logs" in (stats.last_error or "")
    assert audit_rows(guarded) == 1


def test_a_strict_writer_raises_on_a_blocked_write(
    guarded: Engine, make_writer: Callable[..., TraceWriter]
) -> None:
    from trace_service.errors import TraceWriteError

    migrate.upgrade(guarded)
    writer = make_writer(strict=True)
    writer._sink.layout()
    writer._sink._prefix = writer._sink._prefix.replace("telemetry_traces", "audit_logs")
    writer._sink._sql = writer._sink._sql.replace("telemetry_traces", "audit_logs")
    writer.record("x.polluting")
    with pytest.raises(TraceWriteError, match="refused a write to audit_logs"):
        writer.flush(5)


def test_parameterised_reads_pass_and_parameterised_writes_do_not(guarded: Engine) -> None:
    with guarded.connect() as conn:  # the driver sees %(id)s (PyMySQL) or ? (sqlite3)
        rows = conn.execute(sa.text("SELECT action FROM audit_logs WHERE id = :id"), {"id": 1}).all()
    assert [tuple(r) for r in rows] == [("authoritative",)]
    with pytest.raises(AuditWriteForbidden), guarded.begin() as conn:
        conn.execute(sa.text("UPDATE audit_logs SET action = :a WHERE id = :id"), {"a": "x", "id": 1})
    assert audit_rows(guarded) == 1
