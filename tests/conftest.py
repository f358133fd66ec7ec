"""Fixtures shared by the whole suite: real MariaDB databases, SQLite files, writers.

MariaDB is a real server at 127.0.0.1:3306 (``TRACE_TEST_MARIADB_URL`` overrides). If it is down
the MariaDB tests fail, loudly: a skipped database test would be a test that cannot fail.
Every test gets its own database, created and dropped around it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from sqlalchemy.engine import Engine

import trace_service.writer as writer_module
from governance.masking import Masker
from tests.support.redis_server import REDIS_SERVER, RedisServer
from tests.support.sql_modes import global_sql_mode
from trace_service import migrate
from trace_service.config import DatabaseURL
from trace_service.db import create_engine
from trace_service.http.config import TestingConfig
from trace_service.writer import TraceWriter

# Hypothesis's deadline and its too_slow health check time the machine, not the code: on a
# shared 2-core machine they fail at random (seen: the PHP form round trip refused because
# generating its examples took 1.06 s on a fresh machine's first run). The suite asserts no
# timing; speed is measured by bench/. A test's own @settings still inherits these.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

MARIADB_SERVER_URL = os.environ.get("TRACE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")
BACKENDS = ("mariadb", "sqlite")


def pytest_configure(config: pytest.Config) -> None:
    # Like logging.raiseExceptions: in the suite, writers raise instead of swallowing, so a
    # writer that fails on every insert cannot pass. Swallow-path tests pass strict=False.
    writer_module.raise_exceptions = True


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[Engine]:
    """An engine on the MariaDB server (no database selected)."""
    engine = create_engine(MARIADB_SERVER_URL, connect_timeout=3)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(
            f"MariaDB is not reachable at {DatabaseURL(MARIADB_SERVER_URL)} ({exc.orig}); start it "
            "with: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@contextmanager
def new_mariadb_database(server: Engine) -> Iterator[str]:
    """The URL of a new, empty MariaDB database on ``server``, dropped after the block."""
    name = f"ts_test_{uuid.uuid4().hex[:12]}"
    with server.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    try:
        yield f"{MARIADB_SERVER_URL}/{name}?charset=utf8mb4"
    finally:
        with server.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))


@pytest.fixture
def mariadb_url(mariadb_server: Engine) -> Iterator[str]:
    """The URL of a new, empty MariaDB database, dropped after the test."""
    with new_mariadb_database(mariadb_server) as url:
        yield url


@pytest.fixture
def server_sql_mode(mariadb_server: Engine) -> Callable[[str], AbstractContextManager[None]]:
    """``with server_sql_mode("NO_BACKSLASH_ESCAPES"):`` sets the server's GLOBAL sql_mode (new
    connections start with it) for the block and restores it, even when the block fails. The
    server is shared: keep the block to the work that needs the mode."""
    return lambda mode: global_sql_mode(mariadb_server, mode)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a new SQLite file."""
    return f"sqlite:///{tmp_path / 'traces.sqlite3'}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend in turn."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on ``database_url``."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated_engine(engine: Engine) -> Engine:
    """``engine`` with the migrations applied (layout A created)."""
    migrate.upgrade(engine)
    return engine


@pytest.fixture
def make_writer(database_url: str) -> Iterator[Callable[..., TraceWriter]]:
    """A factory of writers on ``database_url`` (TestingConfig, overrides as keywords)."""
    writers: list[TraceWriter] = []

    def make(url: str | None = None, strict: bool | None = None, masker: Masker | None = None,
             **settings: Any) -> TraceWriter:
        config = TestingConfig(database_url=DatabaseURL(url or database_url), **settings)
        writer = TraceWriter.from_config(config, strict=strict, masker=masker)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.strict = False  # teardown must not mask the test's own failure
        writer.close(timeout=2)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own: a free port, its append-only file under ``tmp_path``,
    stopped by pid (the queue's tests and its reliability tests)."""
    if shutil.which(REDIS_SERVER) is None:
        pytest.fail(f"{REDIS_SERVER} not found: apt-get install -y redis-server (.ci/run does this)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory).start()
    yield server
    server.stop()
