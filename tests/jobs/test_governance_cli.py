"""`flask governance ...` on a seeded table (MariaDB and SQLite), with the clock frozen."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from freezegun import freeze_time

from jobs.governance_cli import governance_cli
from tests.support.compliance_seed import ALICE, CRYPTO_KEYS, Seeded, seed
from trace_service import migrate
from trace_service.config import DatabaseURL
from trace_service.db import create_engine
from trace_service.http.app import create_app
from trace_service.http.config import TestingConfig


@pytest.fixture
def seeded_app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Flask, Seeded]]:
    monkeypatch.setenv("CRYPTO_KEYS", CRYPTO_KEYS)
    monkeypatch.setenv("CRYPTO_ACTIVE_KEY_ID", "k1")
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    seeds = seed(engine, database_url, "UTC")
    engine.dispose()
    app = create_app(TestingConfig(database_url=DatabaseURL(database_url)))
    yield app, seeds
    app.extensions["trace_writer"].close(2)
    app.extensions["trace_engine"].dispose()


def _ids(app: Flask) -> set[int]:
    with app.extensions["trace_engine"].connect() as conn:
        return set(conn.execute(sa.text("SELECT id FROM telemetry_traces")).scalars())


def test_scan_lists_findings_and_exits_1_then_fix_then_clean(seeded_app: tuple[Flask, Seeded]) -> None:
    app, seeds = seeded_app
    runner = app.test_cli_runner()
    period = runner.invoke(governance_cli, ["scan", "--since", "2026-11-16", "--until", "2026-11-22",
                                            "--format", "json"])
    assert period.exit_code == 1
    body = json.loads(period.stdout)
    assert body["findings"] == len(seeds.planted)
    assert {(f["id"], f["column"], f["path"], f["kind"]) for f in body["findings_list"]} == seeds.planted
    whole = runner.invoke(governance_cli, ["scan"])
    assert whole.exit_code == 1
    assert f"{len(seeds.planted) + 4} finding(s)" in whole.stderr  # plus four outside the period
    fixed = runner.invoke(governance_cli, ["scan", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert "fixed (ledger row" in fixed.stderr
    assert runner.invoke(governance_cli, ["scan"]).exit_code == 0


@freeze_time("2026-11-24 12:00:00")
@pytest.mark.parametrize("fmt", ["json", "csv", "html"])
def test_report_in_each_format_is_stored_and_verifies(seeded_app: tuple[Flask, Seeded], fmt: str,
                                                      tmp_path: Path) -> None:
    app, seeds = seeded_app
    runner = app.test_cli_runner()
    out = tmp_path / f"report.{fmt}"
    result = runner.invoke(governance_cli, ["report", "--from", "2026-11-16", "--to", "2026-11-22",
                                            "--format", fmt, "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    sha = result.stderr.split("sha256 ")[1].strip()
    if fmt == "json":
        assert hashlib.sha256(text.encode()).hexdigest() == sha
        assert json.loads(text)["volume"]["total"] == seeds.rows_in_period
    elif fmt == "csv":
        assert ["volume", "total", str(seeds.rows_in_period)] in list(csv.reader(io.StringIO(text)))
    else:
        assert f"""data-figure='["volume", "total"]'>{seeds.rows_in_period}<""" in text
    listing = runner.invoke(governance_cli, ["reports"])
    assert sha in listing.output
    report_id = listing.output.split("\t")[0]
    verified = runner.invoke(governance_cli, ["verify-report", report_id])
    assert verified.exit_code == 0 and "content matches" in verified.output


def test_erase_is_a_dry_run_unless_executed(seeded_app: tuple[Flask, Seeded]) -> None:
    app, seeds = seeded_app
    runner = app.test_cli_runner()
    before = _ids(app)
    dry = runner.invoke(governance_cli, ["erase", "--email", "-"], input=f"{ALICE}\n")
    assert dry.exit_code == 0, dry.output
    assert "3 row(s) matched, would delete 3" in dry.stdout and "alice" not in dry.output.lower()
    assert _ids(app) == before
    done = runner.invoke(governance_cli, ["erase", "--email", ALICE, "--execute"])
    assert done.exit_code == 0 and "deleted 3" in done.stdout
    assert _ids(app) == before - seeds.alice_ids


@pytest.mark.parametrize(("args", "words"), [
    (["report", "--from", "2026-13-01", "--to", "2026-11-22"], "'2026-13-01' is not a date"),
    (["report", "--from", "2026-11-22", "--to", "2026-11-16"], "--to 2026-11-16 is before --from"),
    (["scan", "--since", "yesterday"], "use YYYY-MM-DD"),
    (["erase"], "exactly one of --actor-id N and --email"),
    (["erase", "--actor-id", "3", "--email", "a@b.co"], "exactly one of"),
    (["erase", "--email", "not-an-email"], "no '@'"),
    (["erase", "--actor-id", "0"], "0 is not in the range"),
    (["verify-report", "999"], "no report 999"),
])
def test_bad_input_is_refused_naming_the_option(seeded_app: tuple[Flask, Seeded], args: list[str],
                                                words: str) -> None:
    app, _ = seeded_app
    before = _ids(app)
    result = app.test_cli_runner().invoke(governance_cli, args)
    assert result.exit_code in (1, 2)
    assert words in result.output
    assert _ids(app) == before


def test_erase_by_email_without_keys_says_what_to_set(seeded_app: tuple[Flask, Seeded],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = seeded_app
    monkeypatch.delenv("CRYPTO_KEYS")
    result = app.test_cli_runner().invoke(governance_cli, ["erase", "--email", ALICE])
    assert result.exit_code == 1 and "CRYPTO_KEYS is not set" in result.output


@freeze_time("2026-11-24 12:00:00")
def test_a_password_inside_a_php_exception_message_is_found_fixed_and_reported(
        seeded_app: tuple[Flask, Seeded], tmp_path: Path) -> None:
    app, _seeds = seeded_app
    runner = app.test_cli_runner()
    period = ["--since", "2026-11-18", "--until", "2026-11-18"]
    found = runner.invoke(governance_cli, ["scan", *period, "--format", "json"])
    assert found.exit_code == 1
    (finding,) = [f for f in json.loads(found.stdout)["findings_list"]
                  if f["path"] == "exception_message"]
    assert finding["kind"] == "credential"
    assert finding["preview"] == "SQLSTATE[28000] [1045] Access denied; password=[masked]"
    assert "Tr0ub4dor" not in found.output

    out = tmp_path / "report.json"
    reported = runner.invoke(governance_cli, ["report", "--from", "2026-11-16", "--to", "2026-11-22",
                                              "--format", "json", "--output", str(out)])
    assert reported.exit_code == 0, reported.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["leak_scan"]["by_kind"]["credential"] == 1
    assert {"id": finding["id"], "column": "metadata", "path": "exception_message",
            "kind": "credential", "preview": finding["preview"]} in report["leak_scan"]["findings_listed"]
    assert "Tr0ub4dor" not in out.read_text(encoding="utf-8")

    fixed = runner.invoke(governance_cli, ["scan", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    with app.extensions["trace_engine"].connect() as conn:
        stored = [json.loads(text) for text in conn.execute(sa.text(
            "SELECT metadata FROM telemetry_traces WHERE metadata LIKE '%SQLSTATE[28000]%'")).scalars()]
    assert [m["exception_message"] for m in stored] == [
        "SQLSTATE[28000] [1045] Access denied; password=[masked]"]
    assert {"rule": "credential", "path": "exception_message"} in stored[0]["_masked"]
    assert runner.invoke(governance_cli, ["scan", *period]).exit_code == 0


def test_erase_with_opt_out_deletes_and_keeps_new_traces_out(seeded_app: tuple[Flask, Seeded]) -> None:
    app, seeds = seeded_app
    runner = app.test_cli_runner()
    before = _ids(app)
    refused = runner.invoke(governance_cli, ["erase", "--email", ALICE, "--opt-out"])
    assert refused.exit_code == 2 and "add --execute" in refused.output and _ids(app) == before
    done = runner.invoke(governance_cli, ["erase", "--email", "-", "--execute", "--opt-out"],
                         input=f"{ALICE}\n")
    assert done.exit_code == 0, done.output
    assert "opted out" in done.stderr and "alice" not in done.output.lower()
    assert _ids(app) == before - seeds.alice_ids
    listed = runner.invoke(governance_cli, ["opt-out", "list"])
    assert listed.exit_code == 0 and listed.stdout.count("email_hash\t") == 1  # one key: k1
    writer = app.extensions["trace_writer"]
    assert writer.opt_outs.reload()
    writer.record("after.erasure", metadata={"email": ALICE})
    assert writer.flush(5) and _ids(app) == before - seeds.alice_ids


def test_opt_out_add_remove_and_their_errors(seeded_app: tuple[Flask, Seeded]) -> None:
    app, _ = seeded_app
    runner = app.test_cli_runner()
    added = runner.invoke(governance_cli, ["opt-out", "add", "--actor-id", "7"])
    assert added.exit_code == 0 and "actor_id 7: opted out (1 new row(s))" in added.stdout
    again = runner.invoke(governance_cli, ["opt-out", "add", "--actor-id", "7"])
    assert "(0 new row(s))" in again.stdout
    assert "actor_id\t7\t-\t" in runner.invoke(governance_cli, ["opt-out", "list"]).stdout
    assert runner.invoke(governance_cli, ["opt-out", "remove", "--actor-id", "7"]).exit_code == 0
    missing = runner.invoke(governance_cli, ["opt-out", "remove", "--actor-id", "7"])
    assert missing.exit_code == 1 and "is not opted out" in missing.output
    both = runner.invoke(governance_cli, ["opt-out", "add", "--actor-id", "7", "--email", ALICE])
    assert both.exit_code == 2 and "exactly one of --actor-id N and --email" in both.output
    bad = runner.invoke(governance_cli, ["opt-out", "add", "--email", "not-an-address"])
    assert bad.exit_code == 2 and "not-an-address" not in bad.output and "no '@'" in bad.output
