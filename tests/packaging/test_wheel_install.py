"""The project as a backend app gets it: a wheel, installed into a new virtualenv outside the
checkout. There, with nothing of the checkout on the path, the writer records into SQLite and
MariaDB, ``flask db upgrade`` finds the migrations, ``flask jobs prune --dry-run`` and an HTML
compliance report find the shipped policies and templates.

Slow (a wheel build and a virtualenv with every dependency, from pip's cache when warm), so it
runs once per session for both databases.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import CHECKOUT
from tests.support.revisions import HEAD


@dataclass(frozen=True)
class Installed:
    """A virtualenv holding the installed wheel, and a working directory outside the checkout."""

    python: Path
    flask: Path
    workdir: Path

    def run(self, args: list[str], database_url: str, stdin: str | None = None) -> str:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("TRACE_", "PYTHON", "VIRTUAL_ENV"))}
        env["TRACE_DATABASE_URL"] = database_url
        done = subprocess.run(args, cwd=self.workdir, env=env, input=stdin, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy without build/ or egg-info: setuptools reuses what an earlier build left
    # there, which would hide a file the package data no longer names.
    source = root / "source"
    shutil.copytree(CHECKOUT, source, ignore=shutil.ignore_patterns(
        ".venv", "build", "dist", "*.egg-info", "__pycache__", ".git", ".*_cache", ".hypothesis",
        "instance"))
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist),
                    str(source)], check=True, timeout=600, cwd=root)
    (wheel,) = dist.glob("trace_service-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], check=True,
                   timeout=900, cwd=root)
    workdir = root / "app"
    workdir.mkdir()
    yield Installed(venv / "bin" / "python", venv / "bin" / "flask", workdir)


RECORD = textwrap.dedent("""
    import sys
    import trace_service
    from trace_service import TraceWriter, WriterConfig
    from trace_service.reader import read_traces

    assert "/venv/" in trace_service.__file__, trace_service.__file__  # not the checkout
    writer = TraceWriter.from_config(WriterConfig.from_env())
    assert writer.record("wheel.installed", severity="info", metadata={"password": "hunter22",
                                                                       "note": "from a wheel"})
    assert writer.flush(10), writer.stats()
    writer.close(5)
    (trace,) = [t for t in read_traces(writer.engine) if t.event_key == "wheel.installed"]
    assert trace.metadata["password"] == "[masked]" and trace.metadata["note"] == "from a wheel"
    print("recorded", trace.event_key)
""")


def _exercise(installed: Installed, url: str) -> None:
    flask = [str(installed.flask), "--app", "trace_service"]
    assert f"database at revision {HEAD}" in installed.run([*flask, "db", "upgrade"], url)
    assert "recorded wheel.installed" in installed.run([str(installed.python), "-c", RECORD], url)
    assert f"revision: {HEAD}" in installed.run([*flask, "db", "current"], url)
    pruned = installed.run([*flask, "jobs", "prune", "--dry-run"], url)
    shipped = hashlib.sha256((CHECKOUT / "policies" / "retention.toml").read_bytes()).hexdigest()
    assert "prune: dry_run" in pruned and shipped in pruned  # the shipped retention policy
    report = installed.workdir / "report.html"
    installed.run([*flask, "governance", "report", "--from", "2026-01-01", "--to", "2026-01-07",
                   "--format", "html", "--output", str(report)], url)
    html = report.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "masking.toml" in html


def test_the_wheel_works_outside_the_checkout_on_sqlite(installed: Installed) -> None:
    _exercise(installed, f"sqlite:///{installed.workdir / 'traces.sqlite3'}")


@pytest.mark.mariadb
def test_the_wheel_works_outside_the_checkout_on_mariadb(installed: Installed, mariadb_url: str) -> None:
    _exercise(installed, mariadb_url)
