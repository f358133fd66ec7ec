"""The durable path as operators see it, under a real gunicorn with two workers: one scrape of
``/metrics`` counts every worker's requests (prometheus-client's multiprocess mode, set up by
gunicorn.conf.py) and shows the stream; a poison entry shows up as a dead letter in ``/metrics``,
in ``flask queue status`` and in the counters the compliance report reads."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest

from governance.reports import counter_deltas
from jobs.queue_consumer import Consumer, QueueSettings, consumer_counters
from tests.support.gunicorn import free_port, start_gunicorn, stop_gunicorn
from tests.support.redis_server import RedisServer
from trace_service import migrate
from trace_service.db import create_engine
from trace_service.http.counters import CounterPersister, read_samples
from trace_service.http.keys import KeyStore
from trace_service.http.stream import queue_status
from trace_service.sink import TraceSink
from trace_service.stream_entry import FIELD

pytestmark = [pytest.mark.mariadb, pytest.mark.timeout(120)]
STREAM = "metrics:traces"


def scrape(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a new connection: any worker
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(trace_[a-z_]+)(?:\{[^}]*\})? ([0-9.e+]+)", line)
        if match:
            values[match.group(1)] = values.get(match.group(1), 0.0) + float(match.group(2))
    return values


@pytest.fixture
def service(mariadb_url: str, redis_server: RedisServer) -> Iterator[tuple[int, str]]:
    engine = create_engine(mariadb_url)
    migrate.upgrade(engine)
    _, key = KeyStore(engine).create("metrics", ["ingest"])
    engine.dispose()
    port = free_port()
    server = start_gunicorn(mariadb_url, port, env={
        "TRACE_QUEUE_URL": redis_server.url, "TRACE_QUEUE_STREAM": STREAM,
        "TRACE_INGEST_RATE": "1000000/minute"}, args=("-w", "2"))
    yield port, key
    stop_gunicorn(server)


def test_one_scrape_sees_every_worker_the_stream_and_the_dead_letters(
        service: tuple[int, str], redis_server: RedisServer, mariadb_url: str) -> None:
    port, key = service
    for number in range(20):  # a new connection each: gunicorn hands them to both workers
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/api/telemetry/traces", body=json.dumps({"event_key": f"m.{number}"}),
                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        assert conn.getresponse().status == 202
        conn.close()
    redis_server.client().xadd(STREAM, {FIELD: b"not a trace"})
    scrapes = [scrape(port) for _ in range(4)]
    assert all(s["trace_ingest_accepted_total"] == 20 for s in scrapes), scrapes
    assert all(s["trace_queue_length"] == 21 and s["trace_queue_up"] == 1 for s in scrapes)

    engine = create_engine(mariadb_url)
    try:
        consumer = Consumer(redis_server.client(), TraceSink(engine, "UTC", None, 86_400.0),
                            QueueSettings(STREAM, "telemetry-writers", "metrics-consumer"))
        consumer.ensure_group()
        # The consumer's counts go to trace_counter_snapshots, where the reports read losses.
        persister = CounterPersister(engine, lambda: consumer_counters(consumer.counts), 0)
        while consumer.step():
            pass
        after = scrape(port)
        assert (after["trace_queue_length"], after["trace_queue_dead_letters"]) == (0, 1)
        status = queue_status(redis_server.client(), STREAM, "telemetry-writers")
        assert (status["length"], status["pending"], status["dead_letters"]) == (0, 0, 1)
        assert persister.persist() > 0
        samples = read_samples(engine)
        taken = samples[0].taken_at
        deltas = counter_deltas(samples, taken - timedelta(days=1), taken + timedelta(days=1))
        assert deltas["queue.dead.not a trace"] == 1 and deltas["queue.written"] == 20
    finally:
        engine.dispose()
