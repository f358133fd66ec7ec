"""Named locks: one holder per database, never shared with another database on the server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from jobs.locks import LEADER_LOCK, RETENTION_LOCK, NamedLock, server_lock_name
from tests.conftest import new_mariadb_database
from trace_service.db import create_engine


@pytest.fixture
def other_database(mariadb_server: Engine) -> Iterator[Engine]:
    """An engine on a second new database of the same server."""
    with new_mariadb_database(mariadb_server) as url:
        engine = create_engine(url)
        yield engine
        engine.dispose()


@pytest.mark.parametrize("name", [LEADER_LOCK, RETENTION_LOCK])
def test_a_lock_is_per_database_on_a_shared_server(mariadb_url: str, other_database: Engine,
                                                   name: str) -> None:
    engine, second_host = create_engine(mariadb_url), create_engine(mariadb_url)
    try:
        with NamedLock(engine, name) as held:
            assert held
            # A second host of the same database waits; another database has its own lock.
            assert not NamedLock(second_host, name).acquire()
            with NamedLock(other_database, name) as other_held:
                assert other_held
    finally:
        engine.dispose()
        second_host.dispose()


def test_server_lock_names_fit_the_servers_limit() -> None:
    assert server_lock_name("traces", LEADER_LOCK) == "traces.telemetry_traces.scheduler"
    long_names = {server_lock_name(f"{'x' * 60}{n}", LEADER_LOCK) for n in range(3)}
    assert len(long_names) == 3 and all(len(n) <= 64 for n in long_names)
