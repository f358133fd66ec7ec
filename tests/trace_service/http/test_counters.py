"""Persisted counters: what reports read to state a period's losses across restarts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.errors import AuditWriteForbidden
from governance.reports import CounterSample, counter_deltas
from trace_service import migrate
from trace_service.config import DatabaseURL
from trace_service.db import create_engine
from trace_service.http.app import create_app
from trace_service.http.config import TestingConfig
from trace_service.http.counters import CounterPersister, read_samples, service_counters

T0 = datetime(2026, 11, 16, 12, tzinfo=UTC)


@pytest.fixture
def migrated(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def _samples(engine: Engine) -> list[CounterSample]:
    return read_samples(engine)


def test_only_changed_values_are_appended(migrated: Engine) -> None:
    values = {"writer.written": 0, "writer.dropped.queue_full": 0}
    persister = CounterPersister(migrated, lambda: values, interval=0)
    values["writer.written"] = 5
    assert persister.persist(T0) == 1  # a zero that never changed is not written
    assert persister.persist(T0 + timedelta(minutes=1)) == 0
    values["writer.dropped.queue_full"] = 3
    assert persister.persist(T0 + timedelta(minutes=2)) == 1
    assert sorted((s.name, s.value) for s in _samples(migrated)) == [
        ("writer.dropped.queue_full", 3), ("writer.written", 5)]


def test_a_restart_loses_nothing_that_was_persisted(migrated: Engine) -> None:
    first = {"writer.dropped.db_error": 0}
    old = CounterPersister(migrated, lambda: first, interval=0)
    first["writer.dropped.db_error"] = 4
    old.persist(T0 - timedelta(hours=1))          # before the period
    first["writer.dropped.db_error"] = 10
    old.persist(T0 + timedelta(hours=1))          # 6 in the period, then the process dies
    second = {"writer.dropped.db_error": 0}
    new = CounterPersister(migrated, lambda: second, interval=0)
    second["writer.dropped.db_error"] = 7
    new.persist(T0 + timedelta(hours=2))          # the new process counts from 0
    deltas = counter_deltas(_samples(migrated), T0.replace(tzinfo=None),
                            (T0 + timedelta(days=1)).replace(tzinfo=None))
    assert deltas == {"writer.dropped.db_error": 13}


def test_a_failed_write_is_swallowed_counted_and_retried(database_url: str) -> None:
    engine = create_engine(database_url)  # no migrations: the table is missing
    values = {"writer.written": 0}
    persister = CounterPersister(engine, lambda: values, interval=0)
    values["writer.written"] = 1
    assert persister.persist(T0) == 0 and persister.failures == 1
    migrate.upgrade(engine)
    assert persister.persist(T0) == 1  # the value that failed is written at the next tick
    engine.dispose()


def test_a_forked_child_reports_only_its_own_growth(migrated: Engine) -> None:
    values = {"ingest.accepted": 0}
    persister = CounterPersister(migrated, lambda: values, interval=3600)
    values["ingest.accepted"] = 50  # counted in the parent before the fork
    parent = persister.instance
    persister._after_fork_in_child()  # what os.fork's hook runs in the child
    try:
        assert persister.instance != parent
        values["ingest.accepted"] = 53
        persister.persist(T0)
        assert [(s.name, s.value) for s in _samples(migrated)] == [("ingest.accepted", 3)]
    finally:
        persister.stop(persist=False)


def test_the_app_persists_writer_ingest_and_guard_counters(database_url: str) -> None:
    app = create_app(TestingConfig(database_url=DatabaseURL(database_url), counters_persist_seconds=0.05))
    engine = app.extensions["trace_engine"]
    migrate.upgrade(engine)
    persister = app.extensions["trace_counters"]
    before = service_counters(app.extensions["trace_writer"], app.extensions["trace_metrics"])
    try:
        assert app.test_client().post("/api/telemetry/traces", json={}).status_code == 401
        with pytest.raises(AuditWriteForbidden), engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM audit_logs"))
        done = threading.Event()
        for _ in range(100):  # the thread writes every 0.05 s; give it up to 5 s
            names = {s.name: s.value for s in _samples(engine)}
            if "ingest.rejected.401" in names and "guard.blocked.audit_logs" in names:
                done.set()
                break
            done.wait(0.05)
        assert done.is_set(), names
        assert names["ingest.rejected.401"] == 1
        # The guard's count is per process: the persister reports its growth since the app began.
        assert names["guard.blocked.audit_logs"] == 1
        assert before.get("ingest.rejected.401", 0) == 0
    finally:
        persister.stop(persist=False)
        app.extensions["trace_writer"].close(2)
        engine.dispose()
