"""Subject access export (``jobs.subject_export`` and ``flask governance export``), MariaDB and SQLite.

One person, Dana, has rows written by PHP (hashed with a retired key and with the active key,
as a value and as ``[email_hash:<hex>]`` inside text, one leaking her address in clear) and by
our writer (through a masker with the rotated keyring). Other people's rows sit beside them,
some made to look like hers: her hash with a character more, as an object key, in a broken
``[email_hash:…]``, a prefix of it. Every expectation is counted from what was seeded.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import Engine

from governance.hashing import Keyring, email_hash
from governance.masking import Masker
from governance.masking_policy import load_masking_policy
from governance.report_render import to_csv, to_html
from governance.reports import Period
from jobs.compliance import ReportInputs, generate
from jobs.governance_cli import governance_cli
from jobs.ledger import read_runs
from jobs.report_policy import ReportsPolicy
from jobs.retention_policy import RetentionPolicy
from jobs.subject_export import COLUMNS, ExportResult, export_subject, render_csv, trace_object
from jobs.subject_rows import Subject, _mentions
from tests.support.compliance_seed import ROOT_KEY
from tests.support.php_schema import create_php_table, php_insert
from trace_service import migrate
from trace_service.config import DatabaseURL
from trace_service.db import create_engine, table_layout
from trace_service.http.app import create_app
from trace_service.http.config import TestingConfig
from trace_service.reader import StoredTrace
from trace_service.writer import TraceWriter

RETIRED_KEY = "ff" * 32
CRYPTO_KEYS = f'[{{"id":"k0","key":"{RETIRED_KEY}"}},{{"id":"k1","key":"{ROOT_KEY}"}}]'
ROTATED = Keyring.from_json(CRYPTO_KEYS, "k1")
ACTIVE_ONLY = Keyring.from_json(f'[{{"id":"k1","key":"{ROOT_KEY}"}}]', "k1")
DANA = "Dana.Ortiz@Example.ORG"
OLD, NEW = email_hash(DANA, ROTATED, "k0").hash, email_hash(DANA, ROTATED, "k1").hash
BOB = email_hash("bob@example.org", ROTATED).hash
DANA_ACTOR = 42
BASE = datetime(2026, 11, 16, 9, 30, 0, 123456)  # row times only; never compared with the clock
CASES = [("mariadb", "A"), ("mariadb", "B"), ("mariadb", "B0"), ("sqlite", "A"), ("sqlite", "B")]


@dataclass
class People:
    """The ids seeded, whose they are, and what PHP stored for its rows."""

    dana: set[int] = field(default_factory=set)  # by email
    dana_retired_key: set[int] = field(default_factory=set)  # found only through k0
    actor: set[int] = field(default_factory=set)  # by actor id DANA_ACTOR (admin)
    others: set[int] = field(default_factory=set)
    php: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # id -> (time, metadata)
    broken: int | None = None  # a row of DANA_ACTOR whose metadata is not JSON (SQLite only)


def _last_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT MAX(id) FROM telemetry_traces")).scalar() or 0)


def _php(engine: Engine, people: People, metadata: str | None, *, actor: int = 7,
         actor_type: str = "admin", event_key: str = "auth.login.attempt") -> int:
    """A row as PHP writes it, a minute after the previous one."""
    layout = table_layout(engine)
    when = (BASE + timedelta(minutes=len(people.php))).strftime("%Y-%m-%d %H:%M:%S.%f")
    values: dict[str, object] = {"event_key": event_key, "severity": "info", layout.time_column: when,
                                 "metadata": metadata, "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                                 "route_name": "admins.list", "ip_address": "10.0.0.7",
                                 "request_id": "3f2b8c4e-9d1a-4b7e-8c2f-1a2b3c4d5e6f"}
    if layout.actor_style == "type_id":
        values.update(actor_type=actor_type, actor_id=actor)
    else:
        values["actor_admin_id"] = actor if actor_type == "admin" else actor + 1000
    php_insert(engine, layout.name, **values)
    row_id = _last_id(engine)
    people.php[row_id] = (when, metadata)
    return row_id


def seed_people(engine: Engine, url: str) -> People:
    """Dana's rows from PHP and from us, and other people's, some made to look like hers."""
    people = People()
    hashed = ',"email_hash_algo":"hmac-sha256\\/hkdf-v1"}'
    old = _php(engine, people, f'{{"target_id":3,"email_hash":"{OLD}","email_hash_key_id":"k0"{hashed}')
    new = _php(engine, people, f'{{"target_id":4,"email_hash":"{NEW}","email_hash_key_id":"k1"{hashed}')
    in_text = _php(engine, people, '{"message":"reset mailed to [email_hash:' + NEW + ']",'
                   '"password":"[masked]","_masked":[{"rule":"key","path":"password"}]}',
                   event_key="auth.password.reset")
    old_in_text = _php(engine, people, '{"note":"ticket for [email_hash:' + OLD + ']","name":"Zo\\u00eb"}')
    leak = _php(engine, people, '{"contact":"dana.ortiz@example.org","path":"\\/admin"}')
    people.dana |= {old, new, in_text, old_in_text, leak}
    people.dana_retired_key |= {old, old_in_text}

    people.others |= {
        _php(engine, people, f'{{"email_hash":"{BOB}","email_hash_key_id":"k1"}}'),
        _php(engine, people, f'{{"token":"{NEW}0"}}'),  # her hash and one character more
        _php(engine, people, f'{{"{OLD}":"her hash as a key, not a value"}}'),
        _php(engine, people, '{"message":"[email_hash:' + NEW + '0]"}'),  # not her bracket form
        _php(engine, people, f'{{"ref":"{NEW[:40]}"}}'),  # a prefix of it
        _php(engine, people, None),
        # Her admin id, but as another kind of actor (layout B) or another id (A, B0).
        _php(engine, people, '{"target_id":5}', actor=DANA_ACTOR, actor_type="user"),
    }
    people.actor.add(_php(engine, people, '{"target_id":6}', actor=DANA_ACTOR))
    if engine.dialect.name == "sqlite":  # MariaDB's JSON column refuses text that is not JSON
        people.broken = _php(engine, people, '{"target_id":', actor=DANA_ACTOR)
        people.actor.add(people.broken)

    config = TestingConfig(database_url=DatabaseURL(url), writer_mode="inline")
    writer = TraceWriter(create_engine(url), config, owns_engine=True,
                         masker=Masker(load_masking_policy(), ROTATED))
    try:
        for actor, fields in ((DANA_ACTOR, {"email": DANA, "password": "hunter2", "target_id": 9}),
                              (DANA_ACTOR, {"summary": f"reset link sent to {DANA}"}),
                              (43, {"email": "someone.else@example.org", "password": "pw2"})):
            assert writer.record("auth.login.attempt", actor_admin_id=actor, metadata=fields,
                                 occurred_at=BASE + timedelta(hours=1))
            row_id = _last_id(engine)
            if actor == DANA_ACTOR:
                people.dana.add(row_id)
                people.actor.add(row_id)
            else:
                people.others.add(row_id)
    finally:
        writer.close()
    return people


def _make_table(engine: Engine, layout: str) -> None:
    if layout != "A":
        create_php_table(engine, layout)
    migrate.upgrade(engine)


@pytest.fixture(params=CASES, ids=["-".join(c) for c in CASES])
def seeded(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, People]]:
    backend, layout = request.param
    url = request.getfixturevalue(f"{backend}_url")
    engine = create_engine(url)
    _make_table(engine, layout)
    yield engine, seed_people(engine, url)
    engine.dispose()


def _stored(engine: Engine) -> dict[int, str | None]:
    with engine.connect() as conn:
        return {int(i): m for i, m in conn.execute(sa.text("SELECT id, metadata FROM telemetry_traces"))}


def _json_rows(result: ExportResult) -> dict[int, dict[str, Any]]:
    document = json.loads(result.body)
    assert document["count"] == result.count == len(document["rows"])
    return {row["id"]: row for row in document["rows"]}


def test_export_by_email_gives_exactly_her_rows_from_both_sides_and_every_key(
        seeded: tuple[Engine, People]) -> None:
    engine, people = seeded
    result = export_subject(engine, Subject(email=f"  {DANA.upper()}\n"), ROTATED, fmt="json",
                            batch_size=2)
    rows = _json_rows(result)
    assert set(rows) == people.dana
    assert list(rows) == sorted(rows)  # in id order
    assert (result.first_id, result.last_id) == (min(people.dana), max(people.dana))
    document = json.loads(result.body)
    assert document["subject"] == f"email_hash {NEW[:12]}…"
    assert datetime.strptime(document["generated_at"], "%Y-%m-%dT%H:%M:%SZ")  # UTC, to the second
    for row_id, row in rows.items():
        assert set(row) == {*COLUMNS, "metadata"}
        if row_id in people.php:  # PHP's rows come back as PHP stored them
            when, metadata = people.php[row_id]
            assert row["occurred_at"] == when
            assert row["metadata"] == json.loads(metadata or "null")
            assert row["actor_admin_id"] == 7
            assert row["ip_address"] == "10.0.0.7" and row["route_name"] == "admins.list"
    ours = [rows[i] for i in sorted(people.dana - set(people.php))]
    assert ours[0]["metadata"]["email_hash"] == NEW and ours[0]["metadata"]["password"] == "[masked]"
    assert ours[1]["metadata"]["summary"] == f"reset link sent to [email_hash:{NEW}]"
    assert "hunter2" not in result.body  # masked values stay masked
    assert rows[min(people.dana_retired_key)]["metadata"]["email_hash_key_id"] == "k0"

    # Without the retired key, the rows hashed with it are not hers to find: hence every key.
    active = export_subject(engine, Subject(email=DANA), ACTIVE_ONLY, fmt="json")
    assert set(_json_rows(active)) == people.dana - people.dana_retired_key


def test_export_as_csv_gives_the_stored_text(seeded: tuple[Engine, People]) -> None:
    engine, people = seeded
    result = export_subject(engine, Subject(email=DANA), ROTATED, fmt="csv")
    lines = list(csv.reader(io.StringIO(result.body)))
    assert lines[0] == [*COLUMNS, "metadata"]
    by_id = {int(line[0]): dict(zip(lines[0], line, strict=True)) for line in lines[1:]}
    assert set(by_id) == people.dana and result.count == len(people.dana)
    stored = _stored(engine)
    for row_id, line in by_id.items():
        assert line["metadata"] == stored[row_id]
        if row_id in people.php:
            assert line["occurred_at"] == people.php[row_id][0]
    assert "hunter2" not in result.body
    ours = min(people.dana - set(people.php))
    assert json.loads(by_id[ours]["metadata"])["password"] == "[masked]"


def test_export_by_actor_id(seeded: tuple[Engine, People]) -> None:
    engine, people = seeded
    result = export_subject(engine, Subject(actor_id=DANA_ACTOR), None, fmt="json")
    rows = _json_rows(result)
    assert set(rows) == people.actor
    assert json.loads(result.body)["subject"] == f"actor_id {DANA_ACTOR}"
    if people.broken is not None:  # stored text that is not JSON is given as text, not dropped
        assert "metadata" not in rows[people.broken]
        assert rows[people.broken]["metadata_text"] == '{"target_id":'
    if table_layout(engine).actor_style == "type_id":
        assert {row["actor_type"] for row in rows.values()} == {"admin"}


def test_export_is_in_the_ledger_without_the_email_and_in_the_next_report(
        seeded: tuple[Engine, People]) -> None:
    engine, people = seeded
    result = export_subject(engine, Subject(email=DANA), ROTATED, fmt="csv")
    assert result.ledger is not None
    (run,) = read_runs(engine, job="export")
    record = run.record
    assert run.id == result.ledger.id
    assert (record.status, record.dry_run, record.rows_deleted) == ("ok", False, 0)
    assert (record.first_id, record.last_id) == (min(people.dana), max(people.dana))
    assert json.loads(record.details or "{}") == {"subject": f"email_hash {NEW[:12]}…", "by": "email",
                                                  "count": len(people.dana), "format": "csv"}
    everything = json.dumps([r.record.fields() for r in read_runs(engine)], default=str).lower()
    assert "dana" not in everything and "example.org" not in everything
    assert "dana" not in repr(result).lower()

    # The ledger is stamped by the real clock, so the report covers the days it falls on, now.
    day = record.started_at.date()
    inputs = ReportInputs(zone="UTC", retention=RetentionPolicy(), reports=ReportsPolicy(),
                          masker=Masker(load_masking_policy(), ROTATED))
    report = generate(engine, Period(day, day), inputs, datetime.now(UTC)).report
    (listed,) = report["exports"]
    assert {k: listed[k] for k in ("id", "status", "rows_exported", "format", "subject")} == {
        "id": run.id, "status": "ok", "rows_exported": len(people.dana), "format": "csv",
        "subject": f"email_hash {NEW[:12]}…"}
    assert report["erasures"] == []
    lines = list(csv.reader(io.StringIO(to_csv(report))))
    assert ["exports", "0.rows_exported", str(len(people.dana))] in lines
    page = to_html(report)
    assert """data-figure='["exports", "length"]'>1<""" in page
    assert f"""data-figure='["exports", 0, "subject"]'>email_hash {NEW[:12]}…<""" in page
    assert "dana" not in json.dumps(report, default=str).lower()


def test_an_erased_person_exports_nothing(seeded: tuple[Engine, People]) -> None:
    from jobs.erasure import erase

    engine, people = seeded
    assert erase(engine, Subject(email=DANA), ROTATED, dry_run=False).deleted == len(people.dana)
    result = export_subject(engine, Subject(email=DANA), ROTATED, fmt="json")
    assert (result.count, result.first_id, result.last_id) == (0, None, None)
    assert json.loads(result.body)["rows"] == []
    assert set(_stored(engine)) >= people.others  # erasure's finder is export's: nobody else went


def _trace(**changes: Any) -> StoredTrace:
    values: dict[str, Any] = dict(id=1, event_key="auth.login.attempt", severity="info", actor_admin_id=7,
                                  actor_type=None, ip_address="10.0.0.7", user_agent="ua",
                                  route_name=None, request_id=None, metadata_text='{"a":1}',
                                  occurred_at="2026-11-16 09:30:00.123456")
    values.update(changes)
    return StoredTrace(**values)


def test_rendering_keeps_stored_values_and_defuses_spreadsheet_formulas() -> None:
    assert trace_object(_trace())["metadata"] == {"a": 1}
    assert trace_object(_trace(metadata_text=None))["metadata"] is None
    broken = trace_object(_trace(metadata_text="{not json"))
    assert broken["metadata_text"] == "{not json" and "metadata" not in broken
    lines = list(csv.reader(io.StringIO(render_csv([_trace(user_agent="=HYPERLINK(1)")]))))
    assert lines[1][COLUMNS.index("user_agent")] == "'=HYPERLINK(1)"
    assert lines[1][-1] == '{"a":1}'
    with pytest.raises(ValueError, match="xml"):
        export_subject(None, Subject(actor_id=1), None, fmt="xml")  # type: ignore[arg-type]


# The command line.

@pytest.fixture
def app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Flask, People]]:
    """The service's app over a seeded layout-B table (PHP's), CRYPTO_KEYS with a retired key."""
    monkeypatch.setenv("CRYPTO_KEYS", CRYPTO_KEYS)
    monkeypatch.setenv("CRYPTO_ACTIVE_KEY_ID", "k1")
    engine = create_engine(database_url)
    _make_table(engine, "B")
    people = seed_people(engine, database_url)
    engine.dispose()
    flask_app = create_app(TestingConfig(database_url=DatabaseURL(database_url)))
    yield flask_app, people
    flask_app.extensions["trace_writer"].close(2)
    flask_app.extensions["trace_engine"].dispose()


def _exports(flask_app: Flask) -> int:
    return len(read_runs(flask_app.extensions["trace_engine"], job="export"))


def test_cli_export_by_email_from_stdin_to_stdout(app: tuple[Flask, People]) -> None:
    flask_app, people = app
    result = flask_app.test_cli_runner().invoke(governance_cli, ["export", "--email", "-"],
                                                input=f"{DANA}\n")
    assert result.exit_code == 0, result.output
    assert {row["id"] for row in json.loads(result.stdout)["rows"]} == people.dana
    (run,) = read_runs(flask_app.extensions["trace_engine"], job="export")
    assert result.stderr.strip() == (f"email_hash {NEW[:12]}…: {len(people.dana)} row(s) exported as "
                                     f"json; ledger row {run.id}")
    assert "dana" not in result.stderr.lower()


def test_cli_export_to_a_private_file_never_overwritten_without_force(app: tuple[Flask, People],
                                                                     tmp_path: Path) -> None:
    flask_app, people = app
    runner = flask_app.test_cli_runner()
    out = tmp_path / "dana.csv"
    args = ["export", "--actor-id", str(DANA_ACTOR), "--format", "csv", "--output", str(out)]
    first = runner.invoke(governance_cli, args)
    assert first.exit_code == 0, first.output
    assert first.stdout == "" and f"to {out}" in first.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    lines = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert {int(line[0]) for line in lines[1:]} == people.actor

    out.write_text("kept", encoding="utf-8")
    os.chmod(out, 0o644)
    refused = runner.invoke(governance_cli, args)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert out.read_text(encoding="utf-8") == "kept" and _exports(flask_app) == 1

    forced = runner.invoke(governance_cli, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert out.read_text(encoding="utf-8").startswith("id,occurred_at,")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and _exports(flask_app) == 2


@pytest.mark.parametrize(("args", "words"), [
    (["export"], "exactly one of --actor-id N and --email ADDRESS"),
    (["export", "--actor-id", "3", "--email", "a@b.co"], "exactly one of --actor-id N and --email"),
    (["export", "--email", "dana.ortiz.example.org"], "no '@'"),
    (["export", "--actor-id", "0"], "0 is not in the range"),
    (["export", "--actor-id", "3", "--format", "xml"], "'xml' is not one of 'json', 'csv'"),
])
def test_cli_bad_input_is_refused_naming_the_option(app: tuple[Flask, People], args: list[str],
                                                    words: str) -> None:
    flask_app, _ = app
    result = flask_app.test_cli_runner().invoke(governance_cli, args)
    assert result.exit_code == 2 and words in result.output
    assert "dana.ortiz" not in result.output  # a refused address is not echoed either
    assert _exports(flask_app) == 0


def test_cli_export_by_email_without_keys_says_what_to_set(app: tuple[Flask, People], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    flask_app, _ = app
    monkeypatch.delenv("CRYPTO_KEYS")
    out = tmp_path / "dana.json"
    result = flask_app.test_cli_runner().invoke(governance_cli, ["export", "--email", DANA,
                                                                 "--output", str(out)])
    assert result.exit_code == 1 and "CRYPTO_KEYS is not set" in result.output
    assert isinstance(result.exception, SystemExit)  # a clean click error, no traceback
    assert "dana" not in result.output.lower()
    assert not out.exists() and _exports(flask_app) == 0


def test_cli_export_to_a_path_that_cannot_be_written_records_nothing(app: tuple[Flask, People],
                                                                    tmp_path: Path) -> None:
    flask_app, _ = app
    out = tmp_path / "missing" / "dana.json"
    result = flask_app.test_cli_runner().invoke(governance_cli, ["export", "--actor-id", "42",
                                                                 "--output", str(out)])
    assert result.exit_code == 1 and f"cannot write {out}" in result.output
    assert _exports(flask_app) == 0


@pytest.mark.parametrize(("text", "mentions"), [
    ("mail from ann@example.com bounced", True),
    ("to: ANN@Example.com.", True),  # end of a sentence
    ("<ann@example.com>", True),
    ("mail from joann@example.com bounced", False),  # another person's address
    ("ann@example.com.evil.org", False),
    ("ann.smith+ann@example.com", False),
    ("x-ann@example.com", False),
])
def test_a_clear_address_is_matched_whole_never_inside_another(text: str, mentions: bool) -> None:
    metadata = json.dumps({"note": text})
    assert _mentions(metadata, [], "ann@example.com") is mentions
