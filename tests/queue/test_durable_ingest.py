"""The durable ingest path against a real redis-server (its own port, its AOF in a temporary
directory) and the real databases: the endpoint appends masked traces and answers 202 only once
Redis holds them; consumers store each exactly once, whatever dies between commit and ack; poison
goes to the dead-letter stream; an outage of the database is ridden out in the stream."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from jobs.queue_consumer import KEEP_CONNECTION_SECONDS, Consumer, QueueSettings
from tests.support.redis_server import RedisServer
from tests.trace_service.http.test_ingest import Ingest, make_ingest
from trace_service.breaker import CircuitBreaker
from trace_service.db import create_engine
from trace_service.http.stream import dead_stream, queue_status
from trace_service.php_json import EncodedMetadata
from trace_service.reader import StoredTrace, read_traces
from trace_service.sink import TraceSink
from trace_service.stream_entry import FIELD, decode_entry

STREAM = "test:traces"


@pytest.fixture
def queued(database_url: str, redis_server: RedisServer) -> Iterator[Ingest]:
    ingest = make_ingest(database_url, queue_url=redis_server.url, queue_stream=STREAM,
                         queue_max_length=50)
    yield ingest
    ingest.app.extensions["trace_writer"].close(2)


def consumer_for(ingest: Ingest, server: RedisServer, name: str = "c1", *,
                 sink_type: type[TraceSink] = TraceSink, clock: Any = time.monotonic,
                 **settings: Any) -> Consumer:
    config = ingest.app.extensions["trace_config"]
    sink = sink_type(ingest.app.extensions["trace_engine"], config.table_timezone, None,
                     config.idempotency_window, keep_connection=KEEP_CONNECTION_SECONDS)  # as queue consume
    consumer = Consumer(server.client(), sink, QueueSettings(
        STREAM, "writers", name, **{"batch_size": 20, "claim_seconds": 60.0, **settings}),
        CircuitBreaker(threshold=1, base_delay=0.05, max_delay=0.05, jitter=lambda: 0.0),
        clock=clock)
    consumer.ensure_group()
    return consumer


def drain(consumer: Consumer, turns: int = 50) -> None:
    """Turns until a turn settles nothing and the stream holds nothing of the group's."""
    for _ in range(turns):
        if consumer.step() == 0 and not consumer.client.xpending(STREAM, "writers")["pending"] \
                and not consumer.client.xlen(STREAM):
            return
    raise AssertionError(f"not drained after {turns} turns")


def stored(ingest: Ingest) -> list[StoredTrace]:
    return read_traces(ingest.app.extensions["trace_engine"])


# ---------------------------------------------------------------- the endpoint


def test_a_202_means_redis_holds_the_masked_trace_with_an_event_id(
        queued: Ingest, redis_server: RedisServer) -> None:
    response = queued.post({"event_key": "stream.one", "metadata": {"password": "hunter22",
                                                                     "note": "ok"}})
    assert response.status_code == 202 and response.json["status"] == "accepted"
    event_id = response.json["items"][0]["event_id"]
    assert uuid.UUID(event_id)
    ((_entry_id, fields),) = redis_server.client().xrange(STREAM)
    item = decode_entry(fields[FIELD])
    assert isinstance(item.metadata, EncodedMetadata) and item.metadata.text is not None
    metadata: Any = json.loads(item.metadata.text)  # the text PHP stores, encoded at ingest
    assert (item.event_key, item.event_id, metadata["note"]) == ("stream.one", event_id, "ok")
    assert metadata["password"] == "[masked]"
    assert b"hunter22" not in fields[FIELD]
    assert stored(queued) == []  # nothing in the table until a consumer writes it


def test_no_secret_reaches_the_append_only_file(queued: Ingest, redis_server: RedisServer) -> None:
    queued.post([{"event_key": "stream.secret", "metadata": {"note": "token ghp_" + "a1B2" * 9,
                                                             "api_key": "sk_live_" + "x9" * 12}}])
    aof = b"".join(path.read_bytes() for path in redis_server.directory.rglob("*.aof"))
    assert b"stream.secret" in aof  # the trace is in the file ...
    assert b"a1B2a1B2" not in aof and b"x9x9x9" not in aof  # ... its secrets are not


