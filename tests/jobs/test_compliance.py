"""The leak scan, compliance reports and erasure on a seeded table (MariaDB, and SQLite for B).

The table is seeded by ``tests.support.compliance_seed``: PHP-written rows with planted secrets
and clean ones, and rows our writer masked. Every figure asserted here is counted from what was
seeded, not from what the code under test returned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from governance.masking import Masker
from governance.masking_policy import load_masking_policy
from governance.policy_files import shipped_policy
from governance.report_store import get_report
from governance.reports import Period
from jobs.compliance import ReportInputs, expected_runs, gather, generate, previous_week
from jobs.erasure import Subject, erase
from jobs.leak_scan import run_scan
from jobs.ledger import RunRecord, read_runs, record_run
from jobs.report_policy import ReportsPolicy
from jobs.retention_policy import RetentionPolicy
from tests.support.compliance_seed import ALICE, KEYRING, NOW, PERIOD, Seeded, seed
from tests.support.php_schema import create_php_table
from trace_service import migrate
from trace_service.db import create_engine

CASES = [("mariadb", "A", "UTC"), ("mariadb", "B", "Africa/Cairo"), ("sqlite", "B", "Africa/Cairo")]


@pytest.fixture(params=CASES, ids=["-".join(c) for c in CASES])
def seeded(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, Seeded, str]]:
    backend, layout, zone = request.param
    url = request.getfixturevalue(f"{backend}_url")
    engine = create_engine(url)
    if layout == "A":
        migrate.upgrade(engine)
    else:
        create_php_table(engine, layout)
        migrate.upgrade(engine)
    yield engine, seed(engine, url, zone), zone
    engine.dispose()


def _inputs(zone: str) -> ReportInputs:
    return ReportInputs(zone=zone, retention=RetentionPolicy(), reports=ReportsPolicy(scan_batch_size=4),
                        masker=Masker(load_masking_policy(), KEYRING))


def _now() -> object:
    return NOW.replace(tzinfo=UTC)


def _period_bounds() -> tuple[str, str]:
    return (PERIOD.start.strftime("%Y-%m-%d %H:%M:%S.%f"), PERIOD.end.strftime("%Y-%m-%d %H:%M:%S.%f"))


def test_scan_finds_every_planted_secret_and_flags_no_clean_row(seeded: tuple[Engine, Seeded, str]) -> None:
    engine, seeds, zone = seeded
    start, end = _period_bounds()
    result = run_scan(engine, _inputs(zone).masker, time_from=start, time_to=end, batch_size=4)
    found = {(f.row_id, f.column, f.path, f.kind) for f in result.findings}
    assert found == seeds.planted
    assert result.tally.rows == seeds.rows_in_period
    assert result.tally.rows_with_findings == len({p[0] for p in seeds.planted})
    assert not {f.row_id for f in result.findings} & set(seeds.clean_php_ids + seeds.our_ids)


def test_scan_previews_never_hold_the_secret(seeded: tuple[Engine, Seeded, str]) -> None:
    engine, _, zone = seeded
    result = run_scan(engine, _inputs(zone).masker)
    text = json.dumps([f.as_dict() for f in result.findings])
    for secret in ("Zq8vR2mXk4Lp9sT1wY6bN3cF7hJ0dG5a", "hunter2", "alice@example.com",
                   "abcdEFGH1234ijkl5678mnop", "s3cr3tpw", "k_live_51Hx", "ghp_", "not in the period"):
        assert secret not in text


def test_scan_fix_masks_in_place_records_it_and_leaves_clean_rows(seeded: tuple[Engine, Seeded, str]) -> None:
    engine, seeds, zone = seeded
    masker = _inputs(zone).masker
    with engine.connect() as conn:
        before: dict[int, str] = {
            row_id: metadata
            for row_id, metadata in conn.execute(sa.text("SELECT id, metadata FROM telemetry_traces"))}
    result = run_scan(engine, masker, fix=True, batch_size=4)
    # Planted rows in the period, plus the four password rows outside it.
    assert result.rows_fixed == len({p[0] for p in seeds.planted}) + 4
    assert run_scan(engine, masker).tally.findings == 0
    with engine.connect() as conn:
        after: dict[int, str] = {
            row_id: metadata
            for row_id, metadata in conn.execute(sa.text("SELECT id, metadata FROM telemetry_traces"))}
    for row_id in seeds.clean_php_ids + seeds.our_ids:
        assert after[row_id] == before[row_id]
    password_row = next(p[0] for p in seeds.planted if p[2] == "password")
    fixed = json.loads(after[password_row])
    assert fixed["password"] == "[masked]" and fixed["name"] == "Zoë"
    assert fixed["_masked"] == [{"rule": "key", "path": "password"}]
    (ledger_row,) = read_runs(engine, job="leak_scan_fix")
    changes = json.loads(ledger_row.record.details or "{}")["changes"]
    assert {(c["id"], c["column"], c["path"], c["kind"]) for c in changes} >= seeds.planted
    assert "hunter2" not in (ledger_row.record.details or "")


def test_report_states_exactly_the_seeded_figures(seeded: tuple[Engine, Seeded, str]) -> None:
    engine, seeds, zone = seeded
    record_run(engine, RunRecord(job="retention", status="failed", started_at=NOW.replace(day=18, hour=1),
                                 finished_at=NOW.replace(day=18, hour=1), error="LockError: busy"))
    stored = generate(engine, PERIOD, _inputs(zone), _now(), trigger="manual")  # type: ignore[arg-type]
    report = stored.report

    assert report["volume"]["total"] == seeds.rows_in_period
    assert report["volume"]["by_day"] == {day: seeds.by_day.get(day, 0) for day in PERIOD.days}
    assert report["volume"]["by_event_key"] == dict(seeds.by_key)
    assert report["volume"]["by_severity"] == dict(seeds.by_severity)
    scan = report["leak_scan"]
    assert scan["findings"] == len(seeds.planted)
    assert {(f["id"], f["column"], f["path"], f["kind"]) for f in scan["findings_listed"]} == seeds.planted
    retention = report["retention"]
    assert (retention["rows_older_than_window"], retention["rows_older_than_window_and_grace"]) == (2, 2)
    assert retention["oldest_row"].startswith("2026-09-01 10:00:00")
    assert retention["runs_by_status"] == {"failed": 1}
    assert retention["failures"][0]["error"] == "LockError: busy"
    # Seven days at 03:15 UTC (the default schedule), one failed run recorded.
    assert retention["expected_runs"] == 7
    results = {c["name"]: c["result"] for c in report["checks"]}
    assert results["retention.rows_beyond_window"] == "fail"
    assert results["retention.runs_succeeded"] == "fail"
    assert results["retention.runs_on_schedule"] == "fail"
    assert results["retention.ledger_chain"] == "pass"
    assert results["leak_scan.no_secrets"] == "fail"
    assert report["status"] == "fail"
    policy_bytes = shipped_policy("masking.toml")
    assert report["masking_policy"]["sha256"] == hashlib.sha256(policy_bytes).hexdigest()
    # The counters were never persisted in this database: said, not claimed as zero.
    assert report["loss"] is None
    assert any(line.startswith("loss:") for line in report["not_checked"])
    if engine.dialect.name == "sqlite":
        assert results["audit_guard.grants"] == "not_checked"

    again = get_report(engine, stored.id)
    assert again is not None and again.verified()
    assert hashlib.sha256((again.content or "").encode()).hexdigest() == stored.sha256
    (run,) = read_runs(engine, job="report")
    assert json.loads(run.record.details or "{}")["sha256"] == stored.sha256


def test_a_changed_report_no_longer_verifies(seeded: tuple[Engine, Seeded, str]) -> None:
    engine, _, zone = seeded
    stored = generate(engine, PERIOD, _inputs(zone), _now())  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE trace_reports SET content = REPLACE(content, '\"fail\"', '\"pass\"')"))
    changed = get_report(engine, stored.id)
    assert changed is not None and not changed.verified()


def test_erasure_by_email_removes_both_sides_rows_only(seeded: tuple[Engine, Seeded, str]) -> None:
    engine, seeds, zone = seeded
    with engine.connect() as conn:
        before = set(conn.execute(sa.text("SELECT id FROM telemetry_traces")).scalars())
    assert len(seeds.alice_ids) == 3  # a PHP-hashed row, a PHP clear-text leak, our writer's row

    dry = erase(engine, Subject(email="  alice@EXAMPLE.com\n"), KEYRING)
    assert (dry.matched, dry.deleted, dry.dry_run) == (3, 0, True)
    with engine.connect() as conn:
        assert set(conn.execute(sa.text("SELECT id FROM telemetry_traces")).scalars()) == before

    done = erase(engine, Subject(email=ALICE), KEYRING, dry_run=False, batch_size=2)
    assert done.deleted == 3
    with engine.connect() as conn:
        after = set(conn.execute(sa.text("SELECT id FROM telemetry_traces")).scalars())
    assert after == before - seeds.alice_ids
    runs = read_runs(engine, job="erase")
    assert [r.record.status for r in runs] == ["dry_run", "ok"]
    assert "alice" not in (runs[1].record.details or "").lower()

    # The next report lists the erasure. erase() stamps its ledger rows with the real clock, so
    # the report covers the table-zone days those stamps fall on, made now: never a fixed date.
    days = [r.record.started_at.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).date() for r in runs]
    report = generate(engine, Period(min(days), max(days)), _inputs(zone), datetime.now(UTC)).report
    assert [(e["status"], e["rows_deleted"]) for e in report["erasures"]][-2:] == [("dry_run", 0), ("ok", 3)]


def test_erasure_by_actor_id(seeded: tuple[Engine, Seeded, str]) -> None:
    engine, seeds, _ = seeded
    result = erase(engine, Subject(actor_id=8), None, dry_run=False)
    assert result.deleted == len(seeds.our_ids)  # our writer wrote actor 8, PHP actor 7
    with engine.connect() as conn:
        left = set(conn.execute(sa.text("SELECT id FROM telemetry_traces")).scalars())
    assert not left & set(seeds.our_ids)


def test_erasure_by_email_needs_the_keyring(seeded: tuple[Engine, Seeded, str]) -> None:
    from governance.errors import ConfigError

    engine, _, _ = seeded
    with pytest.raises(ConfigError, match="CRYPTO_KEYS"):
        erase(engine, Subject(email=ALICE), None)


def test_gather_says_what_it_could_not_read(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    migrate.upgrade(engine, "0001")  # the trace table only: no ledger, no counters
    facts = gather(engine, PERIOD, _inputs("UTC"), _now())  # type: ignore[arg-type]
    assert facts.retention is None and facts.counters is None
    assert "flask db upgrade" in facts.not_gathered["retention"]
    assert "flask db upgrade" in facts.not_gathered["loss"]


@pytest.mark.parametrize(("now", "zone", "first", "last"), [
    ("2026-11-23T06:00:00+00:00", "UTC", "2026-11-16", "2026-11-22"),  # a Monday: the week before
    ("2026-11-29T23:00:00+00:00", "UTC", "2026-11-16", "2026-11-22"),  # Sunday night
    # The same instant is Monday 13:00 at UTC+14: the week just ended is the one reported.
    ("2026-11-29T23:00:00+00:00", "Pacific/Kiritimati", "2026-11-23", "2026-11-29"),
])
def test_previous_week(now: str, zone: str, first: str, last: str) -> None:
    period = previous_week(datetime.fromisoformat(now), zone)
    assert (period.first_day.isoformat(), period.last_day.isoformat()) == (first, last)


def test_expected_runs_across_a_dst_change() -> None:
    # Berlin falls back on 2026-10-25: every day still has its 03:15, seven days, seven runs.
    start, end = datetime(2026, 10, 21, 22), datetime(2026, 10, 28, 23)
    assert expected_runs(("03:15",), "Europe/Berlin", start, end) == 7
    assert expected_runs(("03:15", "15:15"), "Europe/Berlin", start, end) == 14
    assert expected_runs(("03:15",), "UTC", start, start) == 0


def test_erasure_finds_rows_hashed_with_a_retired_key(seeded: tuple[Engine, Seeded, str]) -> None:
    from governance.hashing import Keyring, email_hash
    from tests.support.compliance_seed import ROOT_KEY, _php

    engine, seeds, _ = seeded
    retired = "ff" * 32
    rotated = Keyring.from_json(f'[{{"id":"k0","key":"{retired}"}},{{"id":"k1","key":"{ROOT_KEY}"}}]', "k1")
    old_hash = email_hash(ALICE, rotated, "k0").hash
    old_row = _php(engine, "auth.login.attempt", "info", "2026-11-20 08:00:00.000000",
                   f'{{"email_hash":"{old_hash}","email_hash_key_id":"k0"}}')
    assert old_hash not in {email_hash(ALICE, KEYRING).hash}
    only_active = erase(engine, Subject(email=ALICE), KEYRING)
    assert only_active.matched == len(seeds.alice_ids)  # k0's hash is unknown to a k1-only keyring
    both = erase(engine, Subject(email=ALICE), rotated, dry_run=False)
    assert both.deleted == len(seeds.alice_ids) + 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM telemetry_traces WHERE id = :i"),
                            {"i": old_row}).scalar() == 0


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(["UTC", "Europe/Berlin", "Africa/Cairo", "America/New_York",
                             "Australia/Lord_Howe"]),
       first=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
       days=st.integers(1, 45),
       times=st.lists(st.times().map(lambda t: f"{t.hour:02d}:{t.minute:02d}"), min_size=1, max_size=3,
                      unique=True))
def test_expected_runs_is_one_per_time_per_local_day(zone: str, first: date, days: int,
                                                     times: list[str]) -> None:
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)

    def utc(day: date) -> datetime:
        return datetime.combine(day, datetime.min.time(), tz).astimezone(UTC).replace(tzinfo=None)

    start, end = utc(first), utc(first + timedelta(days=days))
    assert expected_runs(tuple(times), zone, start, end) == days * len(times)
