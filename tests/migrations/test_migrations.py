"""Migrations: layout A exactly as the spec has it, adoption of PHP tables without change,
and upgrade -> downgrade -> upgrade on MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.paths import CHECKOUT
from tests.support.php_schema import create_php_table, php_insert
from tests.support.revisions import HEAD
from trace_service import migrate
from trace_service.db import create_engine, table_layout
from trace_service.errors import LayoutError


@pytest.fixture
def maria(mariadb_url: str) -> Iterator[Engine]:
    engine = create_engine(mariadb_url)
    yield engine
    engine.dispose()


def columns(engine: Engine) -> dict[str, tuple[str, str, str | None, str]]:
    """name -> (COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA) from information_schema."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'telemetry_traces' ORDER BY ORDINAL_POSITION"
        )).all()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def indexes(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'telemetry_traces' "
            "ORDER BY INDEX_NAME, SEQ_IN_INDEX"
        )).all()
    out: dict[str, list[str]] = {}
    for name, column in rows:
        out.setdefault(name, []).append(column)
    return out


def show_create(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SHOW CREATE TABLE telemetry_traces")).one()[1])


def test_layout_a_is_created_exactly_as_the_spec(maria: Engine) -> None:
    migrate.upgrade(maria)
    cols = columns(maria)
    assert list(cols) == ["id", "event_key", "severity", "actor_admin_id", "ip_address",
                          "user_agent", "route_name", "request_id", "metadata", "created_at"]
    assert cols["id"][0] == "bigint(20) unsigned" and cols["id"][3] == "auto_increment"
    assert cols["event_key"][:2] == ("varchar(255)", "NO")
    assert cols["severity"][:3] == ("varchar(20)", "NO", "'info'")
    assert cols["actor_admin_id"][:2] == ("int(11)", "YES")
    assert [cols[c][0] for c in ("ip_address", "user_agent", "route_name", "request_id")] == [
        "varchar(45)", "varchar(255)", "varchar(255)", "varchar(64)"]
    assert cols["metadata"][:2] == ("longtext", "YES")  # MariaDB's JSON, with a JSON_VALID check
    assert cols["created_at"][:3] == ("datetime(6)", "NO", "current_timestamp(6)")
    assert indexes(maria) == {
        "PRIMARY": ["id"], "idx_created_at": ["created_at"], "idx_event_key": ["event_key"],
        "idx_actor": ["actor_admin_id"], "idx_request": ["request_id"],
    }
    ddl = show_create(maria)
    assert "ENGINE=InnoDB" in ddl and "CHARSET=utf8mb4" in ddl and "utf8mb4_unicode_ci" in ddl
    assert "json_valid(`metadata`)" in ddl
    assert table_layout(maria).name == "A"


def test_upgrade_downgrade_upgrade_on_mariadb(maria: Engine) -> None:
    migrate.upgrade(maria)
    first = show_create(maria)
    migrate.downgrade(maria, "base")
    assert not sa.inspect(maria).has_table("telemetry_traces")
    assert migrate.current_revision(maria) is None
    migrate.upgrade(maria)
    assert show_create(maria) == first
    assert migrate.current_revision(maria) == HEAD


@pytest.mark.parametrize("layout", ["A", "B", "B0"])
def test_existing_php_table_is_adopted_unchanged_and_never_dropped(maria: Engine, layout: str) -> None:
    create_php_table(maria, layout)
    time_column = "created_at" if layout == "A" else "occurred_at"
    actor = {"actor_type": "admin", "actor_id": 9} if layout == "B" else {"actor_admin_id": 9}
    php_insert(maria, layout, event_key="auth_login_success", severity="info",
               **{time_column: "2026-11-01 10:00:00.000001"}, **actor)
    before = show_create(maria)
    migrate.upgrade(maria)
    assert show_create(maria) == before
    assert table_layout(maria).name == layout
    migrate.downgrade(maria, "base")
    assert show_create(maria) == before  # downgrade drops only tables we created
    with maria.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM telemetry_traces")).scalar_one() == 1


def test_table_of_unknown_layout_is_refused_before_any_ddl(maria: Engine) -> None:
    with maria.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE telemetry_traces (id INT PRIMARY KEY, event_key TEXT)")
    with pytest.raises(LayoutError, match="missing columns"):
        migrate.upgrade(maria)
    assert not sa.inspect(maria).has_table("trace_schema_owned")
    assert migrate.current_revision(maria) is None


def test_sqlite_equivalent_round_trips(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        migrate.upgrade(engine)
        inspector = sa.inspect(engine)
        names = [c["name"] for c in inspector.get_columns("telemetry_traces")]
        assert names[-1] == "created_at" and "actor_admin_id" in names
        assert {i["name"] for i in inspector.get_indexes("telemetry_traces")} == {
            "idx_created_at", "idx_event_key", "idx_actor", "idx_request"}
        migrate.downgrade(engine, "base")
        assert not sa.inspect(engine).has_table("telemetry_traces")
        migrate.upgrade(engine)
        assert table_layout(engine).name == "A"
    finally:
        engine.dispose()


def test_ingest_tables_come_and_go_with_revision_0002(maria: Engine) -> None:
    migrate.upgrade(maria)
    tables = set(sa.inspect(maria).get_table_names())
    assert {"trace_ingest_keys", "trace_ingest_events"} <= tables
    migrate.downgrade(maria, "0001")
    assert not {"trace_ingest_keys", "trace_ingest_events"} & set(sa.inspect(maria).get_table_names())
    assert sa.inspect(maria).has_table("telemetry_traces")


def test_alembic_ini_holds_no_database_url() -> None:
    text = (CHECKOUT / "alembic.ini").read_text()
    assert "sqlalchemy.url" not in text