def test_the_stream_at_its_limit_refuses_the_whole_request(queued: Ingest, redis_server: RedisServer) -> None:
    assert queued.post([{"event_key": f"fill.{i}"} for i in range(45)]).status_code == 202
    response = queued.post([{"event_key": f"over.{i}"} for i in range(6)])
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert "TRACE_QUEUE_MAX_LENGTH=50" in response.json["error"]
    assert redis_server.client().xlen(STREAM) == 45  # none of the six: all or nothing
    assert queued.post([{"event_key": f"fits.{i}"} for i in range(5)]).status_code == 202


def test_redis_down_is_a_503_and_nothing_half_stored(queued: Ingest, redis_server: RedisServer) -> None:
    redis_server.kill()
    response = queued.post({"event_key": "stream.down"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "queue is unavailable" in response.json["error"]
    ready = queued.client.get("/readyz")
    assert ready.status_code == 503 and ready.json is not None and "queue" in ready.json["reason"]


def test_no_202_leaves_before_redis_has_answered(queued: Ingest, redis_server: RedisServer) -> None:
    # A 202 waits for Redis's reply. A stopped Redis keeps its sockets and answers once woken.
    assert queued.post({"event_key": "stream.warm"}).status_code == 202  # a connection to reuse
    assert redis_server.process is not None
    answered: list[Any] = []
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        poster = threading.Thread(target=lambda: answered.append(
            queued.post({"event_key": "stream.waits"})))
        poster.start()
        poster.join(0.5)
        assert not answered  # still waiting on Redis (its timeout is 2 s)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    poster.join(10)
    (response,) = answered
    assert response.status_code == 202
    assert redis_server.client().xlen(STREAM) == 2


def test_a_refused_append_is_counted_refused_never_accepted(queued: Ingest) -> None:
    # Counted once Redis has answered: a refused append counts as a 503, its traces as nothing.
    assert queued.post([{"event_key": f"fill.{i}"} for i in range(48)]).status_code == 202
    assert queued.post([{"event_key": f"over.{i}"} for i in range(3)]).status_code == 503
    text = queued.client.get("/metrics").data.decode()
    assert "trace_ingest_accepted_total 48.0" in text
    assert 'trace_ingest_rejected_total{reason="503"} 1.0' in text


# ---------------------------------------------------------------- the consumers


def test_a_consumer_stores_each_trace_once_and_empties_the_stream(
        queued: Ingest, redis_server: RedisServer) -> None:
    queued.post([{"event_key": f"c.{i}", "metadata": {"i": i}} for i in range(30)])
    consumer = consumer_for(queued, redis_server)
    drain(consumer)
    rows = stored(queued)
    assert sorted(r.event_key for r in rows) == sorted(f"c.{i}" for i in range(30))
    assert redis_server.client().xlen(STREAM) == 0
    assert (consumer.counts.written, consumer.counts.duplicates) == (30, 0)


def test_a_consumer_killed_between_commit_and_ack_doubles_nothing(
        queued: Ingest, redis_server: RedisServer) -> None:
    queued.post([{"event_key": f"k.{i}"} for i in range(10)])
    dying = consumer_for(queued, redis_server, name="dies")

    def killed(ids: list[bytes], pipe: Any = None) -> None:
        raise SystemExit("killed after the commit")

    dying._ack = killed  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        dying.step()
    assert len(stored(queued)) == 10  # committed, never acknowledged
    survivor = consumer_for(queued, redis_server, name="survives", claim_seconds=0.001)
    time.sleep(0.01)
    drain(survivor)
    assert sorted(r.event_key for r in stored(queued)) == sorted(f"k.{i}" for i in range(10))
    assert (survivor.counts.claimed, survivor.counts.duplicates, survivor.counts.written) == (10, 10, 0)
    assert queue_status(redis_server.client(), STREAM, "writers")["pending"] == 0


def test_poison_goes_to_the_dead_letter_stream_and_the_rest_is_stored(
        queued: Ingest, redis_server: RedisServer) -> None:
    client = redis_server.client()
    queued.post([{"event_key": "good.1"}])
    client.xadd(STREAM, {FIELD: b"{not json"})
    queued.post([{"event_key": "good.2"}])
    consumer = consumer_for(queued, redis_server)
    drain(consumer)
    assert sorted(r.event_key for r in stored(queued)) == ["good.1", "good.2"]
    ((_, dead),) = client.xrange(dead_stream(STREAM))
    assert dead[b"reason"] == b"not a trace" and dead[FIELD] == b"{not json"
    status = queue_status(client, STREAM, "writers")
    assert (status["dead_letters"], status["length"], status["pending"]) == (1, 0, 0)


def test_a_row_the_database_refuses_is_parked_with_its_reason(
        queued: Ingest, redis_server: RedisServer) -> None:
    client = redis_server.client()
    queued.post([{"event_key": "ok.before"}, {"event_key": "ok.after"}])
    # An entry the endpoint would never write: an actor id beyond the column's range.
    (entry_id, fields), _ = client.xrange(STREAM)
    body = json.loads(fields[FIELD])
    body.update(a=2**70, k="bad.actor", e=str(uuid.uuid4()))
    client.xadd(STREAM, {FIELD: json.dumps(body).encode()})
    consumer = consumer_for(queued, redis_server)
    drain(consumer)
    assert sorted(r.event_key for r in stored(queued)) == ["ok.after", "ok.before"]
    ((_, dead),) = client.xrange(dead_stream(STREAM))
    assert dead[b"reason"] in (b"db_error", b"invalid")
    assert consumer.counts.written == 2 and sum(consumer.counts.dead.values()) == 1


def test_an_entry_that_keeps_killing_its_consumers_is_parked(
        queued: Ingest, redis_server: RedisServer) -> None:
    queued.post([{"event_key": "crashy"}])
    client = redis_server.client()
    consumer_for(queued, redis_server, name="first")
    client.xreadgroup("writers", "first", {STREAM: ">"})  # delivery 1; "first" dies with it
    taken = []
    for n in range(3):  # the next consumers claim it and die too: deliveries 2, 3, then 4
        time.sleep(0.005)
        taken.append(len(consumer_for(queued, redis_server, name=f"dies{n}", claim_seconds=0.001,
                                      max_deliveries=3)._claim_from_the_dead()))
    assert taken == [1, 1, 0]  # the fourth delivery is over the limit: parked, not handed out
    assert stored(queued) == []
    ((_, dead),) = client.xrange(dead_stream(STREAM))
    assert dead[b"reason"] == b"delivered too often"
    assert queue_status(client, STREAM, "writers")["pending"] == 0


@pytest.mark.mariadb
def test_a_database_outage_is_ridden_out_in_the_stream(
        mariadb_url: str, redis_server: RedisServer) -> None:
    ingest = make_ingest(mariadb_url, queue_url=redis_server.url, queue_stream=STREAM)
    engine: Engine = ingest.app.extensions["trace_engine"]
    config = ingest.app.extensions["trace_config"]
    # The consumer's own engine, on a database we can take away and give back.
    consumer_engine = create_engine(mariadb_url, pool_size=2)
    sink = TraceSink(consumer_engine, config.table_timezone, None, config.idempotency_window,
                     keep_connection=KEEP_CONNECTION_SECONDS)
    consumer = Consumer(redis_server.client(), sink, QueueSettings(STREAM, "writers", "c"),
                        CircuitBreaker(threshold=1, base_delay=0.05, max_delay=0.1))
    consumer.ensure_group()
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("RENAME TABLE telemetry_traces TO telemetry_traces_away")
        for i in range(5):  # the endpoint keeps answering 202 while the table is gone
            assert ingest.post([{"event_key": f"out.{i}.{j}"} for j in range(4)]).status_code == 202
        for _ in range(5):
            consumer.step()
        assert consumer.counts.outages >= 1 and redis_server.client().xlen(STREAM) == 20
        with engine.begin() as conn:
            conn.exec_driver_sql("RENAME TABLE telemetry_traces_away TO telemetry_traces")
        deadline = time.monotonic() + 20
        while redis_server.client().xlen(STREAM) and time.monotonic() < deadline:
            consumer.step()
        rows = read_traces(engine)
        assert sorted(r.event_key for r in rows) == sorted(f"out.{i}.{j}" for i in range(5)
                                                           for j in range(4))
    finally:
        consumer_engine.dispose()
        ingest.app.extensions["trace_writer"].close(2)


# ---------------------------------------------------------------- the store thread

class RecordingSink(TraceSink):
    """A real sink that notes its calls; ``hook`` runs at the start of each store (its number)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, int]] = []
        self.storing = threading.Event()  # set while a store runs
        self.hook: Any = None

    def prepare(self, items: list[Any]) -> Any:
        self.calls.append(("prepare", len(items)))
        if self.storing.is_set():
            self.calls.append(("prepared while storing", len(items)))
        return super().prepare(items)

    def store(self, batch: Any) -> Any:
        number = sum(1 for call, _ in self.calls if call == "store")
        self.calls.append(("store", len(batch.rows)))
        self.storing.set()
        try:
            if self.hook is not None:
                self.hook(number)
            return super().store(batch)
        finally:
            self.storing.clear()


def recording(queued: Ingest, server: RedisServer, prefix: str, count: int,
              name: str = "c1") -> tuple[Consumer, Any]:
    """``count`` traces posted (``<prefix>.<i>``), and a consumer whose sink notes its calls."""
    queued.post([{"event_key": f"{prefix}.{i}"} for i in range(count)])
    consumer = consumer_for(queued, server, name, sink_type=RecordingSink)
    return consumer, consumer.sink


def test_the_next_batch_is_prepared_while_a_full_one_is_stored(
        queued: Ingest, redis_server: RedisServer) -> None:
    consumer, sink = recording(queued, redis_server, "p", 45)
    second_prepared = threading.Event()
    real_prepare = sink.prepare

    def prepare(items: list[Any]) -> Any:
        prepared = real_prepare(items)
        if sum(call == "prepare" for call, _ in sink.calls) == 2:
            second_prepared.set()
        return prepared

    sink.prepare = prepare
    # The first store waits (at most 5 s) for the second batch to be prepared: serial, it never is.
    sink.hook = lambda number: second_prepared.wait(5) if number == 0 else None
    drain(consumer)
    consumer.close()
    assert ("prepared while storing", 20) in sink.calls  # batch 2 built while batch 1 was sent
    assert sorted(r.event_key for r in stored(queued)) == sorted(f"p.{i}" for i in range(45))
    assert (consumer.counts.written, consumer.counts.duplicates, consumer.counts.batches) == (45, 0, 3)
    assert queue_status(redis_server.client(), STREAM, "writers")["pending"] == 0


def test_the_next_batch_is_sent_before_the_one_before_is_acknowledged(
        queued: Ingest, redis_server: RedisServer) -> None:
    # The database takes batch 2 while Redis acknowledges batch 1; batch 1 is still acknowledged
    # only after its commit.
    consumer, sink = recording(queued, redis_server, "a", 45)
    second_store = threading.Event()
    sink.hook = lambda number: second_store.set() if number == 1 else None
    acks: list[tuple[int, bool, int]] = []  # (entries, batch 2 sent yet, rows stored then)
    real_ack = consumer._ack

    def ack(ids: list[bytes], pipe: Any = None) -> None:
        # Waits (at most 5 s) for batch 2 to be sent: in the old order it never is by now.
        acks.append((len(ids), second_store.wait(5), len(stored(queued))))
        real_ack(ids, pipe)

    consumer._ack = ack  # type: ignore[method-assign]
    drain(consumer)
    engine = queued.app.extensions["trace_engine"]
    assert engine.pool.checkedout() == 0  # the kept one given back when a read found nothing
    consumer.close()
    entries, second_sent, rows_then = acks[0]
    assert (entries, second_sent) == (20, True) and rows_then >= 20  # batch 1 committed first
    assert sorted(r.event_key for r in stored(queued)) == sorted(f"a.{i}" for i in range(45))
    assert (consumer.counts.written, consumer.counts.duplicates, consumer.counts.batches) == (45, 0, 3)
    assert queue_status(redis_server.client(), STREAM, "writers")["pending"] == 0


def test_a_consumer_looks_for_dead_consumers_entries_a_tenth_of_the_claim_time_apart(
        queued: Ingest, redis_server: RedisServer) -> None:
    client = redis_server.client()
    queued.post([{"event_key": f"d.{i}"} for i in range(10)])
    consumer_for(queued, redis_server, name="dies")
    client.xreadgroup("writers", "dies", {STREAM: ">"})  # "dies" takes all ten and stops answering
    now = [100.0]  # the survivor's clock, for when to look (Redis keeps its own idle times)
    survivor = consumer_for(queued, redis_server, name="survives", claim_seconds=2.0, block_ms=1,
                            clock=lambda: now[0])

    def looks() -> int:  # XAUTOCLAIMs this test's own redis-server has run
        return int(client.info("commandstats").get("cmdstat_xautoclaim", {}).get("calls", 0))

    for _ in range(3):  # turns within a tenth of the claim time: one look, at the first
        survivor.step()
    assert looks() == 1 and stored(queued) == []
    time.sleep(2.1)  # the entries are idle past the claim time in Redis
    survivor.step()
    assert looks() == 1 and stored(queued) == []  # not yet time to look again
    now[0] += 0.2  # a tenth of the claim time later
    drain(survivor)
    assert sorted(r.event_key for r in stored(queued)) == sorted(f"d.{i}" for i in range(10))
    assert survivor.counts.claimed == 10 and looks() >= 2


def test_an_outage_of_the_batch_in_flight_takes_it_and_the_next_again(
        queued: Ingest, redis_server: RedisServer) -> None:
    consumer, sink = recording(queued, redis_server, "o", 40)
    engine: Engine = queued.app.extensions["trace_engine"]

    def table_away(number: int) -> None:
        if number == 0:  # a real outage: the table is gone when the first full batch is sent
            with engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE telemetry_traces RENAME TO telemetry_traces_away")

    sink.hook = table_away
    consumer.step()  # batch 1 handed to the store thread
    consumer.step()  # batch 2 prepared; batch 1 comes back unavailable: both stay ours
    assert consumer.counts.outages == 1 and unstored(redis_server) == 40
    assert queue_status(redis_server.client(), STREAM, "writers")["pending"] == 40
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE telemetry_traces_away RENAME TO telemetry_traces")
    deadline = time.monotonic() + 10
    while redis_server.client().xlen(STREAM) and time.monotonic() < deadline:
        consumer.step()
    consumer.close()
    assert sorted(r.event_key for r in stored(queued)) == sorted(f"o.{i}" for i in range(40))
    # Batch 2 was not sent while batch 1 was to be taken again: nothing was written twice.
    assert (consumer.counts.written, consumer.counts.duplicates) == (40, 0)
    assert queue_status(redis_server.client(), STREAM, "writers")["pending"] == 0


def test_a_store_that_raises_in_the_store_thread_keeps_the_entries(
        queued: Ingest, redis_server: RedisServer) -> None:
    consumer, sink = recording(queued, redis_server, "r", 40)

    def raise_once(number: int) -> None:
        if number == 0:
            raise RuntimeError("a bug in the sink")

    sink.hook = raise_once
    drain(consumer)
    consumer.close()
    assert sorted(r.event_key for r in stored(queued)) == sorted(f"r.{i}" for i in range(40))
    assert not consumer.counts.dead and consumer.counts.written == 40
    assert sum(call == "store" for call, _ in sink.calls) == 3  # batch 1 twice, then batch 2
    assert queue_status(redis_server.client(), STREAM, "writers")["pending"] == 0


def test_a_stop_settles_the_batch_in_flight_before_run_returns(
        queued: Ingest, redis_server: RedisServer) -> None:
    consumer, sink = recording(queued, redis_server, "s", 40, name="stops")
    stopping = threading.Event()

    def stop_during_the_first_store(number: int) -> None:
        if number == 0:
            consumer.stop()
            stopping.set()

    sink.hook = stop_during_the_first_store
    thread = threading.Thread(target=consumer.run)
    thread.start()
    assert stopping.wait(10)
    thread.join(10)
    assert not thread.is_alive()
    client = redis_server.client()
    # Every batch stored was acknowledged (deleted), the one in flight included; the rest waits
    # in the stream. (Batch 2 may have been taken before the stop was seen, and then stored.)
    assert len(stored(queued)) in (20, 40) and len(stored(queued)) + client.xlen(STREAM) == 40
    assert queue_status(client, STREAM, "writers")["pending"] == 0
    again = consumer_for(queued, redis_server, name="stops")
    thread = threading.Thread(target=again.run)
    thread.start()
    deadline = time.monotonic() + 10
    while client.xlen(STREAM) and time.monotonic() < deadline:
        time.sleep(0.02)
    again.stop()
    thread.join(10)
    assert sorted(r.event_key for r in stored(queued)) == sorted(f"s.{i}" for i in range(40))
    assert again.counts.duplicates == 0


def test_a_consumer_does_not_claim_back_its_own_batch_in_flight(
        queued: Ingest, redis_server: RedisServer) -> None:
    # The store of batch 1 outlasts the claim time: its entries look idle to XAUTOCLAIM, but
    # they are this consumer's own, in flight, not a dead consumer's.
    queued.post([{"event_key": f"c.{i}"} for i in range(40)])
    consumer = consumer_for(queued, redis_server, sink_type=RecordingSink, claim_seconds=0.001)
    sink: Any = consumer.sink
    sink.hook = lambda number: time.sleep(0.2) if number == 0 else None
    drain(consumer)
    consumer.close()
    assert sorted(r.event_key for r in stored(queued)) == sorted(f"c.{i}" for i in range(40))
    assert (consumer.counts.claimed, consumer.counts.duplicates, consumer.counts.written) == (0, 0, 40)


def unstored(server: RedisServer) -> int:
    """Entries still in the stream (not yet stored and acknowledged)."""
    return int(server.client().xlen(STREAM))


def test_status_counts_pending_per_consumer_and_the_oldest_age(
        queued: Ingest, redis_server: RedisServer) -> None:
    queued.post([{"event_key": f"s.{i}"} for i in range(3)])
    client = redis_server.client()
    consumer_for(queued, redis_server)  # creates the group
    client.xreadgroup("writers", "slow", {STREAM: ">"}, count=2)
    status = queue_status(client, STREAM, "writers")
    assert (status["length"], status["pending"], status["consumers"]) == (3, 2, {"slow": 2})
    assert status["oldest_pending_seconds"] is not None and status["oldest_pending_seconds"] >= 0
    assert status["lag"] == 1


def test_a_stopped_consumer_returns_after_its_batch(
        queued: Ingest, redis_server: RedisServer) -> None:
    queued.post([{"event_key": f"cli.{i}"} for i in range(7)])
    runner = queued.app.test_cli_runner()
    # `queue consume` itself runs in a process of its own (tests/reliability/test_durable_queue.py);
    # here its loop runs in a thread and stop() is what its SIGTERM handler calls.
    consumer = consumer_for(queued, redis_server, name="cli")
    thread = threading.Thread(target=consumer.run)
    thread.start()
    deadline = time.monotonic() + 10
    while len(stored(queued)) < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    consumer.stop()
    thread.join(5)
    assert not thread.is_alive() and len(stored(queued)) == 7
    status = runner.invoke(args=["queue", "status", "--format", "json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["length"] == 0
    assert "no dead letters" in runner.invoke(args=["queue", "dead"]).output


def test_queue_commands_without_a_queue_say_how_to_set_one(database_url: str) -> None:
    ingest = make_ingest(database_url)
    result = ingest.app.test_cli_runner().invoke(args=["queue", "status"])
    assert result.exit_code != 0 and "TRACE_QUEUE_URL is not set" in result.output


def test_a_queue_without_an_idempotency_window_is_refused() -> None:
    from governance.errors import ConfigError
    from trace_service.http.config import ServiceConfig

    with pytest.raises(ConfigError, match="TRACE_IDEMPOTENCY_SECONDS=0"):
        ServiceConfig(queue_url="redis://127.0.0.1:1/0", idempotency_window=0)


def test_an_unreachable_redis_url_is_a_clear_status_error(database_url: str) -> None:
    ingest = make_ingest(database_url, queue_url="redis://127.0.0.1:1/0", queue_stream=STREAM)
    result = ingest.app.test_cli_runner().invoke(args=["queue", "status"])
    assert result.exit_code != 0 and "cannot be read (ConnectionError)" in result.output


def test_the_start_log_says_what_a_202_promises_with_the_settings_found(
        database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loose = RedisServer(tmp_path, config={"appendonly": "no", "maxmemory-policy": "allkeys-lru"}).start()
    try:
        with caplog.at_level(logging.INFO, logger="trace_service.http.app"):
            ingest = make_ingest(database_url, queue_url=loose.url, queue_stream=STREAM)
        ingest.app.extensions["trace_writer"].close(2)
    finally:
        loose.stop()
    assert "in Redis's memory only (appendonly no)" in caplog.text
    assert "maxmemory-policy is allkeys-lru: Redis may evict unread traces" in caplog.text


def test_with_an_append_only_file_the_promise_names_the_fsync_window() -> None:
    from trace_service.http.stream import Durability

    everysec = Durability(True, "everysec", "noeviction")
    assert "up to the last second" in everysec.promise() and everysec.problems() == []
    assert "a crash of Redis loses nothing it accepted" in Durability(True, "always", "noeviction").promise()
