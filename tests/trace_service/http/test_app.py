"""The app factory: health endpoints, JSON errors, and the `flask db` commands."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask

from tests.support.paths import CHECKOUT
from tests.support.revisions import HEAD
from trace_service import migrate
from trace_service.config import DatabaseURL
from trace_service.http.app import create_app
from trace_service.http.config import TestingConfig


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    app = create_app(TestingConfig(database_url=DatabaseURL(database_url)))
    app.config["TESTING"] = True
    yield app
    app.extensions["trace_writer"].close(2)
    app.extensions["trace_engine"].dispose()


def test_healthz_answers_without_a_database(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}
    assert uuid.UUID(response.headers["X-Request-ID"]).version == 4


def test_readyz_is_503_until_the_table_exists_then_200(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "flask db upgrade" in response.json["reason"]  # type: ignore[index]
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"database at revision {HEAD}" in result.output
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["layout"] == "A"  # type: ignore[index]


def test_unknown_route_is_a_json_404(app: Flask) -> None:
    response = app.test_client().get("/nope")
    assert response.status_code == 404 and response.json["status"] == 404  # type: ignore[index]
    assert "not found" in response.json["error"].lower()  # type: ignore[index]


def test_db_current_reports_revision_and_layout(app: Flask) -> None:
    runner = app.test_cli_runner()
    runner.invoke(args=["db", "upgrade"])
    result = runner.invoke(args=["db", "current"])
    assert f"revision: {HEAD}" in result.output and "layout: A" in result.output


def test_alembic_command_line_reads_the_url_from_the_environment(sqlite_url: str) -> None:
    env = {**os.environ, "TRACE_DATABASE_URL": sqlite_url}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(CHECKOUT / "alembic.ini"),
         "upgrade", "head"],
        env=env, capture_output=True, text=True, timeout=120, cwd=CHECKOUT,
    )
    assert done.returncode == 0, done.stderr
    from trace_service.db import create_engine

    engine = create_engine(sqlite_url)
    try:
        assert migrate.current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_every_command_group_is_on_the_service_and_none_on_another_app(app: Flask) -> None:
    """The groups are entry points added by create_app to our app only: a backend app in the same
    environment keeps its own ``flask db`` (Flask-Migrate's, say) and gets none of ours."""
    from click.testing import CliRunner
    from flask.cli import FlaskGroup

    ours = app.test_cli_runner().invoke(args=["--help"]).output
    for group in ("db", "keys", "guard", "jobs", "governance"):
        assert f"  {group} " in ours
    other = CliRunner().invoke(FlaskGroup(create_app=lambda: Flask("backend_app")), ["--help"]).output
    assert "Commands:" in other
    assert not [group for group in ("db", "keys", "guard", "jobs", "governance") if f"  {group} " in other]


def test_a_web_worker_imports_no_command_group_until_the_command_line_asks(sqlite_url: str) -> None:
    code = (
        "import sys\n"
        "from trace_service.config import DatabaseURL\n"
        "from trace_service.http.app import create_app\n"
        "from trace_service.http.config import TestingConfig\n"
        f"app = create_app(TestingConfig(database_url=DatabaseURL({sqlite_url!r})))\n"
        "assert 'queue' in app.cli.list_commands(None)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'jobs'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
