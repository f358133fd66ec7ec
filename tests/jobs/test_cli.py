"""`flask jobs ...` on real databases, with the clock frozen."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from jobs.cli import jobs_cli
from jobs.ledger import read_runs
from tests.jobs.conftest import insert_rows, stored_times
from trace_service import migrate
from trace_service.config import DatabaseURL
from trace_service.db import create_engine
from trace_service.http.app import create_app
from trace_service.http.config import TestingConfig

POLICY = """version = 1
[retention]
days = 30
[prune]
batch_size = 5
min_batch_size = 2
max_batch_size = 20
"""


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    policy = tmp_path / "retention.toml"
    policy.write_text(POLICY)
    app = create_app(TestingConfig(database_url=DatabaseURL(database_url),
                                   table_timezone="Africa/Cairo", retention_policy=str(policy)))
    yield app
    app.extensions["trace_writer"].close(2)
    app.extensions["trace_engine"].dispose()


@pytest.fixture
def traces(app: Flask, database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    insert_rows(engine, [f"2026-09-{d:02d} 10:00:00.000000" for d in range(1, 21)]
                + ["2026-10-25 13:59:59.000000", "2026-10-25 14:00:00.000000",
                   "2026-11-24 13:00:00.000000"])
    yield engine
    engine.dispose()


@freeze_time("2026-11-24 12:00:00")
def test_prune_dry_run_then_prune(app: Flask, traces: Engine) -> None:
    runner = app.test_cli_runner()
    dry = runner.invoke(jobs_cli, ["prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would prune 21 rows with created_at < 2026-10-25 14:00:00.000000" in dry.output
    assert len(stored_times(traces)) == 23
    done = runner.invoke(jobs_cli, ["prune", "--no-progress"])
    assert done.exit_code == 0, done.output
    assert "prune: ok; cut-off 2026-10-25 14:00:00.000000 (Africa/Cairo); 21 rows deleted" in done.output
    assert stored_times(traces) == ["2026-10-25 14:00:00.000000", "2026-11-24 13:00:00.000000"]
    assert [r.record.status for r in read_runs(traces)] == ["dry_run", "ok"]
    ledger = runner.invoke(jobs_cli, ["ledger", "--verify"])
    assert ledger.exit_code == 0 and "ledger chain intact: 2 rows" in ledger.output


@pytest.mark.parametrize(("args", "message"), [
    (["prune", "--batch-size", "0"], "Invalid value for '--batch-size': 0 is not in the range x>=1"),
    (["prune", "--run-time", "-1"], "Invalid value for '--run-time': -1.0 is not in the range x>=0"),
    (["ledger", "--limit", "zero"], "Invalid value for '--limit': 'zero' is not a valid integer"),
])
def test_bad_options_name_the_option_and_the_value(app: Flask, args: list[str], message: str) -> None:
    result = app.test_cli_runner().invoke(jobs_cli, args)
    assert result.exit_code == 2 and message in result.output


def test_partition_commands_on_sqlite_say_what_to_use(app: Flask, traces: Engine,
                                                      database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        result = app.test_cli_runner().invoke(jobs_cli, ["partitions", "plan"])
        assert result.exit_code == 1 and "not partitioned" in result.output
        convert = app.test_cli_runner().invoke(jobs_cli, ["partitions", "convert"])
        assert convert.exit_code == 0, convert.output
        assert "DROP PRIMARY KEY, ADD PRIMARY KEY (id, created_at) PARTITION BY RANGE" in convert.output
        assert "dry run: nothing changed" in convert.output
        return
    result = app.test_cli_runner().invoke(jobs_cli, ["partitions", "plan"])
    assert result.exit_code == 1 and "partitions need MySQL or MariaDB" in result.output


def test_flask_knows_the_jobs_command_from_the_entry_point(sqlite_url: str) -> None:
    # The web app never imports jobs; `flask jobs` comes from setup.cfg's trace_service.commands.
    result = subprocess.run(
        [str(Path(sys.executable).with_name("flask")), "--app", "trace_service", "jobs", "--help"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "TRACE_DATABASE_URL": sqlite_url}, check=False)
    assert result.returncode == 0, result.stderr
    assert "run-scheduler" in result.stdout and "prune" in result.stdout
