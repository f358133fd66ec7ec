"""Benchmark of the queue's consumers against raw PyMySQL ``executemany``, in one run.

    .venv/bin/python bench/consume.py [--rows 50000] [--batch 500] [--rounds 3]

A redis-server of its own (its append-only file in a temporary directory, ``appendfsync
everysec``) and a scratch MariaDB database. Each round fills the stream with ``--rows`` entries
of one masked trace (what the endpoint appends), then times how fast the stream is drained into
``telemetry_traces``: by one consumer, and by two consumer processes in the same group. Next to
it, the same rows (``build_row`` of the same trace, so the same bytes) inserted by raw PyMySQL
``executemany`` in batches of the same size, one commit a batch. Printed: rows/s of each, the
ratio one consumer / raw, of the medians and round by round (the contenders take turns within
a round). Target (issue 17): one consumer >= 0.8x raw executemany. Also printed: raw
``executemany`` of the rows and their event ids in one transaction (what any consumer keeping
the per-id duplicate check must get the database to do), and the ratio to it. Each clock starts
once its contender is connected (the consumers: started, connected and the table's layout read)
and stops when its rows are committed (the consumers: when the stream is empty).

The consumer does per row what raw does not: decode the entry, build the row (PHP JSON, the
table's zone), claim its event id in the same transaction (the duplicate check), then
acknowledge and delete the entries in Redis. It stores one batch in a thread while it reads and
prepares the next (raw is serial), keeps its store's connection from batch to batch, and runs
with the switch interval ``queue consume`` sets: as ``queue consume`` runs it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench.scratch_db import connect, executemany_rate, scratch_database  # noqa: E402
from jobs.queue_consumer import (  # noqa: E402
    KEEP_CONNECTION_SECONDS,
    Consumer,
    QueueSettings,
    use_a_short_switch_interval,
)
from tests.support.redis_server import RedisServer  # noqa: E402
from trace_service import migrate  # noqa: E402
from trace_service.db import create_engine, table_layout  # noqa: E402
from trace_service.php_json import encode_metadata  # noqa: E402
from trace_service.queue import TraceItem  # noqa: E402
from trace_service.sink import TraceSink, build_row, insert_sql  # noqa: E402
from trace_service.stream_entry import FIELD, encode_entry, new_event_id  # noqa: E402
from trace_service.values import TimestampFormatter  # noqa: E402

STREAM, GROUP = "bench:traces", "bench-writers"
METADATA = {"target_id": 3, "reason": "password_reset_requested",
            "client": {"platform": "web", "version": "4.12.1"}, "tags": ["auth", "stepup"]}


def item(event_id: str | None) -> TraceItem:
    return TraceItem("auth.login.attempt", "info", 7, "10.0.0.1", "Mozilla/5.0 (bench)",
                     "admins.list", "req-bench-1", METADATA, time.time_ns(), event_id)


def fill(server: RedisServer, rows: int) -> None:
    client = server.client()
    client.delete(STREAM)
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for start in range(0, rows, 1000):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(1000, rows - start)):
            pipe.xadd(STREAM, {FIELD: encode_entry(item(new_event_id()), encode_metadata(METADATA))})
        pipe.execute()


def consume(url: str, redis_url: str, name: str, batch: int, ready: Any) -> None:
    """One consumer until the stream is empty (run in a process of its own), from when all
    are ready (``ready``, a barrier the parent waits at too)."""
    import redis

    use_a_short_switch_interval()  # as `queue consume` does in its process
    engine = create_engine(url, pool_size=3)  # as `queue consume` opens it
    client = redis.Redis.from_url(redis_url)
    # A short block: the clock stops when the stream is empty, not a second later.
    consumer = Consumer(client, TraceSink(engine, "UTC", None, 86_400.0,
                                          keep_connection=KEEP_CONNECTION_SECONDS),
                        QueueSettings(STREAM, GROUP, name, batch, block_ms=20))
    consumer.sink.layout()  # connected, the table read: as raw is before its clock starts
    ready.wait()
    while consumer.step() or client.xlen(STREAM):
        pass
    consumer.close()
    engine.dispose()


def drain(url: str, server: RedisServer, consumers: int, batch: int) -> tuple[float, float]:
    """Seconds for ``consumers`` processes to drain the stream: from when all are started and
    connected until the stream is empty (every entry stored, acknowledged and deleted). Raw's
    clock, too, starts once connected and stops at its last commit; neither counts starting a
    process, nor (here) a consumer's last wait on an empty stream before it sees it is done.
    Second: the seconds from starting the processes to their exit, which count both."""
    context = multiprocessing.get_context("fork")
    ready = context.Barrier(consumers + 1)
    processes = [context.Process(target=consume, args=(url, server.url, f"c{i}", batch, ready))
                 for i in range(consumers)]
    launched = time.perf_counter()
    for process in processes:
        process.start()
    ready.wait(60)
    start = time.perf_counter()
    client = server.client()
    while client.xlen(STREAM):
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    for process in processes:
        process.join()
        assert process.exitcode == 0
    return seconds, time.perf_counter() - launched


def truncate(database: str) -> None:
    conn = connect(database)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE TABLE telemetry_traces")
        cur.execute("DELETE FROM trace_ingest_events")
    conn.commit()
    conn.close()


def count(database: str) -> int:
    conn = connect(database)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM telemetry_traces")
        (rows,) = cur.fetchone()
    conn.close()
    return int(rows)


def bench_row(url: str) -> tuple[str, tuple[object, ...]]:
    """The INSERT of the live layout and the row the consumers store (``build_row`` of the same
    trace, so the same bytes)."""
    engine = create_engine(url)
    layout = table_layout(engine)
    row, _ = build_row(item(None), layout, TimestampFormatter("UTC"))
    engine.dispose()
    return insert_sql(layout, "format"), row


def raw(url: str, database: str, rows: int, batch: int) -> float:
    insert_rows, row = bench_row(url)
    return executemany_rate(database, insert_rows, [row] * rows, batch)


def raw_with_ids(url: str, database: str, rows: int, batch: int) -> float:
    """Rows/s of raw PyMySQL ``executemany`` of the same rows and, in the same transaction, their
    event ids into ``trace_ingest_events`` (new v7 ids, as the endpoint assigns them): the
    database's share of what the issue asks of a consumer ("rows and their event ids written in
    one transaction"), with no Python of ours in the way. A ceiling for any consumer that keeps
    the per-id duplicate check, printed next to the target's baseline (rows alone)."""
    insert_rows, row = bench_row(url)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    ids: list[tuple[object, ...]] = [(new_event_id(), stamp) for _ in range(rows)]
    insert_ids = "INSERT INTO trace_ingest_events (event_id, seen_at) VALUES (%s, %s)"
    return executemany_rate(database, insert_rows, [row] * rows, batch, companion=(insert_ids, ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch_database() as (url, database), tempfile.TemporaryDirectory() as directory:
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        server = RedisServer(Path(directory), appendfsync="everysec").start()
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.rows} rows a round, "
              f"batch {args.batch}, {args.rounds} rounds; redis-server AOF everysec")
        rates: dict[str, list[float]] = {"raw": [], "raw_ids": [], "one": [], "two": [],
                                         "one_whole": []}
        try:
            for _ in range(args.rounds):
                rates["raw"].append(raw(url, database, args.rows, args.batch))
                truncate(database)
                rates["raw_ids"].append(raw_with_ids(url, database, args.rows, args.batch))
                truncate(database)
                for name, consumers in (("one", 1), ("two", 2)):
                    fill(server, args.rows)
                    seconds, whole = drain(url, server, consumers, args.batch)
                    stored = count(database)
                    assert stored == args.rows, (name, stored)
                    rates[name].append(args.rows / seconds)
                    if consumers == 1:
                        rates["one_whole"].append(args.rows / whole)
                    truncate(database)
        finally:
            server.stop()
    raw_rate, raw_ids, one, two = (statistics.median(rates[k]) for k in ("raw", "raw_ids", "one", "two"))

    def rounds(key: str) -> str:
        return ", ".join(f"{r:.0f}" for r in rates[key])

    # The contenders take turns within a round, so a round's ratio compares like with like.
    ratios = [o / r for o, r in zip(rates["one"], rates["raw"], strict=True)]
    per_round = ", ".join(f"{ratio:.2f}x" for ratio in ratios)
    print(f"\n  raw PyMySQL executemany: {raw_rate:8.0f} rows/s   (rounds: {rounds('raw')})")
    print(f"  raw, rows + event ids:   {raw_ids:8.0f} rows/s   (rounds: {rounds('raw_ids')}; "
          f"{raw_ids / raw_rate:.2f}x raw: the same work as a consumer's database, done serially)")
    print(f"  one consumer:            {one:8.0f} rows/s   (rounds: {rounds('one')})")
    print(f"  two consumers:           {two:8.0f} rows/s   (rounds: {rounds('two')})")
    whole = statistics.median(rates["one_whole"])
    print(f"  one consumer, its process start and last empty read counted: {whole:.0f} rows/s "
          f"({whole / raw_rate:.2f}x raw; rounds: {rounds('one_whole')})")
    print(f"  ratio one consumer / raw {one / raw_rate:.2f}x of the medians (target >= 0.8x); per round "
          f"{per_round}, median {statistics.median(ratios):.2f}x")
    print(f"  one consumer / raw rows + ids {one / raw_ids:.2f}x; two / one {two / one:.2f}x")


if __name__ == "__main__":
    main()
