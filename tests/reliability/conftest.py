"""Fixtures of the reliability tests: a fault-injecting proxy in front of a fresh MariaDB
database, and small helpers to wait and to summarise timings.

Every test here is marked ``reliability`` and bounded by its own ``timeout``; figures each test
measures are printed (``-s`` shows them) and written into ``docs/reliability.md`` by hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.tcp_proxy import TCPProxy
from trace_service import migrate
from trace_service.db import create_engine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in item.nodeid:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.mariadb)


@dataclass
class Behind:
    """A migrated database reached directly (``engine``, ``url``) and through ``proxy``."""

    engine: Engine
    url: str
    database: str
    proxy: TCPProxy

    @property
    def proxied_url(self) -> str:
        return self.proxy.url(self.database)

    def count(self, where: str = "1 = 1") -> int:
        with self.engine.connect() as conn:
            query = sa.text(f"SELECT COUNT(*) FROM telemetry_traces WHERE {where}")
            return int(conn.execute(query).scalar_one())

    def server_connections(self) -> int:
        """Connections the server holds to this database (ours through the proxy included)."""
        with self.engine.connect() as conn:
            query = sa.text("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                            "WHERE DB = :db AND ID <> CONNECTION_ID()")
            return int(conn.execute(query, {"db": self.database}).scalar_one())


@pytest.fixture
def behind(mariadb_url: str) -> Iterator[Behind]:
    engine = create_engine(mariadb_url, io_timeout=60)
    migrate.upgrade(engine)
    proxy = TCPProxy()
    database = engine.url.database
    assert database
    yield Behind(engine, mariadb_url, database, proxy)
    proxy.close()
    engine.dispose()


def wait_for(predicate: Callable[[], bool], timeout: float, tick: float = 0.05) -> bool:
    """Poll ``predicate`` (an Event wait, no bare sleep) until true or ``timeout`` seconds."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(tick)
    return predicate()


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
