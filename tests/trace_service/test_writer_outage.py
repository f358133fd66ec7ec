"""The writer's database dies mid-stream: callers see nothing, every row is accounted for,
and writing resumes by itself when the database comes back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.support.tcp_proxy import TCPProxy
from trace_service import migrate
from trace_service.config import DatabaseURL, TestingConfig
from trace_service.db import create_engine
from trace_service.writer import TraceWriter


@pytest.fixture
def proxy() -> Iterator[TCPProxy]:
    proxy = TCPProxy()
    yield proxy
    proxy.close()


def wait_for(predicate: object, timeout: float) -> bool:
    """Poll ``predicate`` with an Event wait (no bare sleeps) until true or timeout."""
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        tick.wait(0.05)
    return False


@pytest.mark.parametrize("fault", ["cut", "blackhole"])
def test_database_dies_mid_stream_callers_see_nothing_and_counters_add_up(
    mariadb_url: str, proxy: TCPProxy, fault: str
) -> None:
    direct = create_engine(mariadb_url)
    migrate.upgrade(direct)
    database = direct.url.database
    assert database
    config = TestingConfig(
        database_url=DatabaseURL(proxy.url(database)), batch_size=20, flush_interval=0.02,
        breaker_threshold=1, breaker_base_delay=0.1, breaker_max_delay=0.3,
        connect_timeout=0.5, io_timeout=0.5,
    )
    writer = TraceWriter.from_config(config, strict=False)
    errors: list[BaseException] = []
    stop = threading.Event()

    def app_thread() -> None:
        i = 0
        while not stop.is_set():
            try:
                writer.record("x.outage", metadata={"i": i})
            except BaseException as exc:  # noqa: BLE001 - what we assert never happens
                errors.append(exc)
            i += 1
            stop.wait(0.001)

    try:
        callers = [threading.Thread(target=app_thread) for _ in range(3)]
        for caller in callers:
            caller.start()
        assert wait_for(lambda: writer.stats().written >= 100, 10), writer.stats()
        getattr(proxy, fault)()
        assert wait_for(lambda: writer.stats().dropped_by_reason["circuit_open"] > 0, 15), \
            writer.stats()
        written_during_outage = writer.stats().written
        proxy.restore()
        assert wait_for(lambda: writer.stats().written > written_during_outage + 100, 15), \
            writer.stats()
        stop.set()
        for caller in callers:
            caller.join(5)
        assert writer.flush(10)
        stats = writer.stats()
        assert errors == []
        assert stats.pending == 0 and stats.written + stats.dropped == stats.submitted
        assert stats.dropped_by_reason["circuit_open"] > 0
        with direct.connect() as conn:
            stored = conn.execute(sa.text("SELECT COUNT(*) FROM telemetry_traces")).scalar_one()
        # A batch whose commit reply was lost may be stored: that is what "unconfirmed" counts.
        assert stats.written <= stored <= stats.written + stats.dropped_by_reason["unconfirmed"]
        assert stats.breaker == "closed"
    finally:
        stop.set()
        writer.close(2)
        direct.dispose()


def test_unreachable_database_from_the_start_costs_callers_nothing(proxy: TCPProxy) -> None:
    proxy.cut()
    config = TestingConfig(
        database_url=DatabaseURL(proxy.url("nowhere")), flush_interval=0.01,
        breaker_threshold=1, breaker_base_delay=5, breaker_max_delay=5, connect_timeout=0.5,
    )
    writer = TraceWriter.from_config(config, strict=False)
    try:
        writer.record("x.first")
        assert wait_for(lambda: writer.stats().breaker == "open", 10)
        results = [writer.record("x.more") for _ in range(1000)]
        assert not any(results)
        stats = writer.stats()
        assert stats.dropped_by_reason["circuit_open"] >= 1000
        assert stats.written + stats.dropped == stats.submitted
    finally:
        writer.close(1)
