"""The write-target analysis behind the audit_logs guard: a corpus of writes and reads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance import sql_targets
from governance.sql_targets import analyse, protected_writes, split_statements, written_tables

PROTECTED = frozenset({"audit_logs"})

# Every one of these writes audit_logs (or would, through a body or dynamic SQL): all refused.
WRITES = [
    "INSERT INTO audit_logs (actor_id, action) VALUES (1, 'x')",
    "insert into audit_logs values (1)",
    "INSERT IGNORE INTO audit_logs VALUES (1)",
    "INSERT INTO audit_logs SET actor_id = 1",
    "INSERT INTO `audit_logs` (a) VALUES (1)",
    "INSERT INTO app.audit_logs (a) VALUES (1)",
    "INSERT INTO `app`.`audit_logs` (a) VALUES (1)",
    "INSERT INTO Audit_Logs (a) VALUES (1)",
    "INSERT INTO audit_logs (a) SELECT id FROM users",
    "INSERT INTO audit_logs (a) VALUES (1) ON DUPLICATE KEY UPDATE a = a + 1",
    "WITH x AS (SELECT 1 AS a) INSERT INTO audit_logs (a) SELECT a FROM x",
    "REPLACE INTO audit_logs VALUES (1)",
    "REPLACE audit_logs (a) VALUES (1)",
    "REPLACE LOW_PRIORITY INTO app.audit_logs SELECT * FROM staging",
    "UPDATE audit_logs SET action = 'x' WHERE id = 1",
    "UPDATE app.audit_logs SET action = 'x'",
    "UPDATE audit_logs a JOIN users u ON a.actor_id = u.id SET a.action = 'x'",
    "UPDATE users u, audit_logs a SET a.action = 'x' WHERE a.actor_id = u.id",
    "UPDATE users u JOIN audit_logs a ON a.actor_id = u.id SET action = 'x'",
    "UPDATE users AS u INNER JOIN app.audit_logs AS l ON l.actor_id = u.id SET l.note = u.name",
    "DELETE FROM audit_logs WHERE id < 100",
    "DELETE LOW_PRIORITY QUICK FROM audit_logs",
    "DELETE FROM app.audit_logs ORDER BY id LIMIT 10",
    "DELETE a FROM audit_logs a JOIN users u ON a.actor_id = u.id",
    "DELETE a, u FROM audit_logs a JOIN users u ON a.actor_id = u.id",
    "DELETE FROM a USING audit_logs AS a JOIN users u ON a.actor_id = u.id",
    "TRUNCATE TABLE audit_logs",
    "TRUNCATE audit_logs",
    "ALTER TABLE audit_logs ADD COLUMN note TEXT",
    "ALTER TABLE audit_logs ENGINE=InnoDB",
    "ALTER TABLE telemetry_traces RENAME TO audit_logs",
    "DROP TABLE audit_logs",
    "DROP TABLE IF EXISTS telemetry_traces, audit_logs",
    "RENAME TABLE audit_logs TO audit_logs_old",
    "RENAME TABLE staging TO app.audit_logs",
    "RENAME TABLE a TO b, `audit_logs` TO c",
    "LOAD DATA INFILE '/tmp/audit.csv' INTO TABLE audit_logs",
    "LOAD DATA LOCAL INFILE '/tmp/x' REPLACE INTO TABLE app.audit_logs FIELDS TERMINATED BY ','",
    "LOAD XML LOCAL INFILE '/tmp/x.xml' INTO TABLE audit_logs",
    "CREATE TABLE audit_logs (id INT)",
    "CREATE TABLE audit_logs AS SELECT * FROM users",
    "CREATE TABLE IF NOT EXISTS audit_logs LIKE telemetry_traces",
    "CREATE TRIGGER t AFTER INSERT ON users FOR EACH ROW INSERT INTO audit_logs VALUES (NEW.id)",
    "CREATE TRIGGER t BEFORE DELETE ON audit_logs FOR EACH ROW SET @x = 1",
    "CREATE DEFINER=`root`@`%` TRIGGER t AFTER UPDATE ON users FOR EACH ROW "
    "BEGIN SET @n = 1; DELETE FROM audit_logs WHERE actor_id = OLD.id; END",
    "CREATE VIEW audit_view AS SELECT * FROM audit_logs",
    "CREATE PROCEDURE p() BEGIN DELETE FROM audit_logs; END",
    "/*!40000 INSERT INTO audit_logs VALUES (1) */",
    "/*!50001 DELETE FROM audit_logs */",
    "/*M!100100 TRUNCATE audit_logs */",
    "SELECT 1; DELETE FROM audit_logs",
    "SELECT 'a;b'; UPDATE audit_logs SET x = 1",
    "/* harmless */ DELETE /* really */ FROM audit_logs",
    "-- comment\nDELETE FROM audit_logs",
    "# comment\nTRUNCATE audit_logs",
    "PREPARE s FROM 'INSERT INTO audit_logs VALUES (1)'",
    "PREPARE s FROM \"DELETE FROM audit_logs WHERE id = 1\"",
    "EXECUTE IMMEDIATE 'DELETE FROM audit_logs'",
    "LOCK TABLES audit_logs WRITE",
    "LOCK TABLES users READ, audit_logs AS a WRITE",
    "OPTIMIZE TABLE audit_logs",
    "REPAIR TABLE audit_logs",
    "GRANT INSERT ON app.audit_logs TO 'x'@'%'",
    "CALL purge_audit_logs()",
    "DELETE FROM audit_logs WHERE note = 'unterminated",
    "INSERT INTO audit_logs (actor_id, action) VALUES (%s, %s)",
    "UPDATE audit_logs SET action = %(action)s WHERE id = %(id)s",
    "DELETE FROM audit_logs WHERE id = ?",
]

# None of these writes audit_logs: all must pass.
READS = [
    "SELECT * FROM audit_logs",
    "select count(*) from audit_logs where created_at > now() - interval 1 day",
    "SELECT * FROM app.audit_logs ORDER BY id DESC LIMIT 10",
    "SELECT a.* FROM `audit_logs` a JOIN users u ON a.actor_id = u.id",
    "SELECT * FROM users WHERE id IN (SELECT actor_id FROM audit_logs)",
    "SELECT * FROM audit_logs UNION ALL SELECT * FROM audit_logs_archive",
    "WITH recent AS (SELECT * FROM audit_logs) SELECT COUNT(*) FROM recent",
    "SELECT * FROM audit_logs FOR UPDATE",
    "SELECT * FROM audit_logs INTO OUTFILE '/tmp/x'",
    "SELECT MAX(id) INTO @m FROM audit_logs",
    "INSERT INTO telemetry_traces (event_key) SELECT action FROM audit_logs",
    "INSERT INTO telemetry_traces (event_key, metadata) VALUES ('x', '{\"table\":\"audit_logs\"}')",
    "INSERT INTO telemetry_traces (event_key) VALUES ('DELETE FROM audit_logs')",
    "UPDATE users u JOIN audit_logs a ON a.actor_id = u.id SET u.last_action = a.action",
    "UPDATE users SET note = 'see audit_logs' WHERE id = 1",
    "DELETE u FROM users u JOIN audit_logs a ON a.actor_id = u.id",
    "DELETE FROM telemetry_traces WHERE request_id IN (SELECT request_id FROM audit_logs)",
    "CREATE TABLE audit_copy AS SELECT * FROM audit_logs",
    "SHOW CREATE TABLE audit_logs",
    "SHOW COLUMNS FROM audit_logs",
    "DESCRIBE audit_logs",
    "EXPLAIN SELECT * FROM audit_logs",
    "CHECKSUM TABLE audit_logs",
    "LOCK TABLES audit_logs READ",
    "PREPARE s FROM 'SELECT * FROM audit_logs'",
    "SET @n = (SELECT COUNT(*) FROM audit_logs)",
    "SELECT 'INSERT INTO audit_logs VALUES (1)'",
    "SELECT * FROM audit_logs_archive",
    "INSERT INTO audit_logs_summary (n) VALUES (1)",
    "INSERT INTO telemetry_traces (event_key) VALUES ('a')",
    "SELECT 1",
    "",
    "SELECT COUNT(*) FROM audit_logs WHERE created_at > %s",
    "SELECT * FROM audit_logs WHERE actor_id = %(actor)s LIMIT %(limit)s",
    "SELECT * FROM audit_logs WHERE id IN (%s, %s, %s)",
    "SELECT * FROM audit_logs WHERE id = ? AND action = :action",
    "SELECT * FROM audit_logs WHERE note LIKE '100%%'",
]


def test_the_corpus_is_big_enough() -> None:
    assert len(WRITES) + len(READS) >= 60


@pytest.mark.parametrize("statement", WRITES)
def test_every_write_form_is_caught(statement: str) -> None:
    assert protected_writes(statement, PROTECTED) == {"audit_logs"}


@pytest.mark.parametrize("statement", READS)
def test_reads_pass(statement: str) -> None:
    assert protected_writes(statement, PROTECTED) == frozenset()


@pytest.mark.parametrize(
    ("statement", "tables"),
    [
        ("UPDATE users u JOIN audit_logs a ON a.actor_id = u.id SET u.x = a.y", {"users"}),
        ("UPDATE users u, audit_logs a SET a.x = 1, u.y = 2", {"users", "audit_logs"}),
        ("DELETE FROM a USING audit_logs AS a JOIN users u", {"audit_logs"}),
        ("RENAME TABLE a TO b, c TO d", {"a", "b", "c", "d"}),
        ("INSERT INTO t SELECT * FROM s; TRUNCATE u", {"t", "u"}),
        ("SELECT * FROM t", set()),
    ],
)
def test_written_tables(statement: str, tables: set[str]) -> None:
    assert written_tables(statement) == tables


def test_opaque_statements_are_marked() -> None:
    assert analyse("CALL anything()").opaque
    assert analyse("PREPARE s FROM @sql").opaque
    assert not analyse("SELECT 1").opaque


def test_statements_split_outside_strings_and_comments() -> None:
    assert split_statements("SELECT ';'; /* ; */ SELECT 2;") == ["SELECT ';'", "SELECT 2"]


def test_the_fast_path_never_parses_text_that_cannot_name_the_table(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(sql: str) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(sql_targets, "analyse", explode)
    assert protected_writes("INSERT INTO telemetry_traces VALUES (1)", PROTECTED) == frozenset()


@settings(max_examples=500)
@given(st.text(max_size=200))
def test_never_raises_on_arbitrary_text(text: str) -> None:
    result = protected_writes(text, PROTECTED)
    assert result <= PROTECTED


@given(st.sampled_from(WRITES), st.sampled_from(["", " ", "\n", ";", "  -- trailing\n"]))
def test_writes_stay_caught_whatever_surrounds_them(statement: str, around: str) -> None:
    assert protected_writes(around + statement + around, PROTECTED) == {"audit_logs"}


@given(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True))
def test_writes_to_other_tables_pass(table: str) -> None:
    if "audit_logs" in table:
        return
    for template in ("INSERT INTO {t} VALUES (1)", "DELETE FROM {t}", "UPDATE {t} SET a = 1",
                     "TRUNCATE {t}", "RENAME TABLE {t} TO {t}_old"):
        assert protected_writes(template.format(t=table), PROTECTED) == frozenset()


@pytest.mark.parametrize(
    "statement",
    ["SELECT purge_audit_logs()", "SELECT * FROM audit_logs WHERE wipe_audit_logs() = 1"],
)
def test_user_functions_are_opaque_because_they_can_write(statement: str) -> None:
    assert analyse(statement).opaque
    assert protected_writes(statement, PROTECTED) == {"audit_logs"}
