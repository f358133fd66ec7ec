"""An event_id is remembered only with its stored row: lost traces can be retried, and two
workers receiving the same id at once store it once (MariaDB and SQLite)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.trace_service.http.test_ingest import Ingest, make_ingest
from trace_service import idempotency, migrate
from trace_service.db import create_engine, is_mysql
from trace_service.queue import TraceItem
from trace_service.reader import read_traces
from trace_service.sink import TraceSink

WINDOW = 3600.0


def refuse_rows(engine: Engine, event_key: str) -> None:
    """A trigger that makes the server refuse rows with ``event_key`` (as a full disk or a
    constraint would): the writer's transaction fails and rolls back."""
    if is_mysql(engine):
        body = (f"BEFORE INSERT ON telemetry_traces FOR EACH ROW IF NEW.event_key = '{event_key}' "
                "THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'; END IF")
    else:
        body = (f"BEFORE INSERT ON telemetry_traces WHEN NEW.event_key = '{event_key}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by test'); END")
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TRIGGER refuse_rows {body}"))


def stop_refusing(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER refuse_rows"))


def stored_keys(engine: Engine) -> list[str]:
    return [trace.event_key for trace in read_traces(engine)]


def test_a_trace_lost_after_its_202_is_stored_when_the_client_retries(ingest: Ingest) -> None:
    engine = ingest.app.extensions["trace_engine"]
    writer = ingest.app.extensions["trace_writer"]
    writer.strict = False  # the first copy is lost on purpose
    event = {"event_key": "lost.then.retried", "event_id": str(uuid.uuid4())}
    refuse_rows(engine, "lost.then.retried")
    first = ingest.post(event)
    assert (first.status_code, first.json["status"]) == (202, "accepted")
    writer.flush(10)
    assert writer.stats().dropped_by_reason["db_error"] == 1
    assert stored_keys(engine) == []
    stop_refusing(engine)

    retry = ingest.post(event)
    assert (retry.status_code, retry.json["status"]) == (202, "accepted")
    assert writer.flush(10)
    assert stored_keys(engine) == ["lost.then.retried"]
    again = ingest.post(event)
    assert again.json["status"] == "duplicate"
    assert writer.flush(10)
    assert stored_keys(engine) == ["lost.then.retried"]


def test_a_retry_that_arrives_while_the_first_copy_is_queued_is_stored_once(ingest: Ingest) -> None:
    engine = ingest.app.extensions["trace_engine"]
    event = {"event_key": "sent.twice", "event_id": str(uuid.uuid4())}
    answers = [ingest.post(event).json["status"] for _ in range(3)]
    writer = ingest.app.extensions["trace_writer"]
    assert writer.flush(10)
    # Whether a copy was answered accepted or duplicate depends on whether the first was
    # already committed; either way the trace is stored exactly once.
    assert answers[0] == "accepted" and set(answers) <= {"accepted", "duplicate"}
    assert stored_keys(engine) == ["sent.twice"]
    stats = writer.stats()
    assert stats.written == 1 and stats.duplicates == answers.count("accepted") - 1


def test_two_workers_receiving_the_same_ids_at_once_store_each_once(mariadb_url: str) -> None:
    workers = [make_ingest(mariadb_url), make_ingest(mariadb_url)]
    ids = [str(uuid.uuid4()) for _ in range(24)]
    partner = str(uuid.uuid4())  # in every batch: two ids per transaction, claimed in one order
    statuses: list[Counter[Any]] = [Counter(), Counter()]
    try:
        for event_id in ids:
            barrier = threading.Barrier(2)

            def post(n: int, event_id: str = event_id, barrier: threading.Barrier = barrier) -> None:
                barrier.wait(5)
                response = workers[n].post([{"event_key": "raced", "event_id": event_id},
                                            {"event_key": "raced.partner", "event_id": partner}])
                statuses[n][response.status_code] += 1

            threads = [threading.Thread(target=post, args=(n,)) for n in (0, 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        for worker in workers:
            assert worker.app.extensions["trace_writer"].flush(20)
        assert statuses[0] + statuses[1] == Counter({202: 2 * len(ids)})
        engine = workers[0].app.extensions["trace_engine"]
        assert Counter(stored_keys(engine)) == Counter({"raced": len(ids), "raced.partner": 1})
        stats = [worker.app.extensions["trace_writer"].stats() for worker in workers]
        assert sum(s.dropped for s in stats) == 0
        assert sum(s.written for s in stats) == len(ids) + 1
    finally:
        for worker in workers:
            worker.app.extensions["trace_writer"].close(2)
            worker.app.extensions["trace_engine"].dispose()


def item(event_key: str, event_id: str | None) -> TraceItem:
    return TraceItem(event_key, "info", None, None, None, None, None, None, 0, event_id)


def test_the_sink_stores_the_first_copy_of_an_id_within_a_batch_and_across_batches(
    migrated_engine: Engine,
) -> None:
    sink = TraceSink(migrated_engine, "UTC", idempotency_window=WINDOW)
    same = str(uuid.uuid4())
    first = sink.write([item("a", same), item("b", None), item("a.copy", same), item("c", None)])
    assert (first.written, first.duplicates, sum(first.dropped.values())) == (3, 1, 0)
    second = sink.write([item("a.again", same), item("d", str(uuid.uuid4()))])
    assert (second.written, second.duplicates) == (1, 1)
    assert stored_keys(migrated_engine) == ["a", "b", "c", "d"]


def test_without_a_window_every_copy_is_stored(migrated_engine: Engine) -> None:
    sink = TraceSink(migrated_engine, "UTC", idempotency_window=0)
    same = str(uuid.uuid4())
    result = sink.write([item("a", same), item("a", same)])
    assert (result.written, result.duplicates) == (2, 0)


@pytest.mark.parametrize("window", [1.0, 60.0, 86_400.0])
def test_an_id_is_a_duplicate_inside_the_window_and_new_after_it(
    migrated_engine: Engine, window: float
) -> None:
    # The clock is an argument: no real time is read, so this holds on any day.
    start = datetime(2031, 2, 28, 23, 59, 59)
    event_id = str(uuid.uuid4())

    def claim(at: datetime) -> bool:
        with migrated_engine.begin() as conn:
            return event_id in idempotency.claim(conn, [event_id], window, at)

    assert claim(start)
    assert not claim(start + timedelta(seconds=window / 2))
    assert idempotency.stored_ids(migrated_engine, [event_id], window, now=start) == {event_id}
    assert claim(start + timedelta(seconds=window + 1))  # forgotten, then remembered anew
    assert not claim(start + timedelta(seconds=window + 2))
    later = start + timedelta(seconds=3 * window + 2)  # past the renewed claim's window
    assert idempotency.stored_ids(migrated_engine, [event_id], window, now=later) == set()
    assert idempotency.forget_expired(migrated_engine, window, later) == 1


def test_a_claim_rolled_back_with_its_rows_is_not_remembered(migrated_engine: Engine) -> None:
    event_id = str(uuid.uuid4())
    now = datetime(2030, 6, 1, 12, 0, 0)
    with pytest.raises(RuntimeError), migrated_engine.begin() as conn:
        assert idempotency.claim(conn, [event_id], WINDOW, now) == {event_id}
        raise RuntimeError("the rows' INSERT failed")
    assert idempotency.stored_ids(migrated_engine, [event_id], WINDOW, now=now) == set()


def race_claims(engine: Engine, ids: list[str], claimers: int, now: datetime) -> list[set[str]]:
    """``claimers`` transactions (READ COMMITTED, as the sink runs them) claiming ``ids`` at
    once, each run again as the sink runs it (``idempotency.retrying_claims``); what each
    claimed. Any error, such as a deadlock lost more often than that allows, is raised."""
    barrier = threading.Barrier(claimers)
    won: list[set[str]] = []
    errors: list[BaseException] = []

    def transaction(one_by_one: bool) -> set[str]:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                if not one_by_one:
                    barrier.wait(10)  # the first claims start together
                return idempotency.claim(conn, ids, WINDOW, now, one_by_one=one_by_one)

    def claim_all() -> None:
        try:
            won.append(idempotency.retrying_claims(transaction))
        except BaseException as exc:  # raised in the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=claim_all) for _ in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]
    return won


def test_concurrent_claims_of_stored_and_new_ids_take_each_new_id_once(mariadb_url: str) -> None:
    # Four transactions at a time claim the same ids, some already stored, some new, as four
    # writers would when a client re-sends a batch to several workers. Their batch claims
    # conflict or deadlock, and are decided one by one; a deadlock (1213) there would raise.
    engine = create_engine(mariadb_url, pool_size=4)
    migrate.upgrade(engine)
    now = datetime(2030, 1, 1, 0, 0, 0)
    try:
        for _ in range(25):
            stored = sorted(str(uuid.uuid4()) for _ in range(2))
            with engine.begin() as conn:
                assert idempotency.claim(conn, stored, WINDOW, now) == set(stored)
            new = sorted(str(uuid.uuid4()) for _ in range(2))
            won = race_claims(engine, stored + new, 4, now)
            assert sorted(i for claimed in won for i in claimed) == new  # each new id once
    finally:
        engine.dispose()


def test_a_batch_with_a_stored_and_an_expired_id_claims_the_expired_and_the_new(
        mariadb_url: str) -> None:
    # The batch insert skips both (ClaimConflict); one by one, the expired id is renewed.
    engine = create_engine(mariadb_url, pool_size=1)
    migrate.upgrade(engine)
    now = datetime(2030, 1, 1, 0, 0, 0)
    stored, expired, new = (str(uuid.uuid4()) for _ in range(3))
    try:
        with engine.begin() as conn:
            assert idempotency.claim(conn, [stored], WINDOW, now) == {stored}
            assert idempotency.claim(conn, [expired], WINDOW, now - timedelta(seconds=2 * WINDOW)
                                     ) == {expired}
        assert race_claims(engine, [stored, expired, new], 1, now) == [{expired, new}]
        assert idempotency.stored_ids(engine, [stored, expired, new], WINDOW, now=now) == {
            stored, expired, new}
    finally:
        engine.dispose()


@pytest.mark.parametrize("keep_connection", [0.0, 60.0], ids=["pooled", "kept"])
def test_four_sinks_writing_the_same_batch_at_once_store_each_trace_once(
        mariadb_url: str, keep_connection: float) -> None:
    # The sink's whole path (batch claim, conflicts and deadlocks retried one by one) as four
    # workers would run it when a client re-sends a batch to all of them, some of its ids
    # stored already: nothing is dropped, every trace is stored once. Kept: as four queue
    # consumers run it, each on a connection of its own in READ COMMITTED from batch to batch.
    engine = create_engine(mariadb_url, pool_size=6)
    migrate.upgrade(engine)
    sinks = [TraceSink(engine, "UTC", idempotency_window=WINDOW, keep_connection=keep_connection)
             for _ in range(4)]
    try:
        for round_ in range(10):
            batch = [item(f"r{round_}.{i}", str(uuid.uuid4())) for i in range(20)]
            first = sinks[0].write(batch[:5])
            assert first.written == 5, first.last_error
            barrier = threading.Barrier(4)
            results: list[Any] = []

            def write(sink: TraceSink, batch: list[TraceItem], barrier: threading.Barrier,
                      results: list[Any]) -> None:
                barrier.wait(10)
                results.append(sink.write(batch))

            threads = [threading.Thread(target=write, args=(sink, batch, barrier, results))
                       for sink in sinks]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len(results) == 4
            assert [sum(r.dropped.values()) for r in results] == [0] * 4, [r.last_error for r in results]
            assert sum(r.written for r in results) == 15
            assert sum(r.duplicates for r in results) == 4 * 20 - 15
        keys = Counter(stored_keys(engine))
        assert len(keys) == 10 * 20 and set(keys.values()) == {1}
    finally:
        for sink in sinks:
            sink.release_connection()
        engine.dispose()


def test_two_claimers_of_the_same_new_batch_take_each_id_once(mariadb_url: str) -> None:
    # The batch path (one multi-row INSERT IGNORE): the loser's insert skips ids, its
    # transaction is rolled back (ClaimConflict), and the ids are decided one by one in a new
    # one (as duplicates).
    engine = create_engine(mariadb_url, pool_size=2)
    migrate.upgrade(engine)
    now = datetime(2030, 1, 1, 0, 0, 0)
    try:
        for _ in range(20):
            new = sorted(str(uuid.uuid4()) for _ in range(5))
            won = race_claims(engine, new, 2, now)
            assert sorted(i for claimed in won for i in claimed) == new
    finally:
        engine.dispose()


def test_a_new_batch_is_claimed_in_one_insert(sqlite_url: str, mariadb_url: str) -> None:
    for url in (sqlite_url, mariadb_url):
        engine = create_engine(url)
        migrate.upgrade(engine)
        statements: list[str] = []

        def note(*args: Any, seen: list[str] = statements) -> None:
            seen.append(args[2])

        sa.event.listen(engine, "before_cursor_execute", note)
        ids = sorted(str(uuid.uuid4()) for _ in range(50))
        with engine.begin() as conn:
            assert idempotency.claim(conn, ids, WINDOW, datetime(2030, 1, 1)) == set(ids)
        inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
        assert len(inserts) == 1 and "trace_ingest_events" in inserts[0]
        # MariaDB: the insert alone (its count tells whether all were new); SQLite, where
        # nobody else can claim meanwhile, reads them first.
        reads = sum("trace_ingest_events" in s and s.lstrip().upper().startswith("SELECT")
                    for s in statements)
        assert reads == (1 if url == sqlite_url else 0)
        engine.dispose()


class IsolationNotingSink(TraceSink):
    """A real sink that reads, just before its rows are inserted, the isolation level of the
    transaction they are inserted in (InnoDB's own view of it)."""

    levels: list[str]

    def _insert_rows(self, conn: Any, rows: Any, literals: Any = None) -> None:
        in_transaction = conn.exec_driver_sql("SELECT @@in_transaction").scalar_one()
        time.sleep(0.15)  # InnoDB refreshes INNODB_TRX only after 0.1 s without a read
        level = conn.exec_driver_sql(
            "SELECT trx_isolation_level FROM information_schema.INNODB_TRX "
            "WHERE trx_mysql_thread_id = CONNECTION_ID()").scalar()
        self.levels.append(f"{level} {'in' if in_transaction else 'outside'} a transaction")
        super()._insert_rows(conn, rows, literals)


@pytest.mark.parametrize("autocommit", [False, True])
def test_claiming_transactions_run_in_read_committed_and_leave_the_session_as_it_was(
        mariadb_url: str, autocommit: bool) -> None:
    # The claim's locking reads must take no gap locks (idempotency.claim): the sink asks for
    # READ COMMITTED for the transaction alone, on a new connection as on a reused one. On an
    # engine handed in with AUTOCOMMIT, the claims and their rows are still one transaction
    # (INNODB_TRX has no row for a statement that commits alone: scalar_one() would raise).
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = create_engine(mariadb_url, pool_size=1, **options)
    migrate.upgrade(engine)
    sink = IsolationNotingSink(engine, "UTC", idempotency_window=WINDOW)
    sink.levels = []
    try:
        engine.dispose()  # the first batch runs on a new connection
        for batch in range(3):
            result = sink.write([item(f"iso.{batch}.{i}", str(uuid.uuid4())) for i in range(3)])
            assert result.written == 3, result.last_error
        assert sink.levels == ["READ COMMITTED in a transaction"] * 3
        with engine.connect() as conn:  # the next transaction is the session's again
            if not autocommit:  # (in autocommit every statement is a transaction of its own)
                assert conn.exec_driver_sql("SELECT @@session.tx_isolation").scalar() == "REPEATABLE-READ"
            dbapi: Any = conn.connection.dbapi_connection
            assert dbapi.get_autocommit() == autocommit
    finally:
        engine.dispose()


def test_an_id_claimed_while_the_batch_claim_runs_is_claimed_again_id_by_id(
        mariadb_url: str) -> None:
    # Another transaction inserts one of the batch's ids and commits only once the sink's
    # batch insert waits on it: the insert skips the id (ClaimConflict), and the sink claims
    # the batch again one by one in a new transaction.
    engine = create_engine(mariadb_url, pool_size=3)
    migrate.upgrade(engine)
    sink = TraceSink(engine, "UTC", idempotency_window=WINDOW)
    taken = str(uuid.uuid4())
    batch = [item(f"k.{i}", event_id) for i, event_id in
             enumerate(sorted([taken, *(str(uuid.uuid4()) for _ in range(4))]))]
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda *args: statements.append(args[2]))
    results: list[Any] = []
    try:
        with engine.connect() as other:
            # Stamped by the clock the sink reads (a fixed date would expire some day).
            seen_at = idempotency.utc_now().isoformat(" ")
            other.exec_driver_sql(f"INSERT INTO trace_ingest_events (event_id, seen_at) "
                                  f"VALUES ('{taken}', '{seen_at}')")
            writer = threading.Thread(target=lambda: results.append(sink.write(batch)))
            writer.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not other.exec_driver_sql(
                    "SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                    "WHERE trx_state = 'LOCK WAIT'").scalar():
                time.sleep(0.2)  # InnoDB refreshes INNODB_TRX only after 0.1 s without a read
            other.commit()
            writer.join(10)
        (result,) = results
        outcome = (result.written, result.duplicates, sum(result.dropped.values()))
        assert outcome == (4, 1, 0), result.last_error
        assert sorted(stored_keys(engine)) == sorted(i.event_key for i in batch if i.event_id != taken)
        batch_inserts = [s for s in statements if s.startswith("INSERT INTO trace_ingest_events")
                         and s.count("),(") == 4]
        assert len(batch_inserts) == 1  # the batch insert ran once, then id by id
    finally:
        engine.dispose()
